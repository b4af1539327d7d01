"""The framed JSON protocol, without a sandbox: caps, shapes, versions."""

from __future__ import annotations

import os
import struct
import subprocess
import time

import pytest

from gears_sdk.worker.protocol import (
    MAX_MESSAGE_BYTES,
    PROTOCOL_VERSION,
    Channel,
    ChannelClosed,
    ChannelTimeout,
    MessageTooLarge,
    ProtocolError,
    decode,
    encode,
)
from marketplace.runtime.launcher import _python_argv, _staged_lib


def _pipe_channel() -> tuple[Channel, Channel]:
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    return Channel(r1, w2), Channel(r2, w1)


def test_round_trip() -> None:
    a, b = _pipe_channel()
    a.send({"op": "call", "id": 1, "kwargs": {"x": "é"}})
    assert b.recv(time.monotonic() + 1) == {"op": "call", "id": 1, "kwargs": {"x": "é"}}


def test_oversized_message_is_never_built() -> None:
    with pytest.raises(MessageTooLarge):
        encode({"op": "result", "value": "x" * (MAX_MESSAGE_BYTES + 1)})


def test_oversized_announcement_is_refused_before_reading() -> None:
    a, b = _pipe_channel()
    os.write(b.wfd, struct.pack(">I", 1 << 30) + b"{")
    with pytest.raises(MessageTooLarge):
        a.recv(time.monotonic() + 1)


@pytest.mark.parametrize("body", [b"[1]", b'{"id": 1}', b"\xff", b"{nope"])
def test_malformed_messages_are_refused(body: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode(body)


def test_nan_is_not_json() -> None:
    with pytest.raises(ValueError):
        encode({"op": "result", "value": float("nan")})


def test_deadline_and_closed_peer() -> None:
    a, b = _pipe_channel()
    with pytest.raises(ChannelTimeout):
        a.recv(time.monotonic() + 0.05)
    os.close(b.wfd)
    with pytest.raises(ChannelClosed):
        a.recv(time.monotonic() + 1)


def test_worker_refuses_a_host_speaking_another_version(tmp_path) -> None:
    """The worker side of the handshake: a wrong version is refused, not guessed around."""
    import sys

    argv = _python_argv(sys.executable, str(_staged_lib(tmp_path)))
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={})
    assert proc.stdin and proc.stdout
    chan = Channel(proc.stdout.fileno(), proc.stdin.fileno())
    hello = chan.recv(time.monotonic() + 20)
    assert hello["op"] == "hello" and hello["version"] == PROTOCOL_VERSION
    chan.send({"op": "start", "version": PROTOCOL_VERSION + 1, "gear": {}, "sandbox": {}})
    reply = chan.recv(time.monotonic() + 10)
    assert reply["op"] == "error" and reply["type"] == "ProtocolVersionError"
    assert proc.wait(10) == 2
    proc.stdin.close()
    proc.stdout.close()
    proc.stderr.close()  # type: ignore[union-attr]
