"""Fixtures for the web page tests: published gears and a signed-in browser session.

Test modules import what they use (``from tests.marketplace.web_support import …``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from gears_sdk.archive import build_archive_bytes
from tests.fixtures.gears import gear_manifest, write_gear

CONNECTOR_MODULE = """\
from gears_sdk import hookimpl


@hookimpl
def gear_check(config, ctx):
    return {"ok": True}


@hookimpl
def gear_streams(config, ctx):
    return ["orders"]


@hookimpl
def gear_read(stream, config, cursor, ctx):
    return {"records": [], "cursor": cursor}
"""

PASSWORD = "correct horse battery staple"

CONFIG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["api_url", "window_days"],
    "properties": {
        "api_url": {"type": "string", "format": "uri", "title": "API URL",
                    "description": "Where the shop's API lives."},
        "window_days": {"type": "integer", "minimum": 1, "maximum": 365, "default": 90,
                        "description": "How many days of orders to read."},
        "ratio": {"type": "number", "default": 0.5},
        "enabled_sync": {"type": "boolean", "default": True, "title": "Sync nightly"},
        "mode": {"type": "string", "enum": ["fast", "full"], "default": "fast"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "weights": {"type": "array", "items": {"type": "number"}},
        "channels": {"type": "array", "items": {"enum": ["email", "sms", "push"]}},
        "auth": {"type": "object", "title": "Authentication", "properties": {
            "user": {"type": "string"}, "realm": {"type": "string", "default": "main"}}},
        "mappings": {"type": "array", "items": {"type": "object", "required": ["source"],
                                                "properties": {"source": {"type": "string"},
                                                               "target": {"type": "string"}}}},
        "api_key": {"type": "string", "format": "secret", "title": "API key"},
        "extra": {"description": "Anything else, as JSON."},
    },
}


@pytest.fixture
def admin(make_user) -> Any:
    return make_user(role="admin")


@pytest.fixture
def publish_gear(app: Flask, session, admin, make_user, make_publisher, tmp_path
                 ) -> Callable[..., Any]:
    """``publish_gear(name, version, kind="template", approve=True, readme=None,
    files=None, **manifest)`` → the committed ``GearVersion``."""
    from marketplace.accounts import create_token, get_publisher
    from marketplace.blobs import get_blob_store
    from marketplace.registry import publish, states

    owners: dict[str, Any] = {}

    def make(name: str = "acme/hello", version: str = "1.0.0", kind: str = "template", *,
             approve: bool = True, readme: str | None = None,
             files: dict[str, str] | None = None, **overrides: Any) -> Any:
        pub = name.split("/")[0]
        if pub not in owners:
            existing = get_publisher(session, pub)
            owner = make_user(role="developer")
            if existing is None:
                make_publisher(owner=owner, name=pub)
            _, token = create_token(session, owner, [f"publish:{pub}"], name="web-tests")
            session.commit()
            owners[pub] = (owner, token)
        module = None
        if kind == "connector":
            overrides.setdefault("hooks", ["gear_check", "gear_streams", "gear_read"])
            overrides.setdefault("permissions", {"network": ["api.shop.example"]})
            module = CONNECTOR_MODULE
        manifest = gear_manifest(name, version, kind, **overrides)
        gear_dir = write_gear(tmp_path / "published", manifest, module, extra_files=files)
        if readme is not None:
            (gear_dir / "README.md").write_text(readme)
        data, _ = build_archive_bytes(gear_dir)
        row = publish.publish(session, get_blob_store(app),
                              publish.Upload(data=data, user=owners[pub][0],
                                             token=owners[pub][1]))
        if approve:
            states.review(session, admin, row, approve=True, reason=None)
        return row

    return make


@pytest.fixture
def business(make_user, make_workspace) -> Any:
    """A business user with the password ``PASSWORD`` and a workspace ``shop``."""
    user = make_user(role="business", password=PASSWORD)
    make_workspace(member=user, name="shop")
    return user


def csrf_token(client: FlaskClient, path: str = "/login") -> str:
    html = client.get(path).get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def sign_in(client: FlaskClient, email: str, password: str = PASSWORD) -> None:
    token = csrf_token(client)
    resp = client.post("/login", data={"email": email, "password": password,
                                       "csrf_token": token})
    assert resp.status_code == 302, resp.get_data(as_text=True)


@pytest.fixture
def signed_in(client: FlaskClient, business) -> FlaskClient:
    sign_in(client, business.email)
    return client
