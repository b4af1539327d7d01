"""The segment rule language: every operator, nesting, event windows, invalid rules."""

from __future__ import annotations

from typing import Any

import pytest

from marketplace.engine.segments import EventCondition, event_conditions, matches, validate_rule

PROFILE: dict[str, Any] = {
    "user_id": "u1",
    "attributes": {"country": "FR", "age": 34, "name": "Ann Lee", "tags": ["vip", "beta"]},
    "traits": {"rfm": {"segment": "loyal", "score": 4.5}, "flag": None},
}


def no_events(_cond: EventCondition) -> int:
    return 0


def check(rule: dict[str, Any], counts: dict[tuple[str, str | None, int], int] | None = None,
          profile: dict[str, Any] = PROFILE) -> bool:
    assert validate_rule(rule) == [], validate_rule(rule)
    return matches(rule, profile, lambda c: (counts or {}).get(c.key, 0))


def cmp(field: str, op: str, value: Any = None, **extra: Any) -> dict[str, Any]:
    rule = {"field": field, "op": op, **extra}
    if op != "exists" or value is not None:
        rule["value"] = value
    return rule


@pytest.mark.parametrize(("rule", "expected"), [
    (cmp("attributes.country", "==", "FR"), True),
    (cmp("attributes.country", "==", "DE"), False),
    (cmp("attributes.country", "!=", "DE"), True),
    (cmp("attributes.missing", "!=", "DE"), True),
    (cmp("attributes.missing", "==", "DE"), False),
    (cmp("attributes.age", "<", 35), True),
    (cmp("attributes.age", "<=", 34), True),
    (cmp("attributes.age", ">", 34), False),
    (cmp("attributes.age", ">=", 34), True),
    (cmp("traits.rfm.score", ">", 4), True),
    (cmp("attributes.country", "<", "GB"), True),
    (cmp("attributes.country", ">", 3), False),  # across types: false, not an error
    (cmp("attributes.missing", "<", 3), False),
    (cmp("traits.rfm.segment", "in", ["loyal", "champion"]), True),
    (cmp("traits.rfm.segment", "in", ["new"]), False),
    (cmp("attributes.tags", "contains", "vip"), True),
    (cmp("attributes.tags", "contains", "gold"), False),
    (cmp("attributes.name", "contains", "Lee"), True),
    (cmp("attributes.age", "contains", 3), False),
    (cmp("traits.flag", "exists"), True),  # present, even if null
    (cmp("traits.nope", "exists"), False),
    (cmp("traits.nope", "exists", False), True),
    (cmp("traits.rfm.segment.deeper", "exists"), False),
    (cmp("user_id", "==", "u1"), True),
])
def test_operators(rule, expected):
    assert check(rule) is expected


def test_nesting_and_short_circuit():
    seen: list[EventCondition] = []

    def counter(cond: EventCondition) -> int:
        seen.append(cond)
        return 5

    rule = {"or": [cmp("attributes.country", "==", "FR"),
                   {"event": "purchase", "at_least": 1, "within_days": 30}]}
    assert matches(rule, PROFILE, counter) and seen == []
    rule = {"and": [{"not": cmp("attributes.country", "==", "DE")},
                    {"or": [cmp("attributes.age", ">", 50),
                            {"and": [cmp("attributes.tags", "contains", "beta"),
                                     {"not": {"not": cmp("traits.rfm.segment", "==", "loyal")}}]}]}]}
    assert check(rule)
    assert not check({"not": rule})


def test_event_count_windows():
    purchases = {"event": "purchase", "at_least": 3, "within_days": 30}
    signup = {"event": "custom", "name": "signup", "within_days": 7}
    assert check(purchases, {("purchase", None, 30): 3})
    assert not check(purchases, {("purchase", None, 30): 2})
    assert not check(purchases, {("purchase", None, 7): 9})  # another window
    assert check(signup, {("custom", "signup", 7): 1})  # at_least defaults to 1
    assert not check(signup, {("custom", "other", 7): 1})
    both = {"and": [purchases, signup]}
    assert [c.key for c in event_conditions(both)] == [("purchase", None, 30),
                                                       ("custom", "signup", 7)]


@pytest.mark.parametrize(("rule", "paths"), [
    ([], ["$.rule"]),
    ({}, ["$.rule"]),
    ({"and": []}, ["$.rule.and"]),
    ({"or": "x"}, ["$.rule.or"]),
    ({"and": [cmp("attributes.a", "==", 1)], "or": []}, ["$.rule"]),
    ({"and": [cmp("attributes.a", "~", 1)]}, ["$.rule.and[0].op"]),
    ({"and": [{"field": "attributes.a", "value": 1}]}, ["$.rule.and[0].op"]),
    ({"not": cmp("profile.a", "==", 1)}, ["$.rule.not.field"]),
    ({"not": cmp("traits", "==", 1)}, ["$.rule.not.field"]),
    (cmp("traits.a", "==", 1, extra=True), ["$.rule.extra"]),
    ({"field": "traits.a", "op": "=="}, ["$.rule.value"]),
    (cmp("traits.a", "in", "x"), ["$.rule.value"]),
    (cmp("traits.a", "<", [1]), ["$.rule.value"]),
    (cmp("traits.a", "exists", "yes"), ["$.rule.value"]),
    ({"event": "purchase"}, ["$.rule.within_days"]),
    ({"event": "login", "within_days": 3}, ["$.rule.event"]),
    ({"event": "custom", "within_days": 3}, ["$.rule.name"]),
    ({"event": "view", "name": "x", "within_days": 3}, ["$.rule.name"]),
    ({"event": "view", "at_least": 0, "within_days": 99999}, ["$.rule.at_least",
                                                              "$.rule.within_days"]),
    ({"or": [cmp("traits.a", "==", 1), {"not": {"event": "view", "within_days": True}}]},
     ["$.rule.or[1].not.within_days"]),
])
def test_invalid_rules_are_reported_with_paths(rule, paths):
    problems = validate_rule(rule)
    assert [p["path"] for p in problems] == paths
    assert all(p["message"] and p["code"] for p in problems)


def test_depth_and_size_limits():
    rule: dict[str, Any] = cmp("traits.a", "==", 1)
    for _ in range(20):
        rule = {"not": rule}
    assert any(p["code"] == "too_deep" for p in validate_rule(rule))
    wide = {"or": [cmp("traits.a", "==", i) for i in range(300)]}
    assert [p["code"] for p in validate_rule(wide)] == ["too_large"]
