"""Batched hook calls: the frame, then the runtime against real worker processes.

A batch must keep every single-call rule per item: arguments filtered, results
checked, a deadline per call, failures attributed and counted one by one.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from gears_sdk.worker.protocol import (
    BATCH_OVERHEAD_BYTES,
    MAX_MESSAGE_BYTES,
    PROTOCOL_VERSION,
    Channel,
    MessageTooLarge,
    decode,
    dumps,
    encode_batch,
)
from marketplace.runtime import GearFailure, GearResult
from marketplace.runtime.launcher import _python_argv, _staged_lib

BATCH = '''
import os, time

@hookimpl
def gear_on_event(event, profile, config, ctx):
    n = (ctx.state.get("n") or 0) + 1
    ctx.state.set("n", n)
    ctx.log.info("event %s", event.get("i"))
    if event.get("raise"):
        raise RuntimeError("bad event %s" % event.get("i"))
    if event.get("sleep"):
        time.sleep(event["sleep"])
    if event.get("exit"):
        os._exit(3)
    if event.get("write"):
        return {"set": {event["write"]: 1}}
    if event.get("big"):
        return {"set": {"traits.out": "x" * event["big"]}}
    return {"set": {"traits.out": {"i": event.get("i"), "n": n, "profile": profile,
                                   "config": config, "pid": os.getpid()}}}
'''


def _out(r: GearResult | GearFailure) -> dict:
    assert isinstance(r, GearResult), r
    return r.value.set["traits.out"]


# -- the frame ------------------------------------------------------------------------


def test_batch_frame_round_trip_and_size_cap() -> None:
    calls = [dumps({"event": {"i": i}, "profile": {}}) for i in range(3)]
    data = encode_batch(7, "gear_on_event", calls)
    assert decode(data[4:]) == {"op": "call_batch", "id": 7, "hook": "gear_on_event",
                                "calls": [{"event": {"i": i}, "profile": {}} for i in range(3)]}
    assert len(data) - 4 <= BATCH_OVERHEAD_BYTES + sum(len(c) + 1 for c in calls)
    with pytest.raises(MessageTooLarge):
        encode_batch(8, "gear_on_event", [b'"' + b"x" * (MAX_MESSAGE_BYTES // 2) + b'"'] * 2)


def test_protocol_version_is_bumped_and_the_previous_one_refused(tmp_path) -> None:
    """Hosts speaking the single-call protocol (1) cannot drive a batch-capable worker."""
    assert PROTOCOL_VERSION == 2
    argv = _python_argv(sys.executable, str(_staged_lib(tmp_path)))
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={})
    assert proc.stdin and proc.stdout and proc.stderr
    chan = Channel(proc.stdout.fileno(), proc.stdin.fileno())
    assert chan.recv(time.monotonic() + 20)["version"] == 2
    chan.send({"op": "start", "version": 1, "gear": {}, "sandbox": {}})
    reply = chan.recv(time.monotonic() + 10)
    assert reply["op"] == "error" and reply["type"] == "ProtocolVersionError"
    assert proc.wait(10) == 2
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        stream.close()


# -- the runtime ----------------------------------------------------------------------

pytestmark = [pytest.mark.timeout(60)]


@pytest.mark.sandbox
def test_batch_results_ctx_services_and_filtering_per_item(make_gear, installation,
                                                           runtime_factory) -> None:
    rt = runtime_factory()
    inst = installation(make_gear(BATCH), config={"greeting": "hi"})
    rt.start(inst)
    calls = [{"event": {"i": i}, "profile": {"traits": {"a": i}, "attributes": {"e": "x"}},
              "config": {"ignored": True}, "ctx": object()} for i in range(5)]
    results = rt.call_batch(inst.id, "gear_on_event", calls)
    outs = [_out(r) for r in results]
    assert [o["i"] for o in outs] == [0, 1, 2, 3, 4]
    assert [o["n"] for o in outs] == [1, 2, 3, 4, 5]  # state round trips, in order
    assert [o["profile"] for o in outs] == [{"traits": {"a": i}} for i in range(5)]
    assert all(o["config"] == {"greeting": "hi"} for o in outs)
    assert len({o["pid"] for o in outs}) == 1
    health = rt.health()[inst.id]
    assert health["calls"] == 5 and health["errors"] == 0
    assert rt.call_batch(inst.id, "gear_on_event", []) == []


@pytest.mark.sandbox
def test_an_error_fails_its_item_only_and_counts_once(make_gear, installation,
                                                      runtime_factory) -> None:
    rt = runtime_factory(failure_threshold=2)
    inst = installation(make_gear(BATCH))
    rt.start(inst)
    events = [{"i": 0}, {"i": 1, "raise": True}, {"i": 2},
              {"i": 3, "write": "attributes.email"}, {"i": 4}]
    results = rt.call_batch(inst.id, "gear_on_event",
                            [{"event": e, "profile": {}} for e in events])
    assert [r.ok for r in results] == [True, False, True, False, True]
    assert results[1].error.code == "gear_error" and "bad event 1" in str(results[1].error)
    assert results[1].installation == inst.id and results[1].gear == inst.gear
    assert results[3].error.code == "patch_refused"
    assert _out(results[4])["n"] == 5
    health = rt.health()[inst.id]
    # two failures, never two in a row: a threshold of 2 does not trip
    assert health["calls"] == 5 and health["errors"] == 2 and not health["disabled"]
    assert health["consecutive_failures"] == 0


@pytest.mark.sandbox
def test_breaker_trips_mid_batch_and_the_rest_does_not_run(make_gear, installation,
                                                           runtime_factory) -> None:
    disabled: list[str] = []
    rt = runtime_factory(failure_threshold=2, on_disable=lambda i, r: disabled.append(r))
    inst = installation(make_gear(BATCH))
    rt.start(inst)
    events = [{"i": 0}, {"i": 1, "raise": True}, {"i": 2, "raise": True}, {"i": 3}, {"i": 4}]
    results = rt.call_batch(inst.id, "gear_on_event",
                            [{"event": e, "profile": {}} for e in events])
    assert [r.ok for r in results] == [True, False, False, False, False]
    assert [r.error.code for r in results[1:]] == ["gear_error", "gear_error", "disabled",
                                                   "disabled"]
    assert len(disabled) == 1 and "bad event 2" in disabled[0]
    health = rt.health()[inst.id]
    assert health["calls"] == 3 and health["errors"] == 2 and health["disabled"]
    rt.enable(inst.id)
    (after,) = rt.call_batch(inst.id, "gear_on_event", [{"event": {}, "profile": {}}])
    assert _out(after)["n"] == 4  # items 3 and 4 never ran


@pytest.mark.sandbox
def test_timeout_in_a_batch_kills_restarts_and_the_rest_runs(make_gear, installation,
                                                             runtime_factory) -> None:
    rt = runtime_factory()
    inst = installation(make_gear(BATCH, timeout_ms=400))
    rt.start(inst)
    first_pid = rt.worker(inst.id).pid
    # the deadline is per call: three calls of 250 ms each fit, one of 30 s does not
    events = [{"i": 0, "sleep": 0.25}, {"i": 1, "sleep": 0.25}, {"i": 2, "sleep": 30},
              {"i": 3}, {"i": 4, "sleep": 0.25}]
    began = time.monotonic()
    results = rt.call_batch(inst.id, "gear_on_event",
                            [{"event": e, "profile": {}} for e in events])
    assert time.monotonic() - began < 5
    assert [r.ok for r in results] == [True, True, False, True, True]
    assert results[2].error.code == "timeout" and "timeout after 400 ms" in str(results[2].error)
    assert rt.worker(inst.id).pid != first_pid
    health = rt.health()[inst.id]
    assert health["timeouts"] == 1 and health["errors"] == 1 and health["restarts"] == 1
    assert health["calls"] == 5 and not health["disabled"]


@pytest.mark.sandbox
def test_crash_in_a_batch_fails_that_item_and_the_rest_runs(make_gear, installation,
                                                            runtime_factory) -> None:
    rt = runtime_factory()
    inst = installation(make_gear(BATCH))
    rt.start(inst)
    results = rt.call_batch(inst.id, "gear_on_event", [
        {"event": {"i": 0}, "profile": {}}, {"event": {"i": 1, "exit": True}, "profile": {}},
        {"event": {"i": 2}, "profile": {}}])
    assert [r.ok for r in results] == [True, False, True]
    assert results[1].error.code == "crashed"
    assert rt.health()[inst.id]["restarts"] == 1


@pytest.mark.sandbox
def test_batches_are_split_by_size_and_caps_hold_both_ways(make_gear, installation,
                                                           runtime_factory) -> None:
    rt = runtime_factory()
    inst = installation(make_gear(BATCH, memory_mb=256))
    rt.start(inst)
    blob = "x" * (1 << 20)
    calls = [{"event": {"i": i, "blob": blob}, "profile": {}} for i in range(6)]
    calls.insert(3, {"event": {"i": "huge", "blob": "x" * (5 << 20)}, "profile": {}})
    calls.append({"event": {"i": "big", "big": 5 << 20}, "profile": {}})
    results = rt.call_batch(inst.id, "gear_on_event", calls)
    assert [r.ok for r in results] == [True] * 3 + [False] + [True] * 3 + [False]
    assert results[3].error.code == "too_large" and "arguments" in str(results[3].error)
    assert results[7].error.code == "too_large" and "ResultTooLarge" in str(results[7].error)
    assert [_out(r)["n"] for r in results if r.ok] == [1, 2, 3, 4, 5, 6]
    health = rt.health()[inst.id]
    # the engine's oversized arguments are not the gear's fault; its oversized result is
    assert health["errors"] == 1 and health["restarts"] == 0


@pytest.mark.sandbox
def test_forged_answer_for_another_item_kills_the_worker(make_gear, installation,
                                                         runtime_factory) -> None:
    source = '''
import json, os, struct

@hookimpl
def gear_on_event(event):
    if event.get("forge"):
        body = json.dumps({"op": "result", "id": event["id"], "index": 5,
                           "value": None}).encode()
        for fd in range(3, 32):
            try:
                os.write(fd, struct.pack(">I", len(body)) + body)
            except OSError:
                pass
    return None
'''
    rt = runtime_factory()
    inst = installation(make_gear(source))
    rt.start(inst)
    next_id = rt.worker(inst.id)._ids + 1
    results = rt.call_batch(inst.id, "gear_on_event", [
        {"event": {"forge": True, "id": next_id}, "profile": {}},
        {"event": {}, "profile": {}}])
    assert results[0].error.code == "protocol" and results[1].ok
    assert rt.health()[inst.id]["restarts"] == 1


@pytest.mark.sandbox
def test_disabled_installation_runs_nothing(make_gear, installation, runtime_factory) -> None:
    rt = runtime_factory(failure_threshold=1)
    inst = installation(make_gear(BATCH))
    rt.start(inst)
    rt.call_batch(inst.id, "gear_on_event", [{"event": {"raise": True}, "profile": {}}])
    results = rt.proxy(inst.id).call_batch("gear_on_event", [{"event": {}, "profile": {}}] * 3)
    assert [r.error.code for r in results] == ["disabled"] * 3
