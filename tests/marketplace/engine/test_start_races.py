"""A worker starting while its workspace is re-read (another installation's outbox row, the
periodic refresh) is kept: only a change of its own installation makes it start again."""

from __future__ import annotations

import pytest

from marketplace.engine import get_engine
from marketplace.models import Workspace
from tests.marketplace.engine.conftest import auth, write_gear

pytestmark = pytest.mark.sandbox

BASE = "/engine/v1/workspaces/shop"

SEEN = """
from gears_sdk import hookimpl


@hookimpl
def gear_on_event(event, profile, config, ctx):
    return {"set": {"traits.%s": config.get("label") or "none"}}
"""

SCHEMA = {"type": "object", "properties": {"label": {"type": "string"}}}


def _two(publish, install, tmp_path) -> tuple[str, str]:
    ids = []
    for name in ("first", "second"):
        ids.append(install(publish(write_gear(
            tmp_path / "g", f"acme/{name}", "extension", ["gear_on_event"], SEEN % name,
            write=[f"traits.{name}"], config_schema=SCHEMA))))
    return ids[0], ids[1]


def _during_start(monkeypatch, manager, target: str, action) -> None:
    """Run ``action`` once while ``target``'s worker is being started."""
    real = manager.start_worker
    done: list[bool] = []

    def start_worker(session, gear, version, installation, *args, **kwargs):
        real(session, gear, version, installation, *args, **kwargs)
        if installation == target and not done:
            done.append(True)
            action(session)

    monkeypatch.setattr(manager, "start_worker", start_worker)


def test_another_installations_change_does_not_fail_a_starting_worker(
        engine_app, client, session, people, publish, install, tmp_path, monkeypatch):
    first, second = _two(publish, install, tmp_path)
    manager = get_engine(engine_app)
    ws = session.query(Workspace).filter_by(name="shop").one()

    def other_changes(own) -> None:  # as the outbox drain does for `second`, then a read
        manager.forget("shop", second)
        manager.workspace(own, own.get(Workspace, ws.id))

    _during_start(monkeypatch, manager, first, other_changes)
    body = client.post(f"{BASE}/events", headers=auth(people["ws_token"]),
                       json={"events": [{"user_id": "ann", "type": "view"}]}).get_json()
    assert body["accepted"] == 1 and not body["gear_errors"], body
    traits = client.get(f"{BASE}/profiles/ann",
                        headers=auth(people["ws_token"])).get_json()["traits"]
    assert traits == {"first": "none", "second": "none"}
