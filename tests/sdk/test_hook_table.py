"""The table of hooks in gears_sdk.hookspecs is the one source: every hookspec has an
entry and documentation, and what other modules list about hooks is derived from it."""

from __future__ import annotations

import ast
import functools
import inspect
import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pluggy
import pytest

from gears_sdk import hookspecs
from gears_sdk.hookspecs import HOOKS, KINDS

ROOT = Path(__file__).resolve().parents[2]


def spec_names() -> set[str]:
    """Every function pluggy takes for a hookspec in the module."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    return {name for name in dir(hookspecs)
            if pm.parse_hookspec_opts(hookspecs, name) is not None}


def test_every_hookspec_has_a_table_entry_and_every_entry_a_hookspec():
    assert spec_names() == set(HOOKS)


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_every_hook_is_documented(name):
    func = getattr(hookspecs, name)
    assert func.__doc__ and func.__doc__.strip(), f"{name} has no docstring"
    reference = (ROOT / "docs/hooks.md").read_text(encoding="utf-8")
    assert f"## `{name}`" in reference


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_table_entries_are_well_formed(name):
    hook = HOOKS[name]
    assert hook.kinds and set(hook.kinds) <= set(KINDS)
    assert hook.policy in ("notify", "decide")
    assert hook.result is None or hasattr(hook.result, "from_value")
    assert not (hook.many and hook.result is None)
    assert {"config", "ctx"} <= set(hookspecs.spec_arguments(name))


def test_every_kind_can_be_satisfied_from_its_hooks():
    assert set(hookspecs.KIND_REQUIRES_ONE_OF) == set(KINDS)
    for kind, groups in hookspecs.KIND_REQUIRES_ONE_OF.items():
        for group in groups:
            assert group <= hookspecs.KIND_HOOKS[kind]


def test_manifest_schema_agrees_with_the_table():
    """The JSON Schema cannot import Python: its kind enum is held to the table here."""
    schema = json.loads((ROOT / "gears_sdk/schema/gear.schema.json").read_text("utf-8"))
    props = schema["properties"]
    assert props["kind"]["enum"] == list(KINDS)
    pattern = props["hooks"]["items"]["pattern"]
    assert all(re.fullmatch(pattern, name) for name in HOOKS)
    assert props["hooks"]["maxItems"] >= len(HOOKS)


def test_result_checks_and_policies_come_from_the_table():
    from marketplace.runtime.permissions import _LISTS, RESULT_TYPES
    from marketplace.runtime.proxy import HOOK_POLICY

    assert {n: h.result for n, h in HOOKS.items() if h.result is not None} == RESULT_TYPES
    assert {n for n, h in HOOKS.items() if h.many} == _LISTS
    assert {n: h.policy for n, h in HOOKS.items()} == HOOK_POLICY


class RecordingRuntime:
    """Stands in for the runtime below a proxy: records what each forwarder sends."""

    def __init__(self, hooks: list[str]):
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.inst = SimpleNamespace(gear="acme/all", manifest=SimpleNamespace(hooks=hooks))

    def installation(self, installation: str) -> Any:
        return self.inst

    def call(self, installation: str, hook: str, **kwargs: Any) -> Any:
        self.calls.append((hook, kwargs))
        return {"hook": hook}


def test_proxies_forward_every_hook_with_its_spec_arguments():
    """Each generated forwarder registers under pluggy with the spec's arguments and sends
    them all to the worker except config and ctx, which the runtime supplies."""
    from marketplace.runtime.proxy import GearResult, make_proxy

    runtime = RecordingRuntime(sorted(HOOKS))
    proxy = make_proxy(runtime, "inst-1")  # type: ignore[arg-type]
    pm = hookspecs.get_plugin_manager(proxy)
    for name in HOOKS:
        impl = getattr(pm.hook, name).get_hookimpls()[0]
        assert impl.argnames == tuple(hookspecs.spec_arguments(name))
        args = {a: f"{a}-value" for a in hookspecs.spec_arguments(name)}
        [result] = getattr(pm.hook, name)(**args)
        assert isinstance(result, GearResult) and result.value == {"hook": name}
        sent = {a: v for a, v in args.items() if a not in ("config", "ctx")}
        assert runtime.calls[-1] == (name, sent)


def test_a_proxy_implements_only_the_declared_hooks():
    from marketplace.runtime.proxy import make_proxy

    proxy = make_proxy(RecordingRuntime(["gear_render"]), "inst-1")  # type: ignore[arg-type]
    assert hookspecs.implemented_hooks(proxy) == {"gear_render"}


def test_every_list_of_kinds_is_the_table_s():
    """Kinds reach the pages, the API, the CLI and the scaffolds from the one tuple."""
    from gears_sdk.cli import main
    from marketplace.openapi import document
    from marketplace.web.templating import KIND_BLURBS, KIND_LABELS

    assert list(KIND_LABELS) == list(KINDS) and set(KIND_BLURBS) == set(KINDS)
    assert sorted(p.name for p in (ROOT / "gears_sdk/scaffold").iterdir() if p.is_dir()) \
        == sorted(KINDS)
    for command in ("new", "search"):
        [kind] = [p for p in main.commands[command].params if p.name == "kind"]
        assert tuple(kind.type.choices) == KINDS  # type: ignore[attr-defined]
    enums = [s["enum"] for s in _subschemas(document()) if "enum" in s
             and set(s["enum"]) & set(KINDS)]
    assert len(enums) >= 5 and all(e == list(KINDS) for e in enums)


def _subschemas(node: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if isinstance(node, dict):
        out.append(node)
        for v in node.values():
            out += _subschemas(v)
    elif isinstance(node, list):
        for v in node:
            out += _subschemas(v)
    return out


@functools.cache
def _test_names() -> frozenset[str]:
    names: set[str] = set()
    for path in (ROOT / "tests").rglob("test_*.py"):
        tree = ast.parse(path.read_text("utf-8"), str(path))
        names |= {n.name for n in ast.walk(tree)
                  if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
    return frozenset(names)


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_every_hook_has_a_test_of_its_own(name):
    """A hook ships with a test named ``test_hook_<hook>`` (tests/sdk/test_hooks.py)."""
    assert any(t == f"test_hook_{name}" or t.startswith(f"test_hook_{name}_")
               for t in _test_names()), f"no test_hook_{name} under tests/"


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_the_sdk_harness_calls_every_hook(name):
    """gears_sdk.testing.LoadedGear has a method per hook, named after it, taking the
    spec's arguments by name (written by hand or made from the table)."""
    from gears_sdk.testing import LoadedGear

    method = getattr(LoadedGear, name.removeprefix("gear_"), None)
    assert callable(method) and name in (method.__doc__ or "")
    params = inspect.signature(method).parameters
    assert set(hookspecs.spec_arguments(name)) <= set(params)
    assert list(params)[1:len(hookspecs.spec_arguments(name)) - 1] == \
        [a for a in hookspecs.spec_arguments(name) if a not in ("config", "ctx")]


EXTENSION = """
@hookimpl
def gear_on_event(event, profile, config, ctx):
    if event["type"] == "bad":
        return {"set": {"attributes.email": "x"}}
    return {"set": {"traits.score": sorted(profile) + sorted(event["properties"])}}

@hookimpl
def gear_score_items(profile, items, config, ctx):
    if items and items[0]["id"] == "not-a-list":
        return {"item_id": "a", "score": 1}
    return [{"item_id": i["id"], "score": len(i)} for i in items] if items else None
"""


def test_a_hook_needs_no_harness_code_beyond_the_table(tmp_path):
    """The method the harness makes from the table for a hook (as it does for any hook
    without a hand-written one) filters the arguments by the manifest's permissions,
    types the result, refuses a patch outside profile.write and a result of the wrong
    shape, exactly as the runtime does."""
    from gears_sdk.errors import HookError
    from gears_sdk.testing.loaded import hook_method
    from gears_sdk.types import ItemScore, ProfilePatch
    from tests.sdk.test_hooks import gear

    loaded = gear(tmp_path, "extension", ["gear_on_event", "gear_score_items"], EXTENSION)
    on_event, score_items = hook_method("gear_on_event"), hook_method("gear_score_items")
    profile = {"id": "u1", "attributes": {"email": "a@b.c"}, "traits": {"rfm": 1}}
    event = {"type": "view", "user_id": "u1", "properties": {"path": "/"}}
    assert on_event(loaded, event, profile=profile) == \
        ProfilePatch(set={"traits.score": ["traits"]})
    with pytest.raises(HookError) as refused:
        on_event(loaded, {**event, "type": "bad"}, profile)
    assert refused.value.code == "patch_refused"
    assert score_items(loaded, profile, [{"id": "a", "price": 2, "cost": 1}]) == \
        [ItemScore("a", 2)]
    assert score_items(loaded, profile, []) is None
    with pytest.raises(HookError) as invalid:
        score_items(loaded, profile, [{"id": "not-a-list"}])
    assert invalid.value.code == "invalid_result"
    with pytest.raises(TypeError):
        score_items(loaded, profile)


def test_every_hook_argument_has_a_permission_rule_and_a_vetting_sample():
    """An argument name is filtered by the manifest's permissions or declared as passed
    as it is, and the dynamic vetting run has values for it: a hook taking a new kind of
    argument cannot slip past either."""
    from gears_sdk.permissions import ARGUMENT_FILTERS, UNFILTERED_ARGUMENTS
    from marketplace.vetting.inputs import SAMPLES

    assert not set(ARGUMENT_FILTERS) & UNFILTERED_ARGUMENTS
    for name in HOOKS:
        for arg in hookspecs.spec_arguments(name):
            assert arg in set(ARGUMENT_FILTERS) | UNFILTERED_ARGUMENTS, (name, arg)
            assert arg in SAMPLES or arg in ("config", "ctx"), (name, arg)


@pytest.mark.parametrize("kind", KINDS)
def test_vetting_runs_every_hook_with_its_spec_arguments(kind):
    """The dynamic vetting run calls every hook a gear of ``kind`` may declare, with exactly
    the spec's arguments (the runtime supplies config and ctx)."""
    from marketplace.vetting.inputs import calls_for

    hooks = sorted(hookspecs.KIND_HOOKS[kind])
    manifest = SimpleNamespace(hooks=hooks, permissions=_NO_PERMISSIONS)
    calls = calls_for(manifest, ["contacts"])  # type: ignore[arg-type]
    assert {hook for hook, _ in calls} == set(hooks)
    for hook, kwargs in calls:
        assert set(kwargs) == set(hookspecs.spec_arguments(hook)) - {"config", "ctx"}


_NO_PERMISSIONS = SimpleNamespace(
    profile=SimpleNamespace(read=[], write=[]), events=SimpleNamespace(read=[], write=[]),
    catalog=SimpleNamespace(read=[], write=[]))
