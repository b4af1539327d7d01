"""Turning a submitted config form back into a config, and putting errors next to fields.

:func:`parse_form` converts the strings a browser sends into the JSON types
the schema asks for. What cannot be converted ("twelve" for a number) becomes
a problem at that field's JSON path; empty optional inputs are left out so the
schema's defaults apply. The schema itself is enforced afterwards by the
installation service, whose problems carry JSON paths too; :func:`attach_errors`
hangs every problem on the field it names (or the nearest enclosing one, with
"item 2:" when it is about one entry of a list).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from gears_sdk.errors import ProblemDetail
from gears_sdk.manifest import json_path
from gears_sdk.patterns import compile as linear
from gears_sdk.values import DEFAULT_LIMITS, ValueRejected, parse_json
from marketplace.web.forms import (
    FormField,
    _props,
    _row_count,
    all_fields,
    input_name,
    option_value,
    schema_type,
    widget_for,
)

_UNSET = object()
#: A JSON field of an install form: a config value, so the config's own bounds.
FORM_LIMITS = DEFAULT_LIMITS.with_(max_bytes=64 * 1024, max_depth=16)
_LAST_SEGMENT = linear(r"(\.[A-Za-z_][A-Za-z0-9_]*|\[(?:\d+|\"(?:[^\"\\]|\\.)*\")\])$")


def _number(text: str, integer: bool) -> int | float:
    """``"12"`` → 12, ``"1.5"`` → 1.5; ``ValueError`` for anything else (also NaN, inf)."""
    text = text.strip()
    if re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    if integer:
        value = float(text)
        if not value.is_integer():
            raise ValueError(text)
        return int(value)
    value = float(text)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(text)
    return value


def _get(form: Mapping[str, Any], name: str) -> str | None:
    value = form.get(name)
    return value if isinstance(value, str) else None


def _scalar(schema: Mapping[str, Any], widget: str, text: str, path: list[str | int],
            problems: list[ProblemDetail]) -> Any:
    if widget in ("integer", "number"):
        try:
            return _number(text, widget == "integer")
        except ValueError:
            kind = "a whole number" if widget == "integer" else "a number"
            problems.append({"path": json_path(path), "message": f"must be {kind}",
                             "code": "form.number"})
            return _UNSET
    return text


def _parse_value(schema: Mapping[str, Any], path: list[str | int], required: bool,
                 form: Mapping[str, Any], problems: list[ProblemDetail]) -> Any:
    """The value of one property, or ``_UNSET`` to leave it out."""
    widget = widget_for(schema)
    name = input_name(path)
    if widget == "fieldset":
        obj = _parse_object(schema, path, form, problems)
        return obj if obj or required else _UNSET
    if widget == "objects":
        items = []
        for i in range(_row_count(form, path)):
            row = _parse_object(schema["items"], [*path, i], form, problems, skip_blank=True)
            if row is not None:
                items.append(row)
        return items if items or required else _UNSET
    if widget == "checkboxes":
        chosen = form.getlist(name) if hasattr(form, "getlist") else []
        by_value = {option_value(v): v for v in schema["items"]["enum"]}
        return [by_value[c] for c in chosen if c in by_value]
    if widget == "checkbox":
        return bool(form.get(name))
    text = _get(form, name)
    if text is None or (text.strip() == "" and widget != "password") or text == "":
        return _UNSET
    if widget == "select":
        by_value = {option_value(v): v for v in schema["enum"]}
        return by_value.get(text, text)
    if widget == "lines":
        item_schema = schema.get("items") or {}
        item_widget = {"integer": "integer", "number": "number"}.get(
            schema_type(item_schema) or "", "text")
        values = []
        for i, line in enumerate(x.strip() for x in text.splitlines() if x.strip()):
            value = _scalar(item_schema, item_widget, line, [*path, i], problems)
            if value is not _UNSET:
                values.append(value)
        return values
    if widget == "json":
        try:  # the one contract: depth before parsing, finite numbers, valid Unicode
            return parse_json(text, FORM_LIMITS)
        except ValueRejected as exc:
            message = ("must be valid JSON" if exc.code == "invalid_json"
                       else f"at {exc.path}: {exc.message}")
            problems.append({"path": json_path(path), "message": message, "code": "form.json"})
            return _UNSET
    if widget == "password":
        return text
    return _scalar(schema, widget, text.strip() if widget != "textarea" else text, path,
                   problems)


def _parse_object(schema: Mapping[str, Any], path: list[str | int], form: Mapping[str, Any],
                  problems: list[ProblemDetail], *, skip_blank: bool = False) -> dict[str, Any] | None:
    if skip_blank:
        prefix = input_name(path) + "/"
        if not any(key.startswith(prefix) and (form.getlist(key) if hasattr(form, "getlist")
                                               else [form[key]]) != [""]
                   for key in form):
            return None
    out: dict[str, Any] = {}
    for key, sub, required in _props(schema):
        value = _parse_value(sub, [*path, key], required, form, problems)
        if value is not _UNSET:
            out[key] = value
    return out


def parse_form(schema: Mapping[str, Any], form: Mapping[str, Any]
               ) -> tuple[dict[str, Any], list[ProblemDetail]]:
    """The config a form submission describes, and the values that could not be read."""
    problems: list[ProblemDetail] = []
    config = _parse_object(schema, [], form, problems) or {}
    return config, problems


def attach_errors(fields: list[FormField], problems: list[ProblemDetail]) -> list[str]:
    """Put each problem's message on its field; returns the ones that fit no field."""
    by_path = {f.json_path: f for f in all_fields(fields)}
    leftover: list[str] = []
    for problem in problems:
        path, prefix = problem.get("path") or "$", ""
        while path not in by_path and path != "$":
            m = _LAST_SEGMENT.search(path)
            if m is None:
                break
            segment = m.group(1)
            if segment.startswith("[") and segment[1:-1].isdigit():
                prefix = f"item {int(segment[1:-1]) + 1}: "
            path = path[: m.start()]
        target = by_path.get(path)
        message = prefix + problem.get("message", "is not valid")
        if target is None:
            original = problem.get("path") or "$"
            leftover.append(message if original == "$" else f"{original}: {message}")
        elif message not in target.errors:
            target.errors.append(message)
    return leftover
