"""The operator CLI, run against the test app."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from marketplace.accounts import authenticate_password, authenticate_token
from marketplace.models import Role, User


def test_init_is_idempotent(runner, session, monkeypatch):
    first = runner.invoke("init")
    assert first.exit_code == 0, first.output
    match = re.search(r"admin admin@gears\.local: created with password (\S+)", first.stdout)
    assert match, first.stdout
    assert authenticate_password(session, "admin@gears.local", match.group(1)) is not None

    second = runner.invoke("init")
    assert second.exit_code == 0, second.output
    assert "already initialized" in second.stdout
    assert "password" not in second.stdout


def test_init_with_admin_from_environment(runner, session, monkeypatch):
    monkeypatch.setenv("GEARS_ADMIN_EMAIL", "Boss@Example.org")
    monkeypatch.setenv("GEARS_ADMIN_PASSWORD", "a long password")
    result = runner.invoke("init")
    assert result.exit_code == 0, result.output
    assert "a long password" not in result.stdout
    user = authenticate_password(session, "boss@example.org", "a long password")
    assert user is not None and user.role is Role.admin
    assert session.scalar(select(User).where(User.email == "admin@gears.local")) is None


def test_create_user_with_password_from_stdin(runner, session):
    result = runner.invoke("create-user", "dev@example.org", "--role", "developer",
                           "--password-stdin", input="s3cret-enough\n")
    assert result.exit_code == 0, result.output
    assert authenticate_password(session, "dev@example.org", "s3cret-enough") is not None


def test_user_errors_are_one_line_without_traceback(runner):
    runner.invoke("create-user", "dev@example.org", "--role", "developer")
    result = runner.invoke("create-user", "dev@example.org", "--role", "developer")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ")
    assert "already exists" in result.stderr
    assert "Traceback" not in result.output
    result = runner.invoke("create-publisher", "acme", "--owner", "ghost@example.org")
    assert result.exit_code == 1 and result.stderr.startswith("error: no user")


def test_publisher_workspace_and_token(runner, session):
    assert runner.invoke("create-user", "dev@example.org", "--role", "developer").exit_code == 0
    assert runner.invoke("create-user", "biz@example.org", "--role", "business").exit_code == 0
    result = runner.invoke("create-publisher", "acme", "--owner", "dev@example.org")
    assert result.exit_code == 0, result.output
    result = runner.invoke("create-workspace", "shop", "--member", "biz@example.org")
    assert result.exit_code == 0, result.output

    result = runner.invoke("create-token", "dev@example.org", "--scope", "publish:acme",
                           "--scope", "read", "--expires-days", "30", "--name", "ci")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and re.fullmatch(r"gears_[A-Za-z0-9_-]{43}", lines[0])
    assert result.stderr == ""
    token = authenticate_token(session, lines[0])
    assert token is not None and token.name == "ci" and token.expires_at is not None
    assert token.scopes == ["publish:acme", "read"]


def test_create_token_refuses_unknown_scope(runner):
    runner.invoke("create-user", "dev@example.org", "--role", "developer")
    result = runner.invoke("create-token", "dev@example.org", "--scope", "write")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "unknown scope" in result.stderr


@pytest.mark.slow
def test_seed_demo_is_idempotent(runner, session, make_user):
    make_user(role="admin", email="admin@gears.local")
    first = runner.invoke("seed-demo")
    assert first.exit_code == 0, first.output
    password = re.search(r"dev@gears\.local with password (\S+)", first.stdout).group(1)
    assert authenticate_password(session, "dev@gears.local", password) is not None
    assert "workspace token for biz@gears.local" in first.stdout
    # The example gears went through the publish, vetting and review paths.
    assert "approved acme/hero-banner 1.0.0" in first.stdout
    assert "installed acme/rfm-score into demo" in first.stdout
    assert "sample events through the installed gears" in first.stdout
    second = runner.invoke("seed-demo")
    assert second.exit_code == 0
    assert "password" not in second.stdout and "published" not in second.stdout


def test_db_upgrade_reports_head(runner):
    result = runner.invoke("db", "upgrade")
    assert result.exit_code == 0, result.output
    assert "already at revision" in result.stdout


def test_serve_refuses_an_uninitialized_database(tmp_path):
    from click.testing import CliRunner

    from marketplace import create_app
    from marketplace.cli import main

    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}", "SECRET_KEY": "k",
                      "STORAGE_URL": f"file://{tmp_path / 'b'}",
                      "INSTANCE_PATH": str(tmp_path / "i")})
    result = CliRunner().invoke(main, ["serve", "--port", "1"], obj=app)
    assert result.exit_code == 1
    assert "not initialized" in result.stderr and "marketplace init" in result.stderr


def test_operator_cli_is_the_audited_actor_never_the_tokens_owner(runner, session, client):
    from marketplace.models import AuditEntry

    for args in (("create-user", "dev@example.org", "--role", "developer"),
                 ("create-publisher", "acme", "--owner", "dev@example.org"),
                 ("create-token", "dev@example.org", "--scope", "publish:acme")):
        result = runner.invoke(*args)
        assert result.exit_code == 0, result.output
    entries = session.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
    created = [e for e in entries if e.action == "token.create"]
    assert len(created) == 1
    assert created[0].actor_id is None and created[0].actor_system == "operator-cli"
    assert all(e.actor_system == "operator-cli" and e.actor_id is None for e in entries), [
        (e.action, e.actor_id, e.actor_system) for e in entries]


def test_audit_page_names_the_operator_cli(runner, session, client, make_user):
    from tests.marketplace.web_support import PASSWORD, sign_in

    runner.invoke("create-user", "dev@example.org", "--role", "developer")
    runner.invoke("create-token", "dev@example.org", "--scope", "read")
    make_user(role="admin", email="boss@example.org", password=PASSWORD)
    sign_in(client, "boss@example.org")
    page = client.get("/admin/audit?actor=operator-cli").get_data(as_text=True)
    assert "token.create" in page and "operator-cli" in page
