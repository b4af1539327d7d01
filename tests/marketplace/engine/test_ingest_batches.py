"""Ingest sends each extension its events in batches, with single-call semantics.

Every event must see its user's profile with the patches of all earlier events
applied (by every gear), each gear must see the events in ingest order, and a
failing event fails alone.
"""

from __future__ import annotations

import pytest

from marketplace.engine.models import InstallationState
from tests.marketplace.engine.conftest import auth, write_gear

pytestmark = pytest.mark.sandbox

BASE = "/engine/v1/workspaces/shop"

TRACKER = """
from gears_sdk import hookimpl


@hookimpl
def gear_on_event(event, profile, config, ctx):
    k = event["properties"]["k"]
    ctx.state.set("order", (ctx.state.get("order") or []) + [k])
    if event["properties"].get("bad"):
        raise ValueError("bad event %d" % k)
    seen = (profile.get("traits") or {}).get("seen") or []
    others = (profile.get("traits") or {}).get("n") or 0
    return {"set": {"traits.seen": seen + [k], "traits.others_at": others}}
"""

COUNTER = """
from gears_sdk import hookimpl


@hookimpl
def gear_on_event(event, profile, config, ctx):
    return {"increment": {"traits.n": 1}}
"""


def test_events_see_earlier_patches_and_gears_see_ingest_order(
        engine_app, client, session, people, publish, install, tmp_path) -> None:
    tracker = install(publish(write_gear(tmp_path / "g", "acme/tracker", "extension",
                                         ["gear_on_event"], TRACKER, read=["traits.*"],
                                         write=["traits.seen", "traits.others_at"],
                                         permissions={"events": {"read": ["k", "bad"]}})))
    install(publish(write_gear(tmp_path / "g", "acme/counter", "extension",
                               ["gear_on_event"], COUNTER, read=["traits.*"],
                               write=["traits.n"])))
    users = ["u1", "u2", "u1", "u1", "u3", "u2", "u1", "u2"]
    events = [{"user_id": u, "type": "custom", "name": "x",
               "properties": {"k": k, "bad": k == 4}} for k, u in enumerate(users)]
    h = auth(people["ws_token"])
    body = client.post(f"{BASE}/events", headers=h, json={"events": events}).get_json()
    assert body["accepted"] == 8 and body["patches_applied"] == 15
    assert body["gear_errors"][tracker]["codes"] == {"gear_error": 1}
    assert "bad event 4" in body["gear_errors"][tracker]["last_error"]

    def traits(user: str) -> dict:
        resp = client.get(f"{BASE}/profiles/{user}", headers=h)
        assert resp.status_code == 200, resp.get_json()
        return resp.get_json()["traits"]

    # each event saw the patches of the user's earlier events, from both gears
    assert traits("u1") == {"seen": [0, 2, 3, 6], "n": 4, "others_at": 3}
    assert traits("u2") == {"seen": [1, 5, 7], "n": 3, "others_at": 2}
    assert traits("u3") == {"n": 1}  # its only event failed in the tracker
    session.rollback()
    assert session.get(InstallationState, tracker).data["order"] == list(range(8))
