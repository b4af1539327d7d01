"""The wire protocol between the engine (host) and a gear's worker process.

Every message is a 4-byte big-endian length followed by that many bytes of
UTF-8 JSON holding an object with an ``op``. Both sides refuse a message
longer than :data:`MAX_MESSAGE_BYTES` *before* reading or building it, so a
hostile gear cannot make the engine buffer gigabytes, and neither side ever
trusts the other to stay within the cap.

A session::

    worker → host   {"op": "hello", "version": 1, "pid": 12}
    host → worker   {"op": "start", "version": 1, "gear": {...}, "sandbox": {...}}
    worker → host   {"op": "ready", "sandbox": {...}}          (or "error" and exit)
    host → worker   {"op": "call", "id": 7, "hook": "gear_on_event", "kwargs": {...}}
      worker → host {"op": "request", "id": 1, "service": "state.get", "args": {...}}
      host → worker {"op": "reply", "id": 1, "value": ...}    (or "error": {...})
      worker → host {"op": "log", "level": "info", "message": "..."}
    worker → host   {"op": "result", "id": 7, "value": ...}
                    {"op": "error", "id": 7, "type": "ValueError", "message": "..."}

Several calls of one hook travel in one message::

    host → worker   {"op": "call_batch", "id": 8, "hook": "gear_on_event",
                     "calls": [{...kwargs...}, {...kwargs...}]}
    worker → host   {"op": "result", "id": 8, "index": 0, "value": ...}
      (requests, replies and logs of call 1, as for a single call)
    worker → host   {"op": "error", "id": 8, "index": 1, "type": "...", "message": "..."}

The worker runs the calls in order and answers each one as soon as it is
done, with its ``index``: an exception is the error of that call only, and
the host keeps a deadline per call (see ``marketplace/runtime/worker.py``).
Every message, the batch included, stays under the size cap: the host splits
a batch before it would exceed it.

The version is checked on both sides of the handshake; a mismatch is refused
rather than guessed around. This module is shared: the host imports it from
the SDK, never the reverse.
"""

from __future__ import annotations

import errno
import json
import os
import select
import struct
import time
from typing import Any

PROTOCOL_VERSION = 2
#: Largest message either side sends or accepts (4 MiB).
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
_HEADER = struct.Struct(">I")

#: Services a worker may ask the host for while a call is running.
SERVICES = frozenset({
    "http.request", "state.get", "state.set", "state.delete", "state.keys", "secrets.get",
})


class ProtocolError(Exception):
    """The peer broke the protocol (bad frame, bad JSON, closed pipe)."""


class MessageTooLarge(ProtocolError):
    """A message is over :data:`MAX_MESSAGE_BYTES`; it is never sent or read."""


class ChannelClosed(ProtocolError):
    """The peer closed its end (for a worker: it exited or was killed)."""


class ChannelTimeout(ProtocolError):
    """The deadline passed while waiting for the peer."""


def dumps(value: Any) -> bytes:
    """``value`` as compact UTF-8 JSON; raises ``ValueError`` when it is not JSON."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def frame(body: bytes, limit: int = MAX_MESSAGE_BYTES) -> bytes:
    """Prefix an encoded message with its length; raises ``MessageTooLarge``."""
    if len(body) > limit:
        raise MessageTooLarge(f"message of {len(body)} bytes is over the {limit}-byte limit")
    return _HEADER.pack(len(body)) + body


def encode(message: dict[str, Any], limit: int = MAX_MESSAGE_BYTES) -> bytes:
    """Frame ``message``; raises ``MessageTooLarge`` or ``ValueError`` (not JSON)."""
    return frame(dumps(message), limit)


#: Bytes a ``call_batch`` message adds around its encoded calls (id and hook
#: name included, generously), for callers splitting batches by size.
BATCH_OVERHEAD_BYTES = 256


def encode_batch(call_id: int, hook: str, calls: list[bytes],
                 limit: int = MAX_MESSAGE_BYTES) -> bytes:
    """Frame a ``call_batch`` from already encoded kwargs objects (see :func:`dumps`).

    Raises ``MessageTooLarge`` when the whole message is over ``limit``.
    """
    head = dumps({"op": "call_batch", "id": call_id, "hook": hook})
    body = b"".join((head[:-1], b',"calls":[', b",".join(calls), b"]}"))
    return frame(body, limit)


def decode(body: bytes) -> dict[str, Any]:
    """Parse one message body; anything but a JSON object with a string ``op`` is refused."""
    try:
        message = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ProtocolError(f"message is not valid JSON: {exc}") from None
    if not isinstance(message, dict) or not isinstance(message.get("op"), str):
        raise ProtocolError("message is not an object with an 'op'")
    return message


class Channel:
    """Framed messages over a pair of pipe fds, with optional deadlines.

    Deadlines are absolute ``time.monotonic()`` values. With a deadline the
    fds are driven through ``select`` so a peer that stops reading or writing
    cannot block the caller past it; without one the calls block (what the
    worker wants while it waits for the next call).
    """

    def __init__(self, rfd: int, wfd: int, limit: int = MAX_MESSAGE_BYTES):
        self.rfd = rfd
        self.wfd = wfd
        self.limit = limit

    def send(self, message: dict[str, Any], deadline: float | None = None) -> None:
        self.send_raw(encode(message, self.limit), deadline)

    def send_raw(self, data: bytes, deadline: float | None = None) -> None:
        view = memoryview(data)
        while view:
            _wait(self.wfd, write=True, deadline=deadline)
            try:
                n = os.write(self.wfd, view[: 1 << 16])
            except BlockingIOError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                raise ChannelClosed("the peer closed the channel") from None
            view = view[n:]

    def recv(self, deadline: float | None = None) -> dict[str, Any]:
        (size,) = _HEADER.unpack(self._read_exact(_HEADER.size, deadline))
        if size > self.limit:
            raise MessageTooLarge(f"peer announced a {size}-byte message; "
                                  f"the limit is {self.limit}")
        return decode(self._read_exact(size, deadline))

    def _read_exact(self, n: int, deadline: float | None) -> bytes:
        chunks: list[bytes] = []
        while n:
            _wait(self.rfd, write=False, deadline=deadline)
            try:
                chunk = os.read(self.rfd, min(n, 1 << 16))
            except BlockingIOError:
                continue
            if not chunk:
                raise ChannelClosed("the peer closed the channel")
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)


def _wait(fd: int, *, write: bool, deadline: float | None) -> None:
    if deadline is None:
        return
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ChannelTimeout("deadline passed")
        try:
            if write:
                _, ready, _ = select.select([], [fd], [], remaining)
            else:
                ready, _, _ = select.select([fd], [], [], remaining)
        except OSError as exc:  # EINTR is retried by Python; EBADF means closed
            if exc.errno == errno.EBADF:
                raise ChannelClosed("the channel is closed") from None
            raise
        if ready:
            return
