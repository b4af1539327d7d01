"""The engine API without gears: authorization, validation, catalog, segments, campaigns,
the OpenAPI document. No worker starts here."""

from __future__ import annotations

import pytest

from marketplace.engine.openapi import document
from marketplace.engine.validation import MAX_EVENTS_PER_BATCH
from tests.marketplace.engine.conftest import auth

BASE = "/engine/v1/workspaces/shop"


@pytest.fixture
def h(people):
    return auth(people["ws_token"])


def test_authorization(client, people, make_token):
    assert client.get(f"{BASE}/segments").status_code == 401
    resp = client.get(f"{BASE}/segments", headers=auth(people["other_token"]))
    assert resp.status_code == 403 and resp.get_json()["error"]["code"] == "forbidden"
    read_only = make_token(people["member"], ["read"])
    assert client.get(f"{BASE}/segments", headers=auth(read_only)).status_code == 403
    assert client.get(f"{BASE}/segments", headers=auth(people["ws_token"])).status_code == 200
    assert client.get(f"{BASE}/segments", headers=auth(people["admin_token"])).status_code == 200
    resp = client.get("/engine/v1/workspaces/nowhere/segments",
                      headers=auth(people["admin_token"]))
    assert resp.status_code == 404 and resp.get_json()["error"]["code"] == "workspace_not_found"
    # a member removed from the workspace loses the token's power at once
    from marketplace.accounts.service import remove_workspace_member
    from marketplace.db import database

    with database(client.application).sessionmaker() as s:
        from marketplace.accounts import get_workspace
        from marketplace.models import User

        remove_workspace_member(s, get_workspace(s, "shop"), s.get(User, people["member"].id))
        s.commit()
    assert client.get(f"{BASE}/segments", headers=auth(people["ws_token"])).status_code == 403


def test_event_batch_validation(client, h):
    bad = [{"user_id": "u1", "type": "view"},
           {"user_id": "", "type": "login", "extra": 1},
           {"user_id": "u2", "type": "custom"},
           {"user_id": "u3", "type": "click", "name": "x", "properties": [],
            "timestamp": "yesterday"},
           "nope"]
    resp = client.post(f"{BASE}/events", headers=h, json={"events": bad})
    body = resp.get_json()
    assert resp.status_code == 422 and body["error"]["code"] == "invalid_batch"
    assert [d["path"] for d in body["error"]["details"]] == [
        "$.events[1].extra", "$.events[1].user_id", "$.events[1].type", "$.events[2].name",
        "$.events[3].name", "$.events[3].properties", "$.events[3].timestamp", "$.events[4]"]
    too_many = [{"user_id": "u", "type": "view"}] * (MAX_EVENTS_PER_BATCH + 1)
    resp = client.post(f"{BASE}/events", headers=h, json={"events": too_many})
    assert resp.status_code == 422 and resp.get_json()["error"]["code"] == "batch_too_large"
    assert client.post(f"{BASE}/events", headers=h, json={"events": []}).status_code == 422
    resp = client.post(f"{BASE}/events", headers=h, data="not json")
    assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "invalid_json"
    dup = [{"id": "a", "user_id": "u", "type": "view"}] * 2
    resp = client.post(f"{BASE}/events", headers=h, json={"events": dup})
    assert resp.get_json()["error"]["details"][0]["path"] == "$.events[1].id"
    # nothing was stored by the refused batches; a good one is stored once
    good = {"events": [{"id": "a", "user_id": "u1", "type": "purchase",
                        "properties": {"amount": 5}}]}
    assert client.post(f"{BASE}/events", headers=h, json=good).get_json()["accepted"] == 1
    assert client.post(f"{BASE}/events", headers=h, json=good).get_json()["duplicates"] == 1
    profile = client.get(f"{BASE}/profiles/u1", headers=h).get_json()
    assert [e["id"] for e in profile["events"]] == ["a"]
    assert client.get(f"{BASE}/profiles/u2", headers=h).status_code == 404


def test_catalog_and_unknown_routes(client, h):
    items = {"items": [{"id": "p1", "title": "Shoe", "category": "shoes", "price": 10},
                       {"id": "p1", "title": "Shoe v2", "category": "shoes", "price": 12},
                       {"id": "p2", "title": "Hat", "active": False}]}
    assert client.put(f"{BASE}/catalog/items", headers=h, json=items).get_json() == \
        {"upserted": 2}
    listed = client.get(f"{BASE}/catalog/items?category=shoes", headers=h).get_json()["items"]
    assert [(i["id"], i["title"], i["price"]) for i in listed] == [("p1", "Shoe v2", 12)]
    resp = client.put(f"{BASE}/catalog/items", headers=h,
                      json={"items": [{"id": "p3", "price": "free", "colour": "red"}]})
    assert [d["path"] for d in resp.get_json()["error"]["details"]] == [
        "$.items[0].colour", "$.items[0].price"]
    resp = client.get("/engine/v1/nothing-here", headers=h)
    assert resp.status_code == 404 and resp.get_json()["error"]["code"] == "not_found"


def test_segments_and_campaigns_crud(client, h):
    resp = client.put(f"{BASE}/segments/Bad Name", headers=h,
                      json={"rule": {"and": [{"field": "x", "op": "=="}]}})
    paths = [d["path"] for d in resp.get_json()["error"]["details"]]
    assert resp.status_code == 422 and paths == ["$.name", "$.rule.and[0].field",
                                                 "$.rule.and[0].value"]
    rule = {"field": "traits.tier", "op": "==", "value": "gold"}
    assert client.put(f"{BASE}/segments/gold", headers=h, json={"rule": rule}).status_code == 200
    assert client.get(f"{BASE}/segments", headers=h).get_json()["segments"][0]["name"] == "gold"
    resp = client.put(f"{BASE}/campaigns/home", headers=h, json={
        "placement": "home", "experiences": [
            {"name": "a", "segment": "silver", "installation": "nope", "content": []}],
        "fallback": {"html": 1}})
    assert [d["path"] for d in resp.get_json()["error"]["details"]] == [
        "$.experiences[0].segment", "$.experiences[0].installation",
        "$.experiences[0].content", "$.fallback.html"]
    resp = client.post(f"{BASE}/decide", headers=h, json={"user_id": "u1", "placement": "home"})
    assert resp.status_code == 404 and resp.get_json()["error"]["code"] == "no_campaign"
    resp = client.post(f"{BASE}/decide", headers=h, json={"placement": 3})
    assert [d["path"] for d in resp.get_json()["error"]["details"]] == ["$.user_id",
                                                                        "$.placement"]
    assert client.delete(f"{BASE}/segments/gold", headers=h).get_json() == {"deleted": "gold"}
    assert client.get(f"{BASE}/segments/gold", headers=h).status_code == 404


def test_every_engine_route_is_documented(app, client):
    doc = client.get("/engine/v1/openapi.json").get_json()
    assert doc == document()
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/engine/v1"):
            path = rule.rule.replace("<", "{").replace(">", "}")
            routes |= {(path, m.lower()) for m in rule.methods - {"HEAD", "OPTIONS"}}
    documented = {(p, m) for p, ops in doc["paths"].items() for m in ops}
    assert routes == documented
    from openapi_spec_validator import validate

    validate(doc)


def test_bodies_meet_the_value_contract(client, h):
    """NaN, Infinity, values too deep and lone surrogates are refused with their path."""
    deep = "[" * 600 + "]" * 600
    bodies = {
        '{"events": [{"user_id": "u1", "type": "view", "properties": {"x": NaN}}]}':
            (422, "not_finite", "$.events[0].properties.x"),
        '{"events": [{"user_id": "u1", "type": "view", "properties": {"x": 1e999}}]}':
            (422, "not_finite", "$.events[0].properties.x"),
        '{"events": [{"user_id": "u1", "type": "view", "properties": {"x": ' + deep + "}}]}":
            (400, "too_deep", "$"),  # refused before parsing
        '{"events": [{"user_id": "u1", "type": "view", "properties": {"x": "\\ud800"}}]}':
            (422, "invalid_unicode", "$.events[0].properties.x"),
    }
    for raw, (status, code, path) in bodies.items():
        resp = client.post(f"{BASE}/events", headers={**h, "Content-Type": "application/json"},
                           data=raw)
        assert resp.status_code == status, (raw[:80], resp.status_code)
        error = resp.get_json()["error"]
        assert error["code"] == ("invalid_value" if status == 422 else code)
        assert error["details"][0]["code"] == code and error["details"][0]["path"] == path
    resp = client.post(f"{BASE}/events", headers={**h, "Content-Type": "application/json"},
                       data="{nope")
    assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "invalid_json"


def test_nul_in_the_url_is_refused_alike_on_both_databases(client, h):
    for url in (f"{BASE}/profiles/a%00b", f"{BASE}/catalog/items?category=a%00b",
                f"{BASE}/segments/a%00b", f"{BASE}/connectors/a%00b/runs",
                f"{BASE}/decisions?limit=1%00"):
        resp = client.get(url, headers=h)
        assert resp.status_code == 400, (url, resp.status_code)
        assert resp.get_json()["error"]["code"] == "invalid_parameter"


def _matches(doc: dict, name: str, value: object) -> None:
    import jsonschema

    jsonschema.validate(value, {"$ref": f"#/components/schemas/{name}",
                                "components": doc["components"]})


def test_profile_import_recent_profiles_and_member_counts(client, h, app):
    doc = document()
    bad = client.put(f"{BASE}/profiles", headers=h, json={"profiles": [
        {"user_id": "ann", "attributes": {"tier": "gold"}},
        {"user_id": "", "attributes": {}}, {"user_id": "bob", "colour": "red"}]})
    assert bad.status_code == 422 and bad.get_json()["error"]["code"] == "invalid_profiles"
    assert [d["path"] for d in bad.get_json()["error"]["details"]] == [
        "$.profiles[1].user_id", "$.profiles[2]"]
    # all or nothing: ann was not imported either
    assert client.get(f"{BASE}/profiles", headers=h).get_json() == {"profiles": []}
    assert client.put(f"{BASE}/profiles", headers=h, json={"profiles": []}).status_code == 422
    done = client.put(f"{BASE}/profiles", headers=h, json={"profiles": [
        {"user_id": "ann", "attributes": {"tier": "gold"}},
        {"user_id": "bob", "attributes": {"tier": "silver"}, "traits": {"score": 3}}]})
    assert done.status_code == 200 and done.get_json() == {"imported": 2}
    _matches(doc, "Imported", done.get_json())
    recent = client.get(f"{BASE}/profiles?limit=5", headers=h).get_json()
    _matches(doc, "RecentProfiles", recent)
    assert {p["user_id"] for p in recent["profiles"]} == {"ann", "bob"}
    assert len(client.get(f"{BASE}/profiles?limit=1", headers=h).get_json()["profiles"]) == 1
    assert client.get(f"{BASE}/profiles?limit=0", headers=h).status_code == 422
    rule = {"field": "attributes.tier", "op": "==", "value": "gold"}
    assert client.put(f"{BASE}/segments/gold", headers=h, json={"rule": rule}).status_code == 200
    plain = client.get(f"{BASE}/segments", headers=h).get_json()
    assert "members" not in plain["segments"][0]
    counted = client.get(f"{BASE}/segments?counts=true", headers=h).get_json()
    _matches(doc, "SegmentList", counted)
    assert [(s["name"], s["members"]) for s in counted["segments"]] == [("gold", 1)]
    assert client.get(f"{BASE}/segments?counts=maybe", headers=h).status_code == 422
    # the node token (the installation's own processes) acts in any workspace
    node = auth(app.config["ENGINE_NODE_TOKEN"])
    assert client.get(f"{BASE}/segments", headers=node).status_code == 200
    assert client.get(f"{BASE}/segments", headers=auth("not-" + app.config[
        "ENGINE_NODE_TOKEN"])).status_code == 401
