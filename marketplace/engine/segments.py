"""The segment rule language: validation with JSON paths, and evaluation.

A rule is JSON, so the pages, the API and tests write it the same way::

    {"and": [
        {"field": "traits.rfm.segment", "op": "in", "value": ["champion", "loyal"]},
        {"not": {"field": "attributes.country", "op": "==", "value": "FR"}},
        {"event": "purchase", "at_least": 2, "within_days": 30},
        {"event": "custom", "name": "signup", "within_days": 7}
    ]}

* ``and`` / ``or`` take a non-empty list of rules, ``not`` one rule;
* a comparison names a ``field`` (``attributes.…``, ``traits.…`` or
  ``user_id``), an ``op`` and, except for ``exists``, a ``value``:
  ``== != < <= > >= in contains exists``. ``in`` wants a list; ``contains``
  matches an element of a list field or a substring of a string field;
  ``exists`` takes an optional boolean ``value`` (default ``true``);
* an event condition holds when the user did ``event`` (a type, and the
  ``name`` of a ``custom`` event) at least ``at_least`` times (default 1) in
  the last ``within_days`` days.

Missing fields never raise: they make every comparison false except ``!=``
(true) and ``exists: false`` (true). Ordering across types (a string ``<`` a
number) is false rather than an error, because profiles are schemaless and
one odd value must not break a decision.

Rules are checked on save (:func:`validate_rule`), every problem reported
with its path (``$.rule.and[2].op``), so they never fail at decision time.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gears_sdk.errors import ProblemDetail
from gears_sdk.permissions import EVENT_TYPES
from marketplace.engine_service import OPERATORS as OPERATORS

FIELD_ROOTS = ("attributes", "traits")
MAX_DEPTH = 16
MAX_NODES = 200
MAX_WINDOW_DAYS = 3650



@dataclass(frozen=True)
class EventCondition:
    """``type``/``name`` done at least ``at_least`` times in ``within_days`` days."""

    type: str
    name: str | None
    at_least: int
    within_days: int

    @property
    def key(self) -> tuple[str, str | None, int]:
        """What a count depends on (the threshold does not)."""
        return (self.type, self.name, self.within_days)


# -- validation ---------------------------------------------------------------------------


class _Checker:
    def __init__(self) -> None:
        self.problems: list[ProblemDetail] = []
        self.nodes = 0

    def add(self, path: str, message: str, code: str = "invalid_rule") -> None:
        self.problems.append({"path": path, "message": message, "code": code})

    def check(self, rule: Any, path: str, depth: int) -> None:
        self.nodes += 1
        if self.nodes == MAX_NODES + 1:
            self.add(path, f"a rule may have at most {MAX_NODES} conditions", "too_large")
        if depth > MAX_DEPTH:
            self.add(path, f"rules may nest at most {MAX_DEPTH} levels deep", "too_deep")
            return
        if not isinstance(rule, dict):
            self.add(path, "a rule must be an object")
            return
        kinds = [k for k in ("and", "or", "not", "field", "event") if k in rule]
        if len(kinds) != 1:
            self.add(path, "a rule has exactly one of 'and', 'or', 'not', 'field' or 'event'"
                     + (f" (found {', '.join(kinds)})" if kinds else ""))
            return
        {"and": self._group, "or": self._group, "not": self._not, "field": self._compare,
         "event": self._event}[kinds[0]](rule, path, depth, kinds[0])

    def _unknown(self, rule: dict[str, Any], path: str, allowed: set[str]) -> None:
        for key in sorted(set(rule) - allowed):
            self.add(f"{path}.{key}", f"unknown key {key!r}")

    def _group(self, rule: dict[str, Any], path: str, depth: int, kind: str) -> None:
        self._unknown(rule, path, {kind})
        items = rule[kind]
        if not isinstance(items, list) or not items:
            self.add(f"{path}.{kind}", f"'{kind}' takes a non-empty list of rules")
            return
        for i, sub in enumerate(items):
            self.check(sub, f"{path}.{kind}[{i}]", depth + 1)

    def _not(self, rule: dict[str, Any], path: str, depth: int, _kind: str) -> None:
        self._unknown(rule, path, {"not"})
        self.check(rule["not"], f"{path}.not", depth + 1)

    def _compare(self, rule: dict[str, Any], path: str, _depth: int, _kind: str) -> None:
        self._unknown(rule, path, {"field", "op", "value"})
        field = rule["field"]
        if not isinstance(field, str) or not _valid_field(field):
            self.add(f"{path}.field", "'field' is user_id or a dotted path under attributes "
                     "or traits, such as traits.rfm.segment")
        op = rule.get("op")
        if op not in OPERATORS:
            self.add(f"{path}.op", f"'op' must be one of {', '.join(OPERATORS)}"
                     + ("" if "op" in rule else " (it is missing)"))
            return
        if op == "exists":
            if "value" in rule and not isinstance(rule["value"], bool):
                self.add(f"{path}.value", "'exists' takes an optional boolean value")
            return
        if "value" not in rule:
            self.add(f"{path}.value", f"'{op}' needs a value")
        elif op == "in" and not isinstance(rule["value"], list):
            self.add(f"{path}.value", "'in' needs a list of values")
        elif op in ("<", "<=", ">", ">=") and not _orderable(rule["value"]):
            self.add(f"{path}.value", f"'{op}' compares numbers or strings")

    def _event(self, rule: dict[str, Any], path: str, _depth: int, _kind: str) -> None:
        self._unknown(rule, path, {"event", "name", "at_least", "within_days"})
        if rule["event"] not in EVENT_TYPES:
            self.add(f"{path}.event", f"'event' must be one of {', '.join(EVENT_TYPES)}")
        name = rule.get("name")
        if rule["event"] == "custom" and (not isinstance(name, str) or not name):
            self.add(f"{path}.name", "a custom event condition needs the event's 'name'")
        elif "name" in rule and rule["event"] != "custom":
            self.add(f"{path}.name", "only custom events have a 'name'")
        at_least = rule.get("at_least", 1)
        if not _int(at_least) or at_least < 1:
            self.add(f"{path}.at_least", "'at_least' must be a whole number of at least 1")
        days = rule.get("within_days")
        if not isinstance(days, int) or isinstance(days, bool) \
                or not 1 <= days <= MAX_WINDOW_DAYS:
            self.add(f"{path}.within_days", f"'within_days' must be a whole number from 1 to "
                     f"{MAX_WINDOW_DAYS}" + ("" if "within_days" in rule else " (it is missing)"))


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _orderable(value: Any) -> bool:
    return isinstance(value, (int, float, str)) and not isinstance(value, bool)


def _valid_field(field: str) -> bool:
    if field == "user_id":
        return True
    parts = field.split(".")
    return len(parts) >= 2 and parts[0] in FIELD_ROOTS and all(parts)


def validate_rule(rule: Any, path: str = "$.rule") -> list[ProblemDetail]:
    """Every problem in ``rule``, each ``{"path", "message", "code"}``; empty when valid."""
    checker = _Checker()
    checker.check(rule, path, 0)
    return checker.problems


# -- evaluation ---------------------------------------------------------------------------

_MISSING = object()


def lookup(profile: dict[str, Any], field: str) -> Any:
    """The value at dotted ``field`` in ``profile``, or a private "missing" marker."""
    value: Any = profile
    for part in field.split("."):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _ordered(op: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def compare(a: Any, b: Any) -> bool:
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a, b))
        if numbers or (isinstance(a, str) and isinstance(b, str)):
            return op(a, b)
        return False

    return compare


def _contains(a: Any, b: Any) -> bool:
    if isinstance(a, list):
        return b in a
    if isinstance(a, str) and isinstance(b, str):
        return b in a
    return False


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq, "!=": operator.ne,
    "<": _ordered(operator.lt), "<=": _ordered(operator.le),
    ">": _ordered(operator.gt), ">=": _ordered(operator.ge),
    "in": lambda a, b: isinstance(b, list) and a in b,
    "contains": _contains,
}

EventCounter = Callable[[EventCondition], int]


def event_condition(rule: dict[str, Any]) -> EventCondition:
    """The :class:`EventCondition` of a (valid) event rule."""
    return EventCondition(rule["event"], rule.get("name"), int(rule.get("at_least", 1)),
                          int(rule["within_days"]))


def event_conditions(rule: Any) -> list[EventCondition]:
    """Every event condition in ``rule``, so their counts can be fetched in one go."""
    if not isinstance(rule, dict):
        return []
    if "event" in rule:
        return [event_condition(rule)]
    if "not" in rule:
        return event_conditions(rule["not"])
    out: list[EventCondition] = []
    for key in ("and", "or"):
        for sub in rule.get(key) or []:
            out.extend(event_conditions(sub))
    return out


def matches(rule: dict[str, Any], profile: dict[str, Any], count_events: EventCounter) -> bool:
    """Whether ``profile`` (``{"user_id", "attributes", "traits"}``) satisfies ``rule``.

    ``count_events`` answers event conditions; it is only called for the
    conditions the evaluation reaches (``and``/``or`` short-circuit).
    """
    if "and" in rule:
        return all(matches(sub, profile, count_events) for sub in rule["and"])
    if "or" in rule:
        return any(matches(sub, profile, count_events) for sub in rule["or"])
    if "not" in rule:
        return not matches(rule["not"], profile, count_events)
    if "event" in rule:
        cond = event_condition(rule)
        return count_events(cond) >= cond.at_least
    value = lookup(profile, rule["field"])
    op = rule["op"]
    if op == "exists":
        return (value is not _MISSING) == rule.get("value", True)
    if value is _MISSING:
        return op == "!="
    return _COMPARE[op](value, rule["value"])
