"""One gear cannot stall the others: hostile and slow gears through the real path
(published, approved, installed, called by the engine API in sandboxed workers).

* a gear that leaves 1,100 nested directories in its data dir fails alone — its
  restarts are its own counted failures, never a 500 of the workspace — and
  uninstalling it removes the tree;
* a slow gear (inside its deadline) holds no write transaction, so another
  workspace's ingest is not refused as ``database_busy``.

SQLite only: the database is not what these are about, and SQLite is where a
writer holds the whole database. The busy timeout is cut to one second so a
held write lock shows at once.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from marketplace.workspaces import Installation, get_installation, uninstall
from tests.marketplace.engine.conftest import auth, write_gear

pytestmark = pytest.mark.sandbox

BASE = "/engine/v1/workspaces/shop"
DEPTH = 1100

DEEP = f"""
import os

from gears_sdk import hookimpl


@hookimpl
def gear_on_event(event, profile, config, ctx):
    os.chdir("/data")
    for _ in range({DEPTH}):
        os.makedirs("d", exist_ok=True)
        os.chdir("d")
    os._exit(3)  # the next call restarts the worker on top of the tree
"""

COUNTER = """
from gears_sdk import hookimpl


@hookimpl
def gear_on_event(event, profile, config, ctx):
    return {"increment": {"traits.seen": 1}}
"""

SLOW = """
import time

from gears_sdk import hookimpl


@hookimpl
def gear_on_event(event, profile, config, ctx):
    if event["type"] == "click":
        open("/data/started", "w").close()
        time.sleep(4)  # inside its 8 s deadline
    ctx.state.set("last", event["type"])
    return {"increment": {"traits.seen": 1}}
"""


@pytest.fixture
def db_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr("marketplace.db.SQLITE_BUSY_TIMEOUT_MS", 1000)
    return f"sqlite:///{tmp_path / 'registry.db'}"


@pytest.fixture(autouse=True)
def _no_deep_tree_left(tmp_path: Path) -> Iterator[None]:
    """A test that fails must not leave its deep tree to pytest's own (recursive) cleanup."""
    yield
    subprocess.run(["rm", "-rf", str(tmp_path / "instance" / "engine" / "data")], check=False,
                   timeout=120)


def data_dir(app: Any, iid: str) -> Path:
    return Path(app.instance_path) / "engine" / "data" / iid


def depth(root: Path) -> int:
    n, here = 0, root
    while (here / "d").is_dir():
        here, n = here / "d", n + 1
    return n


def test_deep_tree_in_the_data_dir_is_that_gears_failure(engine_app, client, session, people,
                                                         publish, install, tmp_path):
    deep = install(publish(write_gear(tmp_path / "g", "acme/deep", "extension",
                                      ["gear_on_event"], DEEP, write=["traits.deep"])))
    counter = install(publish(write_gear(tmp_path / "g", "acme/counter", "extension",
                                         ["gear_on_event"], COUNTER, write=["traits.seen"])))
    h = auth(people["ws_token"])
    codes: dict[str, int] = {}
    for i in range(8):
        resp = client.post(f"{BASE}/events", headers=h,
                           json={"events": [{"user_id": "ann", "type": "view"}]})
        assert resp.status_code == 200, (i, resp.get_json())
        body = resp.get_json()
        assert body["accepted"] == 1 and counter not in body["gear_errors"]
        for code, n in body["gear_errors"].get(deep, {}).get("codes", {}).items():
            codes[code] = codes.get(code, 0) + n
        time.sleep(0.5)  # let the restart backoff pass
    root = data_dir(engine_app, deep)
    image = root.with_name(root.name + ".ext4")  # the data dir's own filesystem, if quota'd
    assert image.exists() or depth(root) >= DEPTH
    # every call was the deep gear's own failure, and its breaker tripped
    assert codes.get("crashed", 0) >= 2 and set(codes) <= {"crashed", "backoff", "disabled"}, \
        codes
    session.rollback()
    inst = get_installation(session, people["ws"], deep)
    assert inst.status.value == "failed" and "consecutive failures" in inst.disabled_reason
    # the benign gear saw every event
    profile = client.get(f"{BASE}/profiles/ann", headers=h).get_json()
    assert profile["traits"]["seen"] == 8

    # uninstalling removes the tree, however deep
    uninstall(session, session.get(Installation, deep), people["member"])
    assert not root.exists() and not image.exists()
    assert session.scalar(select(Installation).where(Installation.id == deep)) is None


def test_restart_on_a_deep_tree_left_before_the_worker_starts(engine_app, client, session,
                                                              people, publish, install,
                                                              tmp_path):
    """The tree is already there when the engine first starts the worker (a previous
    process, a restored backup): starting it is not the engine's 500."""
    counter = install(publish(write_gear(tmp_path / "g", "acme/counter", "extension",
                                         ["gear_on_event"], COUNTER, write=["traits.seen"])))
    root = data_dir(engine_app, counter)
    root.mkdir(parents=True)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(DEPTH):  # one level at a time (a path this long defeats pathlib)
        os.mkdir("d", dir_fd=fd)
        inner = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = inner
    os.close(fd)
    h = auth(people["ws_token"])
    resp = client.post(f"{BASE}/events", headers=h,
                       json={"events": [{"user_id": "bob", "type": "view"}]})
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["patches_applied"] == 1
    uninstall(session, session.get(Installation, counter), people["member"])
    assert not root.exists()


def test_a_slow_gear_does_not_hold_the_database_for_other_workspaces(
        engine_app, client, people, publish, install, tmp_path):
    slow = install(publish(write_gear(tmp_path / "g", "acme/slow", "extension",
                                      ["gear_on_event"], SLOW, write=["traits.seen"],
                                      timeout_ms=8000)))
    h = auth(people["ws_token"])
    warm = client.post(f"{BASE}/events", headers=h,
                       json={"events": [{"user_id": "ann", "type": "view"}]})
    assert warm.status_code == 200 and warm.get_json()["patches_applied"] == 1
    marker = data_dir(engine_app, slow) / "started"
    answers: list[Any] = []

    def slow_batch() -> None:
        answers.append(engine_app.test_client().post(
            f"{BASE}/events", headers=h, json={"events": [{"user_id": "ann", "type": "click"}]}))

    thread = threading.Thread(target=slow_batch)
    thread.start()
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert time.monotonic() < deadline and thread.is_alive(), "the slow gear never ran"
        time.sleep(0.05)
    # the slow gear is running now: another workspace writes
    other = client.post("/engine/v1/workspaces/other/events",
                        headers=auth(people["other_token"]),
                        json={"events": [{"user_id": "zed", "type": "view"}]})
    still_running = thread.is_alive()
    thread.join(60)
    assert other.status_code == 200, other.get_json()
    assert still_running, "the slow gear ended before the other workspace wrote"
    assert answers[0].status_code == 200 and answers[0].get_json()["patches_applied"] == 1
    profile = client.get(f"{BASE}/profiles/ann", headers=h).get_json()
    assert profile["traits"]["seen"] == 2
