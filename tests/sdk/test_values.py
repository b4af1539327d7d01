"""The boundary value contract (gears_sdk.values)."""

from __future__ import annotations

import json

import pytest

from gears_sdk.values import (
    DEFAULT_LIMITS,
    READ_LIMITS,
    ValueLimits,
    ValueRejected,
    check_value,
    clean_text,
    clip_depth,
    dumps_checked,
    dumps_stored,
    finite_or_none,
    is_valid,
    loads_stored,
    parse_json,
    repair,
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


def test_parse_json_names_the_path_of_a_number_out_of_range():
    for text, path in [('{"items": [{"price": 1e400}]}', "$.items[0].price"),
                       ('{"n": [NaN]}', "$.n[0]"), ('{"n": -Infinity}', "$.n"),
                       ('{"n": 123456789012345678901234567890}', "$.n")]:
        with pytest.raises(ValueRejected) as info:
            parse_json(text)
        assert info.value.path == path, text


def test_text_depth_skips_brackets_inside_strings():
    assert text_depth('{"a": "[[[[\\"[[", "b": [1]}') == 2


def test_dumps_checked_never_writes_infinity():
    with pytest.raises(ValueRejected):
        dumps_checked({"x": float("inf")})
    assert json.loads(dumps_checked({"x": 1.5})) == {"x": 1.5}
    assert is_valid({"x": 1}) and not is_valid({"x": float("-inf")})


def test_repair_makes_stored_values_meet_the_contract():
    deep: object = "leaf"
    for _ in range(600):
        deep = [deep]
    bad = {"inf": float("inf"), "nan": [float("nan")], "big": 10**30, "ok": 1.5,
           "s": "a\x00b\ud800", "k\ud800": True, "deep": deep, "t": (1,)}
    fixed = repair(bad)
    assert is_valid(fixed, READ_LIMITS)
    assert fixed["inf"] is None and fixed["nan"] == [None] and fixed["big"] is None
    assert fixed["ok"] == 1.5 and fixed["s"] == "ab\ufffd" and fixed["k\ufffd"] is True
    assert fixed["t"] is None
    assert text_depth(json.dumps(fixed["deep"])) == READ_LIMITS.max_depth - 1
    assert repair({"a": [1, {"b": "c"}]}) == {"a": [1, {"b": "c"}]}


def test_loads_stored_reads_infinity_and_text_too_deep_for_the_parser():
    assert loads_stored('{"a": Infinity, "b": -Infinity, "c": NaN, "d": 1e999, "e": 2.5}') \
        == {"a": None, "b": None, "c": None, "d": None, "e": 2.5}
    text = '{"x": "[{", "deep": ' + "[" * 100_000 + "]" * 100_000 + ', "y": [1]}'
    value = loads_stored(text)
    assert value["x"] == "[{" and value["y"] == [1]
    assert text_depth(json.dumps(value)) <= READ_LIMITS.max_depth
    assert loads_stored(b'{"s": "\\ud800"}') == {"s": "\ufffd"}


def test_clip_depth_replaces_only_what_is_too_deep():
    assert clip_depth('[[1], [[2, "]"]], 3]', 2) == '[[1], [null], 3]'
    assert json.loads(clip_depth('{"a": {"b": {}}}', 1)) == {"a": None}
    assert clip_depth('{"a": 1}', 1) == '{"a": 1}'


def test_text_helpers():
    assert clean_text("a\x00\udfffb", 3) == "a\ufffd"
    assert clean_text(12) == "12"
    assert [finite_or_none(x) for x in (1, 2.5, float("inf"), float("nan"), True, "1")] \
        == [1, 2.5, None, None, None, None]
    with pytest.raises(ValueError):
        dumps_stored({"a": float("inf")})
    assert dumps_stored({"a": 1}) == '{"a": 1}'
