"""Profiles as gears see them, and how patches change them.

A gear sees a profile as plain JSON::

    {"user_id": "u1", "attributes": {...}, "traits": {...}, "events": [...]}

``events`` (the user's most recent events, oldest first) is only loaded
when some installation declares it reads them, because it is the expensive
part. The runtime cuts the document down to each gear's declared reads.

Patches may only touch ``attributes.…`` and ``traits.…``: the runtime has
already held them to the gear's declared write set and the value contract;
this module adds the engine's own rule that identity (``user_id``) and
history (``events``) are never writable, whatever a manifest declares, and
checks what only applying reveals: the document after the patch must still
meet the contract (an ``increment`` of 1e308 on 1e308 overflows to infinity)
and stay within :data:`MAX_PROFILE_BYTES`. Such a patch is refused whole as
the gear's ``invalid_result``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gears_sdk.types import ProfilePatch
from gears_sdk.values import DEFAULT_LIMITS, READ_LIMITS, ValueRejected, check_value
from marketplace.engine.models import Event, Profile

#: How many recent events a gear reading ``events`` receives.
RECENT_EVENTS = 200
WRITABLE_ROOTS = ("attributes", "traits")
#: Largest profile document (its attributes and traits, as JSON); a patch or a
#: connector record growing a profile past it is refused.
MAX_PROFILE_BYTES = 256 * 1024
#: The contract ``attributes`` and ``traits`` each meet after every change (sizes
#: apart: see :func:`check_profile`); as deep as stored data is repaired to on reading,
#: so a profile stored before the contract held never fails a later patch.
PROFILE_LIMITS = DEFAULT_LIMITS.with_(max_depth=READ_LIMITS.max_depth, max_bytes=2**62,
                                      max_string=MAX_PROFILE_BYTES, max_nodes=2**62)


class PatchError(ValueError):
    """A patch the engine refuses: ``patch_refused`` (a path outside attributes/traits,
    incrementing a non-number) or ``invalid_result`` (the result breaks the contract)."""

    def __init__(self, message: str, code: str = "patch_refused"):
        super().__init__(message)
        self.code = code


def check_profile(doc: dict[str, Any], before: dict[str, Any] | None = None) -> None:
    """Raise ``PatchError("invalid_result")`` when ``doc``'s attributes and traits break
    the value contract or are larger than :data:`MAX_PROFILE_BYTES` (unless ``before``,
    the document as it was, was already as large: a change never fails for old data)."""
    try:
        size = _size(doc)
    except ValueRejected as exc:
        raise PatchError(f"the profile would not be valid after this change ({exc.code} "
                         f"at {exc.path}): {exc.message}", "invalid_result") from None
    if size > MAX_PROFILE_BYTES:
        was = _size(before) if before is not None else 0
        if size > was:
            raise PatchError(f"the profile would grow to about {size} bytes; the limit is "
                             f"{MAX_PROFILE_BYTES}", "invalid_result")


def iso(ts: datetime) -> str:
    """``2024-03-10T12:00:00Z``: the one timestamp format on the wire."""
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def event_dict(row: Event) -> dict[str, Any]:
    """An event as gears and API clients see it."""
    out: dict[str, Any] = {"id": row.event_id, "user_id": row.user_id, "type": row.type,
                           "properties": row.properties or {}, "timestamp": iso(row.timestamp)}
    if row.name is not None:
        out["name"] = row.name
    return out


def profile_doc(row: Profile | None, user_id: str,
                events: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The JSON document of a profile (an empty one for an unknown user)."""
    doc: dict[str, Any] = {
        "user_id": user_id,
        "attributes": copy.deepcopy(row.attributes or {}) if row is not None else {},
        "traits": copy.deepcopy(row.traits or {}) if row is not None else {},
    }
    if events is not None:
        doc["events"] = events
    return doc


def recent_events(session: Session, workspace_id: int, user_id: str,
                  limit: int = RECENT_EVENTS) -> list[dict[str, Any]]:
    """The user's ``limit`` most recent events, oldest first."""
    rows = session.scalars(
        select(Event).where(Event.workspace_id == workspace_id, Event.user_id == user_id)
        .order_by(Event.timestamp.desc(), Event.id.desc()).limit(limit)).all()
    return [event_dict(r) for r in reversed(rows)]


def load_profiles(session: Session, workspace_id: int,
                  user_ids: Iterable[str]) -> dict[str, Profile]:
    """The existing profiles among ``user_ids``, by user id."""
    wanted = list(dict.fromkeys(user_ids))
    out: dict[str, Profile] = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start:start + 500]
        for row in session.scalars(select(Profile).where(
                Profile.workspace_id == workspace_id, Profile.user_id.in_(chunk))):
            out[row.user_id] = row
    return out


def _split(path: str) -> list[str]:
    parts = path.split(".")
    if len(parts) < 2 or parts[0] not in WRITABLE_ROOTS or not all(parts):
        raise PatchError(f"{path!r} is not writable: patches change attributes.… or traits.…")
    return parts


def _parent(doc: dict[str, Any], parts: list[str], create: bool) -> dict[str, Any] | None:
    node = doc
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            if not create:
                return None
            child = {}
            node[part] = child
        node = child
    return node


def _size(doc: dict[str, Any]) -> int:
    return sum(check_value(doc.get(k) or {}, PROFILE_LIMITS, f"$.{k}") for k in WRITABLE_ROOTS)


def apply_patch(doc: dict[str, Any], patch: ProfilePatch) -> bool:
    """Apply ``patch`` to the profile document in place; whether anything changed.

    A refused patch (:class:`PatchError`) leaves the document as it was: paths
    are checked before anything changes, and the result is checked (see
    :func:`check_profile`) before it is kept.
    """
    sets = [(_split(p), v) for p, v in patch.set.items()]
    unsets = [_split(p) for p in patch.unset]
    incs = [(_split(p), v) for p, v in patch.increment.items()]
    for parts, amount in incs:
        parent = _parent(doc, parts, create=False)
        current = parent.get(parts[-1], 0) if parent is not None else 0
        if not isinstance(current, (int, float)) or isinstance(current, bool):
            raise PatchError(f"cannot increment {'.'.join(parts)}: it holds a "
                             f"{type(current).__name__}, not a number")
        if not isinstance(amount, (int, float)) or isinstance(amount, bool):
            raise PatchError(f"increments must be numbers ({'.'.join(parts)})")
    before = copy.deepcopy({k: doc.get(k) for k in WRITABLE_ROOTS})
    for parts, value in sets:
        node = _parent(doc, parts, create=True)
        assert node is not None
        node[parts[-1]] = copy.deepcopy(value)
    for parts in unsets:
        node = _parent(doc, parts, create=False)
        if node is not None:
            node.pop(parts[-1], None)
    for parts, amount in incs:
        node = _parent(doc, parts, create=True)
        assert node is not None
        node[parts[-1]] = node.get(parts[-1], 0) + amount
    try:
        check_profile(doc, before)
    except PatchError:
        doc.update(before)
        raise
    return before != {k: doc.get(k) for k in WRITABLE_ROOTS}
