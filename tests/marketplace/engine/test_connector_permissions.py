"""A gear writes and reads only what its manifest declares, through the engine's real path.

Gears are published, approved and installed through the registry and the
workspaces service, run in real sandboxed workers, and are driven through
the engine's HTTP API: a connector's sync, ``/events`` and ``/decide``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select

from marketplace.engine.models import CatalogItem, Event, InstallationState, Profile
from tests.marketplace.engine.conftest import auth, write_gear

pytestmark = pytest.mark.sandbox
BASE = "/engine/v1/workspaces/shop"

#: Each stream's records come from the connector's own config, so a test says what it syncs.
SOURCE = """
from gears_sdk import hookimpl


@hookimpl
def gear_check(config, ctx):
    return None


@hookimpl
def gear_streams(config, ctx):
    return [{"name": name, "kind": kind} for name, kind in
            (("customers", "profiles"), ("products", "items"), ("orders", "events"))]


@hookimpl
def gear_read(stream, config, cursor, ctx):
    return {"records": config["records"].get(stream, []), "cursor": 1}
"""
CONFIG = {"type": "object", "properties": {"records": {"type": "object"}}}

HOSTILE = {
    "customers": [{"user_id": "ann", "attributes": {"email": "attacker@evil.test"}},
                  {"user_id": "ann", "email": "attacker@evil.test"}],
    "products": [{"id": "p1", "price": 0.01, "url": "https://evil.test/p1"}],
    "orders": [{"id": "evil-1", "user_id": "ann", "type": "purchase",
                "properties": {"amount": 99999}}],
}


@pytest.fixture
def shop(engine_app, client, session, people, publish, install, tmp_path) -> dict[str, Any]:
    """The ``shop`` workspace with a profile and a catalog item the connectors aim at."""
    h = auth(people["ws_token"])
    resp = client.put(f"{BASE}/catalog/items", headers=h, json={"items": [
        {"id": "p1", "title": "Shoes", "price": 80, "url": "https://shop.test/p1"},
        {"id": "p2", "title": "Hat", "price": 20, "url": "https://shop.test/p2"}]})
    assert resp.status_code == 200, resp.get_json()
    session.add(Profile(workspace_id=people["ws"].id, user_id="ann",
                        attributes={"email": "ann@shop.test"}, traits={}))
    session.commit()

    def connector(name: str, permissions: dict[str, Any], records: dict[str, Any],
                  write: list[str] | None = None) -> str:
        gear = publish(write_gear(tmp_path / name, f"acme/{name}", "connector",
                                  ["gear_check", "gear_streams", "gear_read"], SOURCE,
                                  write=write, config_schema=CONFIG, permissions=permissions))
        return install(gear, config={"records": records})

    return {"h": h, "connector": connector, "ws": people["ws"]}


def _item(session, ws, item_id: str) -> CatalogItem | None:
    session.rollback()
    return session.scalar(select(CatalogItem).where(CatalogItem.workspace_id == ws.id,
                                                    CatalogItem.item_id == item_id))


def _sync(client, h, installation: str) -> dict[str, Any]:
    resp = client.post(f"{BASE}/connectors/{installation}/sync", headers=h)
    assert resp.status_code == 200, resp.get_json()
    run: dict[str, Any] = resp.get_json()
    assert run["status"] == "succeeded", run
    return run


def test_a_connector_declaring_no_writes_changes_nothing(client, session, shop):
    installation = shop["connector"]("hostile", {}, HOSTILE)
    run = _sync(client, shop["h"], installation)
    streams = run["streams"]
    assert {s: (v["records"], v["refused"]) for s, v in streams.items()} == {
        "customers": (0, 2), "products": (0, 1), "orders": (0, 1)}
    problems = [p for v in streams.values() for p in v["problems"]]
    assert {p["code"] for p in problems} == {"not_permitted"}
    assert {p["path"] for p in problems} == {"$.records[0]", "$.records[1]", "$.records[0].type"}
    assert any("permissions.catalog.write" in p["message"] for p in problems)
    # what GET /engine/v1/.../connectors/<id>/runs lists says the same
    runs = client.get(f"{BASE}/connectors/{installation}/runs", headers=shop["h"]).get_json()
    assert json.dumps(runs).count("not_permitted") == 4

    session.rollback()
    ann = session.scalar(select(Profile).where(Profile.user_id == "ann"))
    assert ann is not None and ann.attributes == {"email": "ann@shop.test"}
    assert session.scalars(select(Event)).all() == []
    p1 = _item(session, shop["ws"], "p1")
    assert p1 is not None and (p1.price, p1.url) == (80, "https://shop.test/p1")


def test_a_connector_writes_only_the_catalog_fields_it_declares(client, session, shop):
    records = {"products": [
        {"id": "p1", "title": "Cheap shoes", "price": 0.01, "url": "https://evil.test/p1"},
        {"id": "p2", "title": "Blue hat"},
        {"id": "p3", "title": "New scarf"},
        {"id": "p2", "title": "Blue hat", "attributes": {"landing": "https://evil.test"}}]}
    installation = shop["connector"]("titles", {"catalog": {"write": ["title"]}}, records)
    run = _sync(client, shop["h"], installation)
    products = run["streams"]["products"]
    assert (products["records"], products["refused"]) == (2, 2)
    paths = sorted(p["path"] for p in products["problems"])
    assert paths == ["$.records[0].price", "$.records[0].url", "$.records[3].attributes.landing"]

    p1, p2, p3 = (_item(session, shop["ws"], i) for i in ("p1", "p2", "p3"))
    assert p1 is not None and (p1.title, p1.price, p1.url) == \
        ("Shoes", 80, "https://shop.test/p1")  # refused whole, never half-applied
    assert p2 is not None and (p2.title, p2.price, p2.url) == \
        ("Blue hat", 20, "https://shop.test/p2")  # the fields it left out are kept
    assert p2.attributes == {}
    assert p3 is not None and (p3.title, p3.price) == ("New scarf", None)


def test_a_connector_declaring_its_writes_syncs(client, session, shop):
    records = {"customers": [{"user_id": "bob", "attributes": {"email": "bob@shop.test"}}],
               "orders": [{"id": "o1", "user_id": "bob", "type": "view"},
                          {"id": "o2", "user_id": "bob", "type": "purchase"}]}
    installation = shop["connector"]("crm", {"events": {"write": ["view"]}}, records,
                                     write=["attributes.email"])
    run = _sync(client, shop["h"], installation)
    assert run["streams"]["customers"]["records"] == 1
    assert (run["streams"]["orders"]["records"], run["streams"]["orders"]["refused"]) == (1, 1)
    session.rollback()
    assert [e.event_id for e in session.scalars(select(Event))] == ["o1"]


READER = """
from gears_sdk import hookimpl


@hookimpl
def gear_on_event(event, profile, config, ctx):
    ctx.state.set("event", event)
    ctx.state.set("history", profile.get("events"))


@hookimpl
def gear_score_items(profile, items, config, ctx):
    ctx.state.set("items", items)
    return []
"""

GRID = """
from gears_sdk import hookimpl


@hookimpl
def gear_render(profile, content, config, ctx):
    return {"html": "<p>items</p>", "data": {"items": content.get("items")}}
"""


def _state(session, installation: str) -> dict[str, Any]:
    session.rollback()
    row = session.get(InstallationState, installation)
    assert row is not None
    return dict(row.data)


@pytest.mark.parametrize("declared", [False, True])
def test_extensions_read_only_the_event_properties_and_catalog_fields_they_declare(
        client, session, shop, publish, install, tmp_path, declared):
    perms = {"events": {"read": ["category"]}, "catalog": {"read": ["price"]}} if declared \
        else {}
    reader = install(publish(write_gear(tmp_path / "r", "acme/reader", "extension",
                                        ["gear_on_event", "gear_score_items"], READER,
                                        read=["events"], permissions=perms)))
    grid = install(publish(write_gear(tmp_path / "g", "acme/grid", "template", ["gear_render"],
                                      GRID, permissions=perms)))
    h = shop["h"]
    body = client.post(f"{BASE}/events", headers=h, json={"events": [
        {"id": "e1", "user_id": "ann", "type": "purchase",
         "properties": {"category": "shoes", "card_last4": "4242"}}]}).get_json()
    assert body["accepted"] == 1 and body["gear_errors"] == {}, body
    seen = _state(session, reader)
    assert seen["event"]["properties"] == ({"category": "shoes"} if declared else {})
    assert [e["properties"] for e in seen["history"]] == [seen["event"]["properties"]]

    campaign = {"placement": "recs", "experiences": [
        {"name": "all", "segment": None, "installation": grid, "content": {"items": {}}}]}
    assert client.put(f"{BASE}/campaigns/recs", headers=h, json=campaign).status_code == 200
    d = client.post(f"{BASE}/decide", headers=h,
                    json={"user_id": "ann", "placement": "recs"}).get_json()
    want = [{"id": "p2", "price": 20}, {"id": "p1", "price": 80}] if declared \
        else [{"id": "p2"}, {"id": "p1"}]
    assert d["content"]["data"]["items"] == want, d
    assert _state(session, reader)["items"] == want
