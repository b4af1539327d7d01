"""A worker starting while its workspace is re-read (another installation's outbox row, the
periodic refresh) is kept: only a change of its own installation makes it start again."""

from __future__ import annotations

import pytest

from marketplace.engine import get_engine
from marketplace.models import Workspace
from marketplace.workspaces import outbox
from marketplace.workspaces.models import Installation as InstallationRow
from marketplace.workspaces.outbox import EventKind
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


def _worker_pid(manager, installation: str) -> int | None:
    return (manager.runtime.health().get(installation) or {}).get("pid")


def test_a_late_installed_or_unchanged_row_keeps_the_running_worker(
        engine_app, client, session, people, publish, install, tmp_path):
    """The web process writes the ``installed`` row; a node may start the worker for a call
    (a connection test right after the install) before its drain reaches that row. Acting
    on the row, or on a ``changed`` row that changed nothing, must not stop the worker
    under that call: only a changed installation is started again."""
    first, _ = _two(publish, install, tmp_path)
    manager = get_engine(engine_app)
    lifecycle = engine_app.extensions["gears_engine_lifecycle"]
    body = client.post(f"{BASE}/events", headers=auth(people["ws_token"]),
                       json={"events": [{"user_id": "ann", "type": "view"}]}).get_json()
    assert body["accepted"] == 1 and not body["gear_errors"], body
    pid = _worker_pid(manager, first)
    assert pid is not None

    row = session.get(InstallationRow, first)
    for kind in (EventKind.installed, EventKind.changed):
        outbox.record(session, kind, row)
        session.commit()
        assert lifecycle.drain() == 1
        assert _worker_pid(manager, first) == pid, f"a late {kind.value} row restarted it"

    client.patch(f"/api/v1/workspaces/shop/installations/{first}",
                 headers=auth(people["ws_token"]), json={"config": {"label": "new"}})
    body = client.post(f"{BASE}/events", headers=auth(people["ws_token"]),
                       json={"events": [{"user_id": "bob", "type": "view"}]}).get_json()
    assert not body["gear_errors"], body
    assert _worker_pid(manager, first) not in (None, pid)  # a real change: a new worker
