"""`marketplace serve` with a multi-process web server: every engine call made through the
web port — the API and the pages — runs in the ONE engine node it started, so each
installation has exactly one sandboxed worker, and no gear worker is a child of a web
worker (real processes on loopback, counted from /proc)."""

from __future__ import annotations

import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from marketplace.runtime.datadir import probe_quota
from tests.marketplace.engine.conftest import sandbox_problem

pytestmark = pytest.mark.slow

WEB_WORKERS = 3
CALLS = 24


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # the ppid is the 2nd field after the parenthesised command (which may hold spaces)
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        for child in children(todo.pop()):
            out.append(child)
            todo.append(child)
    return out


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def parent(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat.rsplit(")", 1)[1].split()[1])


def is_gear_process(pid: int) -> bool:
    """Part of a sandboxed worker: bubblewrap, or the isolated interpreter booting the SDK's
    worker (-I -S -B -c)."""
    argv = cmdline(pid)
    if argv and Path(argv[0]).name == "bwrap":
        return True
    return "-c" in argv and "-I" in argv and any("gears_sdk" in a for a in argv)


def gear_workers(pids: list[int]) -> list[int]:
    """The sandboxed workers among ``pids``: their outermost process (what the runtime
    started; bubblewrap nests the interpreter below it)."""
    return [p for p in pids if is_gear_process(p) and not is_gear_process(parent(p))]


def sign_in(web: requests.Session, url: str, email: str, password: str) -> None:
    form = web.get(f"{url}/login", timeout=30).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    done = web.post(f"{url}/login", data={"csrf_token": token, "email": email,
                                          "password": password, "next": "/"}, timeout=30)
    assert done.status_code == 200 and "Sign out" in done.text, done.text[:500]


def test_one_worker_per_installation_whatever_the_web_concurrency(live_registry):
    problem = sandbox_problem()
    if problem:
        pytest.skip(f"sandboxed workers cannot start here: {problem}")
    reg = live_registry()
    seeded = reg.marketplace("seed-demo").stdout
    token = re.search(r"workspace token for biz@gears\.local \(workspace:demo\): (\S+)",
                      seeded).group(1)
    password = re.search(r"created business biz@gears\.local with password (\S+)",
                         seeded).group(1)
    url = reg.start(workers=WEB_WORKERS)
    log = reg.log.read_text()
    node_url = re.search(r"Engine node on (http://127\.0\.0\.1:\d+)/engine/v1", log).group(1)
    assert "Connector scheduler started" in log and "vetting worker process" in log
    assert f"Serving Gears on {url}/" in log
    node_token = (reg.workdir / "instance" / "engine-node.token").read_text().strip()

    def node_status() -> dict:
        answer = requests.get(f"{node_url}/engine/v1/_node/status", timeout=30,
                              headers={"Authorization": f"Bearer {node_token}"})
        assert answer.status_code == 200, answer.text
        return answer.json()

    auth = {"Authorization": f"Bearer {token}"}

    def api_call(i: int) -> None:
        user = f"user-{i % 5}"
        # a fresh connection each time, so the calls spread over the web workers
        sent = requests.post(f"{url}/engine/v1/workspaces/demo/events", headers={
            **auth, "Connection": "close"}, json={"events": [{
                "user_id": user, "type": "view",
                "properties": {"item_id": "bag-1", "category": "bags"}}]}, timeout=120)
        assert sent.status_code == 200, sent.text  # a gear may answer busy: it is counted
        chosen = requests.post(f"{url}/engine/v1/workspaces/demo/decide", headers={
            **auth, "Connection": "close"}, json={"user_id": user, "placement": "home-hero"},
            timeout=120)
        assert chosen.status_code == 200, chosen.text

    def page_call(i: int) -> None:
        with requests.Session() as web:
            web.headers["Connection"] = "close"
            sign_in(web, url, "biz@gears.local", password)
            form = web.get(f"{url}/workspaces/demo/preview", timeout=60).text
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
            shown = web.post(f"{url}/workspaces/demo/preview", data={
                "csrf_token": csrf, "user_id": f"user-{i % 5}", "placement": "home-hero",
                "context": "{}"}, timeout=120)
            assert shown.status_code == 200, shown.text[:500]

    with ThreadPoolExecutor(max_workers=6) as pool:
        for done in [pool.submit(api_call, i) for i in range(CALLS)] + \
                [pool.submit(page_call, i) for i in range(WEB_WORKERS * 2)]:
            done.result()

    status = node_status()
    per_installation: dict[str, int] = {}
    for worker in status["workers"]:
        per_installation[worker["installation"]] = per_installation.get(
            worker["installation"], 0) + 1
    assert per_installation, "the calls started no worker on the node"
    assert set(per_installation.values()) == {1}, status["workers"]

    # Counted from the process table: every gear worker under `marketplace serve` is the
    # node's, one per installation the node reports; the web workers have none.
    serve_pid = reg.process.pid
    tree = descendants(serve_pid)
    started = gear_workers(tree)
    node_worker = status["pid"]
    assert node_worker in tree
    assert sorted(started) == sorted(w["pid"] for w in status["workers"])
    assert {parent(p) for p in started} == {node_worker}
    web_workers = [p for p in children(serve_pid)
                   if "serve" in cmdline(p) and "engine" not in cmdline(p)]
    assert len(web_workers) == WEB_WORKERS
    for pid in web_workers:
        assert not [p for p in descendants(pid) if is_gear_process(p)], \
            f"web worker {pid} runs gear workers of its own"

    # Ctrl-C's sibling, SIGTERM, stops everything: gear workers, and the data-dir mounts
    # the node made (a loop-mounted image per installation, where the host can).
    def mounts() -> list[str]:
        return [line for line in Path("/proc/mounts").read_text().splitlines()
                if str(reg.workdir) in line]

    if probe_quota()[0]:
        assert mounts(), "the node mounted no data dir"
    reg.process.send_signal(signal.SIGTERM)
    reg.process.wait(timeout=120)
    deadline = time.monotonic() + 30
    while [p for p in tree if Path(f"/proc/{p}").exists() and cmdline(p)]:
        assert time.monotonic() < deadline, [cmdline(p) for p in tree
                                             if Path(f"/proc/{p}").exists()]
        time.sleep(0.2)
    assert mounts() == []
