"""Config forms generated from a config_schema: one widget per schema type, values kept,
submissions parsed back into typed configs, and errors hung on the right field."""

from __future__ import annotations

from werkzeug.datastructures import MultiDict

from marketplace.web.formparse import attach_errors, parse_form
from marketplace.web.forms import all_fields, build_form, to_raw, widget_for
from tests.marketplace.web_support import CONFIG_SCHEMA


def by_path(fields):
    return {f.json_path: f for f in all_fields(fields)}


def test_every_schema_type_gets_its_widget():
    fields = by_path(build_form(CONFIG_SCHEMA, to_raw(CONFIG_SCHEMA, None)))
    assert {p: f.widget for p, f in fields.items() if "[" not in p} == {
        "$.api_url": "url", "$.window_days": "integer", "$.ratio": "number",
        "$.enabled_sync": "checkbox", "$.mode": "select", "$.tags": "lines",
        "$.weights": "lines", "$.channels": "checkboxes", "$.auth": "fieldset",
        "$.auth.user": "text", "$.auth.realm": "text", "$.mappings": "objects",
        "$.api_key": "password", "$.extra": "json",
    }
    assert fields["$.api_url"].label == "API URL" and fields["$.api_url"].required
    assert fields["$.api_url"].help == "Where the shop's API lives."
    assert fields["$.window_days"].label == "Window days"
    assert fields["$.window_days"].value == "90"  # the default
    assert fields["$.window_days"].attrs() == {"min": 1, "max": 365, "step": 1}
    assert fields["$.enabled_sync"].value is True
    assert fields["$.mode"].options == [("fast", "fast"), ("full", "full")]
    assert fields["$.auth.realm"].value == "main"
    assert len(fields["$.mappings"].rows) == 1  # one empty row to add an item
    assert widget_for({"type": "string", "maxLength": 5000}) == "textarea"
    assert widget_for({"type": ["string", "null"]}) == "text"
    assert widget_for({"type": "array", "items": {"type": "array"}}) == "json"


def test_secrets_are_never_filled_back():
    raw = to_raw(CONFIG_SCHEMA, {"api_key": "sk-secret", "api_url": "https://x.test"})
    assert "sk-secret" not in str(raw)
    field = by_path(build_form(CONFIG_SCHEMA, raw, frozenset({"api_key"})))["$.api_key"]
    assert field.value == "" and field.secret_stored


def test_submission_round_trips_to_typed_config():
    config = {"api_url": "https://shop.test", "window_days": 30, "ratio": 0.25,
              "enabled_sync": False, "mode": "full", "tags": ["a", "b"], "weights": [1, 2.5],
              "channels": ["sms", "email"], "auth": {"user": "ann", "realm": "eu"},
              "mappings": [{"source": "email", "target": "traits.email"}],
              "extra": {"deep": [1, {"x": None}]}}
    raw = MultiDict()
    for key, value in to_raw(CONFIG_SCHEMA, config).items():
        for v in value if isinstance(value, list) else [value]:
            raw.add(key, v)
    raw.add("c/api_key", "sk-new")
    parsed, problems = parse_form(CONFIG_SCHEMA, raw)
    assert problems == []
    assert parsed == {**config, "api_key": "sk-new"}


def test_blank_optional_inputs_are_left_out_so_defaults_apply():
    parsed, problems = parse_form(CONFIG_SCHEMA, MultiDict({"c/api_url": " ", "c/ratio": "",
                                                            "c/mappings/0/source": ""}))
    assert problems == []
    assert parsed == {"enabled_sync": False, "channels": []}


def test_unreadable_values_are_problems_at_their_path():
    form = MultiDict({"c/window_days": "twelve", "c/weights": "1\nlots\n3",
                      "c/extra": "{not json", "c/mappings/0/target": "x"})
    _, problems = parse_form(CONFIG_SCHEMA, form)
    assert {(p["path"], p["message"]) for p in problems} == {
        ("$.window_days", "must be a whole number"), ("$.weights[1]", "must be a number"),
        ("$.extra", "must be valid JSON")}


def test_errors_attach_to_fields_nested_and_in_lists():
    form = MultiDict({"c/mappings/0/target": "x", "c/mappings/1/source": "y"})
    fields = build_form(CONFIG_SCHEMA, form)
    leftover = attach_errors(fields, [
        {"path": "$.auth.user", "message": "is too short"},
        {"path": "$.weights[1]", "message": "must be a number"},
        {"path": "$.mappings[0].source", "message": "this field is required"},
        {"path": "$", "message": "unknown field 'zzz'"},
        {"path": "$.nowhere.deep", "message": "odd"},
    ])
    found = by_path(fields)
    assert found["$.auth.user"].errors == ["is too short"]
    assert found["$.weights"].errors == ["item 2: must be a number"]
    assert found["$.mappings[0].source"].errors == ["this field is required"]
    assert leftover == ["unknown field 'zzz'", "$.nowhere.deep: odd"]
    assert len(found["$.mappings"].rows) == 3  # two submitted rows and a spare
