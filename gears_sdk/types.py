"""The values hooks receive and return.

Hooks may return these dataclasses or plain ``dict``\\ s of the same shape
(handy in tests); the engine normalizes both through ``from_value``, which
also holds every field to its declared type (an ``item_id`` is a string, a
``score`` a finite number, a stream ``name`` a valid stream name...) and
raises ``TypeError`` otherwise. Every type has ``to_dict`` for the wire, and
the wire format is plain JSON.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

JSON = Any
StreamKind = Literal["profiles", "items", "events"]

#: A stream's name: what cursors, runs and exports are keyed by.
STREAM_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:/-]{0,99}")
#: Longest profile field path a patch may name.
MAX_PATH = 256
#: Longest catalog item id.
MAX_ITEM_ID = 200


def _need(ok: bool, cls: type, name: str, what: str, value: Any) -> None:
    if not ok:
        raise TypeError(f"{cls.__name__}.{name} must be {what}, got {_kind(value)}")


def _kind(value: Any) -> str:
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    return type(value).__name__


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and (not isinstance(value, float) or math.isfinite(value)))


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_path(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_PATH


def _str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


class _Wire:
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_value(cls, value: Any) -> Any:
        """Accept an instance, a dict of its fields, or ``None`` (returned as is);
        ``TypeError`` when a field does not hold its declared type."""
        if value is None:
            return value
        if isinstance(value, cls):
            value.check()
            return value
        if isinstance(value, dict):
            known = cls.__dataclass_fields__  # type: ignore[attr-defined]
            unknown = set(value) - set(known)
            if unknown:
                raise TypeError(f"{cls.__name__} has no field(s) {', '.join(sorted(unknown))}")
            typed = cls(**value)
            typed.check()
            return typed
        raise TypeError(f"expected {cls.__name__} or dict, got {type(value).__name__}")

    def check(self) -> None:
        """Raise ``TypeError`` when a field does not hold what its type declares."""


@dataclass
class ProfilePatch(_Wire):
    """Changes an extension asks for on a profile.

    ``set`` maps dotted field paths (``traits.rfm``) to new values; ``unset``
    lists paths to remove; ``increment`` adds numbers to numeric fields. Every
    path must be within the manifest's ``permissions.profile.write`` or the
    whole patch is refused.
    """

    set: dict[str, JSON] = field(default_factory=dict)
    unset: list[str] = field(default_factory=list)
    increment: dict[str, float] = field(default_factory=dict)

    def paths(self) -> list[str]:
        """Every field path the patch touches."""
        return [*self.set, *self.unset, *self.increment]

    def is_empty(self) -> bool:
        return not (self.set or self.unset or self.increment)

    def check(self) -> None:
        cls = type(self)
        _need(isinstance(self.set, dict) and all(map(_is_path, self.set)), cls, "set",
              f"an object keyed by field paths (at most {MAX_PATH} characters)", self.set)
        _need(isinstance(self.unset, list) and all(map(_is_path, self.unset)), cls, "unset",
              "a list of field paths", self.unset)
        _need(isinstance(self.increment, dict) and all(map(_is_path, self.increment))
              and all(map(_is_number, self.increment.values())), cls, "increment",
              "an object of field paths to finite numbers", self.increment)


@dataclass
class ItemScore(_Wire):
    """A score for one catalog item; higher ranks first."""

    item_id: str
    score: float
    reason: str | None = None

    def check(self) -> None:
        cls = type(self)
        _need(isinstance(self.item_id, str) and 0 < len(self.item_id) <= MAX_ITEM_ID, cls,
              "item_id", f"a string of 1 to {MAX_ITEM_ID} characters", self.item_id)
        _need(_is_number(self.score), cls, "score", "a finite number", self.score)
        _need(self.reason is None or isinstance(self.reason, str), cls, "reason",
              "a string or null", self.reason)


@dataclass
class RenderResult(_Wire):
    """What a template renders: HTML for the placement and/or structured data."""

    html: str | None = None
    data: dict[str, JSON] | None = None

    def check(self) -> None:
        cls = type(self)
        _need(self.html is None or isinstance(self.html, str), cls, "html",
              "a string or null", self.html)
        _need(self.data is None or isinstance(self.data, dict), cls, "data",
              "an object or null", self.data)


@dataclass
class CheckResult(_Wire):
    """The outcome of a connector's connection test."""

    ok: bool
    message: str = ""
    details: dict[str, JSON] = field(default_factory=dict)

    def check(self) -> None:
        cls = type(self)
        _need(isinstance(self.ok, bool), cls, "ok", "true or false", self.ok)
        _need(isinstance(self.message, str), cls, "message", "a string", self.message)
        _need(isinstance(self.details, dict), cls, "details", "an object", self.details)


@dataclass
class StreamInfo(_Wire):
    """A stream a connector can read or write.

    ``kind`` says what its records become in the engine: ``profiles``
    (``{"user_id", "attributes", "traits"}``), ``items`` (``{"id", ...}``) or
    ``events`` (``{"user_id", "type", ...}``).
    """

    name: str
    kind: StreamKind
    description: str = ""
    incremental: bool = True

    def check(self) -> None:
        cls = type(self)
        _need(isinstance(self.name, str) and STREAM_NAME.fullmatch(self.name) is not None,
              cls, "name", "a stream name (letters, digits, _ . : / -; at most 100)",
              self.name)
        _need(self.kind in get_args(StreamKind), cls, "kind",
              "one of " + ", ".join(get_args(StreamKind)), self.kind)
        _need(isinstance(self.description, str), cls, "description", "a string",
              self.description)
        _need(isinstance(self.incremental, bool), cls, "incremental", "true or false",
              self.incremental)


@dataclass
class RecordBatch(_Wire):
    """One page of records read from a stream.

    ``cursor`` is opaque to the engine: it is stored after the batch is applied
    and given back on the next read. ``has_more`` asks the engine to call again
    right away.
    """

    records: list[dict[str, JSON]] = field(default_factory=list)
    cursor: JSON = None
    has_more: bool = False

    def check(self) -> None:
        cls = type(self)
        _need(isinstance(self.records, list) and all(isinstance(r, dict) for r in self.records),
              cls, "records", "a list of objects", self.records)
        _need(isinstance(self.has_more, bool), cls, "has_more", "true or false", self.has_more)


@dataclass
class WriteResult(_Wire):
    """The outcome of pushing records to a destination."""

    written: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    def check(self) -> None:
        cls = type(self)
        _need(_is_count(self.written), cls, "written", "a whole number", self.written)
        _need(_is_count(self.failed), cls, "failed", "a whole number", self.failed)
        _need(_str_list(self.errors), cls, "errors", "a list of strings", self.errors)
