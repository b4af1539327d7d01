"""``marketplace init`` and ``marketplace serve`` as real processes, served by gunicorn on loopback."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> tuple[int, dict, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read())


@pytest.mark.slow
def test_init_then_serve_on_loopback(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEARS_")}
    env.update(GEARS_DATABASE_URL="sqlite:///registry.db", GEARS_SECRET_KEY="k")
    cli = [sys.executable, "-m", "marketplace.cli"]

    refused = subprocess.run([*cli, "serve"], cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=60)
    assert refused.returncode == 1 and "marketplace init" in refused.stderr

    init = subprocess.run([*cli, "init"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60)
    assert init.returncode == 0, init.stderr
    assert (tmp_path / "registry.db").exists() and (tmp_path / "blobs").is_dir()

    port = _free_port()
    server = subprocess.Popen([*cli, "serve", "--port", str(port), "--workers", "1",
                               "--engine-port", "0"],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                status, headers, body = _get(f"http://127.0.0.1:{port}/healthz")
                break
            except (ConnectionError, urllib.error.URLError):
                assert server.poll() is None, server.stdout.read()
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.2)
        assert status == 200 and body["status"] == "ok"
        assert headers["Server"].startswith("gunicorn")
        status, _, body = _get(f"http://127.0.0.1:{port}/api/v1/whoami")
        assert status == 401 and body["error"]["code"] == "unauthorized"
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        server.stdout.close()
