"""Data permissions around a hook call: what a gear may see and change.

The rules themselves live in :mod:`gears_sdk.permissions`, shared with
:mod:`gears_sdk.testing` so a gear author meets the same refusals in unit
tests; this module applies them to the arguments the engine passes and to
the values a worker returns (which are untrusted JSON until normalized).
"""

from __future__ import annotations

from typing import Any

from gears_sdk.manifest import Manifest
from gears_sdk.permissions import (
    filter_event,
    filter_items,
    filter_profile,
    host_allowed,
    patch_violations,
)
from gears_sdk.types import (
    CheckResult,
    ItemScore,
    ProfilePatch,
    RecordBatch,
    RenderResult,
    StreamInfo,
    WriteResult,
)

__all__ = ["filter_arguments", "host_allowed", "normalize_result", "patch_violations"]

#: The type each hook returns; hooks returning a list of them are in _LISTS.
RESULT_TYPES: dict[str, Any] = {
    "gear_check": CheckResult,
    "gear_streams": StreamInfo,
    "gear_read": RecordBatch,
    "gear_write": WriteResult,
    "gear_on_event": ProfilePatch,
    "gear_score_items": ItemScore,
    "gear_render": RenderResult,
}
_LISTS = frozenset({"gear_streams", "gear_score_items"})


class ResultRefused(ValueError):
    """A result the runtime does not accept; ``code`` is ``invalid_result`` or ``patch_refused``."""

    def __init__(self, message: str, code: str):
        super().__init__(message)
        self.code = code


def filter_arguments(manifest: Manifest, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` cut down to what the manifest declares it reads.

    ``profile`` keeps the fields of ``permissions.profile.read``; event
    properties (the ``event`` argument and the profile's ``events``) the names
    of ``permissions.events.read``; catalog items (``items``, and a template
    content's ``items``) their ``id`` and the fields of
    ``permissions.catalog.read``.
    """
    perms = manifest.permissions
    out = dict(kwargs)
    if isinstance(out.get("profile"), dict):
        out["profile"] = filter_profile(out["profile"], perms.profile.read, perms.events.read)
    if "event" in out:
        out["event"] = filter_event(out["event"], perms.events.read)
    if "items" in out:
        out["items"] = filter_items(out["items"], perms.catalog.read)
    content = out.get("content")
    if isinstance(content, dict) and isinstance(content.get("items"), list):
        out["content"] = {**content, "items": filter_items(content["items"], perms.catalog.read)}
    return out


def normalize_result(manifest: Manifest, hook: str, value: Any) -> Any:
    """Type a worker's raw result for ``hook`` and enforce ``profile.write``.

    Raises :class:`ResultRefused`. ``None`` passes through: each hook's
    docstring says what "no result" means.
    """
    cls = RESULT_TYPES.get(hook)
    if cls is None or value is None:
        return None if cls is None else value
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
        _check_patch_shape(hook, typed)
        write = manifest.permissions.profile.write
        bad = patch_violations(typed.paths(), write)
        if bad:
            raise ResultRefused(
                f"{hook} returned a patch touching {', '.join(sorted(bad))}, outside "
                f"permissions.profile.write (declared: {', '.join(write) or 'none'}); "
                "the whole patch was refused", "patch_refused")
    return typed


def _check_patch_shape(hook: str, patch: ProfilePatch) -> None:
    ok = (isinstance(patch.set, dict) and isinstance(patch.unset, list)
          and isinstance(patch.increment, dict)
          and all(isinstance(p, str) for p in patch.unset)
          and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                  for v in patch.increment.values()))
    if not ok:
        raise ResultRefused(f"{hook} returned a malformed ProfilePatch (set and increment must "
                            "be objects, unset a list of paths, increments numbers)",
                            "invalid_result")
