"""A gear over its memory limit, through the engine's HTTP API, next to a benign gear.

The hostile extension holds memfd pages (which no rlimit sees) when an event
asks for it. Its worker's control group lets the kernel kill it; ``/events``
still answers 200, the failure is that installation's, counted as
``memory_limit``, and the benign gear's writes go through for every user.
"""

from __future__ import annotations

from typing import Any

import pytest

from marketplace.runtime.cgroups import probe_cgroups
from tests.marketplace.engine.conftest import auth, write_gear

pytestmark = pytest.mark.sandbox

BASE = "/engine/v1/workspaces/shop"

HOG = """
import ctypes, os
from gears_sdk import hookimpl

libc = ctypes.CDLL(None, use_errno=True)
held = []


@hookimpl
def gear_on_event(event, profile, config, ctx):
    if (event.get("properties") or {}).get("attack") == "memfd":
        chunk = b"x" * (1024 * 1024)
        for _ in range(40):  # 600 MiB in memfds under RLIMIT_FSIZE each
            fd = libc.memfd_create(b"hog", 0)
            held.append(fd)
            for _ in range(15):
                os.write(fd, chunk)
    return {"increment": {"traits.hogged": 1}}
"""

BENIGN = """
from gears_sdk import hookimpl


@hookimpl
def gear_on_event(event, profile, config, ctx):
    return {"increment": {"traits.seen": 1}}
"""


@pytest.fixture
def shop(engine_app, people, publish, install, tmp_path) -> dict[str, Any]:
    host = probe_cgroups()
    if host.version is None:
        pytest.skip(f"this host gives the engine no control groups: {host.reason}")
    gears = tmp_path / "gears"
    hog = publish(write_gear(gears, "acme/hog", "extension", ["gear_on_event"], HOG,
                             write=["traits.hogged"], timeout_ms=10000,
                             permissions={"events": {"read": ["attack"]}}))
    benign = publish(write_gear(gears, "acme/benign", "extension", ["gear_on_event"], BENIGN,
                                write=["traits.seen"]))
    return {"hog": install(hog), "benign": install(benign), "h": auth(people["ws_token"])}


def test_a_gear_over_its_memory_limit_fails_alone_as_memory_limit(client, shop) -> None:
    h = shop["h"]
    events = [{"user_id": "u1", "type": "view", "properties": {"attack": "memfd"}},
              {"user_id": "u2", "type": "view", "properties": {}}]
    resp = client.post(f"{BASE}/events", headers=h, json={"events": events})
    assert resp.status_code == 200, resp.data[:500]
    body = resp.get_json()
    assert body["accepted"] == 2
    assert body["gear_errors"][shop["hog"]]["codes"] == {"memory_limit": 1}
    assert shop["benign"] not in body["gear_errors"]
    for user in ("u1", "u2"):
        doc = client.get(f"{BASE}/profiles/{user}", headers=h).get_json()
        assert doc["traits"]["seen"] == 1, doc
    # the restarted worker serves the next event
    resp = client.post(f"{BASE}/events", headers=h,
                       json={"events": [{"user_id": "u3", "type": "view"}]})
    assert shop["hog"] not in resp.get_json()["gear_errors"]
    doc = client.get(f"{BASE}/profiles/u3", headers=h).get_json()
    assert doc["traits"] == {"hogged": 1, "seen": 1}
