"""Every example gear, published, vetted, approved and installed into one workspace, then
exercised through the engine API in real sandboxed workers.

The gears are discovered from ``example_gears/*/gear.json``: a new example is
published, vetted, reviewed and installed like the others, and the test fails
until it is exercised below (``EXERCISES``).

The connectors talk to a local HTTPS server standing in for a feed host, a
REST API and a webhook receiver. As the connectors' READMEs tell operators to
do for their own hosts, each is published as a copy whose
``permissions.network`` names that server (``127.0.0.1:<port>``); its code and
config schema are the example's. The server's certificate is trusted through
``SSL_CERT_FILE``, and the operator setting ``GEARS_HTTP_ALLOW_PRIVATE_HOSTS``
lets gears reach 127.0.0.1.

One test per database does the whole setup once; the runtime is shared.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import io
import ipaddress
import json
import shutil
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient

from gears_sdk.archive import build_archive_bytes
from marketplace.runtime import Runtime
from tests.marketplace.engine.conftest import sandbox_problem

pytestmark = [pytest.mark.slow, pytest.mark.sandbox]

EXAMPLES = Path(__file__).resolve().parents[2] / "example_gears"
WS = "/engine/v1/workspaces/shop"
FEED_TOKEN = "Bearer feed-secret-4711"
API_TOKEN = "rest-token-0815"
SIGNING_SECRET = "whsec-0123456789abcdef"


def example_manifests() -> dict[str, tuple[Path, dict[str, Any]]]:
    """``{gear name: (directory, manifest)}`` for every example gear."""
    out = {}
    for path in sorted(EXAMPLES.glob("*/gear.json")):
        manifest = json.loads(path.read_text())
        out[manifest["name"]] = (path.parent, manifest)
    return out


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- the remote systems the connectors talk to --------------------------------------------


@dataclass
class Remote:
    """A feed, a paginated REST API and a webhook receiver, with what they were asked."""

    contacts: list[dict[str, Any]] = field(default_factory=list)
    orders: list[dict[str, Any]] = field(default_factory=list)
    requests: list[tuple[str, str, dict[str, list[str]], dict[str, str]]] = field(
        default_factory=list)
    deliveries: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    fail_next_delivery: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def asked(self, path: str) -> list[tuple[str, dict[str, list[str]], dict[str, str]]]:
        with self.lock:
            return [(m, q, h) for m, p, q, h in self.requests if p == path]

    def orders_page(self, query: dict[str, list[str]]) -> dict[str, Any]:
        """Cursor pagination over the records newer than ``updated_since``."""
        rows = sorted(self.orders, key=lambda c: c["timestamp"])
        if "updated_since" in query:
            rows = [c for c in rows if c["timestamp"] > query["updated_since"][0]]
        start = int(query.get("cursor", ["0"])[0])
        limit = int(query.get("limit", ["100"])[0])
        page = rows[start:start + limit]
        nxt = start + limit if start + limit < len(rows) else None
        return {"data": page, "meta": {"next_cursor": None if nxt is None else str(nxt)}}


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that is its own authority, and its key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gears test remote")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = directory / "remote.pem", directory / "remote.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Remote, int]]:
    """The remote systems on https://127.0.0.1:<port>, trusted by this process."""
    src = Remote()

    class Handler(BaseHTTPRequestHandler):
        timeout = 10

        def _send(self, status: int, body: Any = None, *, head: bool = False) -> None:
            data = json.dumps(body).encode() if body is not None else b""
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if not head:
                self.wfile.write(data)

        def _record(self) -> tuple[str, dict[str, list[str]]]:
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            with src.lock:
                src.requests.append((self.command, url.path, query,
                                     {k.lower(): v for k, v in self.headers.items()}))
            return url.path, query

        def _get(self, head: bool) -> None:
            path, query = self._record()
            if path == "/feeds/contacts.json":
                if self.headers.get("Authorization") != FEED_TOKEN:
                    return self._send(401, {"error": "bad credentials"}, head=head)
                return self._send(200, {"contacts": src.contacts}, head=head)
            if path == "/api/orders":
                if self.headers.get("Authorization") != f"Bearer {API_TOKEN}":
                    return self._send(401, {"error": "bad token"}, head=head)
                return self._send(200, src.orders_page(query), head=head)
            return self._send(404, {"error": "not found"}, head=head)

        def do_GET(self) -> None:
            self._get(head=False)

        def do_HEAD(self) -> None:
            self._get(head=True)

        def do_POST(self) -> None:
            path, _ = self._record()
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if path != "/hooks/members":
                return self._send(404, {"error": "not found"})
            with src.lock:
                src.deliveries.append(({k.lower(): v for k, v in self.headers.items()}, body))
                failing = src.fail_next_delivery > 0
                src.fail_next_delivery -= failing
            self._send(503 if failing else 200, {"ok": not failing})

        def log_message(self, *args: Any) -> None:
            pass

    cert_file, key_file = self_signed_cert(tmp_path_factory.mktemp("remote"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert_file, key_file)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SSL_CERT_FILE", str(cert_file))  # the host's ctx.http trusts the remote
        yield src, server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def runtime() -> Iterator[Runtime]:
    """One runtime for the module; the operator lets gears reach 127.0.0.1."""
    problem = sandbox_problem()
    if problem:
        pytest.skip(f"sandboxed workers cannot start here: {problem}")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GEARS_HTTP_ALLOW_PRIVATE_HOSTS", "127.0.0.1")
        rt = Runtime()
    yield rt
    rt.close()


@pytest.fixture
def engine_app(app: Flask, runtime: Runtime) -> Iterator[Flask]:
    from marketplace.engine import get_engine, shutdown

    get_engine(app).attach_runtime(runtime)
    yield app
    shutdown(app)


# -- publish, vet, review, install ----------------------------------------------------------


def gear_source(gear_dir: Path, manifest: dict[str, Any], into: Path, port: int) -> Path:
    """The directory to publish: the example without its tests. A connector becomes the copy
    its README describes: ``permissions.network`` and the default URLs on the remote's host."""
    copy = into / gear_dir.name
    shutil.copytree(gear_dir, copy, ignore=shutil.ignore_patterns("tests", "__pycache__"))
    if manifest["kind"] == "connector":
        mine = json.loads((copy / "gear.json").read_text())
        hosts = mine["permissions"]["network"]
        mine["permissions"]["network"] = [f"127.0.0.1:{port}"]
        for prop in mine["config_schema"]["properties"].values():
            default = prop.get("default")
            for host in hosts:
                if isinstance(default, str) and default.startswith(f"https://{host}/"):
                    prop["default"] = default.replace(host, f"127.0.0.1:{port}", 1)
        (copy / "gear.json").write_text(json.dumps(mine, indent=2))
    return copy


def asks_for_nothing(manifest: dict[str, Any]) -> bool:
    perms = manifest.get("permissions") or {}
    profile = perms.get("profile") or {}
    return not any([perms.get("network"), profile.get("read"), profile.get("write"),
                    perms.get("catalog"), perms.get("events"), perms.get("secrets")])


def configs(port: int) -> dict[str, dict[str, Any]]:
    """A valid config per example gear (a new example without an entry installs with {})."""
    base = f"https://127.0.0.1:{port}"
    return {
        "acme/rfm-score": {"window_days": 90, "purchase_event": "purchase",
                           "amount_property": "amount"},
        "acme/category-affinity": {"weights": {"view": 1, "purchase": 5},
                                   "half_life_days": 14, "top_n": 3,
                                   "category_property": "category"},
        "acme/co-view-recs": {"session_minutes": 30, "popularity_weight": 0.2,
                              "exclude_purchased": True},
        "acme/consent-pii-filter": {"ignore_properties": ["signup_email"]},
        "acme/hero-banner": {"headline": "Welcome back, {first_name}!", "theme": "dark",
                             "cta_text": "See what's new",
                             "cta_url": "https://shop.example.com/new"},
        "acme/product-recs-block": {"heading": "Picked for you", "max_items": 3,
                                    "currency_symbol": "EUR ", "layout": "carousel"},
        "acme/exit-intent-offer": {"discount_code": "STAY15", "discount_text": "15% off",
                                   "expiry_days": 5, "cta_url": "https://shop.example.com/"},
        "acme/feed-import": {"feed_url": f"{base}/feeds/contacts.json", "format": "json",
                             "records_path": "contacts", "stream_kind": "profiles",
                             "id_field": "id", "updated_field": "updated_at",
                             "auth_value": FEED_TOKEN},
        # events follow their own timestamp, a field the engine's event records have
        "acme/rest-source": {"url": f"{base}/api/orders", "stream_kind": "events",
                             "records_path": "data", "id_field": "user_id",
                             "updated_field": "timestamp", "pagination": "cursor",
                             "page_size": 2, "api_token": API_TOKEN},
        "acme/webhook-destination": {"webhook_url": f"{base}/hooks/members",
                                     "signing_secret": SIGNING_SECRET, "batch_size": 2,
                                     "max_attempts": 3, "backoff_seconds": 0},
    }


def install_order(manifests: dict[str, dict[str, Any]]) -> list[str]:
    """Gear names with every gear after the gears it requires."""
    order: list[str] = []
    pending = sorted(manifests)
    while pending:
        ready = [n for n in pending if set(manifests[n].get("requires") or {}) <= set(order)]
        assert ready, f"unresolvable requirements among {pending}"
        order += ready
        pending = [n for n in pending if n not in ready]
    return order


def publish_vet_approve_install(app: Flask, client: FlaskClient, tokens: dict[str, str],
                                tmp_path: Path, port: int) -> dict[str, str]:
    """Every example through the product's paths; ``{gear name: installation id}``."""
    from marketplace.vetting.worker import run_worker

    examples = example_manifests()
    for name, (gear_dir, manifest) in examples.items():
        data, _ = build_archive_bytes(gear_source(gear_dir, manifest, tmp_path / "src", port))
        resp = client.post("/api/v1/gears", headers=auth(tokens["publish"]),
                           data={"file": (io.BytesIO(data), f"{gear_dir.name}.gear")},
                           content_type="multipart/form-data")
        assert resp.status_code == 201, (name, resp.get_json())
        assert resp.get_json()["status"] == "pending"

    # the vetting queue: static checks and a run in the sandbox, one job per version
    assert run_worker(app, once=True) == len(examples)
    for name, (_, manifest) in examples.items():
        url = f"/api/v1/gears/{name}/{manifest['version']}"
        version = client.get(url, headers=auth(tokens["admin"])).get_json()
        assert version["status"] == "pending", (name, version)
        assert version["vetting"]["state"] == "done", (name, version["vetting"])
        findings = version["findings"]
        assert not [f for f in findings if f["severity"] in ("high", "critical")], (name, findings)
        dynamic = {f["code"] for f in findings if f["check"] == "dynamic"}
        if manifest["kind"] == "connector":
            # the sandboxed run's requests are answered by the recorder (and reported);
            # a connector may refuse the recorder's empty answer
            assert dynamic <= {"sandbox_ok", "dynamic_hook_error", "dynamic_http_request"}, \
                (name, findings)
            assert "dynamic_http_request" in dynamic or not manifest["permissions"]["network"], \
                (name, findings)
        else:
            assert dynamic == {"sandbox_ok"}, (name, findings)
        resp = client.post(f"/api/v1/admin/gears/{name}/{manifest['version']}/approve",
                           headers=auth(tokens["admin"]),
                           json={"reason": "Reviewed with its findings."})
        assert resp.status_code == 200, (name, resp.get_json())
        approved = resp.get_json()
        assert approved["status"] == "approved" and approved["signature"], (name, approved)

    wanted = configs(port)
    ids: dict[str, str] = {}
    for name in install_order({n: m for n, (_, m) in examples.items()}):
        body = {"gear": name, "config": wanted.get(name, {}), "consent": False}
        if not asks_for_nothing(examples[name][1]):  # nothing to consent to: no question asked
            resp = client.post("/api/v1/workspaces/shop/installations",
                               headers=auth(tokens["ws"]), json=body)
            assert resp.status_code == 422, (name, "installed without consent", resp.get_json())
            assert resp.get_json()["error"]["code"] == "consent_required"
            body["consent"] = True
        resp = client.post("/api/v1/workspaces/shop/installations",
                           headers=auth(tokens["ws"]), json=body)
        assert resp.status_code == 201, (name, resp.get_json())
        ids[name] = resp.get_json()["id"]
    listed = client.get("/api/v1/workspaces/shop/installations",
                        headers=auth(tokens["ws"])).get_json()["items"]
    assert {i["gear"] for i in listed} == set(examples)
    assert all(i["status"] not in ("failed", "disabled") for i in listed), listed
    for inst in listed:  # secrets are stored, never shown back
        text = json.dumps(inst)
        assert API_TOKEN not in text and SIGNING_SECRET not in text and FEED_TOKEN not in text
    return ids


# -- the exercises, one per gear -------------------------------------------------------------


@dataclass
class Shop:
    client: FlaskClient
    h: dict[str, str]
    ids: dict[str, str]
    remote: Remote
    exercised: dict[str, list[str]] = field(default_factory=dict)

    def did(self, gear: str, what: str) -> None:
        self.exercised.setdefault(gear, []).append(what)

    def post(self, path: str, body: Any = None, status: int = 200) -> Any:
        resp = self.client.post(f"{WS}{path}", headers=self.h, json=body)
        assert resp.status_code == status, (path, resp.status_code, resp.get_json())
        return resp.get_json()

    def put(self, path: str, body: Any) -> Any:
        resp = self.client.put(f"{WS}{path}", headers=self.h, json=body)
        assert resp.status_code == 200, (path, resp.get_json())
        return resp.get_json()

    def get(self, path: str) -> Any:
        resp = self.client.get(f"{WS}{path}", headers=self.h)
        assert resp.status_code == 200, (path, resp.get_json())
        return resp.get_json()

    def profile(self, user: str) -> dict[str, Any]:
        return self.get(f"/profiles/{user}")

    def events(self, events: list[dict[str, Any]]) -> dict[str, Any]:
        out = self.post("/events", {"events": events})
        assert out["accepted"] == len(events) and out["gear_errors"] == {}, out
        return out

    def decide(self, user: str, placement: str) -> dict[str, Any]:
        return self.post("/decide", {"user_id": user, "placement": placement})


PRODUCTS = [
    {"id": "sku-1", "title": "Trail runner", "category": "shoes", "price": 89.0},
    {"id": "sku-2", "title": "City sneaker", "category": "shoes", "price": 75.0},
    {"id": "sku-3", "title": "Weekender duffel", "category": "bags", "price": 120.0},
    {"id": "sku-4", "title": "Canvas tote", "category": "bags", "price": 35.0},
    {"id": "sku-5", "title": "Wool beanie", "category": "hats", "price": 19.5},
    {"id": "sku-6", "title": "Sun hat", "category": "hats", "price": 24.0},
]

CONTACTS = [
    {"id": "ann", "first_name": "Ann", "email": "ann@example.test",
     "consent": {"marketing": True}, "updated_at": "2024-04-01T09:00:00Z"},
    {"id": "bob", "first_name": "Bobby", "email": "bob@example.test",
     "consent": {"marketing": True}, "updated_at": "2024-04-01T10:00:00Z"},
    {"id": "cy", "first_name": "Cy", "email": "cy@example.test",
     "consent": {"marketing": False}, "updated_at": "2024-04-02T08:00:00Z"},
]


def ago(seconds: int) -> str:
    return (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds)).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def exercise_feed_import(shop: Shop) -> None:
    """Profiles from a JSON feed over HTTPS, with its auth header; then only what changed."""
    gear, iid = "acme/feed-import", shop.ids["acme/feed-import"]
    shop.remote.contacts[:] = [dict(c) for c in CONTACTS]
    check = shop.post(f"/connectors/{iid}/check")
    assert check["ok"] is True and "reachable" in check["message"], check
    method, _, headers = shop.remote.asked("/feeds/contacts.json")[-1]
    assert method == "HEAD" and headers["authorization"] == FEED_TOKEN

    run = shop.post(f"/connectors/{iid}/sync")
    assert run["status"] == "succeeded", run
    feed = run["streams"]["feed"]
    assert feed["records"] == 3 and feed["rejected"] == 0, feed
    ann = shop.profile("ann")["attributes"]
    assert ann["first_name"] == "Ann" and ann["email"] == "ann@example.test"
    assert ann["consent"] == {"marketing": True}

    # the feed changes: one new row, one updated; the second sync imports only those
    shop.remote.contacts[1] = {**CONTACTS[1], "first_name": "Bob",
                               "updated_at": "2024-04-05T10:00:00Z"}
    shop.remote.contacts.append({"id": "dee", "first_name": "Dee", "email": "dee@example.test",
                                 "consent": {"marketing": True},
                                 "updated_at": "2024-04-03T08:00:00Z"})
    run = shop.post(f"/connectors/{iid}/sync")
    assert run["status"] == "succeeded" and run["streams"]["feed"]["records"] == 2, run
    assert shop.profile("bob")["attributes"]["first_name"] == "Bob"
    assert shop.profile("dee")["attributes"]["email"] == "dee@example.test"
    runs = shop.get(f"/connectors/{iid}/runs")
    assert [(r["status"], r["streams"]["feed"]["records"]) for r in runs["runs"][:2]] == [
        ("succeeded", 2), ("succeeded", 3)], runs
    shop.did(gear, "check (HEAD with the secret auth header), sync of 3 profiles, "
                   "incremental sync of 2")


def exercise_rest_source(shop: Shop) -> None:
    """Orders page by page (cursor pagination, bearer token) as events through the extensions,
    then only the newer ones."""
    gear, iid = "acme/rest-source", shop.ids["acme/rest-source"]
    shop.remote.orders[:] = [
        {"id": "o-1", "user_id": "ann", "type": "purchase", "timestamp": ago(180),
         "properties": {"item_id": "sku-2", "category": "shoes", "amount": 250}},
        {"id": "o-2", "user_id": "ann", "type": "purchase", "timestamp": ago(150),
         "properties": {"item_id": "sku-5", "category": "hats", "amount": 200}},
        {"id": "o-3", "user_id": "ann", "type": "purchase", "timestamp": ago(120),
         "properties": {"item_id": "sku-1", "category": "shoes", "amount": 150}},
    ]
    check = shop.post(f"/connectors/{iid}/check")
    assert check["ok"] is True, check

    before = len(shop.remote.asked("/api/orders"))
    run = shop.post(f"/connectors/{iid}/sync")
    assert run["status"] == "succeeded", run
    stream = run["streams"]["records"]
    assert stream["records"] == 3 and stream["rejected"] == 0 and stream["pages"] == 2, stream
    asked = shop.remote.asked("/api/orders")[before:]
    assert [q.get("cursor") for _, q, _ in asked] == [None, ["2"]]
    assert all(h["authorization"] == f"Bearer {API_TOKEN}" for _, _, h in asked)
    assert all("updated_since" not in q for _, q, _ in asked)
    assert shop.profile("ann")["traits"]["rfm"]["frequency"] == 3  # through the extensions

    # dee browses the trail runner and the duffel; the next sync asks only for newer records
    newest = shop.remote.orders[-1]["timestamp"]
    shop.remote.orders += [
        {"id": "o-4", "user_id": "dee", "type": "view", "timestamp": ago(60),
         "properties": {"item_id": "sku-1", "category": "shoes"}},
        {"id": "o-5", "user_id": "dee", "type": "view", "timestamp": ago(50),
         "properties": {"item_id": "sku-3", "category": "bags"}},
    ]
    before = len(shop.remote.asked("/api/orders"))
    run = shop.post(f"/connectors/{iid}/sync")
    assert run["status"] == "succeeded" and run["streams"]["records"]["records"] == 2, run
    asked = shop.remote.asked("/api/orders")[before:]
    assert asked[0][1]["updated_since"] == [newest], asked
    events = shop.profile("dee")["events"]
    assert {e["id"] for e in events} >= {"o-4", "o-5"}, events
    shop.did(gear, "check, sync of 3 events over 2 pages, incremental sync of 2")


def browse_and_buy(shop: Shop) -> dict[str, Any]:
    """Events through POST /events: every extension sees them."""
    ann = "ann"
    out = shop.events([
        # bob views the trail runner and then the duffel, as dee did: co-viewed twice
        {"user_id": "bob", "type": "view", "properties": {"item_id": "sku-1", "category": "shoes"}},
        {"user_id": "bob", "type": "view", "properties": {"item_id": "sku-3", "category": "bags"}},
        {"user_id": "bob", "type": "view", "properties": {"item_id": "sku-4", "category": "bags"}},
        # ann (who bought three times) signs up, her email where it is expected, and browses
        {"user_id": ann, "type": "custom", "name": "signup",
         "properties": {"signup_email": "ann@example.test"}},
        {"user_id": ann, "type": "view", "properties": {"item_id": "sku-5", "category": "hats"}},
        {"user_id": ann, "type": "view", "properties": {"item_id": "sku-1", "category": "shoes"}},
        # cy said no to marketing; bob sends personal data in a support note
        {"user_id": "cy", "type": "view", "properties": {"item_id": "sku-2", "category": "shoes"}},
        {"user_id": "bob", "type": "custom", "name": "support",
         "properties": {"note": "call me on +44 20 7946 0958 or at bob@example.test",
                        "payment": {"card": "4111 1111 1111 1111"}}},
    ])
    assert out["patches_applied"] >= 8, out
    return out


def exercise_rfm(shop: Shop) -> None:
    rfm = shop.profile("ann")["traits"]["rfm"]
    assert rfm["frequency"] == 3 and rfm["monetary"] == 600 and rfm["recency_days"] == 0, rfm
    assert (rfm["r"], rfm["f"], rfm["m"], rfm["score"]) == (5, 3, 4, "534"), rfm
    assert rfm["segment"] == "loyal"
    assert "rfm" not in shop.profile("bob")["traits"]  # never bought
    shop.did("acme/rfm-score", "traits.rfm from three purchases (loyal, 534)")


def exercise_category_affinity(shop: Shop) -> None:
    traits = shop.profile("ann")["traits"]
    # views weigh 1, purchases 5; a few seconds of decay are below the rounding
    assert traits["affinity"] == {"shoes": pytest.approx(11, abs=0.01),
                                  "hats": pytest.approx(6, abs=0.01)}, traits
    assert traits["top_category"] == "shoes" and traits["affinity_as_of"].endswith("Z")
    assert shop.profile("bob")["traits"]["top_category"] == "bags"
    shop.did("acme/category-affinity", "traits.affinity and top_category from views and "
                                       "purchases")


def exercise_consent_pii_filter(shop: Shop) -> None:
    gear = "acme/consent-pii-filter"
    ann, bob = shop.profile("ann")["traits"], shop.profile("bob")["traits"]
    assert ann["consent_status"] == "granted" and "pii_flags" not in ann, ann  # signup_email ignored
    assert bob["consent_status"] == "granted"
    assert bob["pii_flags"] == {"email": 1, "phone": 1, "card": 1, "events": 1}, bob
    # without consent the marketing traits go at the next event, whoever wrote them
    shop.events([{"user_id": "cy", "type": "custom", "name": "ping", "properties": {}}])
    cy = shop.profile("cy")["traits"]
    assert cy["consent_status"] == "denied", cy
    assert not {"affinity", "affinity_as_of", "top_category", "recent_views",
                "purchased_items", "rfm"} & set(cy), cy
    shop.did(gear, "traits.consent_status granted/denied, marketing traits cleared, "
                   "traits.pii_flags counted (ignored property not flagged)")


def exercise_co_view_recs(shop: Shop) -> None:
    ann = shop.profile("ann")["traits"]
    assert [v["item"] for v in ann["recent_views"]] == ["sku-5", "sku-1"]
    assert ann["purchased_items"] == ["sku-2", "sku-5", "sku-1"]
    assert [v["item"] for v in shop.profile("dee")["traits"]["recent_views"]] == ["sku-1", "sku-3"]
    shop.did("acme/co-view-recs", "traits.recent_views/purchased_items; ctx.state co-views "
                                  "ranking a decision's items")


def campaigns(shop: Shop) -> None:
    ids = shop.ids
    shop.put("/segments/vip", {"title": "Loyal customers", "rule": {
        "field": "traits.rfm.segment", "op": "in", "value": ["champion", "loyal"]}})
    shop.put("/segments/browsers", {"title": "Consenting, never bought", "rule": {"and": [
        {"field": "traits.consent_status", "op": "==", "value": "granted"},
        {"not": {"event": "purchase", "at_least": 1, "within_days": 365}}]}})
    shop.put("/segments/consented", {"title": "Marketing consent", "rule": {
        "field": "traits.consent_status", "op": "==", "value": "granted"}})
    shop.put("/campaigns/home", {"title": "Home hero", "placement": "home-hero", "experiences": [
        {"name": "vip-welcome", "segment": "vip", "installation": ids["acme/hero-banner"],
         "content": {}},
        {"name": "win-back", "segment": "browsers",
         "installation": ids["acme/exit-intent-offer"], "content": {}}],
        "fallback": {"html": "<p>Welcome to the shop.</p>", "data": {"default": True}}})
    shop.put("/campaigns/recs", {"title": "For you", "placement": "product-recs", "experiences": [
        {"name": "for-you", "segment": None, "installation": ids["acme/product-recs-block"],
         "content": {"items": {"count": 6}}}],
        "fallback": {"html": "<p>Bestsellers</p>"}})


def exercise_hero_banner(shop: Shop) -> None:
    d = shop.decide("ann", "home-hero")
    assert d["campaign"] == "home" and d["experience"] == "vip-welcome" and not d["fallback"], d
    html = d["content"]["html"]
    assert "Welcome back, Ann!" in html and "VIP" in html and "gear-hero--dark" in html, html
    assert d["content"]["data"]["vip"] is True
    # The category-affinity gear's top category (shoes) reaches the banner's link.
    assert d["content"]["data"]["cta_url"] == "https://shop.example.com/new?category=shoes"
    assert d["gears"][0]["installation"] == shop.ids["acme/hero-banner"], d["gears"]
    assert d["gears"][0]["ok"] is True
    shop.did("acme/hero-banner", "decision greeting Ann by name with the VIP badge (rfm) "
             "and a link to her top category (category-affinity)")


def exercise_exit_intent_offer(shop: Shop) -> None:
    d = shop.decide("bob", "home-hero")
    assert d["experience"] == "win-back" and not d["fallback"], d
    html, data = d["content"]["html"], d["content"]["data"]
    assert "Wait, Bob! Before you go..." in html and "STAY15" in html, html
    assert "Take 15% off your next order." in html
    assert data["category_line"] == "Handpicked bags deals are waiting for you."  # top_category
    expires = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=5)
    assert data["expires_on"] == expires.isoformat()
    assert data["cta_url"] == "https://shop.example.com/?discount=STAY15"
    # no consent: neither experience, the campaign's fallback
    d = shop.decide("cy", "home-hero")
    assert d["fallback"] is True and d["content"]["html"] == "<p>Welcome to the shop.</p>", d
    shop.did("acme/exit-intent-offer", "decision with Bob's name, code, expiry and top "
                                       "category; fallback without consent")


def exercise_product_recs_block(shop: Shop) -> None:
    d = shop.decide("ann", "product-recs")
    assert d["experience"] == "for-you" and not d["fallback"], d
    data, html = d["content"]["data"], d["content"]["html"]
    # co-views with her latest view (sku-1) first: the duffel (twice) before the tote (once);
    # what she bought comes last, so it is cut by max_items
    assert data["item_ids"][:2] == ["sku-3", "sku-4"], data
    assert len(data["item_ids"]) == 3 and not {"sku-1", "sku-2", "sku-5"} & set(
        data["item_ids"]), data
    assert data["heading"] == "Picked for you" and "gear-recs--carousel" in html
    assert "Weekender duffel" in html and "EUR 120.00" in html and "EUR 35.00" in html
    assert html.index("Weekender duffel") < html.index("Canvas tote")
    scorers = [g for g in d["gears"] if g["installation"] == shop.ids["acme/co-view-recs"]]
    assert scorers and all(g["ok"] for g in scorers), d["gears"]
    shop.did("acme/product-recs-block", "decision rendering the items co-view-recs ranked")


def exercise_webhook_destination(shop: Shop) -> None:
    """A segment exported as HMAC-signed batches; a 503 is retried with the same delivery id."""
    gear, iid = "acme/webhook-destination", shop.ids["acme/webhook-destination"]
    check = shop.post(f"/connectors/{iid}/check")
    assert check["ok"] is True and "signed ping" in check["message"], check
    ping_headers, ping = shop.remote.deliveries[-1]
    assert json.loads(ping) == {"event": "ping", "members": []}
    verify_signature(ping_headers, ping)

    shop.remote.deliveries.clear()
    shop.remote.fail_next_delivery = 1
    out = shop.post(f"/segments/consented/export/{iid}", {})
    assert out["stream"] == "members"  # the connector's only stream, chosen for the caller
    assert out["ok"] and out["members"] == 3 and out["written"] == 3, out
    assert out["failed"] == 0 and out["errors"] == [], out
    bodies = []
    for headers, body in shop.remote.deliveries:
        verify_signature(headers, body)
        bodies.append((headers["x-gears-delivery"], json.loads(body)))
    assert len(bodies) == 3 and bodies[0] == bodies[1], bodies  # the 503, then its retry
    members = [m for _, b in bodies[1:] for m in b["members"]]
    assert all(b["event"] == "segment.members" for _, b in bodies)
    assert sorted(members, key=lambda m: m["id"]) == [
        {"id": "ann", "email": "ann@example.test"}, {"id": "bob", "email": "bob@example.test"},
        {"id": "dee", "email": "dee@example.test"}]
    shop.did(gear, "check (signed ping), export of 3 members in 2 signed batches with a retry")


def verify_signature(headers: dict[str, str], body: bytes) -> None:
    timestamp = headers["x-gears-timestamp"]
    expected = hmac.new(SIGNING_SECRET.encode(), f"{timestamp}.".encode() + body,
                        hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["x-gears-signature"], f"sha256={expected}"), headers
    forged = hmac.new(b"not-the-secret-at-all", f"{timestamp}.".encode() + body,
                      hashlib.sha256).hexdigest()
    assert headers["x-gears-signature"] != f"sha256={forged}"


#: What exercises each example gear; the test fails for an example missing here.
EXERCISES: dict[str, Callable[[Shop], None]] = {
    "acme/feed-import": exercise_feed_import,
    "acme/rest-source": exercise_rest_source,
    "acme/rfm-score": exercise_rfm,
    "acme/category-affinity": exercise_category_affinity,
    "acme/consent-pii-filter": exercise_consent_pii_filter,
    "acme/co-view-recs": exercise_co_view_recs,
    "acme/hero-banner": exercise_hero_banner,
    "acme/exit-intent-offer": exercise_exit_intent_offer,
    "acme/product-recs-block": exercise_product_recs_block,
    "acme/webhook-destination": exercise_webhook_destination,
}


def test_every_example_gear_runs_in_the_engine(engine_app, client, make_user, make_publisher,
                                               make_workspace, make_token, remote, tmp_path,
                                               monkeypatch):
    src, port = remote
    # the operator setting, for the vetting sandbox as for the engine's runtime
    monkeypatch.setenv("GEARS_HTTP_ALLOW_PRIVATE_HOSTS", "127.0.0.1")
    dev, admin, member = (make_user(role="developer"), make_user(role="admin"),
                          make_user(role="business"))
    make_publisher(name="acme", owner=dev)
    make_workspace(member=member, name="shop")
    tokens = {"publish": make_token(dev, ["publish:acme"]), "admin": make_token(admin, ["admin"]),
              "ws": make_token(member, ["workspace:shop"])}

    ids = publish_vet_approve_install(engine_app, client, tokens, tmp_path, port)
    shop = Shop(client, auth(tokens["ws"]), ids, src)

    missing = sorted(set(ids) - set(EXERCISES))
    assert not missing, f"example gears without an exercise in this test: {missing}"

    # people and orders come in through the connectors, browsing through POST /events
    resp = client.put(f"{WS}/catalog/items", headers=shop.h, json={"items": PRODUCTS})
    assert resp.status_code == 200, resp.get_json()
    EXERCISES["acme/feed-import"](shop)
    EXERCISES["acme/rest-source"](shop)
    browse_and_buy(shop)
    for name in ("acme/rfm-score", "acme/category-affinity", "acme/co-view-recs",
                 "acme/consent-pii-filter"):
        EXERCISES[name](shop)
    campaigns(shop)
    for name in ("acme/hero-banner", "acme/exit-intent-offer", "acme/product-recs-block",
                 "acme/webhook-destination"):
        EXERCISES[name](shop)

    assert set(shop.exercised) == set(example_manifests()), (
        f"not exercised: {sorted(set(example_manifests()) - set(shop.exercised))}")
    health = {i["gear"]: i for i in client.get("/api/v1/workspaces/shop/installations",
                                               headers=auth(tokens["ws"])).get_json()["items"]}
    assert all(i["status"] not in ("failed", "disabled") for i in health.values()), health


def _gear_module(directory: str, package: str) -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        f"example_{package}", EXAMPLES / directory / package / "__init__.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_connector_item_records_fit_the_engine():
    """The READMEs' own examples, shaped by the gears, checked as the engine checks them."""
    from marketplace.engine.connectors import foreign_record
    from marketplace.engine.validation import ITEM_FIELDS, check_item

    feed = _gear_module("feed-import", "feed_import")
    rest = _gear_module("rest-source", "rest_source")
    row = {"id": "sku-1", "title": "Trail shoe", "price": 89.0,
           "updated_at": "2024-03-01T10:00:00Z"}
    problems: list[dict[str, str]] = []
    feed_item = check_item(foreign_record(feed.shape(row, "items", "id", "sku-1"), ITEM_FIELDS,
                                          "attributes"), "$.feed", problems)
    rest_item = check_item(foreign_record(rest._shape(row, "items", "id"), ITEM_FIELDS,
                                          "attributes"), "$.rest", problems)
    assert problems == []
    # Columns the catalog has no field for are kept, not dropped.
    assert feed_item is not None and feed_item["attributes"]["updated_at"] == row["updated_at"]
    assert rest_item is not None and rest_item["price"] == 89.0
    priced = check_item(foreign_record({"id": "x", "price": " 12.5 "}, ITEM_FIELDS, "attributes"),
                        "$.csv", problems)
    assert priced is not None and priced["price"] == 12.5
