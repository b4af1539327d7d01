"""The one contract for JSON values that cross a trust boundary.

Everything that enters the engine or the registry from outside — a gear's
result, a connector's records and cursors, a worker's service request, a
request body, an installation config, a row stored before a fix — is checked
here, once, before it is stored or answered:

* only JSON types: ``dict`` with ``str`` keys, ``list``, ``str``, ``int``,
  ``float``, ``bool``, ``None`` (tuples, sets, bytes... are refused);
* finite numbers only (no NaN or infinity), integers within 64 bits;
* bounded nesting depth, string and key length, number of nodes and size;
* valid Unicode: no lone surrogates, and no NUL character (PostgreSQL cannot
  store it in ``jsonb`` or ``text``, so SQLite and PostgreSQL behave alike).

The walk is iterative, so a value nested 100,000 levels deep costs a bounded
amount of work and never a ``RecursionError``. :func:`parse_json` applies the
same contract to raw JSON text, checking its depth *before* ``json.loads``
recurses into it.

A violation raises :class:`ValueRejected` with a stable ``code`` and the JSON
path of the first offending value (``$.set["traits.x"]``). Callers decide whom
to blame: a gear's result becomes that installation's counted
``invalid_result``; a request body becomes a 400/422 with the path.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

#: Largest integer magnitude accepted (signed 64 bits, what databases store).
MAX_INT = 2**63 - 1


@dataclass(frozen=True)
class ValueLimits:
    """Bounds for one value; :func:`with_` derives variants."""

    max_depth: int = 32
    max_bytes: int = 1024 * 1024
    max_string: int = 256 * 1024
    max_key: int = 256
    max_nodes: int = 100_000

    def with_(self, **changes: int) -> ValueLimits:
        return replace(self, **changes)


#: Defaults for values a gear returns and a client sends.
DEFAULT_LIMITS = ValueLimits()


class ValueRejected(ValueError):
    """A value that breaks the contract: ``code``, ``path`` and a sentence."""

    def __init__(self, code: str, path: str, message: str):
        super().__init__(f"{path}: {message}")
        self.code = code
        self.path = path
        self.message = message


def _key_path(path: str, key: str) -> str:
    if key.isidentifier():
        return f"{path}.{key}"
    return f"{path}[{json.dumps(key, ensure_ascii=True)}]"


def _check_text(text: str, path: str, limit: int, what: str) -> int:
    if len(text) > limit:
        raise ValueRejected("too_long", path, f"{what} is {len(text)} characters long; "
                            f"the limit is {limit}")
    if "\x00" in text:
        raise ValueRejected("invalid_unicode", path, f"{what} contains a NUL character")
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueRejected("invalid_unicode", path,
                            f"{what} is not valid Unicode (a lone surrogate)") from None


def check_value(value: Any, limits: ValueLimits = DEFAULT_LIMITS, path: str = "$") -> int:
    """Check ``value`` against the contract; return its approximate JSON size in bytes.

    Raises :class:`ValueRejected` at the first violation.
    """
    size = 0
    nodes = 0
    stack: list[tuple[Any, str, int]] = [(value, path, 0)]
    while stack:
        item, where, depth = stack.pop()
        nodes += 1
        if nodes > limits.max_nodes:
            raise ValueRejected("too_large", path,
                                f"more than {limits.max_nodes} values in one document")
        if item is None or isinstance(item, bool):
            size += 5
        elif isinstance(item, int):
            if not -MAX_INT <= item <= MAX_INT:
                raise ValueRejected("out_of_range", where, "integer outside 64 bits")
            size += 20
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise ValueRejected("not_finite", where,
                                    "numbers must be finite (no NaN or infinity)")
            size += 24
        elif isinstance(item, str):
            size += _check_text(item, where, limits.max_string, "a string") + 2
        elif isinstance(item, (dict, list)):
            if depth >= limits.max_depth:
                raise ValueRejected("too_deep", where,
                                    f"nested more than {limits.max_depth} levels deep")
            size += 2
            if isinstance(item, dict):
                for key, child in item.items():
                    if not isinstance(key, str):
                        raise ValueRejected("invalid_type", where, "object keys must be strings")
                    child_path = _key_path(where, key)
                    size += _check_text(key, child_path, limits.max_key, "a key") + 3
                    stack.append((child, child_path, depth + 1))
            else:
                for i, child in enumerate(item):
                    size += 1
                    stack.append((child, f"{where}[{i}]", depth + 1))
        else:
            raise ValueRejected("invalid_type", where,
                                f"{type(item).__name__} is not a JSON value")
        if size > limits.max_bytes:
            raise ValueRejected("too_large", path,
                                f"larger than {limits.max_bytes} bytes as JSON")
    return size


def is_valid(value: Any, limits: ValueLimits = DEFAULT_LIMITS) -> bool:
    """Whether ``value`` meets the contract (for reading back stored data defensively)."""
    try:
        check_value(value, limits)
    except ValueRejected:
        return False
    return True


def _brackets(text: str) -> Iterator[tuple[int, str]]:
    """``(index, bracket)`` for each ``[{]}`` of JSON ``text`` outside its strings."""
    in_string = escaped = False
    for i, ch in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{]}":
            yield i, ch


def text_depth(text: str | bytes) -> int:
    """The deepest bracket nesting of JSON ``text``, in one linear pass (strings skipped)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    depth = deepest = 0
    for _, ch in _brackets(text):
        depth += 1 if ch in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def _constant(name: str) -> float:
    # ``NaN``/``Infinity`` (not JSON) and ``1e400`` (out of range) parse to non-finite
    # floats that :func:`check_value` then refuses with their path (``$.items[3].price``).
    return float(name)


def parse_json(text: str | bytes, limits: ValueLimits = DEFAULT_LIMITS) -> Any:
    """Parse JSON ``text`` under the contract; :class:`ValueRejected` when it breaks it.

    Malformed JSON is ``code="invalid_json"``. The depth is checked before
    parsing, so deeply nested input never reaches the recursive parser. Every
    other violation (``NaN``, ``1e400``, a lone surrogate) names its path.
    """
    if len(text) > limits.max_bytes:
        raise ValueRejected("too_large", "$", f"larger than {limits.max_bytes} bytes")
    if text_depth(text) > limits.max_depth:
        raise ValueRejected("too_deep", "$", f"nested more than {limits.max_depth} levels deep")
    try:
        value = json.loads(text, parse_constant=_constant)
    except (ValueError, RecursionError) as exc:
        raise ValueRejected("invalid_json", "$", f"not valid JSON: {exc}") from None
    check_value(value, limits)
    return value


def dumps_checked(value: Any, limits: ValueLimits = DEFAULT_LIMITS) -> str:
    """``value`` as compact JSON after :func:`check_value` (never ``Infinity``)."""
    check_value(value, limits)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


# -- reading back what was stored before the contract held -------------------------------

#: Bounds for repairing stored JSON: deeper than anything a writer accepts today, well
#: within what the recursive parser, ``copy.deepcopy`` and the encoders handle.
READ_LIMITS = ValueLimits(max_depth=100, max_bytes=2**62, max_string=2**62, max_key=2**62,
                          max_nodes=2**62)


_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(text: Any, limit: int | None = None) -> str:
    """``text`` as a string that is valid Unicode without NUL (lone surrogates become U+FFFD),
    cut to ``limit`` characters: for messages a gear wrote that end up stored or answered."""
    text = text if isinstance(text, str) else str(text)
    if limit is not None:
        text = text[:limit]
    if "\x00" in text:
        text = text.replace("\x00", "")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = _SURROGATE.sub("\ufffd", text)
    return text


def finite_or_none(number: Any) -> float | int | None:
    """A stored number as is when it is finite, else ``None`` (a float column holding ``inf``)."""
    if isinstance(number, bool) or not isinstance(number, (int, float)):
        return None
    if isinstance(number, float) and not math.isfinite(number):
        return None
    return number


def repair(value: Any, limits: ValueLimits = READ_LIMITS) -> Any:
    """A copy of ``value`` that meets the contract's types, numbers, depth and Unicode.

    For data stored before the contract was enforced, so reading it back never fails:
    non-finite numbers, integers outside 64 bits, values nested deeper than
    ``limits.max_depth`` and non-JSON types become ``None``; strings and keys lose NUL
    characters and have lone surrogates replaced. Sizes are not cut. Iterative.
    """
    root: list[Any] = [None]
    stack: list[tuple[Any, Any, Any, int]] = [(value, root, 0, 0)]
    while stack:
        item, parent, slot, depth = stack.pop()
        out: Any
        if item is None or isinstance(item, (bool, str)):
            out = clean_text(item) if isinstance(item, str) else item
        elif isinstance(item, int):
            out = item if -MAX_INT <= item <= MAX_INT else None
        elif isinstance(item, float):
            out = item if math.isfinite(item) else None
        elif isinstance(item, (dict, list)) and depth < limits.max_depth:
            if isinstance(item, dict):
                out = {}
                for key, child in item.items():
                    name = clean_text(key)
                    out[name] = None
                    stack.append((child, out, name, depth + 1))
            else:
                out = [None] * len(item)
                for i, child in enumerate(item):
                    stack.append((child, out, i, depth + 1))
        else:
            out = None
        parent[slot] = out
    return root[0]


def clip_depth(text: str, max_depth: int) -> str:
    """JSON ``text`` with every container nested deeper than ``max_depth`` replaced by
    ``null``, in one linear pass (strings skipped), so the recursive parser never sees it."""
    out: list[str] = []
    depth = 0
    skip_from = -1  # depth at which a skipped container began
    start = 0
    for i, ch in _brackets(text):
        if ch in "[{":
            depth += 1
            if skip_from < 0 and depth > max_depth:
                out.append(text[start:i])
                out.append("null")
                skip_from = depth
        else:
            if skip_from == depth:
                skip_from = -1
                start = i + 1
            depth -= 1
    if skip_from < 0:
        out.append(text[start:])
    return "".join(out)


def _none_constant(_name: str) -> None:
    return None


def _float_or_none(text: str) -> float | None:
    number = float(text)
    return number if math.isfinite(number) else None


def loads_stored(text: str | bytes) -> Any:
    """Parse JSON read back from the database, repaired (see :func:`repair`).

    ``Infinity``/``NaN`` (which SQLite kept as text) and overflowing numbers become
    ``null``; text too deep for the recursive parser is clipped first. Used as the
    database engine's JSON deserializer, so every JSON column is read this way.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    try:
        value = json.loads(text, parse_constant=_none_constant, parse_float=_float_or_none)
    except RecursionError:
        value = json.loads(clip_depth(text, READ_LIMITS.max_depth),
                           parse_constant=_none_constant, parse_float=_float_or_none)
    return repair(value)


def dumps_stored(value: Any) -> str:
    """JSON for a database column; refuses ``NaN``/``Infinity`` (PostgreSQL would too), so
    SQLite never keeps what PostgreSQL cannot."""
    return json.dumps(value, allow_nan=False)
