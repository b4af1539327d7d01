"""The boundary value contract (gears_sdk.values)."""

from __future__ import annotations

import json

import pytest

from gears_sdk.values import (
    DEFAULT_LIMITS,
    ValueLimits,
    ValueRejected,
    check_value,
    dumps_checked,
    is_valid,
    parse_json,
    text_depth,
)


def _code(value, limits=DEFAULT_LIMITS):
    with pytest.raises(ValueRejected) as info:
        check_value(value, limits)
    return info.value.code, info.value.path


@pytest.mark.parametrize("value,code,path", [
    (float("inf"), "not_finite", "$"),
    ({"a": [1, float("nan")]}, "not_finite", "$.a[1]"),
    ({"a": 10**30}, "out_of_range", "$.a"),
    ({"x": "\ud800"}, "invalid_unicode", "$.x"),
    ({"\ud800": 1}, "invalid_unicode", '$["\\ud800"]'),
    ({"x": "a\x00b"}, "invalid_unicode", "$.x"),
    ({1: 2}, "invalid_type", "$"),
    ({"t": (1, 2)}, "invalid_type", "$.t"),
    ({"s": {1, 2}}, "invalid_type", "$.s"),
    ({"b": b"x"}, "invalid_type", "$.b"),
])
def test_bad_values_are_refused_with_their_path(value, code, path):
    assert _code(value) == (code, path)


def test_depth_is_bounded_without_recursion():
    deep: list = []
    node = deep
    for _ in range(200_000):
        child: list = []
        node.append(child)
        node = child
    assert _code(deep)[0] == "too_deep"
    ok: list = []
    node = ok
    for _ in range(31):
        child = []
        node.append(child)
        node = child
    check_value(ok)


def test_size_strings_keys_and_nodes_are_bounded():
    limits = ValueLimits(max_bytes=1000, max_string=10, max_key=5, max_nodes=50)
    assert _code("x" * 11, limits)[0] == "too_long"
    assert _code({"longkey": 1}, limits)[0] == "too_long"
    assert _code(list(range(60)), limits)[0] == "too_large"
    assert _code(["123456789"] * 40, limits.with_(max_bytes=400))[0] == "too_large"
    assert check_value({"a": [1, 2.5, True, None, "ok"]}, limits) > 0


def test_parse_json_refuses_constants_overflow_and_depth_before_parsing():
    for text, code in [("NaN", "not_finite"), ('{"n": Infinity}', "not_finite"),
                       ('{"n": 1e400}', "not_finite"), ("[" * 100_000 + "]" * 100_000, "too_deep"),
                       ("{bad", "invalid_json"), ('{"x": "\\ud800"}', "invalid_unicode"),
                       ('"\\u0000"', "invalid_unicode")]:
        with pytest.raises(ValueRejected) as info:
            parse_json(text)
        assert info.value.code == code, text
    assert parse_json('{"a": [1, 2.5, "x"]}') == {"a": [1, 2.5, "x"]}


def test_text_depth_skips_brackets_inside_strings():
    assert text_depth('{"a": "[[[[\\"[[", "b": [1]}') == 2


def test_dumps_checked_never_writes_infinity():
    with pytest.raises(ValueRejected):
        dumps_checked({"x": float("inf")})
    assert json.loads(dumps_checked({"x": 1.5})) == {"x": 1.5}
    assert is_valid({"x": 1}) and not is_valid({"x": float("-inf")})
