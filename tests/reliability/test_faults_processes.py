"""Processes dying at the worst moment, and a full disk.

* a sandboxed worker SIGKILLed in the middle of a hook call: the call fails,
  attributed to the gear's installation, and the next call runs in a new worker;
* the gear cache on a 1 MiB tmpfs: a gear that does not fit is refused with
  ``cache_full``, leaves no partial entry, and the cache keeps working;
* the registry server SIGKILLed while a large upload streams in: no version
  (half-)appears, and after a restart the same publish succeeds.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from marketplace.runtime import GearCrashed
from tests.sdk.malicious import Member, gear_zip

SLOW = '''
import time

@hookimpl
def gear_on_event(event, profile, config, ctx):
    time.sleep(event.get("sleep", 0))
    return {"set": {"traits.out": "done"}}
'''


@pytest.mark.sandbox
@pytest.mark.timeout(60)
def test_worker_killed_mid_call_is_attributed_and_replaced(make_gear, installation,
                                                           runtime_factory):
    rt = runtime_factory()
    inst = installation(make_gear(SLOW, timeout_ms=10_000))
    rt.start(inst)
    pid = rt.worker(inst.id).pid
    assert pid

    def kill_soon() -> None:
        time.sleep(0.5)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_soon)
    killer.start()
    started = time.monotonic()
    with pytest.raises(GearCrashed) as info:
        rt.call(inst.id, "gear_on_event", event={"sleep": 5}, profile={})
    killer.join()
    assert time.monotonic() - started < 4, "the host noticed the death, not the deadline"
    assert info.value.installation == inst.id

    patch = rt.call(inst.id, "gear_on_event", event={}, profile={})
    assert patch.set["traits.out"] == "done"
    assert rt.worker(inst.id).pid != pid
    health = rt.health()[inst.id]
    assert health["restarts"] >= 1 and not health["disabled"]


# -- a full disk under the gear cache -----------------------------------------------------


@pytest.fixture
def tiny_disk(tmp_path: Path):
    """A 1 MiB tmpfs; skips when mounting is not permitted here."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; the simulated ENOSPC test in "
                    "tests/marketplace/runtime/test_loader.py covers the logic")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_gear_cache_on_a_full_disk(tiny_disk):
    from marketplace.runtime.loader import GearCache, LoaderError

    cache = GearCache(tiny_disk / "cache")
    big = gear_zip(Member("data.bin", os.urandom(1536 * 1024)),
                   manifest={"name": "acme/big", "version": "1.0.0"})
    with pytest.raises(LoaderError) as info:
        cache.add(big, name="acme/big", version="1.0.0")
    assert info.value.code == "cache_full"
    assert "no space left" in str(info.value)
    assert [p.name for p in (tiny_disk / "cache").iterdir()] == []  # no partial entry

    small = gear_zip(manifest={"name": "acme/small", "version": "1.0.0"})
    entry = cache.add(small, name="acme/small", version="1.0.0")
    assert entry.is_dir() and cache.has(hashlib.sha256(small).hexdigest())
    cache.verify_tree(hashlib.sha256(small).hexdigest())


# -- the registry killed mid-upload -------------------------------------------------------


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            out += [int(c) for c in (task / "children").read_text().split()]
    return out


def _start_upload(url: str, token: str, data: bytes, send: int) -> socket.socket:
    """Send the headers and the first ``send`` bytes of a multipart upload, then stop."""
    boundary = "gearsboundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"big.gear\"\r\nContent-Type: application/zip\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    body = head + data + tail
    host, port = url.removeprefix("http://").split(":")
    s = socket.create_connection((host, int(port)), timeout=10)
    s.sendall((f"POST /api/v1/gears HTTP/1.1\r\nHost: {host}\r\n"
               f"Authorization: Bearer {token}\r\n"
               f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode())
    s.sendall(body[:send])
    return s


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("victim", ["worker", "server"])
def test_server_killed_mid_upload_publishes_nothing_and_a_retry_succeeds(live_registry,
                                                                         victim):
    reg = live_registry()
    reg.marketplace("create-user", "dev@acme.test", "--role", "developer")
    reg.marketplace("create-publisher", "acme", "--owner", "dev@acme.test")
    token = reg.token("dev@acme.test", "publish:acme")
    admin = reg.token("admin@gears.test", "admin")
    url = reg.start(workers=1)
    data = gear_zip(Member("data.bin", os.urandom(6 * 1024 * 1024)),
                    manifest={"name": "acme/big", "version": "1.0.0"})

    sock = _start_upload(url, token, data, send=len(data) // 2)
    time.sleep(0.5)  # the worker is now reading the body
    assert reg.process is not None
    workers = _children(reg.process.pid)
    assert workers, "gunicorn has no worker"
    if victim == "worker":
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
    else:
        for pid in [*workers, reg.process.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        reg.process.wait(10)
    with contextlib.suppress(OSError):
        sock.sendall(b"x" * 65536)
    sock.close()

    if victim == "server":
        url = reg.start(workers=1)  # a restart, no repair step
    deadline = time.monotonic() + 30
    while True:  # after a worker kill the master forks a new one
        try:
            if requests.get(f"{url}/healthz", timeout=2).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        assert time.monotonic() < deadline, reg.log.read_text()
        time.sleep(0.2)

    auth = {"Authorization": f"Bearer {admin}"}
    assert requests.get(f"{url}/api/v1/gears/acme/big", headers=auth, timeout=10).status_code == 404
    assert requests.get(f"{url}/api/v1/gears/acme/big/1.0.0", headers=auth,
                        timeout=10).status_code == 404

    resp = requests.post(f"{url}/api/v1/gears", headers={"Authorization": f"Bearer {token}"},
                         files={"file": ("big.gear", data)}, timeout=60)
    assert resp.status_code == 201, resp.text
    assert resp.json()["sha256"] == hashlib.sha256(data).hexdigest()
