"""Remote mode: a web app with ``ENGINE_URLS`` runs no engine of its own. Its pages, its
"Test connection" button and its ``/engine/v1`` forwarder reach an engine node: here
a real threaded WSGI server on loopback serving an embedded-mode app on the same
database and instance directory, which is what ``marketplace engine serve`` runs.

The engine pages' tests of ``test_web_engine`` run here again, against the remote
web app (the ``client`` fixture below replaces the embedded one)."""

# ruff: noqa: F811  (fixtures imported from other modules are redefined as parameters)
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from flask import Flask
from sqlalchemy import text
from werkzeug.serving import make_server

from marketplace import services
from tests.marketplace.test_web_engine import (  # noqa: F401
    engine_data,
    post,
    test_campaign_save_errors_and_delete,
    test_campaigns_have_one_order_everywhere,
    test_every_page_renders_for_a_member,
    test_forms_refuse_a_missing_or_wrong_csrf_token,
    test_invalid_segment_shows_the_errors_inline_and_keeps_the_input,
    test_pages_are_for_members_only,
    test_preview_form_refuses_bad_input,
    test_profile_lookup,
    test_segment_list_counts_members,
    test_valid_segment_persists_and_can_be_edited_and_deleted,
)
from tests.marketplace.test_web_install import install, sync, token_of  # noqa: F401
from tests.marketplace.web_support import (  # noqa: F401
    admin,
    business,
    publish_gear,
    signed_in,
)

SHOP = "/engine/v1/workspaces/shop"


class Node:
    """An app served by a real threaded WSGI server on 127.0.0.1 (one process, one engine,
    many request threads: an engine node)."""

    def __init__(self, app: Flask) -> None:
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def node(app: Flask, app_config: dict[str, Any]) -> Iterator[Node]:
    """An engine node's app (``create_node_app``, what ``marketplace engine serve`` runs)
    on the test's database, served on loopback."""
    from marketplace.db import database
    from marketplace.engine import shutdown
    from marketplace.engine.node import create_node_app

    node_app = create_node_app(app_config)
    started = Node(node_app)
    yield started
    started.stop()
    shutdown(node_app)
    database(node_app).engine.dispose()


def web_app_for(app_config: dict[str, Any], urls: str) -> Flask:
    from marketplace import create_app

    return create_app({**app_config, "ENGINE_URLS": urls, "ENGINE_TIMEOUT_SECONDS": 10})


@pytest.fixture
def web_app(app_config: dict[str, Any], node: Node) -> Iterator[Flask]:
    from marketplace.db import database

    web = web_app_for(app_config, node.url)
    yield web
    database(web).engine.dispose()


@pytest.fixture
def client(web_app: Flask) -> Any:
    """The remote web app's client: every test of this module uses the pages through it."""
    return web_app.test_client()


@pytest.fixture
def dead_url() -> str:
    from tests.fixtures.live import free_port

    return f"http://127.0.0.1:{free_port()}"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_web_app_with_engine_nodes_runs_no_engine(web_app, app):
    assert services.engine(web_app).mode == "remote"
    assert "gears_engine" not in web_app.extensions  # no manager, no runtime, no workers
    assert services.engine(app).mode == "embedded"
    # the same token on both sides: the web app and its nodes share the instance directory
    assert web_app.config["ENGINE_NODE_TOKEN"] == app.config["ENGINE_NODE_TOKEN"]


def test_engine_api_requests_are_forwarded_unchanged(client, node, business, make_token):
    token = make_token(business, ["workspace:shop"])
    events = {"events": [{"id": "e1", "user_id": "ann", "type": "view",
                          "properties": {"item_id": "sho-1"}}]}
    sent = client.post(f"{SHOP}/events", headers=bearer(token), json=events)
    assert sent.status_code == 200 and sent.get_json()["accepted"] == 1
    # what the web server answers is what the node answers to the same request
    direct = requests.get(f"{node.url}{SHOP}/profiles/ann", headers=bearer(token), timeout=10)
    via_web = client.get(f"{SHOP}/profiles/ann", headers=bearer(token))
    assert via_web.status_code == 200 and via_web.get_json() == direct.json()
    assert [e["id"] for e in via_web.get_json()["events"]] == ["e1"]
    # the query string goes along
    listed = client.get(f"{SHOP}/profiles?limit=1", headers=bearer(token)).get_json()
    assert [p["user_id"] for p in listed["profiles"]] == ["ann"]
    # the node checks the client's token: none, or another workspace's, is refused there
    anonymous = client.get(f"{SHOP}/segments")
    assert anonymous.status_code == 401 and anonymous.get_json()["error"]["code"] == \
        "unauthorized"
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    refused = client.put(f"{SHOP}/segments/x", headers=bearer(token), json={"rule": 1})
    assert refused.status_code == 422 and refused.get_json()["error"]["code"] == \
        "invalid_segment"
    assert client.get("/engine/v1/openapi.json").get_json() == requests.get(
        f"{node.url}/engine/v1/openapi.json", timeout=10).json()


def test_a_body_over_the_limit_is_refused_before_it_reaches_a_node(client, business,
                                                                   make_token):
    token = make_token(business, ["workspace:shop"])
    huge = b'{"events": [' + b" " * (8 * 1024 * 1024) + b"]}"
    resp = client.post(f"{SHOP}/events", data=huge,
                       headers={**bearer(token), "Content-Type": "application/json"})
    assert resp.status_code == 413 and resp.get_json()["error"]["code"] == "payload_too_large"


def test_with_no_node_answering_the_api_says_engine_unavailable(app_config, dead_url, node,
                                                                business, make_token):
    from marketplace.db import database

    web = web_app_for(app_config, dead_url)
    try:
        client = web.test_client()
        token = make_token(business, ["workspace:shop"])
        resp = client.get(f"{SHOP}/segments", headers=bearer(token))
        assert resp.status_code == 503 and resp.is_json
        error = resp.get_json()["error"]
        assert error["code"] == "engine_unavailable" and dead_url in error["message"]
        assert resp.headers["Retry-After"]
    finally:
        database(web).engine.dispose()
    # with the dead node listed first, a live one takes the call
    web = web_app_for(app_config, f"{dead_url},{node.url}")
    try:
        client = web.test_client()
        for _ in range(2):  # whichever node the pool starts with
            assert client.get(f"{SHOP}/segments", headers=bearer(token)).status_code == 200
    finally:
        database(web).engine.dispose()


def test_pages_say_the_engine_is_unavailable_when_no_node_answers(app_config, dead_url,
                                                                  business, node):
    from marketplace.db import database
    from tests.marketplace.web_support import sign_in

    web = web_app_for(app_config, dead_url)
    try:
        client = web.test_client()
        sign_in(client, business.email)
        resp = client.get("/workspaces/shop/segments")
        assert resp.status_code == 503
        assert "no engine node answered" in resp.get_data(as_text=True)
    finally:
        database(web).engine.dispose()


def test_test_connection_reaches_the_engine_on_the_node(signed_in, sync, web_app, dead_url,
                                                        app_config):
    inst = install(signed_in)
    base = f"/workspaces/shop/installations/{inst}"
    page = signed_in.get("/workspaces/shop").get_data(as_text=True)
    assert signed_in.post(base + "/enabled", data={"csrf_token": token_of(page),
                                                   "enabled": "0"}).status_code == 302
    page = signed_in.get("/workspaces/shop").get_data(as_text=True)
    tested = signed_in.post(base + "/test", data={"csrf_token": token_of(page)},
                            follow_redirects=True).get_data(as_text=True)
    # the engine's connector check answered (from the node: this app has no engine)
    assert "gear_check: the installation is disabled" in tested
    assert "not available" not in tested


def test_the_demo_seed_fills_the_workspace_through_a_node(web_app, app, session):
    from marketplace.demo import DEMO_WORKSPACE, seed_demo

    said: list[str] = []
    seed_demo(web_app, said.append)
    engine = services.engine(app)  # read back in-process, on the node's side
    assert engine.items(DEMO_WORKSPACE, limit=1)["items"]
    names = [c["name"] for c in engine.campaigns(DEMO_WORKSPACE)]
    assert names and "ingested" in " ".join(said)
    people = {p["user_id"] for p in engine.recent_profiles(DEMO_WORKSPACE, 50)}
    assert {"alice", "bob"} <= people


def test_remote_engine_answers_like_the_local_one(web_app, app, business, session):
    """Every read and write of the service, through the node and in-process: the same
    answers, the same errors."""
    from marketplace.errors import MarketplaceError

    remote, local = services.engine(web_app), services.engine(app)
    rule = {"field": "attributes.tier", "op": "==", "value": "gold"}
    assert remote.import_profiles("shop", [
        {"user_id": "ann", "attributes": {"tier": "gold"}},
        {"user_id": "bob", "attributes": {"tier": "silver"}}]) == {"imported": 2}
    remote.put_segment("shop", "gold", {"title": "Gold", "rule": rule})
    for engine in (remote, local):
        assert [(s["name"], s["members"]) for s in engine.segments("shop", counts=True)] == \
            [("gold", 1)]
        assert engine.segment("shop", "gold")["title"] == "Gold"
        assert engine.profile("shop", "ann")["segments"] == ["gold"]
        assert {p["user_id"] for p in engine.recent_profiles("shop", 5)} == {"ann", "bob"}
        with pytest.raises(MarketplaceError) as err:
            engine.put_segment("shop", "Bad Name", {"rule": {"op": "?"}})
        assert err.value.status == 422 and err.value.code == "invalid_segment"
        assert [d["path"] for d in err.value.details][:1] == ["$.name"]
        with pytest.raises(MarketplaceError) as gone:
            engine.profile("shop", "nobody")
        assert (gone.value.status, gone.value.code) == (404, "profile_not_found")
        with pytest.raises(MarketplaceError) as bad:
            engine.import_profiles("shop", [{"user_id": "", "attributes": []}])
        assert bad.value.code == "invalid_profiles"
        assert bad.value.details[0]["path"].startswith("$.profiles[0]")
    for odd in ("..", ".", "a b", "x%2Fy"):  # a name is a name, never a path
        with pytest.raises(MarketplaceError) as err:
            remote.segment("shop", odd)
        assert (err.value.status, err.value.code) == (404, "segment_not_found"), odd
    remote.delete_segment("shop", "gold")
    assert local.segments("shop") == []
    result = remote.ingest("shop", [{"id": "x1", "user_id": "cy", "type": "view"}])
    assert result["accepted"] == 1 and local.profile("shop", "cy")["user_id"] == "cy"
    with pytest.raises(MarketplaceError) as err:
        remote.decide("shop", "cy", "nowhere")
    assert (err.value.status, err.value.code) == (404, "no_campaign")


def test_node_status_comes_from_the_node_and_is_not_relayed_to_clients(web_app, node, client):
    found = services.engine(web_app).node_status()
    assert found["mode"] == "remote" and found["node"] == node.url
    assert found["engine_version"] == web_app.config["ENGINE_VERSION"]
    # the node-internal endpoints are for the installation's processes, not for clients
    token = bearer(web_app.config["ENGINE_NODE_TOKEN"])
    assert client.get("/engine/v1/_node/status", headers=token).status_code == 404
    # nor by a detour through dot segments, plain or escaped
    for detour in ("/engine/v1/workspaces/../_node/status",
                   "/engine/v1/workspaces/%2E%2E/_node/status"):
        resp = client.get(detour, headers=token)
        assert resp.status_code == 404 and resp.is_json, detour
    assert requests.get(f"{node.url}/engine/v1/_node/status", timeout=10).status_code == 401


def test_forms_post_json_unchanged(client, business, make_token):
    """A forwarded JSON body arrives byte for byte (UTF-8, nesting, numbers)."""
    token = make_token(business, ["workspace:shop"])
    body = {"title": "Ünïcødé ✓", "rule": {"and": [{"field": "traits.score", "op": ">=",
                                                     "value": 1.5}]}}
    saved = client.put(f"{SHOP}/segments/uni", headers=bearer(token),
                       data=json.dumps(body, ensure_ascii=False).encode(),
                       content_type="application/json")
    assert saved.status_code == 200
    got = client.get(f"{SHOP}/segments/uni", headers=bearer(token)).get_json()
    assert (got["title"], got["rule"]) == (body["title"], body["rule"])
    assert re.match(r"\d{4}-\d\d-\d\d", got["updated_at"])


def test_pages_and_api_of_a_live_web_server_reach_its_engine_node(live_registry):
    """``marketplace serve`` as processes: gunicorn web workers without an engine, and an
    engine node process. A segment saved on a page is what the API (forwarded to the
    node) answers, and the node's own endpoints stay off the public server."""
    reg = live_registry()
    reg.marketplace("create-user", "biz@gears.test", "--role", "business", "--password-stdin",
                    input="business password 1234\n")
    reg.marketplace("create-workspace", "shop", "--member", "biz@gears.test")
    token = reg.token("biz@gears.test", "workspace:shop")
    url = reg.start(workers=2)
    node_line = re.search(r"Engine node on (http://\S+)/engine/v1 \(pid (\d+)\)",
                          reg.log.read_text())
    assert node_line, reg.log.read_text()
    node_url = node_line.group(1)

    browser = requests.Session()
    login = browser.get(f"{url}/login", timeout=10).text
    signed = browser.post(f"{url}/login", timeout=10, allow_redirects=False, data={
        "email": "biz@gears.test", "password": "business password 1234",
        "csrf_token": token_of(login)})
    assert signed.status_code == 302
    form = browser.get(f"{url}/workspaces/shop/segments/new", timeout=10).text
    rule = '{"field": "attributes.country", "op": "==", "value": "FR"}'
    saved = browser.post(f"{url}/workspaces/shop/segments/new", timeout=10,
                         allow_redirects=False, data={"csrf_token": token_of(form),
                                                      "name": "french", "rule": rule})
    assert saved.status_code == 302, saved.text
    api = requests.get(f"{url}{SHOP}/segments/french", headers=bearer(token), timeout=10)
    assert api.status_code == 200 and api.json()["rule"]["value"] == "FR"
    direct = requests.get(f"{node_url}{SHOP}/segments/french", headers=bearer(token),
                          timeout=10)
    assert direct.json() == api.json()
    listing = browser.get(f"{url}/workspaces/shop/segments", timeout=10).text
    assert "/workspaces/shop/segments/french" in listing
    node_token = (reg.workdir / "instance" / "engine-node.token").read_text().strip()
    assert requests.get(f"{url}/engine/v1/_node/status", headers=bearer(node_token),
                        timeout=10).status_code == 404
    status = requests.get(f"{node_url}/engine/v1/_node/status", headers=bearer(node_token),
                          timeout=10).json()
    # the node is a process of its own (gunicorn's worker under the pid printed)
    assert status["node"] and status["pid"] not in (os.getpid(), reg.process.pid)


def _start_node_process(app_config: dict[str, Any], workdir: Any, name: str) -> tuple[Any, str]:
    """``marketplace engine serve`` as a process of its own on the test's database and
    instance directory (so the same node token), with a data directory of its own."""
    from tests.fixtures.live import free_port

    env = {k: v for k, v in os.environ.items() if not k.startswith("GEARS_")}
    env.update(GEARS_DATABASE_URL=app_config["DATABASE_URL"],
               GEARS_STORAGE_URL=app_config["STORAGE_URL"],
               GEARS_SECRET_KEY=app_config["SECRET_KEY"],
               GEARS_INSTANCE_PATH=app_config["INSTANCE_PATH"],
               GEARS_GEAR_DATA_PATH=str(workdir / f"{name}-data"))
    port = free_port()
    log = (workdir / f"{name}.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "marketplace.cli", "engine", "serve",
                             "--port", str(port), "--threads", "4"], cwd=workdir, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(f"{url}/engine/v1/openapi.json", timeout=2).status_code == 200:
                return proc, url
        except requests.ConnectionError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError((workdir / f"{name}.log").read_text())
        time.sleep(0.2)


def test_a_killed_node_leaves_the_pages_and_the_api_to_the_other(app, app_config, tmp_path,
                                                                  business, make_token):
    """Two engine node processes behind one web app: SIGKILL one, and every later call,
    write or read, page or API, is answered by the other; no accepted event is lost."""
    from marketplace.db import database
    from tests.marketplace.web_support import sign_in

    procs = []
    try:
        for name in ("a", "b"):
            procs.append(_start_node_process(app_config, tmp_path, name))
        (a, a_url), (_, b_url) = procs
        web = web_app_for(app_config, f"{a_url},{b_url}")
        client = web.test_client()
        token = bearer(make_token(business, ["workspace:shop"]))
        sent = 0

        def send(n: int) -> None:
            nonlocal sent
            batch = [{"id": f"e{sent + i}", "user_id": "ann", "type": "view"} for i in range(n)]
            answer = client.post(f"{SHOP}/events", headers=token, json={"events": batch})
            assert answer.status_code == 200, answer.get_data(as_text=True)
            assert answer.get_json()["accepted"] == n
            sent += n

        for _ in range(4):  # calls rotate over both nodes
            send(5)
        a.send_signal(signal.SIGKILL)
        a.wait(timeout=30)
        for _ in range(4):
            send(5)
        sign_in(client, business.email)
        page = client.get("/workspaces/shop/profiles?user_id=ann")
        assert page.status_code == 200 and "ann" in page.get_data(as_text=True)
        events = requests.get(f"{b_url}{SHOP}/profiles/ann", headers=token, timeout=10).json()
        assert events["user_id"] == "ann"
        # every accepted event is stored once, whichever node took it
        with database(app).engine.connect() as conn:
            stored = conn.execute(text("SELECT count(*) FROM engine_events")).scalar()
        assert stored == sent == 40
        database(web).engine.dispose()
    finally:
        for proc, _ in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except Exception:
                    proc.kill()
