"""Install forms generated from a gear's ``config_schema``.

A schema becomes a tree of :class:`FormField` (one per property) that the
``partials/config_form.html`` macros render: text, numbers, checkboxes,
selects for ``enum``, one-per-line textareas for lists of strings or numbers,
checkbox groups for lists of choices, repeated fieldsets for lists of objects,
fieldsets for nested objects, password inputs for secrets, and a JSON textarea
for anything a form cannot express. Field names are JSON-pointer-like
(``c/auth/user``), so any property name round-trips.

Everything is built from the *raw* form values (strings): on first display
they come from the current config or the schema's defaults (:func:`to_raw`);
after a failed submit they are exactly what the user typed, so nothing they
entered is lost. Secrets are never turned back into values: their inputs
always start empty. Parsing the submission back into a config is
:mod:`.formparse`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gears_sdk.manifest import SECRET_FORMATS, json_path

PREFIX = "c"
#: Lists of objects get this many empty rows to add new items without JavaScript.
SPARE_ROWS = 1
MULTILINE_FORMATS = {"textarea", "multiline", "markdown"}
TYPE_LABELS = {"text": "text", "textarea": "text", "email": "email address", "url": "URL",
               "password": "secret", "integer": "whole number", "number": "number",
               "checkbox": "yes / no", "select": "choice", "lines": "list",
               "checkboxes": "choices", "objects": "list of items", "fieldset": "group",
               "json": "JSON"}


def escape_part(part: str | int) -> str:
    return str(part).replace("~", "~0").replace("/", "~1")


def input_name(path: list[str | int]) -> str:
    return "/".join([PREFIX, *(escape_part(p) for p in path)])


def humanize(key: str) -> str:
    """``window_days`` / ``windowDays`` → ``Window days``."""
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", key).replace("_", " ").replace("-", " ")
    words = " ".join(words.split()).lower()
    return words[:1].upper() + words[1:] if words else key


def schema_type(schema: Mapping[str, Any]) -> str | None:
    t = schema.get("type")
    if isinstance(t, list):
        t = next((x for x in t if x != "null"), None)
    return t if isinstance(t, str) else None


def widget_for(schema: Mapping[str, Any]) -> str:
    """Which input a property gets (see the module docstring)."""
    t = schema_type(schema)
    if "enum" in schema and t != "boolean" and t not in ("array", "object"):
        return "select"
    if t == "string":
        fmt = schema.get("format")
        if fmt in SECRET_FORMATS or schema.get("writeOnly"):
            return "password"
        if fmt == "email":
            return "email"
        if fmt in ("uri", "url"):
            return "url"
        if fmt in MULTILINE_FORMATS or int(schema.get("maxLength") or 0) > 200:
            return "textarea"
        return "text"
    if t in ("integer", "number"):
        return t
    if t == "boolean":
        return "checkbox"
    if t == "object" and isinstance(schema.get("properties"), dict):
        return "fieldset"
    if t == "array":
        raw_items = schema.get("items")
        items: Mapping[str, Any] = raw_items if isinstance(raw_items, dict) else {}
        if isinstance(items.get("enum"), list):
            return "checkboxes"
        if schema_type(items) in ("string", "integer", "number"):
            return "lines"
        if schema_type(items) == "object" and isinstance(items.get("properties"), dict):
            return "objects"
    return "json"


def option_value(value: Any) -> str:
    """How an enum value travels in a form (strings as they are, others as JSON)."""
    return value if isinstance(value, str) else json.dumps(value)


@dataclass
class FormField:
    """One property of the config, ready to render."""

    key: str
    path: list[str | int]
    schema: Mapping[str, Any]
    widget: str
    label: str
    required: bool
    help: str | None = None
    value: Any = ""
    options: list[tuple[str, str]] = field(default_factory=list)
    children: list[FormField] = field(default_factory=list)
    rows: list[list[FormField]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    secret_stored: bool = False

    @property
    def name(self) -> str:
        return input_name(self.path)

    @property
    def id(self) -> str:
        return "f-" + re.sub(r"[^A-Za-z0-9_-]", "_", "-".join(str(p) for p in self.path))

    @property
    def json_path(self) -> str:
        return json_path(self.path)

    @property
    def type_label(self) -> str:
        return TYPE_LABELS.get(self.widget, self.widget)

    @property
    def default(self) -> Any:
        return self.schema.get("default")

    @property
    def is_group(self) -> bool:
        return self.widget in ("fieldset", "objects", "checkboxes")

    def walk(self) -> list[FormField]:
        """This field and every field inside it."""
        out = [self]
        for child in self.children:
            out += child.walk()
        for row in self.rows:
            for child in row:
                out += child.walk()
        return out

    def attrs(self) -> dict[str, Any]:
        """Constraints the browser can check too (the server checks them regardless)."""
        s, out = self.schema, {}
        if self.widget in ("integer", "number"):
            for key, attr in (("minimum", "min"), ("maximum", "max")):
                if isinstance(s.get(key), int | float):
                    out[attr] = s[key]
            out["step"] = s.get("multipleOf") or (1 if self.widget == "integer" else "any")
        if self.widget in ("text", "textarea", "email", "url", "password") and \
                isinstance(s.get("maxLength"), int):
            out["maxlength"] = s["maxLength"]
        return out


def _props(schema: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any], bool]]:
    raw = schema.get("properties")
    props: Mapping[str, Any] = raw if isinstance(raw, dict) else {}
    required = set(schema.get("required") or [])
    return [(k, v if isinstance(v, dict) else {}, k in required) for k, v in props.items()]


def _row_count(raw: Mapping[str, Any], path: list[str | int]) -> int:
    prefix = input_name(path) + "/"
    indexes = {int(m.group(1)) for key in raw for m in [re.match(re.escape(prefix) + r"(\d+)/",
                                                                 key)] if m}
    return max(indexes) + 1 if indexes else 0


def build_field(key: str, schema: Mapping[str, Any], path: list[str | int], required: bool,
                raw: Mapping[str, Any], stored_secrets: frozenset[str] = frozenset()) -> FormField:
    """The :class:`FormField` for one property, filled from ``raw`` form values."""
    widget = widget_for(schema)
    f = FormField(key=key, path=path, schema=schema, widget=widget,
                  label=str(schema.get("title") or humanize(key)), required=required,
                  help=schema.get("description") if isinstance(schema.get("description"), str)
                  else None)
    name = f.name
    if widget == "fieldset":
        f.children = [build_field(k, s, [*path, k], r, raw, stored_secrets)
                      for k, s, r in _props(schema)]
    elif widget == "objects":
        items = schema["items"]
        n = _row_count(raw, path)
        limit = schema.get("maxItems")
        total = n + SPARE_ROWS if not isinstance(limit, int) else min(n + SPARE_ROWS, limit)
        f.rows = [[build_field(k, s, [*path, i, k], r, raw, stored_secrets)
                   for k, s, r in _props(items)] for i in range(max(total, 1))]
    elif widget == "checkboxes":
        f.options = [(option_value(v), str(v)) for v in schema["items"]["enum"]]
        f.value = list(raw.getlist(name) if hasattr(raw, "getlist") else raw.get(name) or [])
    elif widget == "select":
        f.options = [(option_value(v), str(v)) for v in schema["enum"]]
        f.value = raw.get(name, "")
    elif widget == "checkbox":
        f.value = bool(raw.get(name))
    elif widget == "password":
        f.value = ""
        f.secret_stored = len(path) == 1 and key in stored_secrets
    else:
        f.value = raw.get(name, "")
    return f


def build_form(schema: Mapping[str, Any], raw: Mapping[str, Any],
               stored_secrets: frozenset[str] = frozenset()) -> list[FormField]:
    """The fields of a whole config form."""
    return [build_field(k, s, [k], r, raw, stored_secrets) for k, s, r in _props(schema)]


def to_raw(schema: Mapping[str, Any], config: Mapping[str, Any] | None,
           *, use_defaults: bool = True) -> dict[str, Any]:
    """Form values showing ``config`` (or the schema's defaults); secrets stay empty."""
    out: dict[str, Any] = {}

    def put(schema: Mapping[str, Any], value: Any, path: list[str | int], present: bool) -> None:
        if not present and use_defaults and "default" in schema:
            value, present = schema["default"], True
        widget = widget_for(schema)
        name = input_name(path)
        if widget == "fieldset":
            inner = value if isinstance(value, dict) else {}
            for k, s, _ in _props(schema):
                put(s, inner.get(k), [*path, k], k in inner)
        elif widget == "objects":
            for i, item in enumerate(value if isinstance(value, list) else []):
                inner = item if isinstance(item, dict) else {}
                for k, s, _ in _props(schema["items"]):
                    put(s, inner.get(k), [*path, i, k], k in inner)
        elif not present or widget == "password":
            return
        elif widget == "checkboxes":
            out[name] = [option_value(v) for v in value] if isinstance(value, list) else []
        elif widget == "select":
            out[name] = option_value(value)
        elif widget == "checkbox":
            if value is True:
                out[name] = "on"
        elif widget == "lines":
            out[name] = "\n".join(str(v) for v in value) if isinstance(value, list) else ""
        elif widget == "json":
            out[name] = json.dumps(value, indent=2, ensure_ascii=False)
        else:
            out[name] = "" if value is None else str(value)

    config = config or {}
    for k, s, _ in _props(schema):
        put(s, config.get(k), [k], k in config)
    return out


def all_fields(fields: list[FormField]) -> list[FormField]:
    out: list[FormField] = []
    for f in fields:
        out += f.walk()
    return out
