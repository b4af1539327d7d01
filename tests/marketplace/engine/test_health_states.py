"""Every explicit state an installation can be in, reached for real through the engine
(sandboxed workers, the gear cache, the admin API), on SQLite and PostgreSQL; the API
shows each with its reason and next step, from the shared ``installation_health`` row."""

from __future__ import annotations

import os
import stat
from typing import Any

import pytest

from tests.marketplace.engine.conftest import auth, write_gear

pytestmark = pytest.mark.sandbox

BANNER = """
from gears_sdk import hookimpl

RENDERED = [0]


@hookimpl
def gear_render(profile, content, config, ctx):
    RENDERED[0] += 1
    ctx.log.info("rendered #%d", RENDERED[0])
    return {"html": "<p>signed banner</p>"}
"""

FLAKY = """
from gears_sdk import hookimpl


@hookimpl
def gear_on_event(event, profile, config, ctx):
    raise ValueError("the upstream said no")
"""

BROKEN = """
raise ImportError("a module this gear needs is missing")
"""

URL = "/api/v1/workspaces/shop/installations"


def _campaign(client: Any, h: dict[str, str], placement: str, iid: str) -> None:
    resp = client.put(f"/engine/v1/workspaces/shop/campaigns/{placement}", headers=h, json={
        "placement": placement, "fallback": {"html": "<p>default</p>"},
        "experiences": [{"name": "main", "segment": None, "installation": iid, "content": {}}]})
    assert resp.status_code == 200, resp.get_json()


def test_each_state_with_its_reason_and_next_step(engine_app, client, people, publish, install,
                                                  tmp_path):
    h = auth(people["ws_token"])
    manager = engine_app.extensions["gears_engine"]

    def health(iid: str) -> dict[str, Any]:
        resp = client.get(f"{URL}/{iid}", headers=h)
        assert resp.status_code == 200, resp.get_json()
        shown: dict[str, Any] = resp.get_json()["health"]
        return shown

    def decide(placement: str, user: str = "u1") -> dict[str, Any]:
        resp = client.post("/engine/v1/workspaces/shop/decide", headers=h,
                           json={"user_id": user, "placement": placement})
        assert resp.status_code == 200, resp.get_json()
        body: dict[str, Any] = resp.get_json()
        return body

    banner = install(publish(write_gear(tmp_path / "g", "acme/banner", "template",
                                        ["gear_render"], BANNER)))
    # waiting: installed, enabled, no worker started and no call yet
    shown = health(banner)
    assert (shown["state"], shown["next_action"], shown["calls"]) == ("waiting", "none", 0)

    # running: the calls, their latency and the gear's ctx.log lines, once flushed
    _campaign(client, h, "hero", banner)
    for user in ("u1", "u2", "u3"):
        assert decide("hero", user)["fallback"] is False
    assert manager.health_sync.flush()  # what the background thread does every second
    shown = health(banner)
    assert shown["state"] == "running" and shown["calls"] == 3 and shown["errors"] == 0
    assert shown["p50_ms"] is not None and shown["p99_ms"] >= shown["p50_ms"]
    assert [line["message"] for line in shown["logs"]] == [
        "rendered #1", "rendered #2", "rendered #3"]

    # tampered: a file of the cached copy changed; the failed start is written at once
    cached = next(manager.cache.root.glob("*/banner/__init__.py"))
    mode = stat.S_IMODE(cached.stat().st_mode)
    os.chmod(cached, mode | stat.S_IWUSR)
    cached.write_text(cached.read_text().replace("signed banner", "forged banner"))
    manager.forget("shop", banner)
    assert decide("hero")["fallback"] is True
    shown = health(banner)
    assert (shown["state"], shown["next_action"]) == ("tampered", "retry")
    assert "does not match what the registry signed" in shown["reason"]
    assert shown["calls"] == 3, "a refused start is not a call"
    # the operator restores the file: the next call starts it, and the reason is gone
    cached.write_text(cached.read_text().replace("forged banner", "signed banner"))
    os.chmod(cached, mode)
    assert decide("hero")["fallback"] is False
    assert manager.health_sync.flush()
    shown = health(banner)
    assert shown["state"] == "running" and shown["calls"] == 4

    # disabled by a member, then enabled again
    assert client.patch(f"{URL}/{banner}", headers=h, json={"enabled": False}).status_code == 200
    shown = health(banner)
    assert (shown["state"], shown["next_action"]) == ("disabled", "enable")
    assert client.patch(f"{URL}/{banner}", headers=h, json={"enabled": True}).status_code == 200
    assert health(banner)["state"] != "disabled"

    # quarantined through the admin API: red, with the reason, whatever else holds
    resp = client.post("/api/v1/admin/gears/acme/banner/1.0.0/quarantine",
                       headers=auth(people["admin_token"]), json={"reason": "exfiltrates"})
    assert resp.status_code == 200, resp.get_json()
    shown = health(banner)
    assert shown["state"] == "quarantined" and "exfiltrates" in shown["reason"]
    assert shown["next_action"] == "contact_publisher"

    # stopped_by_breaker: a gear failing every call trips its breaker; written at once
    flaky = install(publish(write_gear(tmp_path / "g", "acme/flaky", "extension",
                                       ["gear_on_event"], FLAKY)))
    events = [{"user_id": f"u{i}", "type": "view"} for i in range(5)]
    resp = client.post("/engine/v1/workspaces/shop/events", headers=h, json={"events": events})
    assert resp.status_code in (200, 202), resp.get_json()
    shown = health(flaky)
    assert (shown["state"], shown["next_action"]) == ("stopped_by_breaker", "retry")
    assert "5 consecutive failures" in shown["reason"]
    assert shown["failures"] == {"gear_error": 5} and "the upstream said no" in shown["last_error"]

    # failed_to_start: the gear cannot even be imported
    broken = install(publish(write_gear(tmp_path / "g", "acme/broken", "template",
                                        ["gear_render"], BROKEN)))
    _campaign(client, h, "side", broken)
    assert decide("side")["fallback"] is True
    shown = health(broken)
    assert (shown["state"], shown["next_action"]) == ("failed_to_start", "retry")
    assert "a module this gear needs is missing" in shown["reason"]
