"""One gear cannot stall the others, at the runtime: calls to a hung worker fail fast
as ``busy`` beyond one waiter, health answers while it hangs, and a worker that cannot
even be planned is the installation's counted failure, tripping its breaker."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from marketplace.runtime import GearCallError, GearDisabled

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(120)]

HANG = '''
import time

@hookimpl
def gear_on_event(event, profile, config, ctx):
    if event.get("hang"):
        time.sleep(120)
    return None
'''

CALLERS = 6


def test_concurrent_calls_to_a_hung_worker_fail_fast_as_busy(make_gear, installation,
                                                             runtime_factory):
    rt = runtime_factory()
    inst = installation(make_gear(HANG, timeout_ms=3000))
    rt.start(inst)
    assert rt.call(inst.id, "gear_on_event", event={}, profile={}) is None  # warm
    finished: list[tuple[int, str]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(CALLERS + 1)

    def call(i: int) -> None:
        barrier.wait()
        try:
            rt.call(inst.id, "gear_on_event", event={"hang": True}, profile={})
            code = "ok"
        except GearCallError as exc:
            code = exc.code
        with lock:
            finished.append((i, code))

    threads = [threading.Thread(target=call, args=(i,)) for i in range(CALLERS)]
    for t in threads:
        t.start()
    barrier.wait()
    # health never waits for the worker: it answers while the gear hangs
    seen: dict[str, Any] = {}
    while not seen.get("busy"):
        seen = rt.health()[inst.id]
        assert any(t.is_alive() for t in threads), finished
        time.sleep(0.01)
    assert any(t.is_alive() for t in threads)
    for t in threads:
        t.join(60)
    codes = [code for _, code in finished]
    # one call runs (and times out), at most one waits; every other call is refused at once
    assert codes.count("busy") >= CALLERS - 2, codes
    assert set(codes) <= {"busy", "timeout"} and "timeout" in codes, codes
    # the refusals came back while the hung call still ran
    first_timeout = next(n for n, (_, code) in enumerate(finished) if code == "timeout")
    assert [code for _, code in finished[:first_timeout]].count("busy") >= CALLERS - 2, finished
    health = rt.health()[inst.id]
    assert health["busy"] == codes.count("busy") and health["failures"]["busy"] >= 1
    assert not health["disabled"]  # load alone never trips the breaker


def test_a_worker_that_cannot_be_planned_is_the_installations_counted_failure(
        make_gear, installation, runtime_factory, tmp_path):
    rt = runtime_factory(failure_threshold=3)
    inst = installation(make_gear(HANG))
    assert inst.data_dir is not None
    inst.data_dir.parent.mkdir(parents=True, exist_ok=True)
    inst.data_dir.write_text("not a directory")  # mkdir fails with an OSError
    for _ in range(3):
        with pytest.raises(GearCallError) as err:
            rt.start(inst)
        assert err.value.installation == inst.id and err.value.code != "disabled"
    with pytest.raises(GearDisabled):
        rt.start(inst)
    health = rt.health()[inst.id]
    assert health["disabled"] and health["errors"] == 3
    rt.forget(inst.id)  # the installation changed: a fresh count
    with pytest.raises(GearCallError) as err:
        rt.start(inst)
    assert err.value.code != "disabled"


def test_stopping_a_worker_does_not_wait_out_a_hung_call(make_gear, installation,
                                                        runtime_factory):
    rt = runtime_factory()
    inst = installation(make_gear(HANG, timeout_ms=60000))
    rt.start(inst)
    assert rt.call(inst.id, "gear_on_event", event={}, profile={}) is None  # warm
    outcome: list[str] = []
    running = threading.Event()

    def call() -> None:
        running.set()
        try:
            rt.call(inst.id, "gear_on_event", event={"hang": True}, profile={})
            outcome.append("ok")
        except GearCallError as exc:
            outcome.append(exc.code)

    thread = threading.Thread(target=call)
    thread.start()
    running.wait(10)
    worker = rt.worker(inst.id)
    while worker._lock.acquire(blocking=False):  # free: the call has not begun yet
        worker._lock.release()
        time.sleep(0.01)
    rt.stop(inst.id)  # a config change, the kill list, shutdown...
    thread.join(90)
    # the call was cut short by the stop, not by its 60 s deadline
    assert outcome == ["crashed"], outcome


def test_pid_alive_counts_a_zombie_as_dead() -> None:
    import os
    import subprocess

    from marketplace.runtime.files import pid_alive

    child = subprocess.Popen(["true"])
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # exited, not yet reaped
    try:
        os.kill(child.pid, 0)  # the signal check alone still calls it alive
        assert not pid_alive(child.pid)
    finally:
        child.wait()
    assert pid_alive(os.getpid()) and not pid_alive(child.pid)
