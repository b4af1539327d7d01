"""The engine handles a gear's failure by the hook's policy in gears_sdk.hookspecs.HOOKS.

Each caller hands a call's results to :func:`marketplace.runtime.settle`; these tests
drive the callers with a failing and a succeeding gear under the table's policy and
under the other one, so a caller that ignored the table would fail one of them.
Lifecycle hooks (``gear_install``, ``gear_uninstall``) are driven by
``marketplace/engine/lifecycle.py`` and tested in ``test_lifecycle.py``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from gears_sdk.hookspecs import HOOKS
from gears_sdk.types import ItemScore, ProfilePatch, RenderResult
from marketplace.engine import connectors, decisions, ingest
from marketplace.engine.validation import NewEvent
from marketplace.runtime import GearFailure, GearResult, HookDeclined, proxy, settle
from marketplace.runtime.errors import GearCallError

POLICIES = ("notify", "decide")


def failure(installation: str = "i-bad") -> GearFailure:
    return GearFailure(installation, "acme/bad", GearCallError(
        "the hook raised ValueError", installation=installation, gear="acme/bad"))


def success(value: Any, installation: str = "i-good") -> GearResult:
    return GearResult(installation, "acme/good", value)


@pytest.fixture
def policy(monkeypatch):
    """``policy(hook, p)`` runs the rest of the test as if the table said ``p``."""

    def set_policy(hook: str, p: str) -> None:
        monkeypatch.setitem(proxy.HOOK_POLICY, hook, p)

    return set_policy


@pytest.mark.parametrize("hook", sorted(HOOKS))
def test_settle_applies_the_table_s_policy(hook):
    ok = success(None)
    if HOOKS[hook].policy == "notify":
        assert settle(hook, [failure(), ok]) == [ok]
    else:
        with pytest.raises(HookDeclined) as declined:
            settle(hook, [ok, failure()])
        assert declined.value.failure.installation == "i-bad"
    assert settle(hook, [ok]) == [ok]


class OneGear:
    """An engine whose ``hook_for`` reaches one gear answering ``results``."""

    def __init__(self, results: list[Any]):
        self.results = results

    def hook_for(self, session: Any, wg: Any, installation: str, hook: str) -> Any:
        return (lambda **kwargs: self.results), None


@pytest.mark.parametrize("hook", ["gear_check", "gear_streams", "gear_read", "gear_write"])
@pytest.mark.parametrize("p", POLICIES)
def test_a_connector_call_follows_the_policy(hook, p, policy):
    """``decide`` (the table's): the sync stops, cursor unchanged; ``notify``: no value."""
    policy(hook, p)
    engine = OneGear([failure()])
    if p == "decide":
        with pytest.raises(connectors.SyncFailed, match="the hook raised ValueError"):
            connectors._call(engine, None, None, "i-bad", hook)  # type: ignore[arg-type]
    else:
        assert connectors._call(engine, None, None, "i-bad", hook) is None  # type: ignore[arg-type]


@pytest.mark.parametrize("p", POLICIES)
def test_a_template_failure_follows_the_policy(p, policy):
    """Either way the decision falls back, with the failure among its outcomes."""
    policy("gear_render", p)
    outcomes: list[Any] = []
    assert decisions._render(OneGear([failure()]), None, None, "i-bad",  # type: ignore[arg-type]
                             {}, {}, outcomes) is None
    assert [(o.installation, o.ok, o.error) for o in outcomes] == [("i-bad", False, "gear_error")]
    rendered = decisions._render(OneGear([success(RenderResult(html="<p>hi</p>"))]),  # type: ignore[arg-type]
                                 None, None, "i-good", {}, {}, outcomes)
    assert rendered == {"html": "<p>hi</p>", "data": None}


ITEMS = [{"id": "a"}, {"id": "b"}, {"id": "c"}]


@pytest.mark.parametrize("p", POLICIES)
def test_a_scoring_failure_follows_the_policy(p, policy):
    """``notify`` (the table's): the other gears' scores rank the items; ``decide``: the
    engine's order stands. The failure is an outcome either way."""
    policy("gear_score_items", p)
    outcomes: list[Any] = []
    results = [failure(), success([ItemScore("c", 2.0), ItemScore("b", 1.0)])]
    order = [i["id"] for i in decisions.ranked(ITEMS, results, outcomes)]
    assert order == (["c", "b", "a"] if p == "notify" else ["a", "b", "c"])
    assert [o.ok for o in outcomes] == [False, True]


@pytest.mark.parametrize("p", POLICIES)
def test_an_event_hook_failure_follows_the_policy(p, policy):
    """``notify`` (the table's): the event is applied with the other gears' patches;
    ``decide``: with none. The failure is counted against its installation either way."""
    policy("gear_on_event", p)
    event = NewEvent("e1", "u1", "view", None, {}, datetime.now(UTC))
    doc: dict[str, Any] = {"user_id": "u1", "attributes": {}, "traits": {}}
    result, patches = ingest.IngestResult(), []  # type: ignore[var-annotated]
    results = [failure(), success(ProfilePatch(set={"traits.seen": True}))]
    ingest._apply_results(SimpleNamespace(), results, event, doc, result, patches)  # type: ignore[arg-type]
    assert list(result.gear_errors) == ["i-bad"]
    if p == "notify":
        assert [x.installation for x in patches] == ["i-good"] and doc["traits"]["seen"]
    else:
        assert patches == [] and doc["traits"] == {}


def test_every_hook_s_policy_is_tested_here_or_in_the_lifecycle_tests():
    covered = {"gear_check", "gear_streams", "gear_read", "gear_write", "gear_render",
               "gear_score_items", "gear_on_event", "gear_install", "gear_uninstall"}
    assert covered == set(HOOKS), "a new hook's caller needs a policy test here"
