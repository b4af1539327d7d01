"""Recovery without ceremony: when the cause of a gear not running goes away (release
from quarantine, a restored cache file), the next call runs it, without disabling and
enabling the installation; a cause that stays is not retried on every call.

Published and approved through the registry API, installed through the workspaces
service, quarantined and released through the admin API, called through the engine
API."""

from __future__ import annotations

import os
import stat
from typing import Any

import pytest

from marketplace.workspaces.models import Installation, InstallationStatus
from tests.marketplace.engine.conftest import auth, write_gear

pytestmark = pytest.mark.sandbox

BANNER = """
from gears_sdk import hookimpl


@hookimpl
def gear_render(profile, content, config, ctx):
    return {"html": "<p>signed banner</p>"}
"""


@pytest.fixture
def banner(client, people, publish, install, tmp_path) -> dict[str, Any]:
    """``acme/banner`` installed in ``shop`` and serving the ``hero`` placement."""
    name = publish(write_gear(tmp_path / "g", "acme/banner", "template", ["gear_render"],
                              BANNER))
    iid = install(name)
    campaign = {"placement": "hero", "experiences": [
        {"name": "banner", "segment": None, "installation": iid, "content": {}}],
        "fallback": {"html": "<p>default</p>"}}
    assert client.put("/engine/v1/workspaces/shop/campaigns/hero",
                      headers=auth(people["ws_token"]), json=campaign).status_code == 200
    return {"name": name, "id": iid}


def decide(client, people) -> dict[str, Any]:
    resp = client.post("/engine/v1/workspaces/shop/decide", headers=auth(people["ws_token"]),
                       json={"user_id": "u1", "placement": "hero"})
    assert resp.status_code == 200, resp.get_json()
    body: dict[str, Any] = resp.get_json()
    return body


def served(client, people) -> bool:
    body = decide(client, people)
    return body["fallback"] is False and body["content"]["html"] == "<p>signed banner</p>"


def status(session, iid: str) -> tuple[InstallationStatus, bool]:
    session.expire_all()
    row = session.get(Installation, iid)
    assert row is not None
    return row.status, row.enabled


def test_release_from_quarantine_runs_the_gear_on_the_next_call(
        engine_app, client, session, people, banner):
    admin = auth(people["admin_token"])
    base = f"/api/v1/admin/gears/{banner['name']}/1.0.0"
    manager = engine_app.extensions["gears_engine"]
    assert served(client, people)
    poller = manager.start_killswitch(interval=3600)  # polled by hand below
    assert poller is not None
    try:
        resp = client.post(f"{base}/quarantine", headers=admin, json={"reason": "exfiltrates"})
        assert resp.status_code == 200, resp.get_json()
        poller.poll_once()  # the poll that stops the running worker
        assert banner["id"] not in manager.runtime.health()
        for _ in range(3):
            body = decide(client, people)
            assert body["fallback"] is True and body["gears"][0]["ok"] is False
        # quarantine is the version's state, not the installation's: nothing to undo there
        assert status(session, banner["id"]) == (InstallationStatus.active, True)

        resp = client.post(f"{base}/unquarantine", headers=admin, json={"reason": "cleared"})
        assert resp.status_code == 200, resp.get_json()
        # the next call, before any kill-list poll and without disable/enable
        assert served(client, people)
        assert status(session, banner["id"]) == (InstallationStatus.active, True)
    finally:
        poller.stop()
        manager.killswitch = None


def test_release_does_not_undo_a_members_disable(engine_app, client, session, people, banner):
    from marketplace.workspaces import get_installation, set_enabled

    admin = auth(people["admin_token"])
    base = f"/api/v1/admin/gears/{banner['name']}/1.0.0"
    assert client.post(f"{base}/quarantine", headers=admin,
                       json={"reason": "exfiltrates"}).status_code == 200
    set_enabled(session, get_installation(session, people["ws"], banner["id"]), False,
                people["member"], reason="not this week")
    assert client.post(f"{base}/unquarantine", headers=admin,
                       json={"reason": "cleared"}).status_code == 200
    assert decide(client, people)["fallback"] is True
    assert status(session, banner["id"]) == (InstallationStatus.disabled, False)


def test_a_restored_cache_file_runs_on_the_next_call_and_a_lasting_fault_backs_off(
        engine_app, client, people, banner, monkeypatch):
    manager = engine_app.extensions["gears_engine"]
    assert served(client, people)
    cached = next(manager.cache.root.glob("*/banner/__init__.py"))
    original, mode = cached.read_text(), stat.S_IMODE(cached.stat().st_mode)
    os.chmod(cached, stat.S_IRUSR | stat.S_IWUSR)
    cached.write_text(original.replace("signed banner", "forged banner"))
    manager.forget("shop", banner["id"])  # the next use starts the worker afresh

    loads: list[str] = []
    real_load = manager.cache.load

    def counting_load(*args: Any, **kwargs: Any) -> Any:
        loads.append(args[0] if args else kwargs.get("name", "?"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(manager.cache, "load", counting_load)
    for _ in range(3):
        body = decide(client, people)
        assert body["fallback"] is True
        failure = body["gears"][0]
        assert failure["ok"] is False and failure["error"] == "tampered", failure
    assert len(loads) == 1, "an unchanged tampered cache was verified again on every call"

    cached.write_text(original)  # the operator restores the file, as it was
    os.chmod(cached, mode)
    assert served(client, people)
    assert len(loads) == 2
