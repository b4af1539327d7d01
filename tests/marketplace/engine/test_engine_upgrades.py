"""Engine upgrades: started as another engine version (the ENGINE_VERSION setting),
installations whose installed version's ``engine`` range excludes it are suspended
with a reason and audited, the rest of the workspace keeps working and installing,
and they resume by themselves when the engine changes back or they are upgraded.

Everything goes the real way: publish and approve through the registry API,
install through the workspaces API, decisions through the engine API; "starting an
engine" is building an app on the same database and instance with its setting."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from marketplace.models import AuditEntry
from marketplace.workspaces.models import Installation, InstallationStatus
from tests.marketplace.engine.conftest import auth, write_gear

pytestmark = pytest.mark.sandbox

BANNER = """
from gears_sdk import hookimpl


@hookimpl
def gear_render(profile, content, config, ctx):
    return {{"html": "<p>{text}</p>"}}
"""


def banner(root: Path, name: str, text: str, engine: str, version: str = "1.0.0") -> Path:
    gear_dir = write_gear(root / version, name, "template", ["gear_render"],
                          BANNER.format(text=text))
    manifest = json.loads((gear_dir / "gear.json").read_text())
    manifest["engine"], manifest["version"] = engine, version
    (gear_dir / "gear.json").write_text(json.dumps(manifest, indent=2))
    return gear_dir


@pytest.fixture
def start_engine(engine_app, app_config, engine_runtime) -> Iterator[Any]:
    """``start_engine(version)``: the engine running so far stops, and an app on the same
    database and instance starts whose engine runs as ``version`` (``None``: the package
    version), on the module's runtime."""
    from marketplace import create_app
    from marketplace.engine import get_engine, shutdown

    started: list[Flask] = [engine_app]

    def start(version: str | None) -> Flask:
        shutdown(started[-1])
        config = dict(app_config)
        if version is not None:
            config["ENGINE_VERSION"] = version
        other = create_app(config)
        get_engine(other).attach_runtime(engine_runtime)
        started.append(other)
        return other

    yield start
    for other in started[1:]:
        shutdown(other)


def _campaign(client, h, placement: str, iid: str) -> None:
    campaign = {"placement": placement, "experiences": [
        {"name": placement, "segment": None, "installation": iid, "content": {}}],
        "fallback": {"html": "<p>default</p>"}}
    resp = client.put(f"/engine/v1/workspaces/shop/campaigns/{placement}", headers=h,
                      json=campaign)
    assert resp.status_code == 200, resp.get_json()


def _decide(client, h, placement: str) -> dict[str, Any]:
    resp = client.post("/engine/v1/workspaces/shop/decide", headers=h,
                       json={"user_id": "u1", "placement": placement})
    assert resp.status_code == 200, resp.get_json()
    body: dict[str, Any] = resp.get_json()
    return body


def _row(session, iid: str) -> Installation:
    session.expire_all()
    row = session.get(Installation, iid)
    assert row is not None
    return row


def _audit(session, iid: str) -> list[tuple[str, str | None, str | None]]:
    session.expire_all()
    return [(e.action, e.actor_system, e.reason) for e in session.scalars(
        select(AuditEntry).where(AuditEntry.target_type == "installation",
                                 AuditEntry.target_id == iid).order_by(AuditEntry.id))]


def test_a_newer_engine_suspends_what_cannot_run_and_the_old_one_resumes_it(
        engine_app, client, session, people, publish, tmp_path, start_engine):
    h = auth(people["ws_token"])
    old = publish(banner(tmp_path / "old", "acme/old-banner", "old", ">=1.0.0 <2.0.0"))
    wide = publish(banner(tmp_path / "wide", "acme/wide-banner", "wide", ">=1.0.0 <3.0.0"))
    later = publish(banner(tmp_path / "later", "acme/later-banner", "later", ">=1.0.0 <3.0.0"))
    ids = {}
    for name in (old, wide):
        resp = client.post("/api/v1/workspaces/shop/installations", headers=h,
                           json={"gear": name, "consent": True})
        assert resp.status_code == 201, resp.get_json()
        ids[name] = resp.get_json()["id"]
    _campaign(client, h, "hero", ids[old])
    _campaign(client, h, "side", ids[wide])
    assert _decide(client, h, "hero")["content"]["html"] == "<p>old</p>"

    # -- the engine starts as 2.0.0 -------------------------------------------------
    new = start_engine("2.0.0").test_client()
    hero = _decide(new, h, "hero")
    assert hero["fallback"] is True and hero["content"]["html"] == "<p>default</p>"
    assert hero["gears"][0]["ok"] is False and hero["gears"][0]["error"] == "suspended"
    reason = "acme/old-banner 1.0.0 needs engine >=1.0.0 <2.0.0; this engine is 2.0.0"
    row = _row(session, ids[old])
    assert (row.status, row.enabled, row.disabled_reason) == \
        (InstallationStatus.suspended, True, reason)
    assert _audit(session, ids[old])[-1] == ("installation.suspend", "engine", reason)
    shown = new.get(f"/api/v1/workspaces/shop/installations/{ids[old]}", headers=h).get_json()
    assert (shown["status"], shown["disabled_reason"]) == ("suspended", reason)

    # the rest of the workspace keeps working, and installing into it still resolves
    assert _decide(new, h, "side")["content"]["html"] == "<p>wide</p>"
    assert _row(session, ids[wide]).status is InstallationStatus.active
    resp = new.post("/api/v1/workspaces/shop/installations", headers=h,
                    json={"gear": later, "consent": True})
    assert resp.status_code == 201, resp.get_json()
    _campaign(new, h, "footer", resp.get_json()["id"])
    footer = _decide(new, h, "footer")
    assert footer["content"]["html"] == "<p>later</p>", footer["gears"]

    # -- back to the package's engine version: it resumes by itself --------------------
    back = start_engine(None).test_client()
    assert _decide(back, h, "hero")["content"]["html"] == "<p>old</p>"
    row = _row(session, ids[old])
    assert (row.status, row.disabled_reason) == (InstallationStatus.active, None)
    assert _audit(session, ids[old])[-1] == ("installation.resume", "engine", None)
    assert [a for a, *_ in _audit(session, ids[old])].count("installation.suspend") == 1


def test_upgrading_a_suspended_installation_to_a_version_for_this_engine_resumes_it(
        engine_app, client, session, people, publish, tmp_path, start_engine):
    h = auth(people["ws_token"])
    name = publish(banner(tmp_path / "a", "acme/banner", "one", ">=1.0.0 <2.0.0"))
    resp = client.post("/api/v1/workspaces/shop/installations", headers=h,
                       json={"gear": name, "consent": True, "version": "^1.0.0"})
    iid = resp.get_json()["id"]
    _campaign(client, h, "hero", iid)
    publish(banner(tmp_path / "b", "acme/banner", "two", ">=2.0.0 <3.0.0", version="1.1.0"))

    new = start_engine("2.0.0").test_client()
    assert _decide(new, h, "hero")["fallback"] is True
    assert _row(session, iid).status is InstallationStatus.suspended

    # a version for another engine is refused up front, saying which engine it needs
    refused = client.patch(f"/api/v1/workspaces/shop/installations/{iid}", headers=h,
                           json={"version": "1.1.0"})
    assert refused.status_code == 409
    error = refused.get_json()["error"]
    assert error["code"] == "engine_incompatible"
    assert error["message"] == \
        "acme/banner 1.1.0 needs engine >=2.0.0 <3.0.0; this engine is 1.0.0"

    # on the 2.0.0 engine the newest version its range allows is 1.1.0, which fits
    resp = new.patch(f"/api/v1/workspaces/shop/installations/{iid}", headers=h,
                     json={"version": None, "consent": True})
    assert resp.status_code == 200, resp.get_json()
    assert (resp.get_json()["version"], resp.get_json()["status"]) == ("1.1.0", "active")
    assert _decide(new, h, "hero")["content"]["html"] == "<p>two</p>"


def test_enabling_a_version_this_engine_cannot_run_suspends_it(
        engine_app, client, session, people, publish, tmp_path, start_engine):
    h = auth(people["ws_token"])
    name = publish(banner(tmp_path / "a", "acme/banner", "one", ">=1.0.0 <2.0.0"))
    iid = client.post("/api/v1/workspaces/shop/installations", headers=h,
                      json={"gear": name, "consent": True}).get_json()["id"]
    assert client.patch(f"/api/v1/workspaces/shop/installations/{iid}", headers=h,
                        json={"enabled": False}).status_code == 200
    new = start_engine("2.0.0").test_client()
    # a user's disable is theirs: the engine leaves it alone
    assert new.get("/engine/v1/workspaces/shop/campaigns", headers=h).status_code == 200
    _campaign(new, h, "hero", iid)
    assert _decide(new, h, "hero")["fallback"] is True
    assert _row(session, iid).status is InstallationStatus.disabled
    resp = new.patch(f"/api/v1/workspaces/shop/installations/{iid}", headers=h,
                     json={"enabled": True})
    assert resp.status_code == 200
    body = resp.get_json()
    assert (body["status"], body["enabled"]) == ("suspended", True)
    assert "needs engine >=1.0.0 <2.0.0; this engine is 2.0.0" in body["disabled_reason"]
    # it can be uninstalled on this engine, and no worker ever ran for it here
    runtime = new.application.extensions["gears_engine"].runtime
    assert new.delete(f"/api/v1/workspaces/shop/installations/{iid}",
                      headers=h).status_code == 204
    assert iid not in runtime.health()
