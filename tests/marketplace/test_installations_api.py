"""``/api/v1/workspaces/<ws>/installations`` through Flask's test client, on SQLite and PostgreSQL."""

from __future__ import annotations

import io
from typing import Any

import pytest
from sqlalchemy import select, text

from marketplace.models import AuditEntry

SCHEMA = {
    "type": "object",
    "required": ["api_key"],
    "properties": {
        "window_days": {"type": "integer", "minimum": 1, "default": 90},
        "api_key": {"type": "string", "format": "secret"},
    },
}
NET = {"network": ["api.example.com"], "profile": {"read": ["attributes.first_name"]}}


@pytest.fixture
def api(client, make_user, make_publisher, make_workspace, make_token, make_gear_archive):
    dev = make_user(role="developer")
    admin = make_user(role="admin")
    member = make_user(role="business")
    outsider = make_user(role="business")
    make_publisher(name="acme", owner=dev)
    make_workspace(member=member, name="shop")
    make_workspace(member=outsider, name="other")
    headers = {
        "dev": {"Authorization": f"Bearer {make_token(dev, ['publish:acme'])}"},
        "admin": {"Authorization": f"Bearer {make_token(admin, ['admin'])}"},
        "member": {"Authorization": f"Bearer {make_token(member, ['workspace:shop'])}"},
        "member_read": {"Authorization": f"Bearer {make_token(member, ['read'])}"},
        "outsider": {"Authorization": f"Bearer {make_token(outsider, ['workspace:other'])}"},
    }

    def release(name: str = "acme/hello", version: str = "1.0.0", **overrides: Any) -> None:
        data = make_gear_archive(name, version, **overrides)
        resp = client.post("/api/v1/gears", headers=headers["dev"],
                           data={"file": (io.BytesIO(data), "g.gear")},
                           content_type="multipart/form-data")
        assert resp.status_code == 201, resp.json
        resp = client.post(f"/api/v1/admin/gears/{name}/{version}/approve",
                           headers=headers["admin"])
        assert resp.status_code == 200, resp.json

    return {"h": headers, "release": release, "member": member}


URL = "/api/v1/workspaces/shop/installations"


def test_install_list_get_patch_delete(client, api, session):
    api["release"](config_schema=SCHEMA, permissions=NET)
    h = api["h"]["member"]

    plan = client.get(f"{URL}/plan?gear=acme/hello", headers=h)
    assert plan.status_code == 200, plan.json
    assert plan.json["version"] == "1.0.0" and plan.json["consent_required"] is True
    assert {"capability": "network:api.example.com",
            "description": "Send requests to api.example.com"} in plan.json["capabilities"]
    assert plan.json["secret_fields"] == ["api_key"] and plan.json["upgrade"] is None

    body = {"gear": "acme/hello", "config": {"api_key": "k-12345-secret"}}
    resp = client.post(URL, headers=h, json=body)
    assert resp.status_code == 422 and resp.json["error"]["code"] == "consent_required"
    assert {d["capability"] for d in resp.json["error"]["details"]} == {
        "network:api.example.com", "profile.read:attributes.first_name"}

    resp = client.post(URL, headers=h, json={**body, "consent": True})
    assert resp.status_code == 201, resp.json
    inst = resp.json
    assert resp.headers["Location"] == inst["url"]
    assert inst["config"] == {"window_days": 90, "api_key": {"set": True}}
    assert inst["status"] == "active" and inst["health"]["state"] == "waiting"
    assert inst["health"]["calls"] == 0 and inst["health"]["next_action"] == "none"
    assert inst["latest_version"] == "1.0.0" and inst["upgrade_available"] is False
    assert "k-12345-secret" not in resp.get_data(as_text=True)
    stored = session.execute(text("SELECT secrets_encrypted FROM installations")).scalar_one()
    assert "k-12345-secret" not in stored

    listing = client.get(URL, headers=h)
    assert [i["gear"] for i in listing.json["items"]] == ["acme/hello"]
    assert "k-12345-secret" not in listing.get_data(as_text=True)

    one = f"{URL}/{inst['id']}"
    resp = client.patch(one, headers=h, json={"config": {"window_days": 7}})
    assert resp.status_code == 200 and resp.json["config"] == {
        "window_days": 7, "api_key": {"set": True}}
    resp = client.patch(one, headers=h, json={"config": {"window_days": 0}})
    assert resp.status_code == 422
    assert resp.json["error"]["details"][0]["path"] == "$.config.window_days"
    resp = client.patch(one, headers=h, json={"enabled": False, "reason": "pausing"})
    assert resp.json["enabled"] is False and resp.json["disabled_reason"] == "pausing"
    assert client.get(one, headers=h).json["status"] == "disabled"

    assert client.delete(one, headers=h).status_code == 204
    assert client.get(one, headers=h).status_code == 404
    assert client.get("/api/v1/gears/acme/hello").json["install_count"] == 0
    actions = session.scalars(select(AuditEntry.action).where(
        AuditEntry.target_type == "installation").order_by(AuditEntry.id)).all()
    assert actions == ["installation.install", "installation.configure",
                       "installation.disable", "installation.uninstall"]


def test_upgrade_through_patch_with_capability_diff(client, api):
    api["release"]("acme/hello", "1.0.0")
    api["release"]("acme/hello", "1.1.0", permissions=NET)
    h = api["h"]["member"]
    inst = client.post(URL, headers=h, json={"gear": "acme/hello", "version": "1.0.0",
                                             "consent": True}).json
    assert inst["upgrade_available"] is True and inst["latest_version"] == "1.1.0"

    plan = client.get(f"{URL}/plan?gear=acme/hello&version=1.1.0", headers=h).json
    assert plan["upgrade"]["from_version"] == "1.0.0"
    assert [c["capability"] for c in plan["upgrade"]["added"]] == ["network:api.example.com"]
    assert plan["consent_required"] is True

    one = f"{URL}/{inst['id']}"
    resp = client.patch(one, headers=h, json={"version": "1.1.0"})
    assert resp.status_code == 422 and resp.json["error"]["code"] == "consent_required"
    resp = client.patch(one, headers=h, json={"version": "1.1.0",
                                              "consent": ["network:api.example.com"]})
    assert resp.status_code == 200 and resp.json["version"] == "1.1.0"
    resp = client.patch(one, headers=h, json={"version": "1.0.0"})  # rollback: caps shrink
    assert resp.status_code == 200 and resp.json["version"] == "1.0.0"
    resp = client.patch(one, headers=h, json={"version": "3.0.0"})
    assert resp.status_code == 409 and resp.json["error"]["code"] == "unresolvable"


def test_failed_installation_shows_why_and_can_be_re_enabled(client, api, session):
    from marketplace.workspaces import mark_failed

    api["release"]()
    h = api["h"]["member"]
    inst = client.post(URL, headers=h, json={"gear": "acme/hello", "consent": True}).json
    mark_failed(session, inst["id"], "timed out 5 times in a row")
    body = client.get(f"{URL}/{inst['id']}", headers=h).json
    assert (body["status"], body["enabled"]) == ("failed", False)
    assert body["disabled_reason"] == "timed out 5 times in a row"
    body = client.patch(f"{URL}/{inst['id']}", headers=h, json={"enabled": True}).json
    assert (body["status"], body["disabled_reason"]) == ("active", None)


def test_health_is_the_shared_row_with_an_explicit_state(app, client, api, session):
    """The API shows what engine processes wrote to ``installation_health``: numbers,
    then each state the rows imply, with its reason and next step."""
    from marketplace.db import database
    from marketplace.engine.health_sync import flush_deltas
    from marketplace.runtime.health import Health, HealthLedger

    api["release"]()
    h = api["h"]["member"]
    inst = client.post(URL, headers=h, json={"gear": "acme/hello", "consent": True}).json
    iid = inst["id"]

    def shown() -> dict[str, Any]:
        body = client.get(f"{URL}/{iid}", headers=h).json
        assert [i["health"] for i in client.get(URL, headers=h).json["items"]] == [body["health"]]
        return body["health"]

    def flush(ledger: HealthLedger) -> None:
        flush_deltas(database(app).engine, ledger.take())

    assert shown()["state"] == "waiting"
    ledger = HealthLedger()
    counted = Health(iid, threshold=3, ledger=ledger)
    for ms in (3, 4, 40):
        counted.success(ms)
    counted.failure("it raised ValueError", code="gear_error", latency_ms=700)
    counted.logged("info", "hello from the gear")
    flush(ledger)
    health = shown()
    assert health["state"] == "running" and health["next_action"] == "none"
    assert (health["calls"], health["errors"], health["failures"]) == (4, 1, {"gear_error": 1})
    assert (health["p50_ms"], health["p99_ms"]) == (5.0, 1000.0)
    assert health["last_error"] == "it raised ValueError" and health["last_error_at"]
    assert [line["message"] for line in health["logs"]] == ["hello from the gear"]

    ledger.not_running(iid, "tampered", "gear.py was modified")
    flush(ledger)
    health = shown()
    assert health["state"] == "tampered" and "gear.py was modified" in health["reason"]
    assert health["next_action"] == "retry"
    ledger.started(iid)
    flush(ledger)
    assert shown()["state"] == "running"

    assert client.patch(f"{URL}/{iid}", headers=h, json={"enabled": False}).status_code == 200
    health = shown()
    assert (health["state"], health["next_action"]) == ("disabled", "enable")
    assert health["calls"] == 4, "disabling keeps the numbers"
    client.patch(f"{URL}/{iid}", headers=h, json={"enabled": True})

    for _ in range(3):  # the breaker trips; the engine marks the installation failed
        counted.failure("it timed out", code="timeout", timeout=True)
    from marketplace.workspaces.service import mark_failed

    mark_failed(session, iid, "disabled after 3 consecutive failures: it timed out")
    flush(ledger)
    health = shown()
    assert (health["state"], health["next_action"]) == ("stopped_by_breaker", "retry")
    assert "3 consecutive failures" in health["reason"] and health["timeouts"] == 3
    assert health["failures"] == {"gear_error": 1, "timeout": 3}

    admin = api["h"]["admin"]
    resp = client.post("/api/v1/admin/gears/acme/hello/1.0.0/quarantine", headers=admin,
                       json={"reason": "it leaks api keys"})
    assert resp.status_code == 200, resp.json
    health = shown()
    assert health["state"] == "quarantined" and "it leaks api keys" in health["reason"]
    assert health["next_action"] == "contact_publisher"
    api["release"](version="1.1.0")
    health = shown()
    assert health["next_action"] == "upgrade" and "1.1.0" in health["next_step"]


def test_incompatible_with_the_engine(app, client, api, monkeypatch):
    api["release"]()
    h = api["h"]["member"]
    iid = client.post(URL, headers=h, json={"gear": "acme/hello", "consent": True}).json["id"]
    monkeypatch.setitem(app.config, "ENGINE_VERSION", "99.0.0")  # the server runs a new engine
    health = client.get(f"{URL}/{iid}", headers=h).json["health"]
    assert health["state"] == "incompatible" and "99.0.0" in health["reason"]
    assert health["next_action"] == "contact_publisher"


def test_a_suspended_installation_is_incompatible(client, api, session):
    """The engine suspends an installation its version cannot run on: shown as
    incompatible, with the engine's reason, and what to do."""
    from marketplace.workspaces.service import set_suspended

    api["release"]()
    h = api["h"]["member"]
    iid = client.post(URL, headers=h, json={"gear": "acme/hello", "consent": True}).json["id"]
    assert set_suspended(session, iid, version="1.0.0", suspended=True,
                         reason="needs engine >=2.0.0; this engine is 1.0.0") is not None
    body = client.get(f"{URL}/{iid}", headers=h).json
    assert body["status"] == "suspended"
    assert body["health"]["state"] == "incompatible"
    assert "needs engine >=2.0.0" in body["health"]["reason"]
    assert "resumes by itself" in body["health"]["next_step"]


def test_health_row_goes_with_the_installation(app, client, api, session):
    from marketplace.db import database
    from marketplace.engine.health_sync import flush_deltas
    from marketplace.runtime.health import Health, HealthLedger
    from marketplace.workspaces.models import InstallationHealth

    api["release"]()
    h = api["h"]["member"]
    iid = client.post(URL, headers=h, json={"gear": "acme/hello", "consent": True}).json["id"]
    ledger = HealthLedger()
    Health(iid, ledger=ledger).success(1.0)
    pending = ledger.take()
    assert flush_deltas(database(app).engine, pending) == 1
    assert session.get(InstallationHealth, iid) is not None
    assert client.delete(f"{URL}/{iid}", headers=h).status_code == 204
    session.expire_all()
    assert session.get(InstallationHealth, iid) is None
    # a late flush for the uninstalled installation is dropped, not an error
    assert flush_deltas(database(app).engine, pending) == 0
    assert session.scalar(select(InstallationHealth.installation_id)) is None


def test_who_may_manage_a_workspace(client, api):
    api["release"]()
    h = api["h"]
    assert client.get(URL).status_code == 401
    for who in ("outsider", "dev", "member_read"):
        resp = client.get(URL, headers=h[who])
        assert resp.status_code == 403, who
        assert resp.json["error"]["code"] == "forbidden"
    # Non-admins cannot tell a missing workspace from a forbidden one; admins can.
    assert client.get("/api/v1/workspaces/nope/installations",
                      headers=h["member"]).status_code == 403
    assert client.get("/api/v1/workspaces/nope/installations",
                      headers=h["admin"]).status_code == 404
    resp = client.post(URL, headers=h["admin"], json={"gear": "acme/hello", "consent": True})
    assert resp.status_code == 201
    assert client.get(URL, headers=h["member"]).json["items"][0]["id"] == resp.json["id"]
    # Another workspace's member cannot reach the installation even by id.
    other = f"/api/v1/workspaces/other/installations/{resp.json['id']}"
    assert client.get(other, headers=h["outsider"]).status_code == 404


def test_bad_bodies_are_refused_with_every_problem(client, api):
    h = api["h"]["member"]
    assert client.post(URL, headers=h, data="nope",
                       content_type="application/json").status_code == 400
    resp = client.post(URL, headers=h, json={"gear": 5, "config": [], "colour": "red"})
    assert resp.status_code == 422
    assert {d["path"] for d in resp.json["error"]["details"]} == {"$.colour"}
    resp = client.post(URL, headers=h, json={"gear": 5, "config": []})
    assert {d["path"] for d in resp.json["error"]["details"]} == {"$.gear", "$.config"}
    resp = client.post(URL, headers=h, json={"config": {}})
    assert resp.json["error"]["details"][0]["path"] == "$.gear"
    assert client.get(f"{URL}/plan", headers=h).status_code == 422
