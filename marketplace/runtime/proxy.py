"""The proxy plugin: one per installation, registered in the engine's PluginManager.

The engine calls ``pm.hook.gear_on_event(event=..., profile=..., config=None,
ctx=None)`` and pluggy fans out to every registered proxy as usual. Each
proxy implements only the hooks its manifest declares, substitutes its
installation's own ``config`` and ``ctx`` (whatever the engine passed for
them is ignored), filters ``profile`` to what the gear may read, and
forwards the call to the installation's worker.

A proxy never raises into pluggy, because one failing gear must not stop
the others in a fan-out. It returns, for every call:

* :class:`GearResult` — ``installation``, ``gear`` and the typed ``value``
  (a ``ProfilePatch``, a list of ``ItemScore``, a ``RenderResult``... or
  ``None`` when the gear had nothing to say); or
* :class:`GearFailure` — the same attribution and the :class:`GearCallError`;
  the runtime has already counted and logged it.

What the caller does with a failure depends on the hook (:data:`HOOK_POLICY`):

``notify``
    ``gear_on_event``, ``gear_score_items``, ``gear_uninstall``: log and
    skip — the event is applied without that gear's patch, items keep the
    engine's order.
``decide``
    ``gear_render``, ``gear_check``, ``gear_streams``, ``gear_read``,
    ``gear_write``, ``gear_install``: the caller must look at the failure
    and fall back (default experience, "connection failed", sync aborted
    with the cursor unchanged, install aborted) — :meth:`GearFailure.raise_`
    turns it back into the exception.

:meth:`GearProxy.call_batch` makes the same calls for a list of arguments in
one exchange with the worker (the engine uses it for ``gear_on_event``).
"""

from __future__ import annotations

import types
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gears_sdk.hookspecs import hookimpl
from marketplace.runtime.errors import GearCallError

if TYPE_CHECKING:
    from marketplace.runtime.runtime import Runtime

HOOK_POLICY: dict[str, str] = {
    "gear_on_event": "notify", "gear_score_items": "notify", "gear_uninstall": "notify",
    "gear_render": "decide", "gear_check": "decide", "gear_streams": "decide",
    "gear_read": "decide", "gear_write": "decide", "gear_install": "decide",
}


@dataclass(frozen=True)
class GearResult:
    """A successful hook call, attributed to its installation."""

    installation: str
    gear: str
    value: Any
    ok = True


@dataclass(frozen=True)
class GearFailure:
    """A failed hook call, attributed; already recorded in the installation's health."""

    installation: str
    gear: str
    error: GearCallError
    ok = False

    @property
    def value(self) -> None:
        return None

    def raise_(self) -> None:
        raise self.error


def successes(results: Iterable[GearResult | GearFailure]) -> list[GearResult]:
    """The successful results of a fan-out, in pluggy's order."""
    return [r for r in results if isinstance(r, GearResult)]


class GearProxy:
    """Base of the per-installation proxy classes built by :func:`make_proxy`."""

    def __init__(self, runtime: Runtime, installation: str, gear: str):
        self.runtime = runtime
        self.installation = installation
        self.gear = gear

    def __repr__(self) -> str:
        return f"<GearProxy {self.gear} ({self.installation})>"

    def _call(self, hook: str, **kwargs: Any) -> GearResult | GearFailure:
        try:
            value = self.runtime.call(self.installation, hook, **kwargs)
        except GearCallError as exc:
            return GearFailure(self.installation, self.gear, exc)
        return GearResult(self.installation, self.gear, value)

    def call_batch(self, hook: str,
                   calls: list[dict[str, Any]]) -> list[GearResult | GearFailure]:
        """``hook`` once per kwargs in ``calls``, in one exchange with the worker
        (:meth:`Runtime.call_batch`); one result or failure per call, in order."""
        try:
            return self.runtime.call_batch(self.installation, hook, calls)
        except GearCallError as exc:
            return [GearFailure(self.installation, self.gear, exc) for _ in calls]


# One function per hook, taking the spec's arguments minus config and ctx (the
# proxy supplies its own). pluggy reads the parameter names from the code.
def _gear_check(self: GearProxy) -> Any:
    return self._call("gear_check")


def _gear_streams(self: GearProxy) -> Any:
    return self._call("gear_streams")


def _gear_read(self: GearProxy, stream: str, cursor: Any) -> Any:
    return self._call("gear_read", stream=stream, cursor=cursor)


def _gear_write(self: GearProxy, stream: str, records: list[dict[str, Any]]) -> Any:
    return self._call("gear_write", stream=stream, records=records)


def _gear_on_event(self: GearProxy, event: dict[str, Any], profile: dict[str, Any]) -> Any:
    return self._call("gear_on_event", event=event, profile=profile)


def _gear_score_items(self: GearProxy, profile: dict[str, Any],
                      items: list[dict[str, Any]]) -> Any:
    return self._call("gear_score_items", profile=profile, items=items)


def _gear_render(self: GearProxy, profile: dict[str, Any], content: dict[str, Any]) -> Any:
    return self._call("gear_render", profile=profile, content=content)


def _gear_install(self: GearProxy) -> Any:
    return self._call("gear_install")


def _gear_uninstall(self: GearProxy) -> Any:
    return self._call("gear_uninstall")


_METHODS = {f.__name__[1:]: f for f in (
    _gear_check, _gear_streams, _gear_read, _gear_write, _gear_on_event, _gear_score_items,
    _gear_render, _gear_install, _gear_uninstall)}


def make_proxy(runtime: Runtime, installation: str) -> GearProxy:
    """A plugin object implementing exactly the hooks the installation declares."""
    inst = runtime.installation(installation)
    attrs: dict[str, Any] = {}
    for hook in inst.manifest.hooks:
        base = _METHODS[hook]
        fn = types.FunctionType(base.__code__, base.__globals__, hook, base.__defaults__,
                                base.__closure__)
        attrs[hook] = hookimpl(fn)
    cls = type(f"GearProxy[{inst.gear}]", (GearProxy,), attrs)
    proxy: GearProxy = cls(runtime, installation, inst.gear)
    return proxy
