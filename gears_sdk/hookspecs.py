"""Hook specifications: the contract between the engine and a gear.

A gear implements some of these hooks in its entrypoint module, marked with
:data:`hookimpl`::

    from gears_sdk import hookimpl

    @hookimpl
    def gear_on_event(event, profile, config, ctx):
        ...

The hooks a gear may implement depend on its ``kind`` (:data:`HOOKS`, the one
table of hooks: kinds, result type, failure policy); the
hooks it declares in ``gear.json`` must be exactly the hooks it implements
(:func:`check_hooks`). A hook may take any subset of its spec's arguments, by
name.

Inside the engine every call crosses a process boundary: arguments and
results are JSON. ``config`` is the installation's validated configuration
(secrets removed; read them with ``ctx.secrets``), ``ctx`` is a
:class:`gears_sdk.context.Context`.

The reference in ``docs/hooks.md`` is generated from these docstrings.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal

import pluggy

from gears_sdk.context import Context
from gears_sdk.errors import HookError
from gears_sdk.types import (
    CheckResult,
    ItemScore,
    ProfilePatch,
    RecordBatch,
    RenderResult,
    StreamInfo,
    WriteResult,
)

PROJECT = "gears"

hookspec = pluggy.HookspecMarker(PROJECT)
#: Marks a function in a gear's module as the implementation of a hook.
hookimpl = pluggy.HookimplMarker(PROJECT)

JSON = Any


# ---------------------------------------------------------------------------
# connector hooks: bring data in, push segments out
# ---------------------------------------------------------------------------


@hookspec
def gear_check(config: dict[str, JSON], ctx: Context) -> CheckResult | None:
    """Test the connection to the connector's source or destination.

    Called when a business user presses "Test connection" and before every
    sync. Return a :class:`~gears_sdk.types.CheckResult`; ``ok=False`` with a
    message the user can act on ("the API key was refused"). Returning
    ``None`` means "nothing to check" and counts as success.
    """


@hookspec
def gear_streams(config: dict[str, JSON], ctx: Context) -> list[StreamInfo]:
    """List the streams this connector can read or write.

    Called when an installation is configured and before a sync, to learn
    which streams exist and what their records become (profiles, items or
    events). Return a list of :class:`~gears_sdk.types.StreamInfo`; an empty
    list means the connector offers nothing with this config.
    """


@hookspec
def gear_read(stream: str, config: dict[str, JSON], cursor: JSON, ctx: Context) -> RecordBatch:
    """Read the next batch of records from ``stream``, incrementally.

    ``cursor`` is the value returned by the previous batch for this
    installation and stream (``None`` on the first sync). Return a
    :class:`~gears_sdk.types.RecordBatch` with the records and the next
    cursor; the engine applies the records and persists the cursor in one
    step, so a failed sync resumes where the last good batch ended. Set
    ``has_more=True`` to be called again right away. Returning ``None`` is
    an empty batch with the cursor unchanged.

    Records write only what the manifest declares: ``permissions.profile.write``
    for a profile record's keys, ``permissions.catalog.write`` for an item
    record's fields, ``permissions.events.write`` for an event record's type.
    A record writing anything else is refused whole and listed in the sync run.
    """


@hookspec
def gear_write(
    stream: str, records: list[dict[str, JSON]], config: dict[str, JSON], ctx: Context
) -> WriteResult:
    """Push ``records`` (e.g. a segment's members) to the destination ``stream``.

    Called when a segment is exported through this connector, in batches.
    Return a :class:`~gears_sdk.types.WriteResult` counting what was written
    and what failed. ``None`` means every record was written.
    """


# ---------------------------------------------------------------------------
# extension hooks: enrich events, score profiles, rank items
# ---------------------------------------------------------------------------


@hookspec
def gear_on_event(
    event: dict[str, JSON], profile: dict[str, JSON], config: dict[str, JSON], ctx: Context
) -> ProfilePatch | None:
    """React to one event on a profile and return a patch for that profile.

    Called for every event the workspace ingests, after the event is stored.
    ``profile`` holds only the fields the manifest declares under
    ``permissions.profile.read``; the ``properties`` of ``event`` (and of the
    profile's ``events``) only the names under ``permissions.events.read``.
    Return a :class:`~gears_sdk.types.ProfilePatch`;
    every path it touches must be in ``permissions.profile.write`` or the
    whole patch is refused and counted as a gear error. ``None`` means no
    change.
    """


@hookspec
def gear_score_items(
    profile: dict[str, JSON], items: list[dict[str, JSON]], config: dict[str, JSON], ctx: Context
) -> list[ItemScore]:
    """Score catalog ``items`` for ``profile``; higher scores rank first.

    Called while answering a decision that shows items (recommendations).
    Each item holds its ``id`` and only the fields the manifest declares under
    ``permissions.catalog.read``. Return a list of :class:`~gears_sdk.types.ItemScore`; items left out keep
    a score of 0. ``None`` means "no opinion": the engine keeps its order.
    """


# ---------------------------------------------------------------------------
# template hooks: render personalized content
# ---------------------------------------------------------------------------


@hookspec
def gear_render(
    profile: dict[str, JSON], content: dict[str, JSON], config: dict[str, JSON], ctx: Context
) -> RenderResult:
    """Render personalized content for a profile at a placement.

    ``content`` is the campaign experience's content config (headline, items
    chosen by the engine, ...); its ``items`` hold their ``id`` and only the
    fields the manifest declares under ``permissions.catalog.read``. Return a
    :class:`~gears_sdk.types.RenderResult` with ``html`` and/or ``data``. The
    engine sanitizes HTML before it leaves the engine. ``None`` (or an
    exception) makes the engine fall back to the campaign's default experience.
    """


# ---------------------------------------------------------------------------
# lifecycle hooks: every kind
# ---------------------------------------------------------------------------


@hookspec
def gear_install(config: dict[str, JSON], ctx: Context) -> None:
    """Prepare a new installation (seed ``ctx.state``, validate remote setup).

    Called once, when a business user installs the gear into a workspace. An
    exception aborts the install and its message is shown to the user.
    """


@hookspec
def gear_uninstall(config: dict[str, JSON], ctx: Context) -> None:
    """Clean up before the installation is removed.

    Called once, when the gear is uninstalled; the engine deletes the
    installation's state and data directory afterwards whatever this returns.
    Exceptions are logged and do not stop the uninstall.
    """


# ---------------------------------------------------------------------------
# the table: every list of hooks or kinds elsewhere is derived from it
# ---------------------------------------------------------------------------

#: The kinds of gear, in the order pages and references list them.
KINDS: tuple[str, ...] = ("connector", "extension", "template")

Policy = Literal["notify", "decide"]


@dataclass(frozen=True)
class Hook:
    """One hook's contract beyond its signature.

    ``result`` is the type a non-``None`` result is checked against (``None``:
    the result is ignored), ``many`` whether the hook returns a list of them.
    ``policy`` is what the engine does when the call fails: ``notify`` logs,
    counts and skips that gear; ``decide`` hands the failure to the caller,
    which falls back (default experience, sync aborted, install refused...).
    """

    kinds: tuple[str, ...]
    result: type | None
    many: bool
    policy: Policy


#: Every hook, in the order of this module; a hook missing here fails the tests.
HOOKS: dict[str, Hook] = {
    "gear_check": Hook(("connector",), CheckResult, False, "decide"),
    "gear_streams": Hook(("connector",), StreamInfo, True, "decide"),
    "gear_read": Hook(("connector",), RecordBatch, False, "decide"),
    "gear_write": Hook(("connector",), WriteResult, False, "decide"),
    "gear_on_event": Hook(("extension",), ProfilePatch, False, "notify"),
    "gear_score_items": Hook(("extension",), ItemScore, True, "notify"),
    "gear_render": Hook(("template",), RenderResult, False, "decide"),
    "gear_install": Hook(KINDS, None, False, "decide"),
    "gear_uninstall": Hook(KINDS, None, False, "notify"),
}

#: Hooks every kind may implement.
LIFECYCLE_HOOKS = frozenset(name for name, h in HOOKS.items() if h.kinds == KINDS)

#: Which hooks each kind of gear may implement.
KIND_HOOKS: dict[str, frozenset[str]] = {
    kind: frozenset(name for name, h in HOOKS.items() if kind in h.kinds) for kind in KINDS
}

#: For each kind, groups of which at least one hook must be implemented.
KIND_REQUIRES_ONE_OF: dict[str, tuple[frozenset[str], ...]] = {
    "connector": (
        frozenset({"gear_check"}),
        frozenset({"gear_streams"}),
        frozenset({"gear_read", "gear_write"}),
    ),
    "extension": (frozenset({"gear_on_event", "gear_score_items"}),),
    "template": (frozenset({"gear_render"}),),
}

ALL_HOOKS: frozenset[str] = frozenset(HOOKS)


def spec_arguments(hook: str) -> tuple[str, ...]:
    """The argument names of ``hook``'s spec, in order (``config`` and ``ctx`` included)."""
    return tuple(inspect.signature(globals()[hook]).parameters)


def get_plugin_manager(*plugins: object) -> pluggy.PluginManager:
    """A fresh plugin manager with the gear hookspecs, ``plugins`` registered.

    Ends with ``check_pending()``, so a plugin implementing a hook that does
    not exist fails here rather than being silently ignored.
    """
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(sys.modules[__name__])
    for plugin in plugins:
        pm.register(plugin)
    pm.check_pending()
    return pm


def implemented_hooks(plugin: object) -> set[str]:
    """Names of the functions in ``plugin`` marked with :data:`hookimpl`."""
    pm = pluggy.PluginManager(PROJECT)
    return {
        name
        for name in dir(plugin)
        if not name.startswith("_") and pm.parse_hookimpl_opts(plugin, name) is not None
    }


def kind_problems(kind: str, hooks: Iterable[str]) -> list[str]:
    """Sentences describing why ``hooks`` do not suit a gear of ``kind``."""
    allowed = KIND_HOOKS.get(kind)
    if allowed is None:
        return []
    hooks = set(hooks)
    out = []
    for name in sorted(hooks - allowed):
        if name in ALL_HOOKS:
            out.append(f"{name} is not a hook of a {kind} (a {kind} may use {_list(allowed)})")
        else:
            out.append(f"{name} is not a known hook (a {kind} may use {_list(allowed)})")
    for group in KIND_REQUIRES_ONE_OF[kind]:
        if not hooks & group:
            need = "one of " + _list(group) if len(group) > 1 else next(iter(group))
            out.append(f"a {kind} must implement {need}")
    return out


def check_hooks(kind: str, declared: Iterable[str], module: ModuleType | object) -> None:
    """Check that ``module`` implements exactly the ``declared`` hooks, validly.

    Raises :class:`~gears_sdk.errors.HookError` listing every mismatch: hooks
    declared but not implemented, implemented but not declared, not allowed
    for ``kind``, or implemented with arguments the spec does not have.
    """
    declared = set(declared)
    implemented = implemented_hooks(module)
    problems = kind_problems(kind, declared)
    problems += [
        f"{name} is declared in gear.json but not implemented"
        for name in sorted(declared - implemented)
    ]
    problems += [
        f"{name} is implemented but not declared in gear.json 'hooks'"
        for name in sorted(implemented - declared)
    ]
    if not problems:
        try:
            get_plugin_manager(module)
        except pluggy.PluginValidationError as exc:
            problems.append(str(exc))
    if problems:
        raise HookError(
            "the gear's hooks do not match its manifest:\n" + "\n".join(f"  - {p}" for p in problems)
        )


def _list(names: Iterable[str]) -> str:
    return ", ".join(sorted(names))
