"""Health counters, the circuit breaker and result normalization, without processes."""

from __future__ import annotations

import pytest

from gears_sdk.manifest import load_manifest
from gears_sdk.types import ItemScore, ProfilePatch
from marketplace.runtime.health import LATENCY_WINDOW, Health
from marketplace.runtime.permissions import ResultRefused, filter_arguments, normalize_result


def test_breaker_trips_on_consecutive_failures_only() -> None:
    seen: list[tuple[str, str]] = []
    health = Health("i1", threshold=3, on_disable=lambda i, r: seen.append((i, r)))
    health.failure("a")
    health.failure("b")
    health.success(1.0)
    health.failure("c")
    health.failure("d", timeout=True)
    assert not health.disabled
    health.failure("timeout after 250 ms", timeout=True)
    snap = health.snapshot()
    assert snap["disabled"] and snap["timeouts"] == 2 and snap["errors"] == 5
    assert snap["reason"] == "disabled after 3 consecutive failures: timeout after 250 ms"
    assert seen == [("i1", snap["reason"])]
    health.failure("again")
    assert len(seen) == 1  # reported once
    health.enable()
    assert not health.snapshot()["disabled"]


def test_latency_window_is_bounded() -> None:
    health = Health("i1")
    for n in range(LATENCY_WINDOW * 2):
        health.success(float(n))
    snap = health.snapshot()
    assert len(health.latencies_ms) == LATENCY_WINDOW
    assert snap["p50_ms"] >= LATENCY_WINDOW and snap["p99_ms"] <= 2 * LATENCY_WINDOW


@pytest.fixture
def manifest(make_gear):
    return load_manifest(make_gear("@hookimpl\ndef gear_on_event(event):\n    pass\n",
                                   hooks=("gear_on_event", "gear_score_items"),
                                   read=("traits.*", "id"), write=("traits.out",)))


def test_profile_is_filtered_to_declared_reads(manifest) -> None:
    profile = {"id": "u1", "traits": {"a": 1}, "attributes": {"email": "e"}, "events": [1]}
    assert filter_arguments(manifest, {"profile": profile})["profile"] == {
        "id": "u1", "traits": {"a": 1}}


def test_results_are_typed_and_patches_checked(manifest) -> None:
    assert normalize_result(manifest, "gear_on_event", {"set": {"traits.out": 1}}) == \
        ProfilePatch(set={"traits.out": 1})
    assert normalize_result(manifest, "gear_score_items", [{"item_id": "x", "score": 1}]) == \
        [ItemScore("x", 1)]
    with pytest.raises(ResultRefused) as err:
        normalize_result(manifest, "gear_on_event", {"set": {"attributes.email": "x"}})
    assert err.value.code == "patch_refused"
    for bad in ({"nope": 1}, "text", {"unset": "traits.out"}, {"increment": {"traits.out": "1"}}):
        with pytest.raises(ResultRefused) as err:
            normalize_result(manifest, "gear_on_event", bad)
        assert err.value.code == "invalid_result"


def test_state_stores_keep_json_within_the_quota(tmp_path) -> None:
    from marketplace.runtime.state import JsonFileStateStore

    path = tmp_path / "state" / "inst.json"
    store = JsonFileStateStore(path, limit_kb=1)
    store.set("a", {"n": 1})
    with pytest.raises(ValueError, match="limit"):
        store.set("b", "x" * 2048)
    with pytest.raises((TypeError, ValueError)):
        store.set("c", object())
    assert JsonFileStateStore(path, limit_kb=1).get("a") == {"n": 1}
    store.delete("a")
    assert JsonFileStateStore(path, limit_kb=1).keys() == []
