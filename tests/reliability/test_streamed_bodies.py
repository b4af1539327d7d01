"""Bodies are counted as they arrive: a chunked body without ``Content-Length`` meets the
same limit as one that announces its size (a real gunicorn server on loopback)."""

from __future__ import annotations

import pytest
import requests

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

MIB = 1024 * 1024


def _chunks(total: int):
    yield b'{"events": ['
    sent = 0
    while sent < total:  # JSON whitespace: valid, and 12 MiB of it
        yield b" " * MIB
        sent += MIB
    yield b'{"user_id": "u1", "type": "view"}]}'


def test_a_chunked_engine_body_over_the_limit_is_413(live_registry):
    reg = live_registry(GEARS_VETTING_WORKERS="0")
    reg.marketplace("create-user", "m@shop.test", "--role", "business", "--password-stdin",
                    input="member-password-for-tests\n")
    reg.marketplace("create-workspace", "shop", "--member", "m@shop.test")
    headers = {"Authorization": f"Bearer {reg.token('m@shop.test', 'workspace:shop')}",
               "Content-Type": "application/json"}
    reg.start(workers=1)
    url = f"{reg.url}/engine/v1/workspaces/shop/events"
    small = requests.post(url, headers=headers, data=_chunks(MIB), timeout=60)
    assert small.status_code == 200, small.text  # chunked and under 8 MiB: accepted
    try:
        big = requests.post(url, headers=headers, data=_chunks(12 * MIB), timeout=60)
    except requests.ConnectionError:  # the server may close before reading it all
        pytest.fail("the server closed the connection instead of answering 413")
    assert big.status_code == 413, big.text[:300]
    assert big.json()["error"]["code"] == "payload_too_large"
