"""The worker process: confine itself, load one gear, answer hook calls.

The host starts ``python -I -S -B -c <boot>`` (see :data:`BOOT`) with the SDK
and pluggy as the only extra import paths, then the worker

1. keeps the protocol pipes on private fds and points fds 0/1 (and
   ``sys.stdout``) away from them, so nothing the gear prints can corrupt the
   protocol: its output goes to stderr, which the host logs;
2. says ``hello`` with the protocol version and waits for ``start``;
3. switches identity (the dedicated uid, where the host did not already start
   it under it) and refuses to go on as root or with any capability, imports
   what it needs, applies Landlock, then the seccomp filter;
4. only then imports the gear's entrypoint (importing is running gear code),
   checks its hooks against the manifest and reports ``ready``;
5. serves ``call`` and ``call_batch`` messages until the host closes the pipe.
"""

from __future__ import annotations

import base64
import importlib
import io
import os
import sys
import traceback
from typing import Any

from gears_sdk.hookspecs import check_hooks, get_plugin_manager
from gears_sdk.worker import attempts as attempt_counts
from gears_sdk.worker import confine, landlock
from gears_sdk.worker.protocol import (
    PROTOCOL_VERSION,
    Channel,
    ChannelClosed,
    MessageTooLarge,
    encode,
)
from gears_sdk.worker.remote import RemoteContext

#: The ``-c`` program the host runs; ``{lib}`` is the directory holding only
#: ``gears_sdk`` and ``pluggy``.
BOOT = ("import sys; sys.path[:0] = [{lib!r}]; "
        "from gears_sdk.worker.main import main; raise SystemExit(main())")

EXIT_HANDSHAKE = 2
EXIT_LOAD = 3


def _split_stdio() -> Channel:
    rfd, wfd = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False))
    sys.stdout = sys.stderr
    return Channel(rfd, wfd)


def _error(call_id: Any, exc: BaseException) -> dict[str, Any]:
    try:
        tb = traceback.extract_tb(exc.__traceback__)
        where = f" (at {tb[-1].filename}:{tb[-1].lineno})" if tb else ""
        text = (str(exc) or type(exc).__name__)[:2000] + where
    except BaseException:  # a gear's exception may have a hostile __str__
        text = "(the error could not be described)"
    return {"op": "error", "id": call_id, "type": str(type(exc).__name__)[:100],
            "message": text}


def confine_self(sandbox: dict[str, Any]) -> dict[str, Any]:
    """Apply the host's confinement plan; returns what was applied, for the report."""
    applied: dict[str, Any] = {}
    if sandbox.get("uid") is not None:
        confine.become(int(sandbox["uid"]), int(sandbox["gid"]))
    confine.clear_capabilities()
    confine.assert_unprivileged()
    applied["uid"] = os.getuid()
    confine.no_new_privs()
    rules = sandbox.get("landlock")
    if rules is not None:
        applied["landlock_abi"] = landlock.restrict(rules.get("read", ()), rules.get("write", ()))
    program = sandbox.get("seccomp")
    if program:
        confine.install_seccomp(base64.b64decode(program))
        applied["seccomp"] = True
    signals = sandbox.get("seccomp_signals")
    if signals:
        confine.install_seccomp(confine.with_own_pid(base64.b64decode(signals)))
    return applied


def load_gear(gear: dict[str, Any]) -> Any:
    """Import the entrypoint and register it in a fresh plugin manager."""
    sys.path.insert(0, str(gear["path"]))
    module = importlib.import_module(str(gear["entrypoint"]))
    check_hooks(str(gear["kind"]), gear["hooks"], module)
    return get_plugin_manager(module)


def _wire(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return [_wire(v) for v in value]
    return value


#: What the gear tried since the last answer (see :mod:`gears_sdk.worker.attempts`).
_attempts: attempt_counts.Attempts | None = None


def _answer(channel: Channel, pm: Any, ctx: RemoteContext, hooks: set[str], call_id: Any,
            hook: Any, kwargs: Any, index: int | None = None) -> bytes:
    """Run one hook call and frame its ``result`` or ``error`` (never raises for the gear);
    the frame carries the attempts counted since the previous answer."""
    extra: dict[str, Any] = {} if index is None else {"index": index}
    try:
        if hook not in hooks:
            raise LookupError(f"the gear does not declare {hook!r}")
        results = getattr(pm.hook, str(hook))(**dict(kwargs or {}, ctx=ctx))
        tried = _attempts.take() if _attempts is not None else {}
        if tried:
            extra["attempts"] = tried
        return encode({"op": "result", "id": call_id, **extra,
                       "value": _wire(results[0] if results else None)}, channel.limit)
    except MessageTooLarge as exc:
        return encode({"op": "error", "id": call_id, **extra, "type": "ResultTooLarge",
                       "message": str(exc)})
    except BaseException as exc:  # a gear's SystemExit is its failure, not ours
        tried = _attempts.take() if _attempts is not None else {}
        if tried:
            extra["attempts"] = {**extra.get("attempts", {}), **tried}
        return encode({**_error(call_id, exc), **extra})


def serve(channel: Channel, pm: Any, ctx: RemoteContext, hooks: set[str]) -> int:
    """Answer calls (single or batched) one at a time until the host closes the channel."""
    while True:
        try:
            message = channel.recv()
        except ChannelClosed:
            return 0
        op = message.get("op")
        if op == "stop":
            return 0
        call_id, hook = message.get("id"), message.get("hook")
        if op == "call":
            channel.send_raw(_answer(channel, pm, ctx, hooks, call_id, hook,
                                     message.get("kwargs")))
        elif op == "call_batch":
            calls = message.get("calls")
            for index, kwargs in enumerate(calls if isinstance(calls, list) else []):
                # each answer leaves as soon as it is ready: the host's deadline is per call
                channel.send_raw(_answer(channel, pm, ctx, hooks, call_id, hook, kwargs, index))


def main() -> int:
    confine.die_with_parent()
    channel = _split_stdio()
    channel.send({"op": "hello", "version": PROTOCOL_VERSION, "pid": os.getpid()})
    start = channel.recv()
    if start.get("op") != "start" or start.get("version") != PROTOCOL_VERSION:
        channel.send({"op": "error", "id": None, "type": "ProtocolVersionError",
                      "message": f"worker speaks protocol {PROTOCOL_VERSION}, "
                                 f"host sent {start.get('version')!r}"})
        return EXIT_HANDSHAKE
    gear, sandbox = start["gear"], start["sandbox"]
    global _attempts
    try:
        applied = confine_self(sandbox)
        # Before the gear's import-time code runs; never removed (audit hooks cannot be).
        _attempts = attempt_counts.install(str(gear["path"]), os.getcwd())
        pm = load_gear(gear)
    except BaseException as exc:
        channel.send(_error(None, exc))
        return EXIT_LOAD
    ctx = RemoteContext.connect(channel, gear)
    channel.send({"op": "ready", "sandbox": applied})
    return serve(channel, pm, ctx, set(gear["hooks"]))
