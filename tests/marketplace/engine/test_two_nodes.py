"""Two engine nodes on one PostgreSQL: concurrent ingest for the same users, then one node
killed mid-traffic.

The registry is prepared in this process (a counting extension published, approved and
installed through the real paths), then two ``marketplace engine serve`` processes are
started on loopback against the same database. The gear increments ``traits.count`` and
sets ``traits.seen.<event>`` for every event it sees, so the profile tells exactly which
events' patches were applied, and sets the same key in its ``ctx.state``.

1. Two senders, one per node, send events for the same ten users at the same time; every
   send is a real POST with unique event ids and the sender's own sequence numbers.
2. Two senders go through a :class:`~marketplace.engine_service.NodePool` holding both
   URLs (as a web server does) while one node is SIGKILLed. Two more requests are cut off
   by the kill on purpose: one the dead node had stored but never answered, one whose
   body it never received. Every failed send is retried with the same event ids.

Then: every acknowledged event is stored exactly once, each profile's counter equals its
stored events and its ``seen`` keys are exactly their ids (no lost or doubled patch), the
gear's state holds a key for every stored event (no state write lost between nodes),
each sender's events for a user are stored in the order it sent them, and every request
after the kill was answered by the surviving node, each pool sender failing at most once
(the request in flight when its node died).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from sqlalchemy import select

from marketplace.db import database
from marketplace.engine.models import Event, InstallationState, Profile
from marketplace.engine_service import NodePool
from marketplace.errors import MarketplaceError
from tests.fixtures.app import postgres_schema_url
from tests.fixtures.live import free_port, registry_env
from tests.fixtures.nodes import Node, release_leftovers, start_node, stop, wait_ready
from tests.marketplace.engine.conftest import auth, sandbox_problem, write_gear

pytestmark = [pytest.mark.sandbox, pytest.mark.slow, pytest.mark.postgres,
              pytest.mark.timeout(600)]

#: read before the ``app`` fixture clears the developer's GEARS_ settings from the environment
PASSED_ON = {k: os.environ[k] for k in ("GEARS_SANDBOX_MIN_LEVEL",) if k in os.environ}
USERS = [f"user-{i:02d}" for i in range(10)]
ROUNDS = 30  # events per user per sender while both nodes run
KILL_AFTER = 20  # batches each pool sender has acknowledged before the kill
AFTER_KILL = 25  # batches each pool sender sends once the node is dead
SEND_DEADLINE_S = 90.0  # how long one batch is retried before the sender gives up
EVENTS = "/engine/v1/workspaces/shop/events"

COUNTER = """
from gears_sdk import hookimpl


@hookimpl
def gear_on_event(event, profile, config, ctx):
    seen = "e_" + event["id"].replace("-", "_")
    ctx.state.set(seen, 1)
    return {"increment": {"traits.count": 1}, "set": {"traits.seen." + seen: 1}}
"""


@pytest.fixture(scope="module")
def sandbox_ok() -> None:
    """Skip unless workers can run here (checked before ``app`` clears the GEARS_ settings)."""
    problem = sandbox_problem()
    if problem:
        pytest.skip(problem)


@pytest.fixture
def db_url() -> Iterator[str]:
    """PostgreSQL only: the nodes share one database server (skips when unreachable)."""
    with postgres_schema_url() as url:
        yield url


@dataclass
class Sent:
    """What one sender sent and what it was told."""

    name: str
    seq: int = 0
    acked: list[dict[str, Any]] = field(default_factory=list)  # every acknowledged event
    answers: list[tuple[float, str, dict[str, Any]]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # failed attempts, retried
    retried_batches: list[list[str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # what makes the test fail

    def batch(self, users: list[str], size: int) -> list[dict[str, Any]]:
        events = []
        for user in users[:size]:
            self.seq += 1
            events.append({"id": f"{self.name}-{self.seq}", "user_id": user, "type": "custom",
                           "name": "step", "properties": {"sender": self.name,
                                                          "seq": self.seq}})
        return events


class Refused(Exception):
    """A node refused a batch: sending it again cannot help."""


def send(sent: Sent, events: list[dict[str, Any]],
         post: Callable[[list[dict[str, Any]]], tuple[str, dict[str, Any]]]) -> bool:
    """Send one batch until it is acknowledged (the same ids each time) or its deadline."""
    deadline = time.monotonic() + SEND_DEADLINE_S
    failed = False
    while True:
        began = time.monotonic()
        try:
            node, body = post(events)
        except (MarketplaceError, requests.RequestException, Refused) as exc:
            sent.failures.append(f"{type(exc).__name__}: {exc}")
            if isinstance(exc, Refused) or (isinstance(exc, MarketplaceError)
                                            and exc.status != 503):
                sent.errors.append(f"{events[0]['id']}..: refused ({exc})")
                return False
            failed = True
            if time.monotonic() > deadline:
                sent.errors.append(f"{events[0]['id']}..: never acknowledged ({exc})")
                return False
            time.sleep(0.2)
            continue
        if failed:
            sent.retried_batches.append([e["id"] for e in events])
        if body["accepted"] + body["duplicates"] != len(events) or body["gear_errors"]:
            sent.errors.append(f"{events[0]['id']}..: {body}")
        sent.acked.extend(events)
        sent.answers.append((began, node, body))
        return True


def direct(url: str, token: str) -> Callable[[list[dict[str, Any]]], tuple[str, dict[str, Any]]]:
    session = requests.Session()
    session.trust_env = False

    def post(events: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
        resp = session.post(url + EVENTS, headers=auth(token), json={"events": events},
                            timeout=60)
        if resp.status_code != 200:
            raise Refused(f"{resp.status_code}: {resp.text}")
        return url, resp.json()

    return post


def pooled(pool: NodePool, token: str) -> Callable[[list[dict[str, Any]]], tuple[str, dict[str, Any]]]:
    def post(events: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
        answer = pool.request("POST", EVENTS, headers=auth(token), json={"events": events})
        return answer.node, answer.json()

    return post


def raw_post(url: str, token: str, events: list[dict[str, Any]], *,
             whole: bool) -> socket.socket:
    """A POST written on a socket of its own and never read: the whole request, or all but
    the last bytes of its body."""
    body = json.dumps({"events": events}).encode()
    host, port = url.removeprefix("http://").split(":")
    head = (f"POST {EVENTS} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}"
            f"\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    sock = socket.create_connection((host, int(port)), timeout=30)
    sock.sendall(head.encode() + (body if whole else body[:-10]))
    return sock


def stored(app: Any, ids: list[str]) -> int:
    with database(app).sessionmaker() as s:
        return len(s.scalars(select(Event.event_id).where(Event.event_id.in_(ids))).all())


def test_two_nodes_share_ingest_and_survive_a_kill(sandbox_ok, app, people, publish, install,
                                                   tmp_path):
    install(publish(write_gear(tmp_path / "g", "acme/counter", "extension", ["gear_on_event"],
                               COUNTER, write=["traits.count", "traits.seen"])))
    token = people["ws_token"]
    workdir = tmp_path / "nodes"
    workdir.mkdir()
    cfg = app.config
    env = registry_env(workdir, GEARS_DATABASE_URL=cfg["DATABASE_URL"],
                       GEARS_STORAGE_URL=cfg["STORAGE_URL"], GEARS_SECRET_KEY=cfg["SECRET_KEY"],
                       GEARS_INSTANCE_PATH=cfg["INSTANCE_PATH"], **PASSED_ON)
    nodes = [start_node(workdir, "a", env), start_node(workdir, "b", env)]
    try:
        for node in nodes:
            wait_ready(node, cfg["ENGINE_NODE_TOKEN"])
        run_scenario(app, nodes, token)
    finally:
        for node in nodes:
            stop(node)
        for node in nodes:
            release_leftovers(node)


def run_scenario(app: Any, nodes: list[Node], token: str) -> None:
    a, b = nodes
    # 1. one sender per node, the same users, at the same time
    first = [Sent("s0"), Sent("s1")]

    def both_nodes(sent: Sent, url: str) -> None:
        post = direct(url, token)
        for r in range(ROUNDS):
            users = USERS[r % len(USERS):] + USERS[:r % len(USERS)]
            for start in range(0, len(users), 3):  # batches of 3, 3, 3 and 1 events
                if not send(sent, sent.batch(users[start:], 3), post):
                    return

    threads = [threading.Thread(target=both_nodes, args=(first[i], nodes[i].url))
               for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not any(t.is_alive() for t in threads), "a sender did not finish"
    for sent in first:
        assert not sent.errors and not sent.failures, (sent.errors, sent.failures)
    check_store(app, first)

    # 2. through a node pool while node a is killed
    pool = NodePool([a.url, b.url], timeout=30, token=None)
    second = [Sent("p0"), Sent("p1")]
    killed = threading.Event()
    kill_time: list[float] = []

    def through_pool(sent: Sent, offset: int) -> None:
        post = pooled(pool, token)
        after, give_up = 0, time.monotonic() + 240
        for r in range(100_000):
            if killed.is_set():
                after += 1
                if after > AFTER_KILL:
                    return
            elif time.monotonic() > give_up:
                sent.errors.append("the node was never killed")
                return
            users = USERS[(r + offset) % len(USERS):] + USERS[:(r + offset) % len(USERS)]
            if not send(sent, sent.batch(users, 1 + r % 3), post):
                return

    threads = [threading.Thread(target=through_pool, args=(second[i], 5 * i)) for i in range(2)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 120
    while min(len(s.acked) for s in second) < KILL_AFTER * 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    # two requests cut off for sure: one node a stored but whose answer the sender never
    # read (as if the node had died before answering), one whose body never arrived
    unanswered, cut = Sent("x0"), Sent("x1")
    unanswered_events, cut_events = unanswered.batch(USERS, 4), cut.batch(USERS[4:], 4)
    held = raw_post(a.url, token, unanswered_events, whole=True)
    stored_deadline = time.monotonic() + 60
    while stored(app, [e["id"] for e in unanswered_events]) < 4:
        assert time.monotonic() < stored_deadline, "node a never stored the held request"
        time.sleep(0.05)
    half = raw_post(a.url, token, cut_events, whole=False)
    kill_time.append(time.monotonic())
    os.killpg(a.process.pid, signal.SIGKILL)
    a.process.wait(timeout=30)
    killed.set()
    held.close()
    try:  # the dead node's connection is gone: no answer came
        assert half.recv(1024) == b""
    except ConnectionResetError:
        pass
    half.close()
    for t in threads:
        t.join(300)
    assert not any(t.is_alive() for t in threads), "a sender did not finish"
    # the cut-off senders retry through the pool with the same ids
    post = pooled(pool, token)
    assert send(unanswered, unanswered_events, post) and send(cut, cut_events, post)

    for sent in second:
        assert not sent.errors, sent.errors
        # only the request in flight when its node died can fail: the next one is refused
        # by the dead node at once and taken by the survivor within the same call
        assert len(sent.failures) <= 1, sent.failures
        after = [node for began, node, _ in sent.answers if began > kill_time[0]]
        assert len(after) >= AFTER_KILL and set(after) == {b.url}, set(after)
    (_, _, again), (_, _, late) = unanswered.answers[0], cut.answers[0]
    assert (again["accepted"], again["duplicates"]) == (0, 4), again  # node a had stored it
    assert (late["accepted"], late["duplicates"]) == (4, 0), late  # it never reached a store
    everyone = [*first, *second, unanswered, cut]
    check_store(app, everyone)

    by_a = sum(1 for s in everyone for _, node, body in s.answers if node == a.url
               for _ in range(body["accepted"]))
    print(f"\ntwo nodes: {sum(len(s.acked) for s in everyone)} events acknowledged "
          f"({by_a} stored by the node killed), {len(USERS)} users; pool senders' failed "
          f"attempts {[len(s.failures) for s in second]}, retried batches "
          f"{[len(s.retried_batches) for s in second]}; node a was pid {a.pid}")


def check_store(app: Any, senders: list[Sent]) -> None:
    """Every acknowledged event stored once; each profile's counter and ``seen`` keys match
    its stored events; each sender's events for a user stored in the order it sent them."""
    acked = {e["id"]: e for s in senders for e in s.acked}
    with database(app).sessionmaker() as s:
        rows = s.execute(select(Event.id, Event.event_id, Event.user_id, Event.timestamp,
                                Event.properties).order_by(Event.id)).all()
        profiles = {p.user_id: p for p in s.scalars(select(Profile))}
        state = s.scalars(select(InstallationState)).all()
    ids = [r.event_id for r in rows]
    assert len(ids) == len(set(ids))
    missing = set(acked) - set(ids)
    assert not missing, f"{len(missing)} acknowledged events were lost: {sorted(missing)[:5]}"
    assert len(state) == 1
    assert set(state[0].data) == {"e_" + i.replace("-", "_") for i in ids}, \
        "a state write was lost"
    per_user: dict[str, list[Any]] = defaultdict(list)
    for r in rows:
        per_user[r.user_id].append(r)
    for user, events in per_user.items():
        traits = profiles[user].traits
        assert traits.get("count") == len(events), (user, traits.get("count"), len(events))
        seen = set(traits.get("seen", {}))
        assert seen == {"e_" + r.event_id.replace("-", "_") for r in events}, user
        for order in (events, sorted(events, key=lambda r: (r.timestamp, r.id))):
            by_sender: dict[str, list[int]] = defaultdict(list)
            for r in order:
                by_sender[r.properties["sender"]].append(r.properties["seq"])
            for sender, seqs in by_sender.items():
                assert seqs == sorted(seqs), f"{sender}'s events for {user} out of order: {seqs}"


def test_a_second_node_on_one_data_path_is_refused(sandbox_ok, app, tmp_path):
    """Two nodes on one machine sharing gears' data dirs would mount one installation's
    filesystem image twice: the second is refused at start, and starts once the first is
    gone."""
    cfg = app.config
    workdir = tmp_path / "nodes"
    workdir.mkdir()
    env = registry_env(workdir, GEARS_DATABASE_URL=cfg["DATABASE_URL"],
                       GEARS_STORAGE_URL=cfg["STORAGE_URL"], GEARS_SECRET_KEY=cfg["SECRET_KEY"],
                       GEARS_INSTANCE_PATH=cfg["INSTANCE_PATH"], **PASSED_ON)
    first = start_node(workdir, "a", env)
    try:
        wait_ready(first, cfg["ENGINE_NODE_TOKEN"])
        second = subprocess.run(
            [sys.executable, "-m", "marketplace.cli", "engine", "serve", "--port",
             str(free_port())], cwd=workdir, env={**env, "GEARS_GEAR_DATA_PATH": str(first.data)},
            capture_output=True, text=True, timeout=120)
        assert second.returncode == 1, second.stderr
        assert "GEARS_GEAR_DATA_PATH" in second.stderr and str(first.data) in second.stderr
    finally:
        stop(first)
    again = start_node(workdir, "a", env)
    try:
        wait_ready(again, cfg["ENGINE_NODE_TOKEN"])
    finally:
        stop(again)


def test_a_node_removes_data_dirs_of_removed_installations(sandbox_ok, app, people, publish,
                                                           install, tmp_path):
    """An uninstall's cleanup runs on the node that claims it; the others' copies of the
    data dir (scratch) go when each starts. Live installations keep theirs."""
    live = install(publish(write_gear(tmp_path / "g", "acme/counter", "extension",
                                      ["gear_on_event"], COUNTER,
                                      write=["traits.count", "traits.seen"])))
    cfg = app.config
    workdir = tmp_path / "nodes"
    workdir.mkdir()
    data = workdir / "a-data"
    gone = "0123456789abcdef" * 2
    for iid in (live, gone):
        (data / iid).mkdir(parents=True)
        (data / iid / "notes.txt").write_text("scratch")
    (data / f"{gone}.ext4").write_bytes(b"an image")
    (data / "not-an-installation").mkdir()
    env = registry_env(workdir, GEARS_DATABASE_URL=cfg["DATABASE_URL"],
                       GEARS_STORAGE_URL=cfg["STORAGE_URL"], GEARS_SECRET_KEY=cfg["SECRET_KEY"],
                       GEARS_INSTANCE_PATH=cfg["INSTANCE_PATH"], **PASSED_ON)
    node = start_node(workdir, "a", env)
    try:
        wait_ready(node, cfg["ENGINE_NODE_TOKEN"])
    finally:
        stop(node)
    assert (data / live / "notes.txt").read_text() == "scratch"
    assert not (data / gone).exists() and not (data / f"{gone}.ext4").exists()
    assert (data / "not-an-installation").is_dir()
