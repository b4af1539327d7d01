"""Config validation, capability diffs and their plain-language descriptions (no database)."""

from __future__ import annotations

import pytest

from marketplace.workspaces import (
    apply_defaults,
    capability_diff,
    describe_capability,
    validate_config,
)
from marketplace.workspaces.secrets import SecretBox, derive_key

SCHEMA = {
    "type": "object",
    "required": ["api_key", "endpoint"],
    "properties": {
        "window_days": {"type": "integer", "minimum": 1, "default": 90},
        "endpoint": {"type": "string", "format": "uri"},
        "contact": {"type": "string", "format": "email"},
        "mode": {"enum": ["fast", "exact"], "default": "fast"},
        "api_key": {"type": "string", "format": "secret", "minLength": 8},
        "password": {"type": "string", "format": "password"},
        "tuning": {"type": "object", "properties": {
            "alpha": {"type": "number", "default": 0.5, "maximum": 1},
            "deep": {"type": "object", "properties": {"beta": {"type": "integer", "default": 3}}},
        }},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
    },
}


def manifest(schema=SCHEMA):
    return {"name": "acme/x", "version": "1.0.0", "config_schema": schema}


def test_defaults_fill_top_level_and_nested_objects():
    clean, secrets, problems = validate_config(
        manifest(), {"endpoint": "https://api.example.com", "api_key": "s3cret-key"})
    assert problems == []
    assert clean == {"endpoint": "https://api.example.com", "window_days": 90, "mode": "fast",
                     "tuning": {"alpha": 0.5, "deep": {"beta": 3}}}
    assert secrets == {"api_key": "s3cret-key"}


def test_given_values_win_over_defaults_and_nested_values_are_completed():
    out = apply_defaults(SCHEMA, {"window_days": 7, "tuning": {"deep": {}}})
    assert out["window_days"] == 7
    assert out["tuning"] == {"alpha": 0.5, "deep": {"beta": 3}}


def test_every_problem_is_reported_with_its_path():
    _, _, problems = validate_config(manifest(), {
        "window_days": 0, "endpoint": "not a url", "contact": "nobody", "mode": "slow",
        "tuning": {"alpha": 2, "deep": {"beta": "three"}}, "tags": ["a", "b", "c"],
    })
    by_path = {p["path"]: p for p in problems}
    assert set(by_path) == {"$.window_days", "$.endpoint", "$.contact", "$.mode", "$.api_key",
                            "$.tuning.alpha", "$.tuning.deep.beta", "$.tags"}
    assert by_path["$.api_key"]["message"] == "this field is required"
    assert by_path["$.api_key"]["code"] == "schema.required"
    assert by_path["$.window_days"]["message"] == "must be at least 1"
    assert by_path["$.contact"]["message"] == "must be an email address"
    assert by_path["$.endpoint"]["code"] == "schema.format"
    assert "fast" in by_path["$.mode"]["message"]
    assert by_path["$.tuning.deep.beta"]["message"] == "must be a whole number"


def test_messages_never_quote_a_secret_value():
    schema = {"type": "object", "properties": {
        "token": {"type": "string", "format": "secret", "pattern": "^tok_"}}}
    _, _, problems = validate_config(manifest(schema), {"token": "hunter2-very-secret"})
    assert len(problems) == 1
    assert "hunter2" not in problems[0]["message"]


def test_secrets_are_split_from_the_config():
    clean, secrets, problems = validate_config(manifest(), {
        "endpoint": "https://x.example", "api_key": "12345678", "password": "pw"})
    assert problems == []
    assert "api_key" not in clean and "password" not in clean
    assert secrets == {"api_key": "12345678", "password": "pw"}


@pytest.mark.parametrize("config", [[1, 2], "text", 3])
def test_a_config_that_is_not_an_object_is_one_problem(config):
    assert validate_config(manifest(), config)[2] == [
        {"path": "$", "message": "the config must be a JSON object", "code": "schema.type"}]


def test_a_manifest_without_a_config_schema_accepts_an_empty_config():
    assert validate_config({"name": "acme/x"}, None) == ({}, {}, [])


def test_capability_diff():
    old = {"permissions": {"network": ["api.example.com"], "profile": {"read": ["traits.*"]}}}
    new = {"permissions": {"network": ["api.example.com", "cdn.example.com"],
                           "profile": {"write": ["traits.rfm"]}}}
    diff = capability_diff(old, new)
    assert diff.added == ["network:cdn.example.com", "profile.write:traits.rfm"]
    assert diff.removed == ["profile.read:traits.*"]
    assert diff.unchanged == ["network:api.example.com"]
    assert diff.grows
    assert capability_diff(new, old).added == ["profile.read:traits.*"]
    assert capability_diff(None, new).added == sorted(diff.added + diff.unchanged)
    assert not capability_diff(new, new).grows


@pytest.mark.parametrize(("cap", "text"), [
    ("network:api.example.com", "Send requests to api.example.com"),
    ("network:*.example.com", "Send requests to any sub-domain of example.com"),
    ("network:api.example.com:8443", "Send requests to api.example.com on port 8443"),
    ("profile.read:traits.*", "Read your profiles' traits (all of them)"),
    ("profile.read:events", "Read your profiles' events"),
    ("profile.read:attributes.first_name", "Read the profile field attributes.first_name"),
    ("profile.write:traits.rfm", "Change the profile field traits.rfm"),
    ("catalog:read", "Read the product catalog"),
    ("catalog:write", "Change the product catalog"),
    ("events:write", "Record new events"),
    ("catalog.read:price", "Read the catalog field price of your items"),
    ("catalog.read:*", "Read every field of your catalog items"),
    ("catalog.write:attributes.*", "Add catalog items and change their attributes (all of them)"),
    ("events.read:amount", "Read the event property amount"),
    ("events.write:purchase", "Record purchase events"),
    ("events.write:*", "Record events of any type"),
    ("secrets:API_KEY", "Use the secret API_KEY"),
    ("teleport:mars", "teleport:mars"),
])
def test_describe_capability(cap, text):
    assert describe_capability(cap) == text


def test_secret_box_round_trip_and_key_rotation():
    old = SecretBox("old-key")
    token = old.encrypt({"api_key": "abc"})
    assert token is not None and "abc" not in token
    assert old.decrypt(token) == {"api_key": "abc"}
    assert SecretBox("new-key", ["old-key"]).decrypt(token) == {"api_key": "abc"}
    with pytest.raises(Exception, match="SECRET_KEY_FALLBACKS"):
        SecretBox("new-key").decrypt(token)
    assert old.encrypt({}) is None and old.decrypt(None) == {}
    assert derive_key("k") == derive_key("k") != derive_key("k2")
