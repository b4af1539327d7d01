"""A gear's output is untrusted input: hostile results through real workers.

The gears here replace their worker's encoder, so they send what the SDK's own
encoder refuses (``NaN``, lone surrogates) exactly as a hostile gear would.
Every bad value must come back as the installation's counted
``invalid_result``, never as a typed value; ``ctx`` requests with bad
arguments are refused to the gear; the health API reports what the host set
up, whatever the worker claims; and ``ctx.http`` name lookups end at the
request's deadline.
"""

from __future__ import annotations

import json
import socket
import threading
from typing import Any

import pytest

from gears_sdk.types import ItemScore, ProfilePatch, RenderResult, StreamInfo
from marketplace.runtime import GearCallError

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(120)]

#: Makes the worker send what the SDK refuses to encode (NaN, lone surrogates).
LOOSE = '''
import json
from gears_sdk.worker import protocol


def _loose(value):
    return json.dumps(value, separators=(",", ":"), allow_nan=True).encode("utf-8")


protocol.dumps = _loose


def deep(n):
    value = "leaf"
    for _ in range(n):
        value = [value]
    return value

'''

EXTENSION = LOOSE + '''
PATCHES = {
    "deep": lambda: {"set": {"traits.out": deep(600)}},
    "nan": lambda: {"set": {"traits.out": float("nan")}},
    "infinite_increment": lambda: {"increment": {"traits.out": float("inf")}},
    "surrogate": lambda: {"set": {"traits.out": "\\ud800"}},
    "nul": lambda: {"set": {"traits.out": "a\\x00b"}},
    "path_not_a_string": lambda: {"unset": [["traits.out"]]},
    "huge_int": lambda: {"increment": {"traits.out": 2 ** 70}},
    "fine": lambda: {"set": {"traits.out": 1}},
}
SCORES = {
    "nan": lambda: [{"item_id": "a", "score": float("nan")}],
    "list_id": lambda: [{"item_id": ["a"], "score": 1}],
    "bool_score": lambda: [{"item_id": "a", "score": True}],
    "not_a_list": lambda: {"item_id": "a", "score": 1},
    "fine": lambda: [{"item_id": "a", "score": 2.5}],
}


@hookimpl
def gear_on_event(event, profile, config, ctx):
    if event.get("state") == "deep":
        try:
            ctx.state.set("k", deep(600))
        except Exception as exc:
            return {"set": {"traits.out": type(exc).__name__}}
        return {"set": {"traits.out": "stored"}}
    if event.get("state") == "nan":
        try:
            ctx.state.set("k", float("nan"))
        except Exception as exc:
            return {"set": {"traits.out": type(exc).__name__}}
        return {"set": {"traits.out": "stored"}}
    return PATCHES[event["attack"]]()


@hookimpl
def gear_score_items(profile, items, config, ctx):
    return SCORES[items[0]["id"]]()
'''

TEMPLATE = LOOSE + '''
RENDERS = {
    "surrogate": lambda: {"html": "<p>\\ud800</p>"},
    "not_a_string": lambda: {"html": 5},
    "list_html": lambda: {"html": ["<p>"]},
    "data_not_an_object": lambda: {"html": "<p>", "data": [1]},
    "fine": lambda: {"html": "<p>hi</p>", "data": {"n": 1}},
}


@hookimpl
def gear_render(profile, content, config, ctx):
    return RENDERS[content["attack"]]()
'''

CONNECTOR = LOOSE + '''
@hookimpl
def gear_check(config, ctx):
    return {"ok": "yes"} if config["attack"] == "check" else {"ok": True}


@hookimpl
def gear_streams(config, ctx):
    names = {"name_int": 5, "name_newline": "a\\nb", "name_list": ["a"]}
    name = names.get(config["attack"], "orders")
    return [{"name": name, "kind": "events"}]


@hookimpl
def gear_read(stream, config, cursor, ctx):
    attack = config["attack"]
    if attack == "record_int":
        return {"records": [1]}
    if attack == "cursor_nan":
        return {"records": [], "cursor": {"at": float("nan")}}
    if attack == "deep_record":
        return {"records": [{"user_id": "u", "type": "view", "properties": {"x": deep(600)}}]}
    return {"records": [{"user_id": "u", "type": "view"}], "cursor": 1}


@hookimpl
def gear_write(stream, records, config, ctx):
    return {"written": -1} if config["attack"] == "write" else {"written": len(records)}
'''


def _refused(rt: Any, inst_id: str, hook: str, **kwargs: Any) -> str:
    with pytest.raises(GearCallError) as info:
        rt.call(inst_id, hook, **kwargs)
    assert info.value.installation == inst_id
    return str(info.value.code)


def _failures(rt: Any, inst_id: str) -> dict[str, int]:
    snapshot = rt.health()[inst_id]
    failures: dict[str, int] = snapshot["failures"]
    return failures


def test_bad_patches_and_scores_are_counted_invalid_results(
        make_gear, installation, runtime_factory) -> None:
    rt = runtime_factory(failure_threshold=100)
    inst = installation(make_gear(EXTENSION, hooks=("gear_on_event", "gear_score_items")))
    rt.start(inst)
    attacks = ["deep", "nan", "infinite_increment", "surrogate", "nul", "path_not_a_string",
               "huge_int"]
    for attack in attacks:
        assert _refused(rt, inst.id, "gear_on_event", event={"attack": attack},
                        profile={}) == "invalid_result", attack
    scores = ["nan", "list_id", "bool_score", "not_a_list"]
    for attack in scores:
        assert _refused(rt, inst.id, "gear_score_items", profile={},
                        items=[{"id": attack}]) == "invalid_result", attack
    assert _failures(rt, inst.id) == {"invalid_result": len(attacks) + len(scores)}
    # the same worker still answers good results, typed
    assert rt.call(inst.id, "gear_on_event", event={"attack": "fine"}, profile={}) == \
        ProfilePatch(set={"traits.out": 1})
    assert rt.call(inst.id, "gear_score_items", profile={},
                   items=[{"id": "fine"}]) == [ItemScore("a", 2.5)]


def test_batched_bad_results_fail_alone(make_gear, installation, runtime_factory) -> None:
    rt = runtime_factory(failure_threshold=100)
    inst = installation(make_gear(EXTENSION, hooks=("gear_on_event", "gear_score_items")))
    rt.start(inst)
    calls = [{"event": {"attack": a}, "profile": {}} for a in ("fine", "deep", "fine", "nan")]
    out = rt.call_batch(inst.id, "gear_on_event", calls)
    assert [getattr(r, "value", None) for r in out[::2]] == [ProfilePatch(set={"traits.out": 1})] * 2
    assert [r.error.code for r in out[1::2]] == ["invalid_result", "invalid_result"]  # type: ignore[union-attr]
    assert _failures(rt, inst.id) == {"invalid_result": 2}


def test_bad_renders_are_counted_invalid_results(make_gear, installation,
                                                 runtime_factory) -> None:
    rt = runtime_factory(failure_threshold=100)
    inst = installation(make_gear(TEMPLATE, kind="template", hooks=("gear_render",),
                                  write=()))
    rt.start(inst)
    for attack in ("surrogate", "not_a_string", "list_html", "data_not_an_object"):
        assert _refused(rt, inst.id, "gear_render", profile={},
                        content={"attack": attack}) == "invalid_result", attack
    assert rt.call(inst.id, "gear_render", profile={}, content={"attack": "fine"}) == \
        RenderResult(html="<p>hi</p>", data={"n": 1})
    assert _failures(rt, inst.id) == {"invalid_result": 4}


@pytest.mark.parametrize("attack,hook,kwargs", [
    ("name_int", "gear_streams", {}),
    ("name_newline", "gear_streams", {}),
    ("name_list", "gear_streams", {}),
    ("record_int", "gear_read", {"stream": "orders", "cursor": None}),
    ("cursor_nan", "gear_read", {"stream": "orders", "cursor": None}),
    ("deep_record", "gear_read", {"stream": "orders", "cursor": None}),
    ("check", "gear_check", {}),
    ("write", "gear_write", {"stream": "orders", "records": []}),
])
def test_bad_connector_results_are_counted_invalid_results(
        make_gear, installation, runtime_factory, attack, hook, kwargs) -> None:
    rt = runtime_factory()
    inst = installation(make_gear(CONNECTOR, kind="connector", write=(),
                                  hooks=("gear_check", "gear_streams", "gear_read",
                                         "gear_write")), config={"attack": attack})
    rt.start(inst)
    assert _refused(rt, inst.id, hook, **kwargs) == "invalid_result"
    assert _failures(rt, inst.id) == {"invalid_result": 1}
    if hook != "gear_streams":
        assert rt.call(inst.id, "gear_streams") == [StreamInfo("orders", "events")]


@pytest.mark.parametrize("value", ["deep"])
def test_ctx_state_refuses_values_breaking_the_contract(make_gear, installation,
                                                        runtime_factory, value) -> None:
    rt = runtime_factory()
    inst = installation(make_gear(EXTENSION, hooks=("gear_on_event", "gear_score_items")))
    rt.start(inst)
    patch = rt.call(inst.id, "gear_on_event", event={"state": value}, profile={})
    assert patch.set["traits.out"] == "ValueError"
    assert inst.state is not None and inst.state.get("k") is None


CLAIMS = '''
from gears_sdk.worker import protocol

_send = protocol.Channel.send


def _send_claims(self, message, deadline=None):
    if message.get("op") == "ready":
        message = {**message, "sandbox": {"uid": 0, "seccomp": "claimed by the gear",
                                          "landlock_abi": 99}}
    return _send(self, message, deadline)


protocol.Channel.send = _send_claims


@hookimpl
def gear_on_event(event, profile, config, ctx):
    return None
'''


def test_health_reports_the_sandbox_the_host_set_up(make_gear, installation,
                                                    runtime_factory) -> None:
    rt = runtime_factory()
    inst = installation(make_gear(CLAIMS))
    rt.start(inst)
    sandbox = rt.health()[inst.id]["sandbox"]
    assert "claimed by the gear" not in json.dumps(sandbox)
    assert "landlock_abi" not in sandbox
    confined = rt.level in ("strict", "standard")
    assert sandbox["seccomp"] is confined and sandbox["landlock"] is confined
    assert "RLIMIT_AS" in sandbox["rlimits"] and "cgroup" in sandbox


SLOW_DNS = '''
@hookimpl
def gear_on_event(event, profile, config, ctx):
    try:
        ctx.http.get("http://slow-dns.example.com/", timeout=0.5)
    except Exception as exc:
        return {"set": {"traits.out": type(exc).__name__}}
    return {"set": {"traits.out": "answered"}}
'''


def test_dns_lookups_end_at_the_request_deadline(make_gear, installation, runtime_factory,
                                                 monkeypatch) -> None:
    """The system resolver hangs for one name (as an unreachable DNS server does); the
    request gives up at its own deadline and the gear hears ``TimeoutError``."""
    release = threading.Event()
    real = socket.getaddrinfo

    def hanging(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "slow-dns.example.com":
            release.wait(20)
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", hanging)
    rt = runtime_factory()
    inst = installation(make_gear(SLOW_DNS, network=("slow-dns.example.com",),
                                  timeout_ms=5000))
    rt.start(inst)
    try:
        patch = rt.call(inst.id, "gear_on_event", event={}, profile={})
    finally:
        release.set()
    assert patch.set["traits.out"] == "TimeoutError"
