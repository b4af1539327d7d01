"""A scheduled connector sync end to end across processes: ``marketplace engine scheduler``
claims a due schedule and a ``marketplace engine serve`` node runs the sync.

A connector is published, approved and installed through the real paths in this process;
its source is an HTTP server on loopback (allowed by ``GEARS_HTTP_ALLOW_PRIVATE_HOSTS``).
A node and a looping scheduler are started as processes of their own on the test's
database (SQLite and PostgreSQL). The schedule is set through the node's engine API and
made due; then the sync must run on the node with the ``schedule`` trigger, its records
must be stored, its run recorded with its counts, the schedule moved on by its interval,
and the scheduler must claim it once however often it polls. A scheduler asked to stop
while a node runs one sync finishes waiting for it and claims no other due sync, which
the next scheduler (``--once``) then runs. The tests stop the processes they started.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from sqlalchemy import select, update

from marketplace.db import database, utcnow
from marketplace.engine import shutdown as shutdown_embedded_engine
from marketplace.engine.models import Event, Profile, SyncRun, SyncSchedule
from tests.fixtures.live import registry_env
from tests.fixtures.nodes import Node, release_leftovers, start_node, stop, wait_ready
from tests.marketplace.engine.conftest import auth, sandbox_problem, write_gear

pytestmark = [pytest.mark.sandbox, pytest.mark.slow, pytest.mark.timeout(300)]

#: read before the ``app`` fixture clears the developer's GEARS_ settings from the environment
PASSED_ON = {k: os.environ[k] for k in ("GEARS_SANDBOX_MIN_LEVEL",) if k in os.environ}
DEADLINE_S = 120.0

CONNECTOR = """
from gears_sdk import hookimpl

BASE = "http://127.0.0.1:%d"


@hookimpl
def gear_check(config, ctx):
    return {"ok": ctx.http.get(BASE + "/health").status == 200}


@hookimpl
def gear_streams(config, ctx):
    return [{"name": "customers", "kind": "profiles"}, {"name": "orders", "kind": "events"}]


@hookimpl
def gear_read(stream, config, cursor, ctx):
    body = ctx.http.get(BASE + "/" + stream, params={"since": cursor or 0}).json()
    return {"records": body["records"], "cursor": body["cursor"], "has_more": body["more"]}
"""

CUSTOMERS = [{"user_id": "ann", "attributes": {"first_name": "Ann"}},
             {"user_id": "bob", "attributes": {"first_name": "Bob"}},
             {"user_id": "cy", "attributes": {"first_name": "Cy"}}]
ORDERS = [{"id": "o1", "user_id": "ann", "type": "purchase", "properties": {"amount": 30}},
          {"id": "o2", "user_id": "bob", "type": "purchase", "properties": {"amount": 12}}]


@pytest.fixture(scope="module")
def sandbox_ok() -> None:
    """Skip unless workers can run here (checked before ``app`` clears the GEARS_ settings)."""
    problem = sandbox_problem()
    if problem:
        pytest.skip(problem)


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    """Open: the source answers pages at once; the test closes it to hold a sync mid-read."""
    opened = threading.Event()
    opened.set()
    yield opened
    opened.set()


@pytest.fixture
def source(gate: threading.Event) -> Iterator[tuple[int, list[tuple[str, int]]]]:
    """The connector's remote system, two records a page; its port and the pages asked
    (a page waits while ``gate`` is closed)."""
    data = {"customers": CUSTOMERS, "orders": ORDERS}
    asked: list[tuple[str, int]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            stream = url.path.strip("/")
            if stream == "health":
                body: dict[str, Any] = {"ok": True}
            else:
                since = int(parse_qs(url.query).get("since", ["0"])[0])
                asked.append((stream, since))
                gate.wait(DEADLINE_S)
                rows = data[stream][since:since + 2]
                body = {"records": rows, "cursor": since + len(rows),
                        "more": since + len(rows) < len(data[stream])}
            raw = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], asked
    server.shutdown()
    server.server_close()


def wait_until(what: str, check: Callable[[], bool], processes: list[subprocess.Popen[bytes]],
               logs: list[Path]) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not check():
        if any(p.poll() is not None for p in processes) or time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {DEADLINE_S:g} s\n"
                                 + "\n".join(f"--- {log.name}\n{log.read_text()}"
                                             for log in logs))
        time.sleep(0.2)


def start_scheduler(workdir: Path, env: dict[str, str], node: Node,
                    *args: str) -> subprocess.Popen[bytes]:
    """``marketplace engine scheduler`` looking for due syncs every half second."""
    with (workdir / "scheduler.log").open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "marketplace.cli", "engine", "scheduler",
             "--poll-seconds", "0.5", *args],
            cwd=workdir, env={**env, "GEARS_ENGINE_URLS": node.url}, stdout=out,
            stderr=subprocess.STDOUT)


def stop_scheduler(process: subprocess.Popen[bytes]) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)
    return process.returncode


def processes_env(app: Any, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A work directory and the environment for node and scheduler processes sharing the
    test app's database, blob store and instance (its signing key and node token)."""
    workdir = tmp_path / "procs"
    workdir.mkdir()
    cfg = app.config
    return workdir, registry_env(
        workdir, GEARS_DATABASE_URL=cfg["DATABASE_URL"], GEARS_STORAGE_URL=cfg["STORAGE_URL"],
        GEARS_SECRET_KEY=cfg["SECRET_KEY"], GEARS_INSTANCE_PATH=cfg["INSTANCE_PATH"],
        GEARS_HTTP_ALLOW_PRIVATE_HOSTS="127.0.0.1", **PASSED_ON)


def test_the_scheduler_has_a_node_run_a_due_sync(sandbox_ok, app, people, publish, install,
                                                  source, tmp_path):
    port, asked = source
    iid = install(publish(write_gear(
        tmp_path / "g", "acme/shop-sync", "connector",
        ["gear_check", "gear_streams", "gear_read"], CONNECTOR % port,
        network=[f"127.0.0.1:{port}"], write=["attributes.*"],
        permissions={"events": {"write": ["purchase"]}})))
    workdir, env = processes_env(app, tmp_path)
    node = start_node(workdir, "node", env)
    scheduler = None
    try:
        wait_ready(node, app.config["ENGINE_NODE_TOKEN"])
        # the schedule, set through the node's engine API as a workspace member would
        base = f"{node.url}/engine/v1/workspaces/shop/connectors/{iid}"
        answer = requests.put(f"{base}/schedule", json={"interval_minutes": 60},
                              headers=auth(people["ws_token"]), timeout=30)
        assert answer.status_code == 200, answer.text
        # ... and made due: its next run a minute ago
        due = utcnow() - timedelta(minutes=1)
        with database(app).sessionmaker() as s:
            s.execute(update(SyncSchedule).where(SyncSchedule.installation_id == iid)
                      .values(next_run_at=due))
            s.commit()

        scheduler = start_scheduler(workdir, env, node)
        logs = [node.log, workdir / "scheduler.log"]

        def finished() -> list[SyncRun]:
            with database(app).sessionmaker() as s:
                return list(s.scalars(select(SyncRun).where(
                    SyncRun.installation_id == iid, SyncRun.finished_at.is_not(None))))

        wait_until("the scheduled sync finishes", lambda: bool(finished()),
                   [node.process, scheduler], logs)
        # the scheduler went on polling; it claims the schedule once for its interval
        wait_until("the scheduler says it ran the sync",
                   lambda: f"sync of {iid}: succeeded" in logs[1].read_text(),
                   [node.process, scheduler], logs)
        scheduler_children = Path(f"/proc/{scheduler.pid}/task/{scheduler.pid}/children")
        assert scheduler_children.read_text().split() == [], "the scheduler started a process"
        assert stop_scheduler(scheduler) == 0, logs[1].read_text()

        # the sync ran on the node, as the scheduled one, and is recorded with its counts
        [run] = finished()
        assert (run.trigger, run.status.value, run.error) == ("schedule", "succeeded", None)
        assert run.stats["customers"]["records"] == 3
        assert run.stats["orders"]["records"] == 2
        assert f"/engine/v1/_node/workspaces/shop/connectors/{iid}/sync" in node.log.read_text()
        status = requests.get(f"{node.url}/engine/v1/_node/status", timeout=30,
                              headers=auth(app.config["ENGINE_NODE_TOKEN"])).json()
        assert iid in [w["installation"] for w in status["workers"]], status
        # page by page from the source (two records a page) into the workspace
        assert ("customers", 2) in asked and ("orders", 0) in asked
        with database(app).sessionmaker() as s:
            profiles = {p.user_id: p.attributes for p in s.scalars(select(Profile))}
            events = sorted(e.event_id for e in s.scalars(select(Event)))
            schedule = s.get(SyncSchedule, iid)
        assert {u: a.get("first_name") for u, a in profiles.items()} == \
            {"ann": "Ann", "bob": "Bob", "cy": "Cy"}
        assert events == ["o1", "o2"]
        # the schedule moved on by its interval from the claim
        assert schedule.last_run_at is not None and schedule.last_run_at > due
        assert schedule.next_run_at == schedule.last_run_at + timedelta(minutes=60)
        # and the engine API shows the run as the one the schedule started
        answer = requests.get(f"{base}/runs", headers=auth(people["ws_token"]), timeout=30)
        assert answer.status_code == 200, answer.text
        [shown] = answer.json()["runs"]
        assert (shown["id"], shown["trigger"], shown["status"]) == (run.id, "schedule",
                                                                    "succeeded")
        assert shown["streams"] == run.stats
    finally:
        if scheduler is not None:
            stop_scheduler(scheduler)
        stop(node)
        release_leftovers(node)
        shutdown_embedded_engine(app)  # this process's own: its signal receivers, any worker


def sigterm_pending(pid: int) -> bool:
    """Whether a SIGTERM sent to ``pid`` is not delivered yet (once delivered, Python runs
    the handler before the interrupted call goes on)."""
    bit = 1 << (signal.SIGTERM - 1)
    fields = dict(line.split(":", 1) for line in
                  Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return any(int(fields[name].strip(), 16) & bit for name in ("SigPnd", "ShdPnd"))


def test_a_stopped_scheduler_claims_no_further_due_sync(sandbox_ok, app, people, publish,
                                                        install, source, gate, tmp_path):
    port, asked = source
    iids = [install(publish(write_gear(
        tmp_path / "g", f"acme/sync-{k}", "connector",
        ["gear_check", "gear_streams", "gear_read"], CONNECTOR % port,
        network=[f"127.0.0.1:{port}"], write=["attributes.*"], timeout_ms=15000,
        permissions={"events": {"write": ["purchase"]}}))) for k in ("a", "b")]
    workdir, env = processes_env(app, tmp_path)
    node = start_node(workdir, "node", env)
    scheduler = None
    try:
        wait_ready(node, app.config["ENGINE_NODE_TOKEN"])
        now = utcnow()
        due = {iids[0]: now - timedelta(minutes=2), iids[1]: now - timedelta(minutes=1)}
        for iid, when in due.items():
            answer = requests.put(
                f"{node.url}/engine/v1/workspaces/shop/connectors/{iid}/schedule",
                json={"interval_minutes": 60}, headers=auth(people["ws_token"]), timeout=30)
            assert answer.status_code == 200, answer.text
            with database(app).sessionmaker() as s:
                s.execute(update(SyncSchedule).where(SyncSchedule.installation_id == iid)
                          .values(next_run_at=when))
                s.commit()

        gate.clear()  # the first sync (the earlier schedule) waits at its first page
        scheduler = start_scheduler(workdir, env, node)
        logs = [node.log, workdir / "scheduler.log"]
        wait_until("the first scheduled sync reads", lambda: bool(asked),
                   [node.process, scheduler], logs)
        scheduler.send_signal(signal.SIGTERM)  # asked to stop while a node runs a sync
        wait_until("the scheduler takes the SIGTERM", lambda: not sigterm_pending(scheduler.pid),
                   [scheduler], logs)
        gate.set()
        assert scheduler.wait(timeout=DEADLINE_S) == 0, logs[1].read_text()

        def runs() -> dict[str, list[SyncRun]]:
            with database(app).sessionmaker() as s:
                found: dict[str, list[SyncRun]] = {iid: [] for iid in iids}
                for run in s.scalars(select(SyncRun)):
                    found[run.installation_id].append(run)
                return found

        def next_runs() -> dict[str, Any]:
            with database(app).sessionmaker() as s:
                return {iid: s.get(SyncSchedule, iid).next_run_at for iid in iids}

        # the sync in flight finished on the node; the other one was left due, unclaimed,
        # for the next scheduler
        first = runs()
        assert [(r.status.value, r.trigger) for r in first[iids[0]]] == [
            ("succeeded", "schedule")]
        assert first[iids[1]] == [], "a stopped scheduler started another sync"
        moved = next_runs()
        assert moved[iids[0]] > now and moved[iids[1]] == due[iids[1]]

        # the next scheduler runs it (and --once stops by itself)
        scheduler = start_scheduler(workdir, env, node, "--once")
        assert scheduler.wait(timeout=DEADLINE_S) == 0, logs[1].read_text()
        assert [r.status.value for r in runs()[iids[1]]] == ["succeeded"]
        assert next_runs()[iids[1]] > now
    finally:
        gate.set()
        if scheduler is not None:
            stop_scheduler(scheduler)
        stop(node)
        release_leftovers(node)
        shutdown_embedded_engine(app)  # this process's own: its signal receivers, any worker
