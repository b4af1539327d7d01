"""The one translator from JSON Schema errors to :class:`~gears_sdk.errors.Problem`.

A manifest (``gears validate``, the registry), an installation's config (the
API and the install form) and the test harness all report schema errors; they
share this module so one error reads the same everywhere, points at the same
path, and never quotes the value of a secret field.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from typing import Any

from jsonschema.exceptions import ValidationError
from jsonschema.protocols import Validator

from gears_sdk.errors import Problem

TYPE_NAMES = {
    "string": "a string",
    "integer": "a whole number",
    "number": "a number",
    "object": "an object",
    "array": "a list",
    "boolean": "true or false",
    "null": "null",
}

_FORMATS = {
    "email": "an email address",
    "uri": "a URL (https://…)",
    "date": "a date (YYYY-MM-DD)",
    "date-time": "a date and time (RFC 3339)",
    "hostname": "a host name",
    "ipv4": "an IPv4 address",
    "ipv6": "an IPv6 address",
    "uuid": "a UUID",
    "time": "a time (HH:MM:SS)",
    "regex": "a regular expression",
}


def json_path(parts: Iterable[Any]) -> str:
    """``["permissions", "network", 0]`` → ``$.permissions.network[0]``."""
    out = "$"
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        elif isinstance(p, str) and p.isidentifier():
            out += f".{p}"
        else:
            out += f"[{json.dumps(p)}]"
    return out


def short(value: Any, limit: int = 60) -> str:
    """``value`` as JSON, cut to ``limit`` characters for a message."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def error_path(err: ValidationError) -> list[Any]:
    """Where the error is; for a missing field, the field itself (so a form can mark it)."""
    parts = list(err.absolute_path)
    if err.validator == "required" and isinstance(err.instance, dict):
        missing = next((n for n in err.validator_value if n not in err.instance), None)
        if missing is not None:
            parts.append(missing)
    return parts


def _bounds(v: str, bound: Any) -> str | None:
    words = {
        "minLength": "must not be empty" if bound == 1 else f"must be at least {bound} characters long",
        "maxLength": f"must be at most {bound} characters long",
        "minimum": f"must be at least {bound}",
        "exclusiveMinimum": f"must be more than {bound}",
        "maximum": f"must be at most {bound}",
        "exclusiveMaximum": f"must be less than {bound}",
        "multipleOf": f"must be a multiple of {bound}",
        "minItems": f"must have at least {bound} item(s)",
        "maxItems": f"may have at most {bound} item(s)",
        "maxProperties": f"may have at most {bound} entries",
    }
    return words.get(v)


def sentence(err: ValidationError, *, secret: bool = False) -> str:
    """A sentence for one schema error; with ``secret`` it never quotes the value."""
    v, schema = err.validator, err.schema
    inst = "the value" if secret else short(err.instance)
    if isinstance(schema, dict) and (bounded := _bounds(str(v), schema.get(str(v)))) is not None:
        return bounded
    if v == "required":
        return "this field is required"
    if v == "type":
        want = schema["type"]
        return "must be " + " or ".join(
            TYPE_NAMES.get(t, t) for t in ([want] if isinstance(want, str) else want)
        )
    if v == "enum":
        return f"{inst} is not one of the choices: " + ", ".join(short(o) for o in schema["enum"])
    if v == "const":
        return f"must be {short(schema['const'])}"
    if v == "format":
        return f"must be {_FORMATS.get(schema['format'], 'in the format ' + schema['format'])}"
    if v == "pattern":
        return (
            f"must be {schema['description']}"
            if schema.get("description")
            else f"{inst} does not have the expected form"
        )
    if v == "uniqueItems":
        return "must not repeat items"
    if v == "additionalProperties":
        extra = sorted(set(err.instance) - set(schema.get("properties") or {}))
        return "unknown field" + ("s " if len(extra) != 1 else " ") + ", ".join(map(repr, extra))
    return "is not valid" if secret else err.message


def schema_problems(validator: Validator, instance: Any, *, secret: Collection[str] = ()) -> list[Problem]:
    """Every schema error of ``instance`` as a Problem, in path order, without repeats.

    ``secret`` names top-level fields whose values must never appear in a message.
    """
    problems: list[Problem] = []
    for err in sorted(validator.iter_errors(instance), key=lambda e: [str(p) for p in error_path(e)]):
        parts = error_path(err)
        found = Problem(
            json_path(parts),
            sentence(err, secret=bool(parts) and parts[0] in secret),
            f"schema.{err.validator}",
        )
        if found not in problems:
            problems.append(found)
    return problems
