"""The one table of capabilities: every kind is declared, shown and enforced.

A capability that is enforced but not in the table would never be shown at
consent; one in the table without an enforcing rule would be shown but not
enforced. These tests tie the table to the manifest schema, to the rules of
:mod:`gears_sdk.permissions` and to what consent shows; the runtime and the
engine are driven with a gear lacking each capability in
``tests/marketplace/runtime/test_capabilities.py``.
"""

from __future__ import annotations

from typing import Any

import pytest

from gears_sdk.capabilities import (
    CAPABILITIES,
    capabilities,
    capability_diff,
    capability_ids,
    describe_capability,
)
from gears_sdk.manifest import Permissions, manifest_schema
from gears_sdk.permissions import (
    ENFORCERS,
    EVENT_TYPES,
    filter_event,
    filter_item,
    record_refusals,
)

KEYS = [k.key for k in CAPABILITIES]

#: One manifest ``permissions`` granting something of every kind.
EVERYTHING = {
    "network": ["api.example.com"],
    "profile": {"read": ["traits.a"], "write": ["traits.b"]},
    "catalog": {"read": ["price"], "write": ["title"]},
    "events": {"read": ["amount"], "write": ["purchase"]},
    "secrets": ["api_token"],
}


def _schema_leaves(node: dict[str, Any], prefix: str) -> set[str]:
    """The dotted paths of the lists a ``permissions`` schema declares."""
    node = node.get("else", node)
    if "$ref" in node:
        ref = node["$ref"].rsplit("/", 1)[-1]
        node = manifest_schema()["$defs"][ref]
    if node.get("type") == "object" and "properties" in node:
        out: set[str] = set()
        for key, sub in node["properties"].items():
            out |= _schema_leaves(sub, f"{prefix}.{key}")
        return out
    return {prefix}


def test_every_permission_of_the_schema_is_a_row_of_the_table() -> None:
    declared = _schema_leaves(manifest_schema()["properties"]["permissions"], "permissions")
    assert declared == {k.declared_at for k in CAPABILITIES}


def test_every_row_is_enforced_and_every_enforced_rule_is_a_row() -> None:
    assert set(ENFORCERS) == set(KEYS)
    assert all(ENFORCERS[k] for k in KEYS)


@pytest.mark.parametrize("kind", CAPABILITIES, ids=KEYS)
def test_every_row_is_shown_in_words(kind) -> None:
    caps = [c for c in capabilities(Permissions.from_dict(EVERYTHING)) if c.kind == kind.key]
    assert caps, f"{kind.key} is granted by {kind.declared_at} but not derived"
    for cap in caps:
        text = describe_capability(cap.id)
        assert text and text != cap.id and cap.arg in text
        assert cap.to_dict() == {"capability": cap.id, "description": text}
    assert kind.enforced


def test_unknown_capabilities_are_shown_as_they_are() -> None:
    assert describe_capability("teleport:mars") == "teleport:mars"
    assert describe_capability("catalog:read") == "Read the product catalog"  # the older form


def test_the_older_list_form_grants_every_field() -> None:
    old = Permissions.from_dict({"catalog": ["read", "write"], "events": ["write"]})
    assert capability_ids(old) == ["catalog.read:*", "catalog.write:*", "events.write:*"]
    assert describe_capability("catalog.write:*") == \
        "Add catalog items and change any of their fields"


def test_the_diff_lists_what_a_new_version_adds() -> None:
    old = {"permissions": {"catalog": {"write": ["title"]}}}
    new = {"permissions": {"catalog": {"write": ["title", "price"]}}}
    diff = capability_diff(old, new)
    assert diff.added == ["catalog.write:price"] and diff.unchanged == ["catalog.write:title"]
    assert diff.grows and not capability_diff(new, old).grows
    assert capability_diff(None, new).added == ["catalog.write:price", "catalog.write:title"]


def test_the_schema_lists_the_engine_event_types() -> None:
    events = manifest_schema()["properties"]["permissions"]["properties"]["events"]
    assert events["else"]["properties"]["write"]["items"]["enum"] == [*EVENT_TYPES, "*"]


def test_items_keep_their_id_and_the_declared_fields() -> None:
    item = {"id": "p1", "title": "Shoe", "price": 10, "attributes": {"brand": "x", "cost": 3}}
    assert filter_item(item, []) == {"id": "p1"}
    assert filter_item(item, ["price", "attributes.brand"]) == \
        {"id": "p1", "price": 10, "attributes": {"brand": "x"}}
    assert filter_item(item, ["*"]) == item


def test_events_keep_only_the_declared_properties() -> None:
    event = {"id": "e", "type": "purchase", "properties": {"amount": 5, "email": "a@b.c"}}
    assert filter_event(event, [])["properties"] == {}
    assert filter_event(event, ["amount"]) == {**event, "properties": {"amount": 5}}
    assert filter_event(event, ["*"]) == event
    assert filter_event({"type": "view", "properties": ["a@b.c"]}, ["*"])["properties"] == {}


@pytest.mark.parametrize(("kind", "record", "declared", "paths"), [
    ("profiles", {"user_id": "u", "attributes": {"email": "x"}}, {}, [""]),
    ("profiles", {"user_id": "u", "attributes": {"email": "x"}},
     {"profile": {"write": ["traits.*"]}}, ["attributes.email"]),
    ("profiles", {"user_id": "u", "email": "x"}, {"profile": {"write": ["traits.*"]}},
     ["attributes.email"]),
    ("profiles", {"user_id": "u", "attributes": {"email": "x"}},
     {"profile": {"write": ["attributes.*"]}}, []),
    ("items", {"id": "p", "price": 0.01}, {}, [""]),
    ("items", {"id": "p", "title": "t", "price": 0.01, "url": "https://evil.test"},
     {"catalog": {"write": ["title"]}}, ["price", "url"]),
    ("items", {"id": "p", "sku": "1"}, {"catalog": {"write": ["title"]}}, ["attributes.sku"]),
    ("items", {"id": "p", "sku": "1", "attributes": {"a": 1}},
     {"catalog": {"write": ["attributes.*"]}}, []),
    ("events", {"user_id": "u", "type": "purchase"}, {}, ["type"]),
    ("events", {"user_id": "u", "type": "purchase"}, {"events": {"write": ["view"]}}, ["type"]),
    ("events", {"user_id": "u", "type": "purchase"}, {"events": {"write": ["purchase"]}}, []),
    ("events", {"user_id": "u", "type": "purchase"}, {"events": {"write": ["*"]}}, []),
])
def test_connector_records_write_only_what_is_declared(kind, record, declared, paths) -> None:
    refusals = record_refusals(Permissions.from_dict(declared), kind, record)
    assert [p for p, _ in refusals] == paths
    assert all("permissions." in why for _, why in refusals)


def _manifest(permissions: dict[str, Any]) -> dict[str, Any]:
    return {"name": "acme/x", "version": "1.0.0", "kind": "extension", "title": "X",
            "summary": "x", "entrypoint": "x", "hooks": ["gear_on_event"],
            "engine": ">=1.0.0 <2.0.0", "permissions": permissions}


@pytest.mark.parametrize(("permissions", "problems"), [
    ({"catalog": ["read", "write"], "events": ["read"]}, []),
    ({"catalog": {"read": ["title", "attributes.*"], "write": ["*"]},
      "events": {"read": ["amount", "items.*"], "write": ["purchase", "custom"]}}, []),
    ({"catalog": {"write": ["pricey"]}}, ["$.permissions.catalog.write[0]"]),
    ({"catalog": {"read": ["price"], "delete": ["*"]}}, ["$.permissions.catalog"]),
    ({"events": {"write": ["refund"]}}, ["$.permissions.events.write[0]"]),
    ({"events": {"read": ["a b"]}}, ["$.permissions.events.read[0]"]),
    ({"events": ["reed"]}, ["$.permissions.events[0]"]),
    ({"catalog": "read"}, ["$.permissions.catalog"]),
])
def test_the_manifest_schema_takes_both_forms_and_points_at_mistakes(permissions,
                                                                     problems) -> None:
    from gears_sdk.manifest import validate_manifest

    assert [p.path for p in validate_manifest(_manifest(permissions))] == problems
