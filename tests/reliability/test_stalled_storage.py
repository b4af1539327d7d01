"""A stalled S3 endpoint (a loopback TCP server that accepts and never answers): publishes
fail fast with 503 while search, pages and the engine keep answering. Every request is
bounded by a client timeout; nothing here measures time."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.fixtures.live import MARKETPLACE

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.fixture
def stalled_endpoint() -> Iterator[str]:
    """``http://127.0.0.1:PORT`` of a server that accepts connections, reads, never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            held.append(conn)  # kept open, never answered

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join(5)
    for conn in held:
        conn.close()
    listener.close()


def _start(reg) -> None:
    """Like ``LiveRegistry.start`` but tolerant of a /healthz that waits on the store."""
    from tests.fixtures.live import free_port

    port = free_port()
    reg.url = f"http://127.0.0.1:{port}"
    with reg.log.open("w") as log:
        reg.process = subprocess.Popen(
            [*MARKETPLACE, "serve", "--port", str(port), "--workers", "1", "--threads", "4",
             "--engine-port", "0"],
            cwd=reg.workdir, env=reg.env, stdout=log, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while True:
        try:
            requests.get(f"{reg.url}/api/v1/gears", timeout=5)
            return
        except requests.RequestException:
            assert reg.process.poll() is None, reg.log.read_text()
            assert time.monotonic() < deadline, reg.log.read_text()
            time.sleep(0.3)


def test_publishes_fail_fast_while_everything_else_answers(live_registry, stalled_endpoint,
                                                         make_gear_archive):
    reg = live_registry(GEARS_VETTING_WORKERS="0")  # initialized on local storage
    reg.marketplace("create-user", "dev@acme.test", "--role", "developer", "--password-stdin",
                    input="dev-password-for-tests\n")
    reg.marketplace("create-publisher", "acme", "--owner", "dev@acme.test")
    reg.marketplace("create-workspace", "shop", "--member", "dev@acme.test")
    dev = {"Authorization": f"Bearer {reg.token('dev@acme.test', 'publish:acme')}"}
    member = {"Authorization": f"Bearer {reg.token('dev@acme.test', 'workspace:shop')}"}
    reg.env.update(GEARS_STORAGE_URL="s3://gears", GEARS_S3_ENDPOINT_URL=stalled_endpoint,
                   GEARS_S3_REGION="us-east-1", AWS_ACCESS_KEY_ID="test",
                   AWS_SECRET_ACCESS_KEY="test",
                   GEARS_S3_CONNECT_TIMEOUT="1", GEARS_S3_READ_TIMEOUT="2",
                   GEARS_S3_MAX_ATTEMPTS="1", GEARS_STORAGE_BREAKER_FAILURES="2",
                   GEARS_STORAGE_BREAKER_SECONDS="120")
    _start(reg)
    archive = make_gear_archive()

    def publish() -> requests.Response:
        # Far below the minutes a stall used to cost with botocore's defaults.
        return requests.post(f"{reg.url}/api/v1/gears", headers=dev,
                             files={"file": ("g.gear", archive)}, timeout=15)

    def others() -> list[int]:
        return [requests.get(f"{reg.url}{path}", headers=headers, timeout=5).status_code
                for path, headers in [("/api/v1/gears?q=hello", {}), ("/", {}),
                                      ("/search?q=x", {}),
                                      ("/engine/v1/workspaces/shop/segments", member)]]

    with ThreadPoolExecutor(4) as pool:  # publishes in flight while the rest is asked
        publishes = [pool.submit(publish) for _ in range(3)]
        assert others() == [200, 200, 200, 200]
        first = [f.result() for f in publishes]
    for resp in first:
        assert resp.status_code == 503, resp.text
        assert resp.json()["error"]["code"] == "storage_unavailable"
    # The breaker is open now: a publish is refused at once, the rest still answers.
    for _ in range(3):
        resp = requests.post(f"{reg.url}/api/v1/gears", headers=dev,
                             files={"file": ("g.gear", archive)}, timeout=3)
        assert resp.status_code == 503 and "fail at once" in resp.json()["error"]["message"]
    assert others() == [200, 200, 200, 200]
    health = requests.get(f"{reg.url}/healthz", timeout=3)
    assert health.status_code == 503
