"""Hostile gears' results through the engine's HTTP API, on SQLite and PostgreSQL.

Gears published, approved and installed through the product's real path return
what a hostile gear would (numbers that overflow once applied, values 600 levels
deep, NaN, lone surrogates, wrong types), next to a benign gear in the same
workspace. No endpoint answers 5xx, nothing invalid is stored, the offending
installation's health counts ``invalid_result``, the benign gear's writes and
the other users' events still go through. Rows stored before the contract
held (``Infinity``, too deep) are read back without a 5xx or invalid JSON.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import text

from tests.marketplace.engine.conftest import auth, write_gear

pytestmark = pytest.mark.sandbox

BASE = "/engine/v1/workspaces/shop"

#: Makes the worker send what the SDK refuses to encode (NaN, lone surrogates).
LOOSE = """
import json
from gears_sdk import hookimpl
from gears_sdk.worker import protocol


def _loose(value):
    return json.dumps(value, separators=(",", ":"), allow_nan=True).encode("utf-8")


protocol.dumps = _loose


def deep(n):
    value = "leaf"
    for _ in range(n):
        value = [value]
    return value
"""

HOSTILE = LOOSE + """

PATCHES = {
    "big": lambda: {"set": {"traits.big": 1e308}},
    "overflow": lambda: {"increment": {"traits.big": 1e308}},
    "deep": lambda: {"set": {"traits.deep": deep(600)}},
    "nan": lambda: {"set": {"traits.big": float("nan")}},
    "surrogate": lambda: {"set": {"traits.deep": "\\ud800"}},
    "bloat": lambda: {"set": {"traits.blob": "x" * 150000, "traits.blob2": "y" * 150000}},
}


@hookimpl
def gear_on_event(event, profile, config, ctx):
    attack = (event.get("properties") or {}).get("attack")
    return PATCHES[attack]() if attack in PATCHES else None


@hookimpl
def gear_score_items(profile, items, config, ctx):
    if items[0].get("category") == "nan":
        return [{"item_id": i["id"], "score": float("nan")} for i in items]
    return [{"item_id": [i["id"]], "score": 1} for i in items]
"""

BENIGN = """
from gears_sdk import hookimpl


@hookimpl
def gear_on_event(event, profile, config, ctx):
    return {"increment": {"traits.seen": 1}}


@hookimpl
def gear_score_items(profile, items, config, ctx):
    return [{"item_id": i["id"], "score": 1.0 if i["id"].endswith("2") else 0.0}
            for i in items]
"""

BAD_TEMPLATE = LOOSE + """

@hookimpl
def gear_render(profile, content, config, ctx):
    return {"surrogate": {"html": "<p>\\ud800</p>"}, "int": {"html": 5},
            "list": {"html": ["<p>"]}}[content["attack"]]
"""

GOOD_TEMPLATE = """
from gears_sdk import hookimpl


@hookimpl
def gear_render(profile, content, config, ctx):
    ids = [i["id"] for i in content.get("items") or []]
    seen = (profile.get("traits") or {}).get("seen")
    return {"html": "<p>ok</p>", "data": {"ids": ids, "seen": seen}}
"""

BAD_SOURCE = LOOSE + """

@hookimpl
def gear_check(config, ctx):
    return {"ok": "yes", "details": {"x": float("nan")}}


@hookimpl
def gear_streams(config, ctx):
    if config["attack"] == "name_int":
        return [{"name": 5, "kind": "events"}]
    if config["attack"] == "name_list":
        return [{"name": ["orders"], "kind": "events"}]
    return [{"name": "orders", "kind": "events"}]


@hookimpl
def gear_read(stream, config, cursor, ctx):
    if config["attack"] == "records":
        return {"records": ["not a record", 5], "cursor": 1}
    if config["attack"] == "cursor":
        return {"records": [{"user_id": "c1", "type": "view"}], "cursor": float("inf")}
    if config["attack"] == "deep":
        return {"records": [{"user_id": "c1", "type": "view",
                             "properties": {"x": deep(600)}}], "cursor": 1}
    return {"records": [{"user_id": "c1", "type": "view"}], "cursor": 1}


@hookimpl
def gear_write(stream, records, config, ctx):
    return {"written": "all"}
"""

ATTACK_SCHEMA = {"type": "object", "properties": {"attack": {"type": "string"}}}


def strict_json(data: bytes) -> Any:
    """Parse a response body as strict JSON: ``Infinity``/``NaN`` are not JSON."""

    def refuse(name: str) -> Any:
        raise AssertionError(f"the response holds {name}, which is not JSON")

    return json.loads(data, parse_constant=refuse)


@pytest.fixture
def shop(engine_app, people, publish, install, tmp_path) -> dict[str, Any]:
    gears = tmp_path / "gears"
    ext = ["gear_on_event", "gear_score_items"]
    hostile = publish(write_gear(gears, "acme/hostile", "extension", ext, HOSTILE,
                                 write=["traits.big", "traits.deep", "traits.blob",
                                        "traits.blob2"],
                                 permissions={"events": {"read": ["attack"]},
                                              "catalog": {"read": ["category"]}}))
    benign = publish(write_gear(gears, "acme/benign", "extension", ext, BENIGN,
                                write=["traits.seen"]))
    bad_template = publish(write_gear(gears, "acme/bad-template", "template", ["gear_render"],
                                      BAD_TEMPLATE))
    good_template = publish(write_gear(gears, "acme/good-template", "template",
                                       ["gear_render"], GOOD_TEMPLATE, read=["traits.seen"]))
    source = publish(write_gear(gears, "acme/bad-source", "connector",
                                ["gear_check", "gear_streams", "gear_read", "gear_write"],
                                BAD_SOURCE, config_schema=ATTACK_SCHEMA))
    ids = {"hostile": install(hostile), "benign": install(benign),
           "bad_template": install(bad_template), "good_template": install(good_template)}
    return {"ids": ids, "source": source, "install": install,
            "h": auth(people["ws_token"])}


def _health(client, h, installation: str) -> dict[str, Any]:
    from marketplace.engine import get_engine

    sync = get_engine(client.application).health_sync
    assert sync is not None and sync.flush()  # what the background flush does each second
    resp = client.get(f"/api/v1/workspaces/shop/installations/{installation}", headers=h)
    assert resp.status_code == 200, resp.get_json()
    health: dict[str, Any] = resp.get_json()["health"]
    return health


def _profile(client, h, user: str) -> dict[str, Any]:
    resp = client.get(f"{BASE}/profiles/{user}", headers=h)
    assert resp.status_code == 200, resp.data[:300]
    doc: dict[str, Any] = strict_json(resp.data)
    return doc


def test_hostile_patches_are_refused_and_counted_while_the_batch_goes_on(client, shop):
    ids, h = shop["ids"], shop["h"]
    events = [{"user_id": user, "type": "view", "properties": {"attack": attack}}
              for user, attack in [("u1", "big"), ("u2", "none"), ("u1", "overflow"),
                                   ("u3", "deep"), ("u4", "nan"), ("u5", "surrogate"),
                                   ("u6", "bloat"), ("u2", "none")]]
    resp = client.post(f"{BASE}/events", headers=h, json={"events": events})
    assert resp.status_code == 200, resp.data[:500]
    body = strict_json(resp.data)
    assert body["accepted"] == 8
    assert body["gear_errors"][ids["hostile"]]["codes"] == {"invalid_result": 5}
    assert ids["benign"] not in body["gear_errors"]

    # the benign gear's writes all applied; no bad value stored, the good one kept
    seen = {u: _profile(client, h, u)["traits"] for u in ("u1", "u2", "u3", "u4", "u5", "u6")}
    assert {u: t["seen"] for u, t in seen.items()} == \
        {"u1": 2, "u2": 2, "u3": 1, "u4": 1, "u5": 1, "u6": 1}
    assert seen["u1"]["big"] == 1e308
    assert "deep" not in seen["u3"] and "big" not in seen["u4"] and "deep" not in seen["u5"]
    assert "blob" not in seen["u6"]

    health = _health(client, h, ids["hostile"])
    assert health["failures"] == {"invalid_result": 5}
    assert _health(client, h, ids["benign"])["failures"] == {}

    # the profile with the large number still decides and serves valid JSON
    campaign = {"placement": "hero", "experiences": [
        {"name": "all", "segment": None, "installation": ids["good_template"], "content": {}}]}
    assert client.put(f"{BASE}/campaigns/hero", headers=h, json=campaign).status_code == 200
    resp = client.post(f"{BASE}/decide", headers=h, json={"user_id": "u1", "placement": "hero"})
    assert resp.status_code == 200 and strict_json(resp.data)["content"]["data"]["seen"] == 2


def test_hostile_scores_and_renders_degrade_the_decision(client, shop):
    ids, h = shop["ids"], shop["h"]
    items = [{"id": f"{cat}{n}", "title": f"{cat} {n}", "category": cat}
             for cat in ("nan", "list") for n in (1, 2, 3)]
    assert client.put(f"{BASE}/catalog/items", headers=h, json={"items": items}).status_code == 200
    for placement, cat in (("recs-nan", "nan"), ("recs-list", "list")):
        campaign = {"placement": placement, "experiences": [
            {"name": "all", "segment": None, "installation": ids["good_template"],
             "content": {"items": {"count": 3, "category": cat}}}]}
        assert client.put(f"{BASE}/campaigns/{placement}", headers=h,
                          json=campaign).status_code == 200
        resp = client.post(f"{BASE}/decide", headers=h,
                           json={"user_id": "v1", "placement": placement})
        assert resp.status_code == 200, resp.data[:500]
        d = strict_json(resp.data)
        assert d["content"]["data"]["ids"][0] == f"{cat}2"  # the benign scorer still ranks
        bad = [g for g in d["gears"] if g["installation"] == ids["hostile"]]
        assert bad and bad[0]["error"] == "invalid_result", d["gears"]

    for attack in ("surrogate", "int", "list"):
        campaign = {"placement": f"hero-{attack}", "experiences": [
            {"name": "bad", "segment": None, "installation": ids["bad_template"],
             "content": {"attack": attack}}], "fallback": {"html": "<p>fallback</p>"}}
        assert client.put(f"{BASE}/campaigns/hero-{attack}", headers=h,
                          json=campaign).status_code == 200
        resp = client.post(f"{BASE}/decide", headers=h,
                           json={"user_id": "v1", "placement": f"hero-{attack}"})
        assert resp.status_code == 200, resp.data[:500]
        d = strict_json(resp.data)
        assert d["fallback"] is True and d["content"]["html"] == "<p>fallback</p>"
        assert d["gears"][0]["error"] == "invalid_result"
    assert _health(client, h, ids["bad_template"])["failures"] == {"invalid_result": 3}
    assert _health(client, h, ids["hostile"])["failures"] == {"invalid_result": 2}
    resp = client.get(f"{BASE}/decisions", headers=h)
    assert resp.status_code == 200 and len(strict_json(resp.data)["decisions"]) == 5


@pytest.mark.parametrize("attack", ["name_int", "name_list", "records", "cursor", "deep"])
def test_hostile_connector_output_fails_the_sync_not_the_engine(client, shop, attack):
    h = shop["h"]
    iid = shop["install"](shop["source"], {"attack": attack})
    resp = client.post(f"{BASE}/connectors/{iid}/sync", headers=h)
    assert resp.status_code == 200, resp.data[:500]
    run = strict_json(resp.data)
    assert run["status"] == "failed" and "returned an invalid" in run["error"], run
    assert _health(client, h, iid)["failures"] == {"invalid_result": 1}
    resp = client.get(f"{BASE}/connectors/{iid}/runs", headers=h)
    assert resp.status_code == 200 and strict_json(resp.data)["runs"][0]["status"] == "failed"
    assert client.get(f"{BASE}/profiles/c1", headers=h).status_code == 404
    check = client.post(f"{BASE}/connectors/{iid}/check", headers=h)
    assert check.status_code == 200 and strict_json(check.data)["ok"] is False


def test_data_stored_before_the_contract_is_read_back_safely(client, session, shop, db_url):
    """Rows written straight into the database, as an engine without the checks left them."""
    ids, h = shop["ids"], shop["h"]
    events = [{"user_id": u, "type": "view"} for u in ("old1", "old2")]
    assert client.post(f"{BASE}/events", headers=h, json={"events": events}).status_code == 200
    assert client.put(f"{BASE}/catalog/items", headers=h, json={"items": [
        {"id": "i1", "title": "One", "price": 5}]}).status_code == 200
    deep = "[" * 600 + "]" * 600
    # SQLite kept Infinity as text; PostgreSQL's json refused it, but not an overflowing
    # number literal or depth
    infinite = "Infinity" if db_url.startswith("sqlite") else "1e999"
    traits = '{"seen": 1, "big": ' + infinite + ', "deep": ' + deep + ', "s": "\\ud800"}'
    if not db_url.startswith("sqlite"):
        traits = traits.replace('"\\ud800"', '"ok"')
    t, a = (":t", ":a") if db_url.startswith("sqlite") else ("CAST(:t AS json)",
                                                             "CAST(:a AS json)")
    session.execute(text(f"UPDATE engine_profiles SET traits = {t} WHERE user_id = 'old1'"),
                    {"t": traits})
    session.execute(text(f"UPDATE engine_catalog_items SET price = 'Infinity', attributes = {a}"),
                    {"a": '{"x": ' + deep + "}"})
    session.commit()

    doc = _profile(client, h, "old1")
    assert doc["traits"]["seen"] == 1 and doc["traits"]["big"] is None
    resp = client.get(f"{BASE}/catalog/items", headers=h)
    assert resp.status_code == 200 and strict_json(resp.data)["items"][0]["price"] is None
    campaign = {"placement": "hero", "experiences": [
        {"name": "all", "segment": None, "installation": ids["good_template"],
         "content": {"items": {"count": 1}}}]}
    assert client.put(f"{BASE}/campaigns/hero", headers=h, json=campaign).status_code == 200
    resp = client.post(f"{BASE}/decide", headers=h, json={"user_id": "old1", "placement": "hero"})
    assert resp.status_code == 200, resp.data[:500]
    d = strict_json(resp.data)
    assert d["fallback"] is False and d["content"]["data"] == {"ids": ["i1"], "seen": 1}
    more = [{"user_id": "old1", "type": "view", "properties": {"attack": "overflow"}}]
    resp = client.post(f"{BASE}/events", headers=h, json={"events": more})
    assert resp.status_code == 200, resp.data[:500]
    assert _profile(client, h, "old1")["traits"]["seen"] == 2
    assert client.get(f"/api/v1/workspaces/shop/installations/{ids['hostile']}",
                      headers=h).status_code == 200


def test_a_patch_overflowing_on_replay_is_refused_and_reported(session, people):
    """Replayed on the locked row, a patch can meet a value another batch wrote meanwhile
    (1e308 there, an increment of 1e308 here): refused, reported for the gear's health."""
    from gears_sdk.types import ProfilePatch
    from marketplace.db import utcnow
    from marketplace.engine.ingest import IngestResult, _Patch, _replay
    from marketplace.engine.models import Profile

    row = Profile(workspace_id=people["ws"].id, user_id="r1", attributes={},
                  traits={"big": 1e308}, created_at=utcnow(), updated_at=utcnow())
    session.add(row)
    session.flush()
    result = IngestResult()
    patch = _Patch("e1", "r1", "inst-x", "acme/x", ProfilePatch(increment={"traits.big": 1e308}))
    refused = _replay({"r1": row}, [patch], {"e1"}, result, utcnow())
    assert [(i, c) for i, c, _ in refused] == [("inst-x", "invalid_result")]
    assert result.gear_errors["inst-x"].codes == {"invalid_result": 1}
    assert row.traits == {"big": 1e308} and result.patches_applied == 0
    session.rollback()


BLOATED_SOURCE = """
from gears_sdk import hookimpl


@hookimpl
def gear_check(config, ctx):
    return None


@hookimpl
def gear_streams(config, ctx):
    return [{"name": "people", "kind": "profiles"}]


@hookimpl
def gear_read(stream, config, cursor, ctx):
    return {"records": [{"user_id": "big", "traits": {"blob": "x" * 200000}},
                        {"user_id": "big", "traits": {"blob2": "y" * 100000}},
                        {"user_id": "small", "traits": {"blob": "z"}}], "cursor": 1}
"""


def test_connector_profile_records_respect_the_profile_size_cap(client, shop, publish,
                                                                 tmp_path):
    h = shop["h"]
    name = publish(write_gear(tmp_path / "bloat", "acme/bloated-source", "connector",
                              ["gear_check", "gear_streams", "gear_read"], BLOATED_SOURCE,
                              write=["traits.blob", "traits.blob2"]))
    iid = shop["install"](name)
    resp = client.post(f"{BASE}/connectors/{iid}/sync", headers=h)
    assert resp.status_code == 200, resp.data[:500]
    run = strict_json(resp.data)
    stream = run["streams"]["people"]
    assert run["status"] == "succeeded" and stream["records"] == 1 and stream["rejected"] == 1
    assert stream["problems"][0]["code"] == "too_large"
    assert client.get(f"{BASE}/profiles/big", headers=h).status_code == 404
    assert _profile(client, h, "small")["traits"]["blob"] == "z"
