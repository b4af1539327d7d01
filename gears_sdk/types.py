"""The values hooks receive and return.

Hooks may return these dataclasses or plain ``dict``\\ s of the same shape
(handy in tests); the engine normalizes both through ``from_value``. Every type
has ``to_dict`` for the wire, and the wire format is plain JSON.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

JSON = Any
StreamKind = Literal["profiles", "items", "events"]


class _Wire:
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_value(cls, value: Any) -> Any:
        """Accept an instance, a dict of its fields, or ``None`` (returned as is)."""
        if value is None or isinstance(value, cls):
            return value
        if isinstance(value, dict):
            known = cls.__dataclass_fields__  # type: ignore[attr-defined]
            unknown = set(value) - set(known)
            if unknown:
                raise TypeError(f"{cls.__name__} has no field(s) {', '.join(sorted(unknown))}")
            return cls(**value)
        raise TypeError(f"expected {cls.__name__} or dict, got {type(value).__name__}")


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


@dataclass
class ItemScore(_Wire):
    """A score for one catalog item; higher ranks first."""

    item_id: str
    score: float
    reason: str | None = None


@dataclass
class RenderResult(_Wire):
    """What a template renders: HTML for the placement and/or structured data."""

    html: str | None = None
    data: dict[str, JSON] | None = None


@dataclass
class CheckResult(_Wire):
    """The outcome of a connector's connection test."""

    ok: bool
    message: str = ""
    details: dict[str, JSON] = field(default_factory=dict)


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


@dataclass
class WriteResult(_Wire):
    """The outcome of pushing records to a destination."""

    written: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
