"""The engine handles a gear's failure by the hook's policy in gears_sdk.hookspecs.HOOKS.

Each caller hands a call's results to :func:`marketplace.runtime.settle`; these tests
drive the callers with a failing and a succeeding gear under the table's policy and
under the other one, so a caller that ignored the table would fail one of them.
The lifecycle hooks (``gear_install``, ``gear_uninstall``) are driven through
:class:`marketplace.engine.lifecycle.Lifecycle` with a stand-in engine and session here,
and end to end, in the sandbox, under the table's policies in ``test_lifecycle.py``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from gears_sdk.hookspecs import HOOKS, hookimpl
from gears_sdk.types import ItemScore, ProfilePatch, RenderResult
from marketplace.engine import connectors, decisions, ingest, lifecycle
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


class LifecycleSession:
    """What :class:`~marketplace.engine.lifecycle.Lifecycle` asks of a session: the
    installation row (``None``: uninstalled), then the workspace and gear version."""

    def __init__(self, row: Any, *scalars: Any):
        self.row, self.scalars = row, list(scalars)
        self.executed: list[Any] = []
        self.committed = False

    def __enter__(self) -> LifecycleSession:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def get(self, model: Any, key: str) -> Any:
        return self.row

    def scalar(self, statement: Any) -> Any:
        return self.scalars.pop(0)

    def execute(self, statement: Any) -> None:
        self.executed.append(statement)

    def commit(self) -> None:
        self.committed = True

    def rollback(self) -> None:
        return None


class FailingUninstall:
    @hookimpl
    def gear_uninstall(self, config: Any, ctx: Any) -> Any:
        return failure()


class LifecycleEngine(OneGear):
    """An engine whose one gear answers ``results`` to ``gear_install`` and fails
    ``gear_uninstall``; it records what the lifecycle asks of it."""

    def __init__(self, results: list[Any], session: LifecycleSession):
        super().__init__(results)
        self.session = session
        self.failures: list[tuple[str, str]] = []
        self.removed: list[str] = []
        self.started: set[str] = set()
        self.runtime = SimpleNamespace(forget=lambda iid: None,
                                       proxy=lambda iid: FailingUninstall())

    def sessions(self) -> LifecycleSession:
        return self.session

    def forget(self, workspace: str, installation: str) -> None:
        return None

    def reread(self, session: Any, workspace: Any) -> None:
        return None

    def workspace(self, session: Any, workspace: Any) -> Any:
        return None

    def start_worker(self, *args: Any) -> None:
        return None

    def queue_failure(self, installation: str, reason: str) -> None:
        self.failures.append((installation, reason))

    def flush_failures(self) -> None:
        return None

    def remove_data(self, installation: str) -> None:
        self.removed.append(installation)


EVENT = SimpleNamespace(installation_id="i-bad", workspace="shop", gear="acme/bad",
                        version="1.0.0", config={}, secrets_encrypted=b"")
WORKSPACE = SimpleNamespace(id=1, name="shop")


@pytest.mark.parametrize("p", POLICIES)
def test_an_install_failure_follows_the_policy(p, policy):
    """``decide`` (the table's): the installation is marked failed with the gear's
    message; ``notify``: it stays installed (the runtime counted the failure)."""
    policy("gear_install", p)
    session = LifecycleSession(SimpleNamespace(workspace_id=1), WORKSPACE)
    engine = LifecycleEngine([failure()], session)
    lifecycle.Lifecycle(engine, node="n").installed(EVENT)  # type: ignore[arg-type]
    if p == "decide":
        assert engine.failures == [("i-bad", "gear_install failed: the hook raised ValueError")]
    else:
        assert engine.failures == []
    assert lifecycle.install_refused([success(None)]) is None


@pytest.mark.parametrize("p", POLICIES)
def test_an_uninstall_failure_follows_the_policy(p, policy, monkeypatch, caplog):
    """``notify`` (the table's): logged, and the installation's engine data and data dir
    go; ``decide``: the row's work raises (the outbox retries it) and nothing is deleted."""
    policy("gear_uninstall", p)
    monkeypatch.setattr(lifecycle, "box_for", lambda session: SimpleNamespace(
        decrypt=lambda sealed: {}))
    version = SimpleNamespace(manifest={"hooks": ["gear_uninstall"]})
    session = LifecycleSession(None, WORKSPACE, version)
    engine = LifecycleEngine([], session)
    run = lifecycle.Lifecycle(engine, node="n")  # type: ignore[arg-type]
    if p == "decide":
        with pytest.raises(HookDeclined):
            run.uninstalled(EVENT)  # type: ignore[arg-type]
        assert (engine.removed, session.executed, session.committed) == ([], [], False)
    else:
        run.uninstalled(EVENT)  # type: ignore[arg-type]
        assert engine.removed == ["i-bad"] and session.committed
        assert len(session.executed) == len(lifecycle._ENGINE_TABLES)
        assert "gear_uninstall of acme/bad (i-bad) failed" in caplog.text


def test_every_hook_s_policy_is_tested_here_or_in_the_lifecycle_tests():
    covered = {"gear_check", "gear_streams", "gear_read", "gear_write", "gear_render",
               "gear_score_items", "gear_on_event", "gear_install", "gear_uninstall"}
    assert covered == set(HOOKS), "a new hook's caller needs a policy test here"
