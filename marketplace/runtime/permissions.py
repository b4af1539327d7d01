"""Data permissions around a hook call: what a gear may see and change.

The rules themselves live in :mod:`gears_sdk.permissions`, shared with
:mod:`gears_sdk.testing` so a gear author meets the same refusals in unit
tests; this module applies them to the arguments the engine passes and to
the values a worker returns (which are untrusted JSON until normalized).

A worker's result is held, before anything else looks at it, to the value
contract of :mod:`gears_sdk.values` (JSON types, finite numbers, bounded
depth and size, valid Unicode), then to its hook's type (``from_value``); a
violation is the installation's ``invalid_result``.
"""

from __future__ import annotations

from typing import Any

from gears_sdk.hookspecs import HOOKS
from gears_sdk.manifest import Manifest
from gears_sdk.permissions import filter_arguments as sdk_filter_arguments
from gears_sdk.permissions import host_allowed, patch_violations
from gears_sdk.types import ProfilePatch
from gears_sdk.values import DEFAULT_LIMITS, ValueLimits, ValueRejected, check_value
from gears_sdk.worker.protocol import MAX_MESSAGE_BYTES

__all__ = ["filter_arguments", "host_allowed", "normalize_result", "patch_violations"]

#: The type each hook returns (from :data:`gears_sdk.hookspecs.HOOKS`); hooks returning
#: a list of them are in _LISTS.
RESULT_TYPES: dict[str, Any] = {name: h.result for name, h in HOOKS.items() if h.result}
_LISTS = frozenset(name for name, h in HOOKS.items() if h.many)
#: What any result may be; a page of connector records may fill a whole message.
RESULT_LIMITS = DEFAULT_LIMITS
_HOOK_LIMITS: dict[str, ValueLimits] = {
    "gear_read": DEFAULT_LIMITS.with_(max_bytes=MAX_MESSAGE_BYTES, max_nodes=500_000),
}


class ResultRefused(ValueError):
    """A result the runtime does not accept; ``code`` is ``invalid_result`` or ``patch_refused``."""

    def __init__(self, message: str, code: str):
        super().__init__(message)
        self.code = code


def filter_arguments(manifest: Manifest, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` cut down to what the manifest declares it reads
    (:func:`gears_sdk.permissions.filter_arguments`, by argument name)."""
    return sdk_filter_arguments(manifest.permissions, kwargs)


def normalize_result(manifest: Manifest, hook: str, value: Any) -> Any:
    """Check, type a worker's raw result for ``hook`` and enforce ``profile.write``.

    Raises :class:`ResultRefused`. ``None`` passes through: each hook's
    docstring says what "no result" means.
    """
    cls = RESULT_TYPES.get(hook)
    if cls is None or value is None:
        return None if cls is None else value
    try:
        check_value(value, _HOOK_LIMITS.get(hook, RESULT_LIMITS))
    except ValueRejected as exc:
        raise ResultRefused(f"{hook} returned an invalid value ({exc.code}) at {exc.path}: "
                            f"{exc.message}", "invalid_result") from None
    try:
        if hook in _LISTS:
            if not isinstance(value, list):
                raise TypeError(f"expected a list, got {type(value).__name__}")
            typed: Any = [cls.from_value(v) for v in value]
        else:
            typed = cls.from_value(value)
    except TypeError as exc:
        raise ResultRefused(f"{hook} returned an invalid {cls.__name__}: {exc}",
                            "invalid_result") from None
    if isinstance(typed, ProfilePatch):
        write = manifest.permissions.profile.write
        bad = patch_violations(typed.paths(), write)
        if bad:
            raise ResultRefused(
                f"{hook} returned a patch touching {', '.join(sorted(bad))}, outside "
                f"permissions.profile.write (declared: {', '.join(write) or 'none'}); "
                "the whole patch was refused", "patch_refused")
    return typed

