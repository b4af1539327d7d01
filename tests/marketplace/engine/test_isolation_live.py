"""A hung gear cannot take a real server's request threads: concurrent decisions whose
template hangs fail fast as ``busy`` (the campaign's fallback is shown), and ``/healthz``
answers while the gear still hangs.

The registry is prepared in this process (accounts, the template published, approved and
installed, a campaign), then served by ``marketplace serve`` (gunicorn, one worker of four
threads) on loopback against the same database, blobs and instance directory.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.fixtures.live import LiveRegistry, registry_env
from tests.marketplace.engine.conftest import auth, write_gear

pytestmark = [pytest.mark.sandbox, pytest.mark.slow, pytest.mark.timeout(300)]

HANG_S = 20
DECISIONS = 8

TEMPLATE = f"""
import time

from gears_sdk import hookimpl


@hookimpl
def gear_render(profile, content, config, ctx):
    if (content.get("context") or {{}}).get("hang"):
        time.sleep({HANG_S + 30})  # past its deadline: killed after {HANG_S} s
    return {{"html": "<p>hello</p>"}}
"""


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'registry.db'}"


def test_hung_decisions_fail_fast_and_healthz_answers(app, app_config, client, people,
                                                      publish, install, tmp_path):
    iid = install(publish(write_gear(tmp_path / "g", "acme/stuck", "template",
                                     ["gear_render"], TEMPLATE, timeout_ms=HANG_S * 1000)))
    h = auth(people["ws_token"])
    resp = client.put("/engine/v1/workspaces/shop/campaigns/home", headers=h, json={
        "placement": "home", "fallback": {"html": "<p>fallback</p>"},
        "experiences": [{"name": "main", "installation": iid, "content": {}}]})
    assert resp.status_code == 200, resp.get_json()

    workdir = tmp_path / "server"
    workdir.mkdir()
    env = registry_env(workdir, GEARS_DATABASE_URL=app_config["DATABASE_URL"],
                       GEARS_STORAGE_URL=app_config["STORAGE_URL"],
                       GEARS_SECRET_KEY=app_config["SECRET_KEY"],
                       GEARS_INSTANCE_PATH=app_config["INSTANCE_PATH"])
    server = LiveRegistry(workdir, env)
    url = server.start(workers=1)
    try:
        decide = f"{url}/engine/v1/workspaces/shop/decide"
        warm = requests.post(decide, headers=h, json={"user_id": "u0", "placement": "home"},
                             timeout=120)
        assert warm.status_code == 200 and warm.json()["fallback"] is False, warm.text

        answers: list[Any] = []

        def hung(i: int) -> None:
            answers.append(requests.post(decide, headers=h, timeout=120, json={
                "user_id": f"u{i}", "placement": "home", "context": {"hang": True}}))

        threads = [threading.Thread(target=hung, args=(i,)) for i in range(DECISIONS)]
        for t in threads:
            t.start()
        time.sleep(2)  # let them reach the server (not a measurement)
        # a deadline on the client shorter than the hang: answering means not queued behind it
        health = requests.get(f"{url}/healthz", timeout=HANG_S / 2)
        still_hung = any(t.is_alive() for t in threads)
        for t in threads:
            t.join(150)
        assert health.status_code == 200, health.text
        assert still_hung, "the gear stopped hanging before /healthz was asked"
        assert [a.status_code for a in answers] == [200] * DECISIONS, \
            [(a.status_code, a.text[:200]) for a in answers]
        errors = [g.get("error") for a in answers for g in a.json()["gears"]]
        assert all(a.json()["fallback"] for a in answers)
        assert errors.count("busy") >= DECISIONS - 2, errors
    finally:
        server.stop()
