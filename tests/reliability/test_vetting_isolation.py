"""Vetting hostile uploads never takes the registry down: a real server on loopback.

A long run of ``[a-z0-9_.-]`` used to cost the committed-secrets check quadratic
time (16,000 characters: 7.6 s) inside a thread of the web worker, which then
missed its heartbeat and was killed. Now every pattern is matched in linear time
and every job runs in a process of its own, beside the server, within a budget.
"""

from __future__ import annotations

import random
import sqlite3
import time
from pathlib import Path

import pytest
import requests

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

# Random (so it does not compress like a bomb): hours for a backtracking engine, ms for RE2.
LONG_LINE = "".join(random.Random(15).choices("abcdefghijklmnopqrstuvwxyz0123456789_.-",
                                              k=300_000))


def _registry(live_registry, **settings):
    reg = live_registry(GEARS_VETTING_SANDBOX="0", **settings)
    reg.marketplace("create-user", "dev@acme.test", "--role", "developer", "--password-stdin",
                    input="dev-password-for-tests\n")
    reg.marketplace("create-publisher", "acme", "--owner", "dev@acme.test")
    headers = {"Authorization": f"Bearer {reg.token('dev@acme.test', 'publish:acme', 'read')}"}
    reg.start(workers=1)
    return reg, headers


def _publish(reg, headers, data):
    resp = requests.post(f"{reg.url}/api/v1/gears", headers=headers,
                         files={"file": ("g.gear", data)}, timeout=30)
    assert resp.status_code == 201, resp.text


def _vetting(reg, headers, deadline_s: float = 180) -> dict:
    """The version once vetting has finished, polled with short client timeouts: the
    server must keep answering while the job runs."""
    deadline = time.monotonic() + deadline_s
    while True:
        assert requests.get(f"{reg.url}/healthz", timeout=5).status_code == 200
        body = requests.get(f"{reg.url}/api/v1/gears/acme/hello/1.0.0", headers=headers,
                            timeout=5).json()
        if body["vetting"]["state"] in ("done", "error"):
            return body
        assert time.monotonic() < deadline, f"vetting did not finish: {body['vetting']}"
        time.sleep(0.5)


def test_a_long_line_is_vetted_while_the_server_keeps_answering(live_registry,
                                                                make_gear_archive):
    reg, headers = _registry(live_registry)
    archive = make_gear_archive(extra_files={"data/minified.js": LONG_LINE + "\n",
                                             "README.md": "# Hello\n\n" + LONG_LINE + "\n"})
    _publish(reg, headers, archive)
    body = _vetting(reg, headers)
    assert body["vetting"]["state"] == "done", body["findings"]
    assert "scanner_error" not in [f["code"] for f in body["findings"]]
    assert reg.process.poll() is None
    assert "WORKER TIMEOUT" not in reg.log.read_text()
    vetters = _children(reg.process.pid, b"vet")
    assert len(vetters) == 1  # `marketplace serve` started one vetting worker process...
    reg.stop()
    assert not [pid for pid in vetters if Path(f"/proc/{pid}").exists()]  # ...and stopped it


def _children(pid: int, word: bytes) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            status = (proc / "status").read_text()
            cmdline = (proc / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if f"\nPPid:\t{pid}\n" in status and word in cmdline.split(b"\0"):
            found.append(int(proc.name))
    return found


def test_a_job_over_its_budget_is_a_scanner_error_without_retries(live_registry,
                                                                   make_gear_archive):
    # 0.2 s is less than starting the job's process takes: every job overruns.
    reg, headers = _registry(live_registry, GEARS_VETTING_JOB_SECONDS="0.2")
    _publish(reg, headers, make_gear_archive())
    body = _vetting(reg, headers)
    assert body["status"] == "pending"
    assert body["vetting"]["state"] == "error"
    (err,) = [f for f in body["findings"] if f["code"] == "scanner_error"]
    assert "budget" in err["message"]
    with sqlite3.connect(reg.workdir / "registry.db") as db:
        assert db.execute("select state, attempts from vetting_jobs").fetchall() == [("error", 1)]
