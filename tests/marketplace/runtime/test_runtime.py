"""The runtime against real worker processes at the host's best sandbox level."""

from __future__ import annotations

import pytest

from gears_sdk.hookspecs import get_plugin_manager
from gears_sdk.types import ProfilePatch
from marketplace.runtime import (
    GearCallError,
    GearCrashed,
    GearDisabled,
    GearFailure,
    GearProtocolError,
    GearResult,
    GearTimeout,
    SandboxError,
    successes,
)
from marketplace.runtime import worker as worker_module
from marketplace.runtime.sandbox import SandboxReport

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(60)]

ECHO = '''
import time

@hookimpl
def gear_on_event(event, profile, config, ctx):
    if event.get("sleep"):
        time.sleep(event["sleep"])
    if event.get("big"):
        return {"set": {"traits.out": "x" * event["big"]}}
    if event.get("write"):
        return {"set": {event["write"]: 1}}
    if event.get("exit"):
        import os
        os._exit(3)
    print("noise on stdout must not corrupt the protocol")
    ctx.log.info("seen %s", event.get("type"))
    ctx.state.set("count", (ctx.state.get("count") or 0) + 1)
    return {"set": {"traits.out": {"config": config, "profile": profile,
                                   "count": ctx.state.get("count"),
                                   "secret": ctx.secrets.get("token")}}}
'''

#: ECHO reads the secret ``token``, which it must declare.
TOKEN = {"secrets": ["token"]}


def test_call_round_trip_with_ctx_services(make_gear, installation, runtime_factory) -> None:
    rt = runtime_factory()
    inst = installation(make_gear(ECHO, permissions=TOKEN),
                        config={"greeting": "hi"}, secrets={"token": "s3"})
    rt.start(inst)
    profile = {"id": "u1", "traits": {"a": 1}, "attributes": {"email": "x@example.com"}}
    for n in (1, 2):
        patch = rt.call(inst.id, "gear_on_event", event={"type": "view"}, profile=profile,
                        config={"ignored": True}, ctx=object())
        assert isinstance(patch, ProfilePatch)
        out = patch.set["traits.out"]
        assert out["config"] == {"greeting": "hi"}
        assert out["profile"] == {"traits": {"a": 1}}  # attributes were not declared
        assert out["count"] == n and out["secret"] == "s3"
    health = rt.health()[inst.id]
    assert health["calls"] == 2 and health["errors"] == 0 and health["p50_ms"] is not None


def test_proxies_fan_out_in_a_real_plugin_manager(make_gear, installation,
                                                   runtime_factory) -> None:
    rt = runtime_factory()
    gear = make_gear(ECHO, permissions=TOKEN)
    a, b = installation(gear, config={"n": "a"}), installation(gear, config={"n": "b"})
    broken = installation(make_gear("@hookimpl\ndef gear_on_event(event):\n    1 / 0\n"))
    pm = get_plugin_manager()
    for inst in (a, b, broken):
        rt.start(inst)
        pm.register(rt.proxy(inst.id), name=inst.id)
    results = pm.hook.gear_on_event(event={"type": "view"}, profile={}, config=None, ctx=None)
    assert len(results) == 3
    ok = {r.installation: r.value.set["traits.out"]["config"]["n"] for r in successes(results)}
    assert ok == {a.id: "a", b.id: "b"}
    (failure,) = [r for r in results if isinstance(r, GearFailure)]
    assert failure.installation == broken.id and "ZeroDivisionError" in str(failure.error)
    assert all(isinstance(r, GearResult) for r in results if r.installation != broken.id)
    assert not hasattr(rt.proxy(a.id), "gear_render")


def test_hanging_gear_is_killed_at_its_deadline_and_restarted(make_gear, installation,
                                                               runtime_factory) -> None:
    rt = runtime_factory()
    inst = installation(make_gear(ECHO, permissions=TOKEN, timeout_ms=300))
    rt.start(inst)
    first_pid = rt.worker(inst.id).pid
    with pytest.raises(GearTimeout, match="timeout after 300 ms"):
        rt.call(inst.id, "gear_on_event", event={"sleep": 30}, profile={})
    patch = rt.call(inst.id, "gear_on_event", event={}, profile={})
    assert patch.set["traits.out"]["count"] == 1
    assert rt.worker(inst.id).pid != first_pid
    health = rt.health()[inst.id]
    assert health["timeouts"] == 1 and health["restarts"] == 1 and not health["disabled"]


def test_crashing_worker_is_restarted(make_gear, installation, runtime_factory) -> None:
    rt = runtime_factory()
    inst = installation(make_gear(ECHO, permissions=TOKEN))
    rt.start(inst)
    with pytest.raises(GearCrashed, match="died"):
        rt.call(inst.id, "gear_on_event", event={"exit": True}, profile={})
    assert rt.call(inst.id, "gear_on_event", event={}, profile={}) is not None


def test_failing_gear_is_disabled_with_a_reason(make_gear, installation,
                                                 runtime_factory) -> None:
    disabled: list[tuple[str, str]] = []
    rt = runtime_factory(failure_threshold=3, on_disable=lambda i, r: disabled.append((i, r)))
    inst = installation(make_gear("@hookimpl\ndef gear_on_event(event):\n"
                                  "    raise RuntimeError('boom')\n"))
    rt.start(inst)
    for _ in range(3):
        with pytest.raises(GearCallError, match="boom"):
            rt.call(inst.id, "gear_on_event", event={}, profile={})
    reason = rt.health()[inst.id]["reason"]
    assert reason.startswith("disabled after 3 consecutive failures: ")
    assert "RuntimeError: boom" in reason
    assert disabled == [(inst.id, reason)]
    with pytest.raises(GearDisabled):
        rt.call(inst.id, "gear_on_event", event={}, profile={})
    results = get_plugin_manager(rt.proxy(inst.id)).hook.gear_on_event(
        event={}, profile={}, config=None, ctx=None)
    assert isinstance(results[0], GearFailure) and results[0].error.code == "disabled"


def test_patch_outside_profile_write_is_refused(make_gear, installation,
                                                runtime_factory) -> None:
    rt = runtime_factory()
    inst = installation(make_gear(ECHO, permissions=TOKEN))
    rt.start(inst)
    with pytest.raises(GearCallError, match=r"outside permissions\.profile\.write") as err:
        rt.call(inst.id, "gear_on_event", event={"write": "attributes.email"}, profile={})
    assert err.value.code == "patch_refused"
    assert rt.health()[inst.id]["errors"] == 1


def test_size_caps_both_ways(make_gear, installation, runtime_factory) -> None:
    rt = runtime_factory()
    inst = installation(make_gear(ECHO, permissions=TOKEN, memory_mb=128))
    rt.start(inst)
    with pytest.raises(GearCallError, match="arguments are too large"):
        rt.call(inst.id, "gear_on_event", event={"blob": "x" * (5 << 20)}, profile={})
    with pytest.raises(GearCallError, match="ResultTooLarge") as err:
        rt.call(inst.id, "gear_on_event", event={"big": 5 << 20}, profile={})
    assert err.value.code == "too_large"
    assert rt.call(inst.id, "gear_on_event", event={}, profile={}) is not None
    assert rt.health()[inst.id]["errors"] == 1  # the engine's oversized call is not the gear's


def test_forged_oversized_frame_kills_the_worker(make_gear, installation,
                                                 runtime_factory) -> None:
    source = '''
import os, struct

@hookimpl
def gear_on_event(event):
    if event.get("forge"):
        for fd in range(3, 32):
            try:
                os.write(fd, struct.pack(">I", 1 << 30) + b"{")
            except OSError:
                pass
    return None
'''
    rt = runtime_factory()
    inst = installation(make_gear(source))
    rt.start(inst)
    with pytest.raises(GearProtocolError, match="limit"):
        rt.call(inst.id, "gear_on_event", event={"forge": True}, profile={})
    assert rt.call(inst.id, "gear_on_event", event={}, profile={}) is None
    assert rt.health()[inst.id]["restarts"] == 1


def test_protocol_version_mismatch_is_refused(make_gear, installation, runtime_factory,
                                              monkeypatch) -> None:
    rt = runtime_factory()
    monkeypatch.setattr(worker_module, "PROTOCOL_VERSION", 99)
    inst = installation(make_gear(ECHO, permissions=TOKEN))
    with pytest.raises(GearProtocolError, match="protocol version mismatch"):
        rt.start(inst)


def test_gear_that_fails_to_load_is_reported(make_gear, installation, runtime_factory) -> None:
    rt = runtime_factory()
    inst = installation(make_gear("raise ImportError('missing dependency')\n"))
    with pytest.raises(GearCallError, match="missing dependency") as err:
        rt.start(inst)
    assert err.value.code == "load_failed"


def test_untrusted_gear_below_minimum_level_is_refused(make_gear, installation,
                                                       runtime_factory) -> None:
    rt = runtime_factory(level="dev-unsafe", min_level="strict")
    with pytest.raises(SandboxError, match="below the required 'strict'"):
        rt.start(installation(make_gear(ECHO, permissions=TOKEN)))


def test_level_the_host_cannot_reach_is_refused(runtime_factory) -> None:
    report = SandboxReport("standard", {"namespaces": False}, ("no bubblewrap",))
    with pytest.raises(SandboxError, match="not available on this host"):
        runtime_factory(level="strict", report=report)
