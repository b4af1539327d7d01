"""The engine loads a gear only as the registry signed it: a file changed in the gear
cache after approval is refused at the next load, and decisions fall back."""

from __future__ import annotations

import os
import stat

import pytest

from tests.marketplace.engine.conftest import auth, write_gear

pytestmark = pytest.mark.sandbox

BANNER = """
from gears_sdk import hookimpl


@hookimpl
def gear_render(profile, content, config, ctx):
    return {"html": "<p>signed banner</p>"}
"""


def test_tampered_cache_is_refused_at_load(engine_app, client, session, people, publish, install,
                                           tmp_path):
    name = publish(write_gear(tmp_path / "g", "acme/banner", "template", ["gear_render"], BANNER))
    iid = install(name)
    h = auth(people["ws_token"])
    campaign = {"placement": "hero", "experiences": [
        {"name": "banner", "segment": None, "installation": iid, "content": {}}],
        "fallback": {"html": "<p>default</p>"}}
    assert client.put("/engine/v1/workspaces/shop/campaigns/hero", headers=h,
                      json=campaign).status_code == 200

    def decide():
        return client.post("/engine/v1/workspaces/shop/decide", headers=h,
                           json={"user_id": "u1", "placement": "hero"}).get_json()

    assert decide()["content"]["html"] == "<p>signed banner</p>"

    manager = engine_app.extensions["gears_engine"]
    cached = next(manager.cache.root.glob("*/banner/__init__.py"))
    os.chmod(cached, stat.S_IRUSR | stat.S_IWUSR)
    cached.write_text(cached.read_text().replace("signed banner", "forged banner"))
    manager.forget("shop", iid)  # the next use starts the worker afresh, from the cache

    after = decide()
    assert after["fallback"] is True and after["content"]["html"] == "<p>default</p>"
    failure = after["gears"][0]
    assert failure["installation"] == iid and failure["ok"] is False
    assert "tampered" in failure["message"] or "modified" in failure["message"]


def test_quarantine_stops_the_worker_within_a_poll(engine_app, client, session, people, publish,
                                                   install, tmp_path):
    import time

    name = publish(write_gear(tmp_path / "g", "acme/banner", "template", ["gear_render"], BANNER))
    iid = install(name)
    h = auth(people["ws_token"])
    campaign = {"placement": "hero", "experiences": [
        {"name": "banner", "segment": None, "installation": iid, "content": {}}],
        "fallback": {"html": "<p>default</p>"}}
    client.put("/engine/v1/workspaces/shop/campaigns/hero", headers=h, json=campaign)

    def decide():
        return client.post("/engine/v1/workspaces/shop/decide", headers=h,
                           json={"user_id": "u1", "placement": "hero"}).get_json()

    assert decide()["fallback"] is False
    manager = engine_app.extensions["gears_engine"]
    poller = manager.start_killswitch(interval=0.3)
    assert poller is not None
    try:
        assert iid in manager.runtime.health()
        resp = client.post(f"/api/v1/admin/gears/{name}/1.0.0/quarantine",
                           headers=auth(people["admin_token"]), json={"reason": "exfiltrates"})
        assert resp.status_code == 200, resp.get_json()
        deadline = time.monotonic() + 5
        while iid in manager.runtime.health() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert iid not in manager.runtime.health(), "the worker outlived the poll interval"
        after = decide()
        assert after["fallback"] is True and after["gears"][0]["ok"] is False
    finally:
        poller.stop()
        manager.killswitch = None
