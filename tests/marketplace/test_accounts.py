"""Users, passwords, publishers and workspaces."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from marketplace.accounts import (
    authenticate_password,
    create_publisher,
    create_user,
    create_workspace,
    hash_password,
    verify_password,
)
from marketplace.errors import MarketplaceError, ValidationError
from marketplace.models import AuditEntry, Role


def test_password_hash_is_argon2_and_salted():
    first, second = hash_password("correct horse"), hash_password("correct horse")
    assert first.startswith("$argon2id$")
    assert first != second
    assert verify_password(first, "correct horse")
    assert not verify_password(first, "wrong horse")
    assert not verify_password(None, "anything")
    assert not verify_password("garbage", "anything")


def test_authenticate_password(session):
    create_user(session, "Ann@Example.org", "developer", "correct horse")
    session.commit()
    user = authenticate_password(session, "ann@example.org", "correct horse")
    assert user is not None and user.email == "ann@example.org" and user.role is Role.developer
    assert authenticate_password(session, "ANN@example.org", "correct horse") is user
    assert authenticate_password(session, "ann@example.org", "wrong") is None
    assert authenticate_password(session, "nobody@example.org", "correct horse") is None
    user.is_active = False
    assert authenticate_password(session, "ann@example.org", "correct horse") is None


def test_user_without_password_cannot_log_in(session):
    create_user(session, "bot@example.org", "developer")
    assert authenticate_password(session, "bot@example.org", "") is None


def test_create_user_validates(session):
    create_user(session, "a@example.org", "business")
    with pytest.raises(MarketplaceError) as exc:
        create_user(session, "A@example.org", "business")
    assert exc.value.status == 409
    for bad in ("no-at-sign", "two@@x.org", "sp ace@x.org", "@x.org", "a@"):
        with pytest.raises(ValidationError):
            create_user(session, bad, "business")
    with pytest.raises(ValidationError, match="role"):
        create_user(session, "b@example.org", "wizard")
    with pytest.raises(ValidationError, match="at least"):
        create_user(session, "c@example.org", "business", "short")


def test_account_changes_are_audited(session, make_user):
    dev = make_user(role="developer", email="dev@example.org")
    biz = make_user(role="business", email="biz@example.org")
    create_publisher(session, "acme", dev.email)
    create_workspace(session, "demo", biz.email)
    session.commit()
    actions = session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)).all()
    assert actions == ["user.create", "user.create", "publisher.create", "publisher.member.add",
                       "workspace.create", "workspace.member.add"]


@pytest.mark.parametrize("name", ["a", "acme", "a-b", "x" * 39, "0day"])
def test_good_names(session, make_user, name):
    dev = make_user()
    assert create_publisher(session, name, dev.email).name == name


@pytest.mark.parametrize("name", ["", "-a", "a-", "Acme", "a_b", "x" * 40, "a b", "admin",
                                  "api", "gears", "static", "www", "root", "system"])
def test_bad_or_reserved_names(session, make_user, name):
    dev = make_user()
    with pytest.raises(ValidationError):
        create_publisher(session, name, dev.email)
    with pytest.raises(ValidationError):
        create_workspace(session, name, dev.email)


def test_publisher_rules(session, make_user, make_publisher):
    dev = make_user(role="developer")
    biz = make_user(role="business")
    make_publisher(owner=dev, name="acme")
    with pytest.raises(MarketplaceError) as exc:
        create_publisher(session, "acme", dev.email)
    assert exc.value.status == 409
    with pytest.raises(MarketplaceError, match="business user"):
        create_publisher(session, "globex", biz.email)
    with pytest.raises(MarketplaceError, match="no user"):
        create_publisher(session, "initech", "ghost@example.org")
