"""The app factory: settings, error shapes, security headers, /healthz, whoami."""

from __future__ import annotations

import os
import stat

import pytest

from marketplace import create_app
from marketplace.app import SECURITY_HEADERS
from marketplace.config import load_settings


def test_api_404_is_json(client):
    resp = client.get("/api/v1/no-such-thing")
    assert resp.status_code == 404
    assert resp.is_json
    body = resp.json
    assert set(body) == {"error"}
    assert body["error"]["code"] == "not_found"
    assert isinstance(body["error"]["message"], str) and body["error"]["details"] == []


def test_api_405_is_json(client):
    resp = client.delete("/api/v1/whoami")
    assert resp.status_code == 405
    assert resp.json["error"]["code"] == "method_not_allowed"
    assert "GET" in resp.headers["Allow"]


def test_api_401_is_json_with_challenge(client):
    resp = client.get("/api/v1/whoami")
    assert resp.status_code == 401
    assert resp.json["error"]["code"] == "unauthorized"
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("header", ["Bearer gears_wrong", "Basic abc", "Bearer "])
def test_bad_credentials_are_401_not_anonymous(client, header):
    resp = client.get("/api/v1/whoami", headers={"Authorization": header})
    assert resp.status_code == 401
    assert resp.json["error"]["code"] == "unauthorized"


def test_api_413_is_json(app, client):
    app.config["MAX_CONTENT_LENGTH"] = 10

    @app.post("/api/v1/_echo")
    def _echo():
        from flask import request
        return {"n": len(request.get_data())}

    resp = client.post("/api/v1/_echo", data=b"x" * 100)
    assert resp.status_code == 413
    assert resp.json["error"]["code"] == "payload_too_large"


def test_unexpected_error_is_generic_500(app, client, caplog):
    @app.get("/api/v1/_boom")
    def _boom():
        raise RuntimeError("secret detail")

    resp = client.get("/api/v1/_boom")
    assert resp.status_code == 500
    assert resp.json["error"]["code"] == "internal_error"
    assert "secret detail" not in resp.get_data(as_text=True)
    assert "secret detail" in caplog.text


def test_non_api_errors_are_html(client):
    resp = client.get("/no-such-page")
    assert resp.status_code == 404
    assert resp.mimetype == "text/html"


def test_security_headers_on_every_response(client):
    for path in ("/healthz", "/api/v1/whoami", "/no-such-page"):
        resp = client.get(path)
        for name, value in SECURITY_HEADERS.items():
            assert resp.headers[name] == value, (path, name)
    csp = client.get("/healthz").headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp


def test_healthz_ok(client):
    resp = client.get("/healthz")
    assert resp.status_code == 200
    assert resp.json == {"status": "ok",
                         "checks": {"database": {"ok": True}, "storage": {"ok": True}}}


def test_healthz_503_when_storage_is_gone(app, client, tmp_path):
    import shutil

    shutil.rmtree(tmp_path / "blobs")
    (tmp_path / "blobs").write_text("not a directory")
    resp = client.get("/healthz")
    assert resp.status_code == 503
    assert resp.json["checks"]["storage"]["ok"] is False
    assert resp.json["checks"]["database"]["ok"] is True


def test_whoami(client, make_user, make_publisher, make_workspace, make_token):
    dev = make_user(role="developer", email="Dev@Example.org")
    make_publisher(owner=dev, name="acme")
    make_workspace(member=dev, name="lab")
    token = make_token(dev, ["publish:acme", "read"])
    resp = client.get("/api/v1/whoami", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 200
    assert resp.json == {"email": "dev@example.org", "role": "developer",
                         "scopes": ["publish:acme", "read"], "publishers": ["acme"],
                         "workspaces": ["lab"]}


# -- settings ---------------------------------------------------------------------------------


def test_settings_layers(tmp_path):
    instance = tmp_path / "instance"
    instance.mkdir()
    (instance / "gears.toml").write_text(
        'database_url = "sqlite:///from-file.db"\nMAX_UPLOAD_MB = 2\nbase_url = "https://g.example/"\n')
    env = {"GEARS_INSTANCE_PATH": str(instance), "GEARS_MAX_UPLOAD_MB": "3",
           "GEARS_S3_REGION": "eu-west-1"}
    s = load_settings(environ=env, cwd=tmp_path)
    assert s["DATABASE_URL"] == f"sqlite:///{tmp_path / 'from-file.db'}"
    assert s["MAX_CONTENT_LENGTH"] == 3 * 1024 * 1024
    assert s["S3_REGION"] == "eu-west-1"
    assert s["BASE_URL"] == "https://g.example"
    assert s["STORAGE_URL"] == f"file://{tmp_path / 'blobs'}"
    s = load_settings({"MAX_UPLOAD_MB": 1}, environ=env, cwd=tmp_path)
    assert s["MAX_CONTENT_LENGTH"] == 1024 * 1024


def test_defaults_and_generated_secret_key(tmp_path):
    s = load_settings(environ={}, cwd=tmp_path)
    assert s["DATABASE_URL"] == f"sqlite:///{tmp_path / 'registry.db'}"
    assert s["MAX_CONTENT_LENGTH"] == 16 * 1024 * 1024
    key_file = tmp_path / "instance" / "secret_key"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert s["SECRET_KEY"] == key_file.read_text().strip()
    assert load_settings(environ={}, cwd=tmp_path)["SECRET_KEY"] == s["SECRET_KEY"]
    env = {"GEARS_SECRET_KEY": "from-env"}
    assert load_settings(environ=env, cwd=tmp_path)["SECRET_KEY"] == "from-env"


def test_gears_config_names_the_file(tmp_path):
    cfg = tmp_path / "elsewhere.toml"
    cfg.write_text('storage_url = "s3://bucket/prefix"\n')
    env = {"GEARS_CONFIG": str(cfg), "GEARS_SECRET_KEY": "k"}
    assert load_settings(environ=env, cwd=tmp_path)["STORAGE_URL"] == "s3://bucket/prefix"


def test_postgres_urls_use_psycopg3():
    from marketplace.db import normalize_url

    assert normalize_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("sqlite:///x.db") == "sqlite:///x.db"


def test_sqlite_connection_pragmas(tmp_path):
    from sqlalchemy import text

    from marketplace.db import database

    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'p.db'}", "SECRET_KEY": "k",
                      "STORAGE_URL": f"file://{tmp_path / 'b'}",
                      "INSTANCE_PATH": str(tmp_path / "i")})
    with database(app).engine.connect() as conn:
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() > 0
    database(app).engine.dispose()
