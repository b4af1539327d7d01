"""The proxy plugin: one per installation, registered in the engine's PluginManager.

The engine calls ``pm.hook.gear_on_event(event=..., profile=..., config=None,
ctx=None)`` and pluggy fans out to every registered proxy as usual. Each
proxy implements only the hooks its manifest declares (forwarders generated
from the hookspecs), substitutes its
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

What the caller does with a failure depends on the hook's ``policy`` in
:data:`gears_sdk.hookspecs.HOOKS` (:data:`HOOK_POLICY`):

``notify``
    log and skip — the event is applied without that gear's patch, items
    keep the engine's order.
``decide``
    the caller must look at the failure and fall back (default experience,
    "connection failed", sync aborted with the cursor unchanged, install
    aborted) — :meth:`GearFailure.raise_` turns it back into the exception.

Engine code hands a call's results to :func:`settle`, which applies the policy
the table gives: the successes come back, a ``decide`` failure raises
:class:`HookDeclined`.

:meth:`GearProxy.call_batch` makes the same calls for a list of arguments in
one exchange with the worker (the engine uses it for ``gear_on_event``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gears_sdk import hookspecs
from gears_sdk.hookspecs import hookimpl, spec_arguments
from marketplace.runtime.errors import GearCallError

if TYPE_CHECKING:
    from marketplace.runtime.runtime import Runtime

#: What a caller does with a hook's failure (from :data:`gears_sdk.hookspecs.HOOKS`).
HOOK_POLICY: dict[str, str] = {name: h.policy for name, h in hookspecs.HOOKS.items()}


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


class HookDeclined(Exception):
    """A hook whose policy is ``decide`` failed: the caller falls back."""

    def __init__(self, failure: GearFailure):
        super().__init__(str(failure.error))
        self.failure = failure


def settle(hook: str, results: Iterable[GearResult | GearFailure]) -> list[GearResult]:
    """The successes of a call of ``hook``, its failures handled by the hook's policy in
    :data:`gears_sdk.hookspecs.HOOKS`: under ``notify`` they are skipped (the runtime has
    counted and logged them; the caller reports them with the rest), under ``decide``
    the first one raises :class:`HookDeclined` for the caller to fall back."""
    results = list(results)
    if HOOK_POLICY[hook] == "decide":
        for r in results:
            if isinstance(r, GearFailure):
                raise HookDeclined(r)
    return successes(results)


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


def _forwarder(proxy: GearProxy, hook: str) -> Any:
    """A function implementing ``hook`` for ``proxy``: it forwards to the proxy's worker.

    pluggy reads an implementation's argument names from its code, after
    following ``__wrapped__``; wrapping the hookspec itself gives the forwarder
    exactly the spec's arguments, positionally. ``config`` and ``ctx`` are
    dropped: the runtime supplies the installation's own.
    """
    names = spec_arguments(hook)

    def forward(*args: Any) -> GearResult | GearFailure:
        kwargs = {n: v for n, v in zip(names, args, strict=True) if n not in _OWN}
        return proxy._call(hook, **kwargs)

    forward.__name__ = forward.__qualname__ = hook
    forward.__wrapped__ = getattr(hookspecs, hook)  # type: ignore[attr-defined]
    return hookimpl(forward)


_OWN = frozenset({"config", "ctx"})


def make_proxy(runtime: Runtime, installation: str) -> GearProxy:
    """A plugin object implementing exactly the hooks the installation declares."""
    inst = runtime.installation(installation)
    proxy = GearProxy(runtime, installation, inst.gear)
    for hook in inst.manifest.hooks:
        setattr(proxy, hook, _forwarder(proxy, hook))
    return proxy
