"""Installation lifecycle in the engine: gear_install/gear_uninstall, the circuit breaker
marking an installation failed (with health shown), and scheduled syncs by
``marketplace engine worker --once``."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from marketplace.db import utcnow
from marketplace.engine import get_engine
from marketplace.engine.models import InstallationState, SyncRun, SyncSchedule
from marketplace.runtime.datadir import image_for, probe_quota
from marketplace.workspaces import Installation, get_installation, installation_json, uninstall
from tests.marketplace.engine.conftest import auth, write_gear
from tests.marketplace.engine.test_flow import CONNECTOR, source  # noqa: F401

pytestmark = pytest.mark.sandbox

BASE = "/engine/v1/workspaces/shop"

LIFECYCLE = CONNECTOR + """

@hookimpl
def gear_install(config, ctx):
    ctx.state.set("installed", True)
    if config.get("fail"):
        raise ValueError("the API key was refused")


@hookimpl
def gear_uninstall(config, ctx):
    ctx.http.post(BASE + "/audience", json={"bye": ctx.state.get("installed")})
"""

FLAKY = """
from gears_sdk import hookimpl


@hookimpl
def gear_on_event(event, profile, config, ctx):
    raise RuntimeError("always broken")
"""

FAILING_UNINSTALL = """
from gears_sdk import hookimpl


@hookimpl
def gear_on_event(event, profile, config, ctx):
    return None


@hookimpl
def gear_install(config, ctx):
    ctx.state.set("installed", True)


@hookimpl
def gear_uninstall(config, ctx):
    raise RuntimeError("the remote side is down")
"""

HOOKS = ["gear_check", "gear_streams", "gear_read", "gear_write", "gear_install",
         "gear_uninstall"]
SCHEMA = {"type": "object", "properties": {"fail": {"type": "boolean", "default": False}}}


def test_install_uninstall_and_schedule(engine_app, client, session, people, publish, install,
                                        runner, tmp_path, source):  # noqa: F811
    src, port = source
    name = publish(write_gear(tmp_path / "g", "acme/crm", "connector", HOOKS,
                              LIFECYCLE % port, network=[f"127.0.0.1:{port}"],
                              config_schema=SCHEMA, write=["attributes.*"]))
    iid = install(name)
    session.rollback()
    assert session.get(InstallationState, iid).data == {"installed": True}
    h = auth(people["ws_token"])

    # a schedule, run by the engine worker once it is due
    resp = client.put(f"{BASE}/connectors/{iid}/schedule", headers=h,
                      json={"interval_minutes": 15})
    assert resp.status_code == 200 and resp.get_json()["interval_minutes"] == 15
    bad = client.put(f"{BASE}/connectors/{iid}/schedule", headers=h,
                     json={"interval_minutes": 0})
    assert bad.get_json()["error"]["details"][0]["path"] == "$.interval_minutes"
    src.data["customers"] = [{"user_id": "ann", "attributes": {"first_name": "Ann"}}]
    assert runner.invoke("engine", "worker", "--once").exit_code == 0
    assert session.scalars(select(SyncRun)).all() == []  # not due yet
    session.get(SyncSchedule, iid).next_run_at = utcnow() - timedelta(minutes=1)
    session.commit()
    result = runner.invoke("engine", "worker", "--once")
    assert result.exit_code == 0, result.output
    session.rollback()
    runs = session.scalars(select(SyncRun)).all()
    assert [(r.trigger, r.status.value) for r in runs] == [("schedule", "succeeded")]
    assert session.get(SyncSchedule, iid).next_run_at > utcnow() + timedelta(minutes=14)
    runs = client.get(f"{BASE}/connectors/{iid}/runs", headers=h).get_json()["runs"]
    assert runs[0]["streams"]["customers"]["records"] == 1

    # the data dir is a filesystem of its own (an image, mounted while a worker runs)
    data = get_engine(engine_app).data_root / iid
    if probe_quota()[0]:
        assert image_for(data).is_file()

    # uninstalling runs gear_uninstall, then deletes the state, schedule and runs
    uninstall(session, session.get(Installation, iid), people["member"])
    assert src.audience[-1] == {"bye": True}
    session.rollback()
    assert session.get(InstallationState, iid) is None
    assert session.get(SyncSchedule, iid) is None
    assert session.scalars(select(SyncRun)).all() == []
    # ... and the data, filesystem image included
    assert not data.exists() and not image_for(data).exists()


def test_a_failing_uninstall_is_logged_and_the_cleanup_goes_on(
        engine_app, session, people, publish, install, tmp_path, caplog):
    """gear_uninstall's policy is notify: its failure is logged, and the installation's
    state and data dir go all the same."""
    name = publish(write_gear(tmp_path / "g", "acme/bye", "extension",
                              ["gear_on_event", "gear_install", "gear_uninstall"],
                              FAILING_UNINSTALL))
    iid = install(name)
    session.rollback()
    assert session.get(InstallationState, iid).data == {"installed": True}
    data = get_engine(engine_app).data_root / iid
    uninstall(session, session.get(Installation, iid), people["member"])
    session.rollback()
    assert f"gear_uninstall of acme/bye ({iid}) failed" in caplog.text
    assert "the remote side is down" in caplog.text
    assert session.get(InstallationState, iid) is None
    assert not data.exists() and not image_for(data).exists()


def test_gear_data_path_moves_the_data_dirs(app, tmp_path: Path) -> None:
    app.config["GEAR_DATA_PATH"] = str(tmp_path / "volume")
    from marketplace.engine.manager import EngineManager

    assert EngineManager(app).data_root == (tmp_path / "volume").resolve()


def test_failing_install_and_breaker_mark_the_installation_failed(
        engine_app, client, session, people, publish, install, tmp_path, source):  # noqa: F811
    _src, port = source
    name = publish(write_gear(tmp_path / "g", "acme/crm", "connector", HOOKS,
                              LIFECYCLE % port, network=[f"127.0.0.1:{port}"],
                              config_schema=SCHEMA))
    iid = install(name, {"fail": True})
    session.rollback()
    inst = get_installation(session, people["ws"], iid)
    assert inst.status.value == "failed"
    assert "the API key was refused" in inst.disabled_reason

    flaky = install(publish(write_gear(tmp_path / "g", "acme/flaky", "extension",
                                       ["gear_on_event"], FLAKY, read=["traits.*"],
                                       write=["traits.x"])))
    h = auth(people["ws_token"])
    events = [{"user_id": f"u{i}", "type": "view"} for i in range(7)]
    body = client.post(f"{BASE}/events", headers=h, json={"events": events}).get_json()
    assert body["accepted"] == 7
    assert body["gear_errors"][flaky]["codes"] == {"gear_error": 5, "disabled": 2}
    session.rollback()
    inst = get_installation(session, people["ws"], flaky)
    assert inst.status.value == "failed" and "5 consecutive failures" in inst.disabled_reason
    # the next batch no longer calls it; the installation shows its health
    body = client.post(f"{BASE}/events", headers=h, json={"events": events[:1]}).get_json()
    assert body["gear_errors"] == {}
    # the trip was written at once (not at the next periodic flush): every process sees it
    shown = installation_json(inst, "http://x")["health"]
    assert (shown["state"], shown["next_action"]) == ("stopped_by_breaker", "retry")
    assert shown["failures"] == {"gear_error": 5} and shown["errors"] == 5
    assert "5 consecutive failures" in shown["reason"]
