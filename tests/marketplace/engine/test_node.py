"""An engine node as a real process on loopback (``marketplace engine serve``): its status
behind the node token, only the engine's paths, the lifecycle outbox drained from another
process's writes, the scheduler having it run due syncs, and ``marketplace serve``'s clear
error when its node cannot start."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from marketplace.db import utcnow
from marketplace.engine.models import SyncSchedule
from marketplace.models import Workspace
from marketplace.workspaces.outbox import EngineEvent, EventKind
from tests.fixtures.live import MARKETPLACE, LiveRegistry, free_port

pytestmark = pytest.mark.slow

DEADLINE = 60.0


def wait_for(what: str, check: Callable[[], bool], process: subprocess.Popen[str],
             log: Path) -> None:
    deadline = time.monotonic() + DEADLINE
    while not check():
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {DEADLINE:g} s\n{log.read_text()}")
        time.sleep(0.2)


class Node:
    def __init__(self, reg: LiveRegistry) -> None:
        self.reg = reg
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = reg.workdir / "node.log"
        self.token = (reg.workdir / "instance" / "engine-node.token").read_text().strip()
        with self.log.open("w") as out:
            self.process = subprocess.Popen(
                [*MARKETPLACE, "engine", "serve", "--port", str(self.port)],
                cwd=reg.workdir, env=reg.env, stdout=out, stderr=subprocess.STDOUT, text=True)
        wait_for("the node answers", self._up, self.process, self.log)

    def _up(self) -> bool:
        try:
            return self.status_answer().status_code == 200
        except requests.ConnectionError:
            return False

    def status_answer(self, token: str | None = "") -> requests.Response:
        token = self.token if token == "" else token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return requests.get(f"{self.url}/engine/v1/_node/status", headers=headers, timeout=5)

    def status(self) -> dict:
        answer = self.status_answer()
        assert answer.status_code == 200, answer.text
        return answer.json()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@pytest.fixture
def node(live_registry) -> Iterator[Node]:
    started = Node(live_registry())
    yield started
    started.stop()


def db(reg: LiveRegistry) -> Session:
    return Session(create_engine(reg.env["GEARS_DATABASE_URL"]))


def test_an_uninitialized_database_is_refused(tmp_path):
    from tests.fixtures.live import registry_env

    done = subprocess.run([*MARKETPLACE, "engine", "serve", "--port", str(free_port())],
                          cwd=tmp_path, env=registry_env(tmp_path), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 1
    assert "not initialized" in done.stderr and "marketplace init" in done.stderr


def test_the_node_answers_its_status_to_the_token_and_only_engine_paths(node):
    status = node.status()
    assert status["pid"] != node.process.pid  # the one gunicorn worker, not its arbiter
    assert status["engine_version"] and status["workers"] == []
    assert str(status["pid"]) in status["node"]
    assert status["uptime_seconds"] >= 0
    assert status["health"] == {"pending": 0, "failed_flushes": 0}
    for token in (None, "wrong-token"):
        refused = node.status_answer(token)
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "unauthorized"
    for path in ("/api/v1/gears", "/", "/login"):
        assert requests.get(f"{node.url}{path}", timeout=5).status_code == 404
    answer = requests.get(f"{node.url}/api/v1/gears", timeout=5)
    assert answer.json()["error"]["code"] == "not_found"
    assert requests.get(f"{node.url}/healthz", timeout=5).status_code == 200
    # the engine API itself is there, with its own workspace tokens
    answer = requests.post(f"{node.url}/engine/v1/workspaces/nowhere/events", json={},
                           timeout=5)
    assert answer.status_code == 401
    assert node.stop() == 0


def test_the_node_drains_outbox_rows_another_process_wrote(node):
    with db(node.reg) as session:
        session.add_all([EngineEvent(kind=EventKind.changed, installation_id=f"i{k}",
                                     workspace="shop", gear="acme/x", version="1.0.0")
                         for k in range(3)])
        session.commit()

    def drained() -> bool:
        with db(node.reg) as session:
            return session.scalars(select(EngineEvent)).first() is None

    wait_for("the node drains the outbox", drained, node.process, node.log)
    assert node.status()["outbox_done"]["changed"] == 3


def test_the_scheduler_has_the_node_run_each_due_sync(node):
    reg = node.reg
    reg.marketplace("create-user", "biz@gears.test", "--role", "business")
    reg.marketplace("create-workspace", "shop", "--member", "biz@gears.test")
    no_nodes = subprocess.run([*MARKETPLACE, "engine", "scheduler", "--once"], cwd=reg.workdir,
                              env=reg.env, capture_output=True, text=True, timeout=120)
    assert no_nodes.returncode == 1 and "GEARS_ENGINE_URLS" in no_nodes.stderr

    due = utcnow() - timedelta(minutes=1)
    with db(reg) as session:
        ws = session.scalar(select(Workspace).where(Workspace.name == "shop"))
        session.add(SyncSchedule(installation_id="gone0000", workspace_id=ws.id,
                                 interval_minutes=5, next_run_at=due))
        session.commit()
    ran = subprocess.run([*MARKETPLACE, "engine", "scheduler", "--once"], cwd=reg.workdir,
                         env={**reg.env, "GEARS_ENGINE_URLS": node.url}, capture_output=True,
                         text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    assert "due syncs done" in ran.stdout
    # the node answered for the installation (which does not exist): the run is skipped
    # with the node's own error, and the schedule moved on by one interval
    assert "sync of gone0000: skipped" in ran.stderr
    assert "no installation 'gone0000'" in ran.stderr
    with db(reg) as session:
        row = session.get(SyncSchedule, "gone0000")
        assert row.next_run_at > utcnow()
    assert "/engine/v1/_node/workspaces/shop/connectors/gone0000/sync" in node.log.read_text()


def test_serve_says_so_when_its_engine_node_cannot_start(live_registry):
    reg = live_registry()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([*MARKETPLACE, "serve", "--port", str(free_port()),
                               "--engine-port", str(port)], cwd=reg.workdir, env=reg.env,
                              capture_output=True, text=True, timeout=180)
    assert done.returncode == 1
    assert "the engine node exited" in done.stderr and "--engine-port" in done.stderr


def test_a_killed_serve_takes_its_engine_node_and_scheduler_with_it(live_registry):
    reg = live_registry()
    reg.start(workers=1)
    log = reg.log.read_text()
    node = int(re.search(r"Engine node on \S+ \(pid (\d+)\)", log).group(1))
    scheduler = int(re.search(r"Connector scheduler started \(pid (\d+)\)", log).group(1))
    reg.process.send_signal(signal.SIGKILL)
    reg.process.wait(30)
    deadline = time.monotonic() + DEADLINE
    while any(Path(f"/proc/{pid}").exists() and Path(f"/proc/{pid}/cmdline").read_bytes()
              for pid in (node, scheduler)):
        assert time.monotonic() < deadline, "the node or the scheduler outlived serve"
        time.sleep(0.2)
