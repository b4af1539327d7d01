"""The one translator from JSON Schema errors to problems."""

from __future__ import annotations

from jsonschema import Draft202012Validator

from gears_sdk.errors import Problem
from gears_sdk.manifest import validate_manifest
from gears_sdk.schema_errors import schema_problems

SCHEMA = {
    "type": "object",
    "required": ["token", "days"],
    "properties": {
        "token": {"type": "string", "minLength": 8},
        "days": {"type": "integer", "minimum": 1},
        "mode": {"enum": ["a", "b"]},
    },
    "additionalProperties": False,
}


def test_a_missing_field_is_pointed_at_itself() -> None:
    problems = schema_problems(Draft202012Validator(SCHEMA), {"token": "long enough"})
    assert problems == [Problem("$.days", "this field is required", "schema.required")]


def test_a_secret_value_is_never_quoted() -> None:
    value = {"token": "hunter2", "days": 1, "mode": "hunter2-mode"}
    problems = schema_problems(Draft202012Validator(SCHEMA), value, secret={"token", "mode"})
    assert [p.path for p in problems] == ["$.mode", "$.token"]
    assert all("hunter2" not in p.message for p in problems)
    assert problems[0].message.startswith("the value is not one of the choices")


def test_sentences_name_the_rule() -> None:
    value = {"token": "x" * 8, "days": 0, "zzz": 1}
    problems = schema_problems(Draft202012Validator(SCHEMA), value)
    assert [(p.path, p.message) for p in problems] == [
        ("$", "unknown field 'zzz'"),
        ("$.days", "must be at least 1"),
    ]


def test_the_manifest_speaks_the_same_sentences() -> None:
    problems = validate_manifest({"name": "x"})
    assert Problem("$.version", "this field is required", "schema.required") in problems
