"""One input contract for every JSON body, query and path value (test client, both DBs):
bounded depth and size, finite numbers, valid Unicode, timestamps in range, names
without control characters — 400/413/422 with the path, and nothing stored."""

from __future__ import annotations

import io
import json

import pytest
from sqlalchemy import select, text

from marketplace.engine.models import CatalogItem, Event
from tests.marketplace.engine.conftest import auth

BASE = "/engine/v1/workspaces/shop"


@pytest.fixture
def h(people):
    return auth(people["ws_token"])


def post_raw(client, url, headers, body: str, method: str = "post"):
    return getattr(client, method)(url, headers=headers, content_type="application/json",
                                   data=body.encode("utf-8", "surrogatepass"))


def detail_paths(resp) -> list[str]:
    return [d["path"] for d in resp.get_json()["error"]["details"]]


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_numbers_in_event_properties_are_refused_with_their_path(client, h, session,
                                                                             number):
    body = '{"events": [{"user_id": "u1", "type": "view", "properties": {"x": NUMBER}}]}'
    body = body.replace("NUMBER", number)
    resp = post_raw(client, f"{BASE}/events", h, body)
    assert resp.status_code == 422, resp.get_data(as_text=True)
    assert detail_paths(resp) == ["$.events[0].properties.x"]
    assert session.scalar(select(Event)) is None


def test_non_finite_prices_are_refused(client, h, session):
    resp = post_raw(client, f"{BASE}/catalog/items", h,
                    '{"items": [{"id": "a", "title": "A", "price": 1e400}]}', "put")
    assert resp.status_code == 422 and detail_paths(resp) == ["$.items[0].price"]
    assert session.scalar(select(CatalogItem)) is None


def test_deep_bodies_are_refused_before_parsing(client, h):
    deep = '{"events": ' + "[" * 100_000 + "]" * 100_000 + "}"
    for url, method in [(f"{BASE}/events", "post"), (f"{BASE}/catalog/items", "put"),
                        (f"{BASE}/segments/buyers", "put"), (f"{BASE}/decide", "post"),
                        ("/api/v1/workspaces/shop/installations", "post")]:
        resp = post_raw(client, url, h, deep, method)
        assert resp.status_code == 400, (url, resp.get_data(as_text=True)[:300])
        assert resp.get_json()["error"]["code"] == "too_deep"
    nested = {"events": [{"user_id": "u", "type": "view",
                          "properties": {"p": json.loads("[" * 900 + "]" * 900)}}]}
    resp = post_raw(client, f"{BASE}/events", h, json.dumps(nested))
    assert resp.status_code == 400


def test_lone_surrogates_in_ids_and_titles_are_refused(client, h, session):
    resp = post_raw(client, f"{BASE}/events", h,
                    '{"events": [{"user_id": "u\\ud800", "type": "view"}]}')
    assert resp.status_code == 422 and detail_paths(resp) == ["$.events[0].user_id"]
    resp = post_raw(client, f"{BASE}/catalog/items", h,
                    '{"items": [{"id": "a", "title": "bad \\udfff title"}]}', "put")
    assert resp.status_code == 422 and detail_paths(resp) == ["$.items[0].title"]
    resp = client.put(f"{BASE}/catalog/items", headers=h, data=b'{"items": [{"id": "\xff"}]}',
                      content_type="application/json")
    assert resp.status_code == 400  # not UTF-8
    assert session.scalar(select(CatalogItem)) is None


@pytest.mark.parametrize("stamp", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00",
                                   "0001-01-01T00:00:00", "1969-12-31T23:59:59Z"])
def test_timestamps_at_the_datetime_limits_are_refused(client, h, stamp):
    resp = client.post(f"{BASE}/events", headers=h,
                       json={"events": [{"user_id": "u", "type": "view", "timestamp": stamp}]})
    assert resp.status_code == 422 and detail_paths(resp) == ["$.events[0].timestamp"]


def test_names_with_a_trailing_newline_or_nul_are_refused(client, h):
    rule = {"rule": {"event": "view", "at_least": 1, "within_days": 7}}
    assert client.put(f"{BASE}/segments/buyers", headers=h, json=rule).status_code == 200
    resp = client.put(f"{BASE}/segments/buyers%0A", headers=h, json=rule)
    assert resp.status_code == 422, resp.get_json()
    resp = client.put(f"{BASE}/segments/buyers%00", headers=h, json=rule)
    assert resp.status_code == 400 and detail_paths(resp) == ["path.name"]
    resp = client.get(f"{BASE}/catalog/items?category=a%00b", headers=h)
    assert resp.status_code == 400 and detail_paths(resp) == ["query.category"]
    names = [s["name"] for s in client.get(f"{BASE}/segments", headers=h).get_json()["segments"]]
    assert names == ["buyers"]


def test_campaign_references_must_be_strings(client, h):
    for exp in [{"name": "a", "installation": {"id": 1}},
                {"name": "a", "installation": "x", "segment": ["buyers"]},
                {"name": {"x": 1}, "installation": "x"}]:
        resp = client.put(f"{BASE}/campaigns/c1", headers=h,
                          json={"placement": "home", "experiences": [exp]})
        assert resp.status_code == 422, resp.get_data(as_text=True)[:300]
    resp = client.put(f"{BASE}/campaigns/c1", headers=h,
                      json={"placement": "home", "priority": 2**62,
                            "experiences": [{"name": "a", "installation": "x"}]})
    assert resp.status_code == 422 and "$.priority" in detail_paths(resp)


def test_installation_configs_are_checked_before_the_schema(client, people, make_gear_archive):
    schema = {"type": "object", "properties": {"n": {"type": "number"}}}
    release(client, people, make_gear_archive(config_schema=schema))
    url = "/api/v1/workspaces/shop/installations"
    h = auth(people["ws_token"])
    resp = post_raw(client, url, h, '{"gear": "acme/hello", "config": {"n": 1e400}, "consent": true}')
    assert resp.status_code == 422 and detail_paths(resp) == ["$.config.n"]
    resp = post_raw(client, url, h, '{"gear": "acme/hello", "config": {"n": NaN}, "consent": true}')
    assert resp.status_code == 422 and detail_paths(resp) == ["$.config.n"]
    assert client.get(url, headers=h).get_json()["items"] == []


def release(client, people, data: bytes) -> None:
    resp = client.post("/api/v1/gears", headers=auth(people["publish_token"]),
                       data={"file": (io.BytesIO(data), "g.gear")},
                       content_type="multipart/form-data")
    assert resp.status_code == 201, resp.get_json()
    resp = client.post("/api/v1/admin/gears/acme/hello/1.0.0/approve",
                       headers=auth(people["admin_token"]))
    assert resp.status_code == 200, resp.get_json()


def test_stored_non_finite_values_never_cause_a_5xx(client, people, make_gear_archive,
                                                   session, h):
    """Rows written before the contract (``price: 1e400``, ``{"n": 1e400}``) read back
    as JSON, and the repair migration fixes them."""
    schema = {"type": "object", "properties": {"n": {"type": "number"}}}
    release(client, people, make_gear_archive(config_schema=schema))
    url = "/api/v1/workspaces/shop/installations"
    resp = client.post(url, headers=h, json={"gear": "acme/hello", "config": {"n": 1},
                                             "consent": True})
    assert resp.status_code == 201, resp.get_json()
    inst = resp.get_json()["id"]
    assert client.put(f"{BASE}/catalog/items", headers=h,
                      json={"items": [{"id": "a", "price": 1.5, "attributes": {"w": 1}}]}
                      ).status_code == 200
    _store_infinity(session, inst)
    resp = client.get(f"{BASE}/catalog/items", headers=h)
    assert resp.status_code == 200
    (item,) = json.loads(resp.get_data(as_text=True))["items"]  # strict JSON: no Infinity
    assert item["price"] is None and item["attributes"] == {"w": None}
    resp = client.get(f"{url}/{inst}", headers=h)
    assert resp.status_code == 200 and json.loads(resp.get_data(as_text=True))["config"] == {
        "n": None}


def _store_infinity(session, inst: str) -> None:
    if session.bind.dialect.name == "postgresql":  # jsonb refuses Infinity: only the price
        session.execute(text("UPDATE engine_catalog_items SET price = 'Infinity'"))
        session.execute(text("""UPDATE engine_catalog_items SET attributes = '{"w": null}'"""))
        session.execute(text("""UPDATE installations SET config = '{"n": null}'"""))
    else:
        session.execute(text("UPDATE engine_catalog_items SET price = 9e999, "
                             """attributes = '{"w": Infinity}'"""))
        session.execute(text("""UPDATE installations SET config = '{"n": 1e400}'"""))
    session.commit()


def test_admin_audit_filters_refuse_huge_pages_and_far_dates(client, make_user):
    from tests.marketplace.web_support import PASSWORD, sign_in

    make_user(role="admin", email="auditor@gears.test", password=PASSWORD)
    sign_in(client, "auditor@gears.test")
    assert client.get("/admin/audit?page=2&from=2024-01-01&to=2030-12-31").status_code == 200
    for query in ["page=" + "9" * 30, "page=99999999999", "page=-1", "page=x",
                  "to=9999-12-31", "from=0001-01-01", "from=2024-02-30", "actor=a%00b"]:
        assert client.get(f"/admin/audit?{query}").status_code == 400, query


def test_nul_in_a_web_form_is_refused_before_the_database(client):
    from tests.marketplace.web_support import csrf_token

    resp = client.post("/login", data={"email": "a\x00@b.test", "password": "x",
                                       "csrf_token": csrf_token(client)})
    assert resp.status_code == 400
