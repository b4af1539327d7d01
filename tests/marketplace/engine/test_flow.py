"""A workspace with extensions, templates and a connector, end to end through the engine API.

Real gears published and approved through the registry API, installed through
the workspaces service, running in real sandboxed workers; a connector reads
from a local HTTP server (allowed by the operator setting
``GEARS_HTTP_ALLOW_PRIVATE_HOSTS=127.0.0.1``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select

from marketplace.engine.models import ConnectorCursor, Decision, InstallationState, SyncRun
from tests.marketplace.engine.conftest import EXAMPLES, auth, write_gear

pytestmark = pytest.mark.sandbox

PICKER = """
from gears_sdk import hookimpl


@hookimpl
def gear_on_event(event, profile, config, ctx):
    if event["type"] == "custom" and event.get("name") == "promote":
        return {"set": {"attributes.vip": True}}  # outside the declared write set
    category = (event.get("properties") or {}).get("category")
    if not category:
        return None
    ctx.state.set("seen", (ctx.state.get("seen") or 0) + 1)
    return {"set": {"traits.preferred_category": category}, "increment": {"traits.views": 1}}


@hookimpl
def gear_score_items(profile, items, config, ctx):
    pref = (profile.get("traits") or {}).get("preferred_category")
    return [{"item_id": i["id"], "score": (10.0 if i.get("category") == pref else 0.0)
             + (i.get("price") or 0) / 1000} for i in items]
"""

GRID = """
import html

from gears_sdk import hookimpl


@hookimpl
def gear_render(profile, content, config, ctx):
    items = content.get("items") or []
    rows = "".join("<li>" + html.escape(i["title"]) + "</li>" for i in items)
    return {"html": "<ul>" + rows + "</ul><script>alert(1)</script>",
            "data": {"ids": [i["id"] for i in items], "title": content.get("title")}}
"""

BROKEN = """
from gears_sdk import hookimpl


@hookimpl
def gear_render(profile, content, config, ctx):
    raise RuntimeError("this template is broken")
"""

CONNECTOR = """
from gears_sdk import hookimpl

BASE = "http://127.0.0.1:%d"


@hookimpl
def gear_check(config, ctx):
    r = ctx.http.get(BASE + "/health")
    return {"ok": r.status == 200, "message": "reachable" if r.status == 200 else str(r.status)}


@hookimpl
def gear_streams(config, ctx):
    return [{"name": "customers", "kind": "profiles"}, {"name": "products", "kind": "items"},
            {"name": "orders", "kind": "events"}]


@hookimpl
def gear_read(stream, config, cursor, ctx):
    body = ctx.http.get(BASE + "/" + stream, params={"since": cursor or 0}).json()
    return {"records": body["records"], "cursor": body["cursor"], "has_more": body["more"]}


@hookimpl
def gear_write(stream, records, config, ctx):
    ctx.http.post(BASE + "/audience", json={"stream": stream, "records": records})
    return {"written": len(records)}
"""


class Source:
    """The connector's remote system: numbered records per stream, two per page."""

    def __init__(self) -> None:
        self.data: dict[str, list[dict[str, Any]]] = {"customers": [], "products": [],
                                                      "orders": []}
        self.seen: list[tuple[str, int]] = []
        self.audience: list[dict[str, Any]] = []

    def page(self, stream: str, since: int) -> dict[str, Any]:
        self.seen.append((stream, since))
        rows = self.data[stream][since:since + 2]
        return {"records": rows, "cursor": since + len(rows),
                "more": since + len(rows) < len(self.data[stream])}


@pytest.fixture
def source() -> Iterator[tuple[Source, int]]:
    src = Source()

    class Handler(BaseHTTPRequestHandler):
        def _send(self, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path == "/health":
                return self._send({"ok": True})
            since = int(parse_qs(url.query).get("since", ["0"])[0])
            return self._send(src.page(url.path.strip("/"), since))

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            src.audience.append(json.loads(self.rfile.read(length)))
            self._send({"ok": True})

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield src, server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def shop(engine_app, people, publish, install, tmp_path, source) -> dict[str, Any]:
    """The ``shop`` workspace with rfm-score, picker, hero-banner, grid, broken and a connector."""
    src, port = source
    gears = tmp_path / "gears"
    names = {
        "rfm": publish(EXAMPLES / "rfm-score"),
        "hero": publish(EXAMPLES / "hero-banner"),
        "picker": publish(write_gear(gears, "acme/picker", "extension",
                                     ["gear_on_event", "gear_score_items"], PICKER,
                                     read=["traits.*"],
                                     write=["traits.preferred_category", "traits.views"],
                                     permissions={"events": {"read": ["category"]},
                                                  "catalog": {"read": ["category", "price"]}})),
        "grid": publish(write_gear(gears, "acme/grid", "template", ["gear_render"], GRID,
                                   permissions={"catalog": {"read": ["title"]}})),
        "broken": publish(write_gear(gears, "acme/broken", "template", ["gear_render"], BROKEN)),
        "conn": publish(write_gear(gears, "acme/shop-sync", "connector",
                                   ["gear_check", "gear_streams", "gear_read", "gear_write"],
                                   CONNECTOR % port, network=[f"127.0.0.1:{port}"],
                                   read=["attributes.email", "traits.rfm"],
                                   write=["attributes.*"],
                                   permissions={"catalog": {"write": ["*"]},
                                                "events": {"write": ["view"]}})),
    }
    ids = {key: install(name) for key, name in names.items()}
    return {"ids": ids, "source": src, "h": auth(people["ws_token"])}


def test_events_segments_decisions_and_connector(client, session, shop):
    ids, src, h = shop["ids"], shop["source"], shop["h"]
    base = "/engine/v1/workspaces/shop"

    # -- a connector sync imports profiles, items and events, page by page -------------
    src.data["customers"] = [{"user_id": "ann", "attributes": {"first_name": "Ann",
                                                               "email": "ann@example.test"}},
                             {"user_id": "bob", "attributes": {"first_name": "Bob"}},
                             {"user_id": "cy", "attributes": {"first_name": "Cy"}}]
    src.data["products"] = [
        {"id": "p1", "title": "Red shoes", "category": "shoes", "price": 80},
        {"id": "p2", "title": "Blue hat", "category": "hats", "price": 20},
        {"id": "p3", "title": "Green shoes", "category": "shoes", "price": 120},
        {"id": "p4", "title": "Bad", "price": "free"}]
    src.data["orders"] = [{"id": "o1", "user_id": "bob", "type": "view",
                           "properties": {"category": "hats"}}]
    resp = client.post(f"{base}/connectors/{ids['conn']}/check", headers=h)
    assert resp.status_code == 200 and resp.get_json()["ok"] is True, resp.get_json()
    run = client.post(f"{base}/connectors/{ids['conn']}/sync", headers=h).get_json()
    assert run["status"] == "succeeded", run
    assert run["streams"]["customers"]["records"] == 3
    assert run["streams"]["products"]["records"] == 3
    assert run["streams"]["products"]["rejected"] == 1
    assert run["streams"]["orders"]["records"] == 1
    assert ("customers", 2) in src.seen and ("products", 4) not in src.seen
    session.rollback()
    cursors = {c.stream: c.cursor for c in session.scalars(select(ConnectorCursor))}
    assert cursors == {"customers": 3, "products": 4, "orders": 1}
    stored = session.get(SyncRun, run["id"])  # it beat at every page, the last one too
    assert stored.started_at < stored.heartbeat_at <= stored.finished_at

    # the second sync is incremental: the source is asked from the stored cursors
    src.seen.clear()
    src.data["customers"].append({"user_id": "dee", "attributes": {"first_name": "Dee"}})
    run = client.post(f"{base}/connectors/{ids['conn']}/sync", headers=h).get_json()
    assert run["streams"]["customers"]["records"] == 1
    assert run["streams"]["products"]["records"] == 0
    assert src.seen[0] == ("customers", 3)
    assert ("customers", 0) not in src.seen and ("products", 0) not in src.seen

    # -- events flow through the extensions ----------------------------------------------
    events = [{"id": "e1", "user_id": "ann", "type": "view", "properties": {"category": "shoes"},
               "timestamp": "2030-01-01T10:00:00Z"},
              {"id": "e2", "user_id": "ann", "type": "purchase",
               "properties": {"category": "shoes", "amount": 120}}]
    resp = client.post(f"{base}/events", headers=h, json={"events": events})
    body = resp.get_json()
    assert resp.status_code == 422 and body["error"]["details"][0]["path"] == \
        "$.events[0].timestamp"
    events[0].pop("timestamp")
    body = client.post(f"{base}/events", headers=h, json={"events": events}).get_json()
    assert body["accepted"] == 2 and body["gear_errors"] == {}, body
    assert body["patches_applied"] >= 3  # picker twice, rfm at least once
    again = client.post(f"{base}/events", headers=h, json={"events": events}).get_json()
    assert again["accepted"] == 0 and again["duplicates"] == 2

    profile = client.get(f"{base}/profiles/ann", headers=h).get_json()
    assert profile["traits"]["preferred_category"] == "shoes"
    assert profile["traits"]["views"] == 2
    assert profile["traits"]["rfm"]["segment"] == "new"
    assert profile["attributes"]["first_name"] == "Ann"
    session.rollback()
    state = session.get(InstallationState, ids["picker"])
    assert state is not None and state.data["seen"] >= 2

    # -- a patch outside the write set is refused; other gears still apply ---------------
    body = client.post(f"{base}/events", headers=h, json={"events": [
        {"user_id": "ann", "type": "custom", "name": "promote"}]}).get_json()
    assert body["accepted"] == 1
    assert body["gear_errors"][ids["picker"]]["codes"] == {"patch_refused": 1}
    assert ids["rfm"] not in body["gear_errors"]
    assert "vip" not in client.get(f"{base}/profiles/ann", headers=h).get_json()["attributes"]

    # -- a segment picks the profile up --------------------------------------------------
    rule = {"and": [{"field": "traits.rfm.segment", "op": "in", "value": ["new", "loyal"]},
                    {"event": "purchase", "at_least": 1, "within_days": 30}]}
    assert client.put(f"{base}/segments/buyers", headers=h,
                      json={"title": "Buyers", "rule": rule}).status_code == 200
    assert client.get(f"{base}/profiles/ann", headers=h).get_json()["segments"] == ["buyers"]
    assert client.get(f"{base}/profiles/bob", headers=h).get_json()["segments"] == []

    # -- decisions: personalized for the segment, the default for others ----------------
    campaign = {"placement": "home-hero", "experiences": [
        {"name": "buyers", "segment": "buyers", "installation": ids["hero"],
         "content": {"headline": "Hello again, {first_name}!"}},
        {"name": "broken", "segment": None, "installation": ids["broken"], "content": {}}],
        "fallback": {"html": "<p>Welcome</p>", "data": {"default": True}}}
    resp = client.put(f"{base}/campaigns/home", headers=h, json=campaign)
    assert resp.status_code == 200, resp.get_json()
    d = client.post(f"{base}/decide", headers=h,
                    json={"user_id": "ann", "placement": "home-hero"}).get_json()
    assert d["campaign"] == "home" and d["experience"] == "buyers" and not d["fallback"]
    assert "Hello again, Ann!" in d["content"]["html"]
    assert "New in shoes" in d["content"]["html"]
    assert d["content"]["data"]["headline"] == "Hello again, Ann!"

    # a broken template yields the fallback, reported, not a 500
    resp = client.post(f"{base}/decide", headers=h, json={"user_id": "bob",
                                                          "placement": "home-hero"})
    d = resp.get_json()
    assert resp.status_code == 200 and d["fallback"] is True and d["experience"] is None
    assert d["content"] == {"html": "<p>Welcome</p>", "data": {"default": True}}
    assert d["gears"][0]["installation"] == ids["broken"] and d["gears"][0]["ok"] is False
    assert "this template is broken" in d["gears"][0]["message"]
    session.rollback()
    logged = session.scalars(select(Decision).order_by(Decision.id)).all()
    assert [x.fallback for x in logged] == [False, True]
    assert logged[1].gears[0]["error"] == "gear_error"

    # -- items ranked by the extension's gear_score_items; HTML sanitized ----------------
    grid = {"placement": "recs", "experiences": [
        {"name": "all", "segment": None, "installation": ids["grid"],
         "content": {"title": "For you", "items": {"count": 2}}}]}
    assert client.put(f"{base}/campaigns/recs", headers=h, json=grid).status_code == 200
    d = client.post(f"{base}/decide", headers=h,
                    json={"user_id": "ann", "placement": "recs"}).get_json()
    assert d["content"]["data"]["ids"] == ["p3", "p1"]
    assert "<script>" not in d["content"]["html"] and "Green shoes" in d["content"]["html"]
    d = client.post(f"{base}/decide", headers=h,
                    json={"user_id": "bob", "placement": "recs"}).get_json()
    assert d["content"]["data"]["ids"][0] == "p2"  # bob viewed hats (imported order)

    # -- a segment exported through the connector, reads filtered ------------------------
    out = client.post(f"{base}/segments/buyers/export/{ids['conn']}", headers=h,
                      json={"stream": "crm"}).get_json()
    assert out["ok"] and out["members"] == 1 and out["written"] == 1, out
    record = src.audience[0]["records"][0]
    assert record["user_id"] == "ann" and record["attributes"] == {"email": "ann@example.test"}
    assert "preferred_category" not in record.get("traits", {})

