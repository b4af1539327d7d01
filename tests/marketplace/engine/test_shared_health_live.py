"""The same health numbers from every web process, and after a restart.

The registry is prepared in this process (a template that logs each render, an extension
failing every call, a campaign), then served by ``marketplace serve`` (gunicorn, several
worker processes) on loopback against the same database, on SQLite and PostgreSQL.
Decisions and events go to whichever process accepts them; the installations API then
answers identically however often it is asked (each time on a new connection, so by
any process), and again after the server restarted.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.fixtures.live import LiveRegistry, registry_env
from tests.marketplace.engine.conftest import auth, write_gear

pytestmark = [pytest.mark.sandbox, pytest.mark.slow, pytest.mark.timeout(600)]

#: read before the ``app`` fixture clears the developer's GEARS_ settings from the environment
PASSED_ON = {k: os.environ[k] for k in ("GEARS_SANDBOX_MIN_LEVEL",) if k in os.environ}
PASSWORD = "a long password for the dashboard"
WORKERS = 3
DECISIONS = 9
READS = 24

GREETER = """
from gears_sdk import hookimpl

RENDERED = [0]


@hookimpl
def gear_render(profile, content, config, ctx):
    RENDERED[0] += 1
    ctx.log.info("rendered %d times in this worker", RENDERED[0])
    return {"html": "<p>hello</p>"}
"""

FLAKY = """
from gears_sdk import hookimpl


@hookimpl
def gear_on_event(event, profile, config, ctx):
    raise ValueError("the upstream said no")
"""


def _read(url: str, h: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Every installation's health, asked on a fresh connection."""
    with requests.Session() as s:
        resp = s.get(f"{url}/api/v1/workspaces/shop/installations", headers=h, timeout=30)
    assert resp.status_code == 200, resp.text
    return {i["gear"]: i["health"] for i in resp.json()["items"]}


def _dashboard(url: str, email: str) -> list[tuple[str, ...]]:
    """The dashboard's state badges and health figures, signed in on a fresh connection."""
    with requests.Session() as s:
        page = s.get(f"{url}/login", timeout=30).text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
        signed = s.post(f"{url}/login", data={"email": email, "password": PASSWORD,
                                              "csrf_token": token}, timeout=30,
                        allow_redirects=False)
        assert signed.status_code == 302, signed.text
        html = s.get(f"{url}/workspaces/shop", timeout=30).text
    cards = html.split('class="card install-card')[1:]
    assert len(cards) == 2, html
    return [tuple(re.findall(r"badge-state-(\w+)", c)
                  + [f"{dt}={dd}" for dt, dd in re.findall(r"<dt>(.*?)</dt><dd[^>]*>(.*?)</dd>", c)])
            for c in cards]


def test_every_web_process_shows_the_same_health(engine_runtime, app, app_config, client, people,
                                                 publish, install, make_user, tmp_path: Path):
    greeter = install(publish(write_gear(tmp_path / "g", "acme/greeter", "template",
                                         ["gear_render"], GREETER)))
    install(publish(write_gear(tmp_path / "g", "acme/flaky", "extension", ["gear_on_event"],
                               FLAKY)))
    h = auth(people["ws_token"])
    viewer = make_user(role="admin", password=PASSWORD).email  # admins see every workspace
    resp = client.put("/engine/v1/workspaces/shop/campaigns/home", headers=h, json={
        "placement": "home", "fallback": {"html": "<p>fallback</p>"},
        "experiences": [{"name": "main", "installation": greeter, "content": {}}]})
    assert resp.status_code == 200, resp.get_json()

    workdir = tmp_path / "server"
    workdir.mkdir()
    env = registry_env(workdir, GEARS_DATABASE_URL=app_config["DATABASE_URL"],
                       GEARS_STORAGE_URL=app_config["STORAGE_URL"],
                       GEARS_SECRET_KEY=app_config["SECRET_KEY"],
                       GEARS_INSTANCE_PATH=app_config["INSTANCE_PATH"], **PASSED_ON)
    server = LiveRegistry(workdir, env)
    url = server.start(workers=WORKERS)
    try:
        for i in range(DECISIONS):
            with requests.Session() as s:  # a new connection: any worker may take it
                answer = s.post(f"{url}/engine/v1/workspaces/shop/decide", headers=h,
                                json={"user_id": f"u{i}", "placement": "home"}, timeout=120)
            assert answer.status_code == 200 and answer.json()["fallback"] is False, answer.text
        events = [{"user_id": f"u{i}", "type": "view"} for i in range(5)]
        sent = requests.post(f"{url}/engine/v1/workspaces/shop/events", headers=h,
                             json={"events": events}, timeout=120)
        assert sent.status_code in (200, 202), sent.text

        # every process flushes what it counted about once a second: wait for all of it
        deadline = time.monotonic() + 60
        seen = _read(url, h)
        while seen["acme/greeter"]["calls"] < DECISIONS and time.monotonic() < deadline:
            time.sleep(0.5)
            seen = _read(url, h)
        first = _read(url, h)
        assert first["acme/greeter"]["calls"] == DECISIONS, first["acme/greeter"]

        reads = [_read(url, h) for _ in range(READS)]
        assert all(r == first for r in reads), "two web processes showed different health"
        board = _dashboard(url, viewer)
        assert any(f"Calls={DECISIONS}" in card and "running" in card for card in board), board
        assert any("stopped_by_breaker" in card for card in board), board
        assert all(_dashboard(url, viewer) == board for _ in range(READS // 2))
        greeting = first["acme/greeter"]
        assert greeting["state"] == "running" and greeting["errors"] == 0
        assert len(greeting["logs"]) == DECISIONS and greeting["p99_ms"] is not None
        flaky = first["acme/flaky"]
        assert (flaky["state"], flaky["next_action"]) == ("stopped_by_breaker", "retry")
        assert flaky["failures"] == {"gear_error": 5} and flaky["calls"] == 5

        server.stop()
        url = server.start(workers=WORKERS)
        after = [_read(url, h) for _ in range(READS // 2)]
        assert all(r == first for r in after), "the health changed across a restart"
        assert _dashboard(url, viewer) == board
    finally:
        server.stop()
