"""Quarantine, approval signing and their audit entries through the API."""

from __future__ import annotations

from sqlalchemy import select

from marketplace.models import AuditEntry, GearVersion, VersionStatus
from tests.marketplace.vetting.conftest import upload

Q = "/api/v1/admin/gears/acme/hello/1.0.0"


def _approved(client, actors, make_gear_archive):
    assert upload(client, actors["dev"], make_gear_archive("acme/hello", "1.0.0")).status_code \
        == 201
    assert client.post(Q + "/approve", headers=actors["admin"]).status_code == 200


def test_quarantine_round_trip_with_audit(client, actors, make_gear_archive, session):
    _approved(client, actors, make_gear_archive)
    assert client.post(Q + "/quarantine", headers=actors["dev"],
                       json={"reason": "x"}).status_code == 403
    resp = client.post(Q + "/quarantine", headers=actors["admin"], json={})
    assert resp.status_code == 422 and resp.json["error"]["code"] == "reason_required"
    resp = client.post(Q + "/quarantine", headers=actors["admin"],
                       json={"reason": "calls home"})
    assert resp.status_code == 200
    assert resp.json["quarantined"] and resp.json["quarantine_reason"] == "calls home"
    # blocked from download and listed on the kill list
    assert client.get("/api/v1/gears/acme/hello/1.0.0/download").status_code == 403
    entries = client.get("/api/v1/killlist").json["entries"]
    assert entries == [{"name": "acme/hello", "version": "1.0.0",
                        "sha256": resp.json["sha256"], "reason": "calls home"}]
    resp = client.post(Q + "/unquarantine", headers=actors["admin"],
                       json={"reason": "false positive"})
    assert resp.status_code == 200 and not resp.json["quarantined"]
    assert client.get("/api/v1/killlist").json["entries"] == []
    rows = session.scalars(select(AuditEntry).where(
        AuditEntry.action.in_(["version.quarantine", "version.unquarantine"]))
        .order_by(AuditEntry.id)).all()
    assert [(r.action, r.reason, r.before["quarantined"], r.after["quarantined"])
            for r in rows] == [("version.quarantine", "calls home", False, True),
                               ("version.unquarantine", "false positive", True, False)]
    assert all(r.actor.email == "admin@gears.test" for r in rows)


def test_the_public_sees_signatures_but_not_findings(client, actors, make_gear_archive):
    _approved(client, actors, make_gear_archive)
    public = client.get("/api/v1/gears/acme/hello/1.0.0").json
    assert public["signature"] and public["key_id"] and public["files"]
    assert "findings" not in public and "vetting" not in public
    mine = client.get("/api/v1/gears/acme/hello/1.0.0", headers=actors["dev"]).json
    assert mine["findings"] == [] and mine["vetting"]["state"] == "queued"


def test_approval_is_not_committed_when_it_cannot_be_signed(client, actors, make_gear_archive,
                                                           session, app):
    from marketplace.blobs import get_blob_store

    data = make_gear_archive("acme/hello", "1.0.0")
    body = upload(client, actors["dev"], data).json
    get_blob_store(app).delete(body["sha256"])
    resp = client.post(Q + "/approve", headers=actors["admin"])
    assert resp.status_code == 503
    version = session.scalar(select(GearVersion))
    assert version.status is VersionStatus.pending and version.signature is None
    assert session.scalar(select(AuditEntry).where(
        AuditEntry.action == "version.approve")) is None


def test_rejection_reason_reaches_the_publisher(client, actors, make_gear_archive):
    upload(client, actors["dev"], make_gear_archive("acme/hello", "1.0.0"))
    client.post(Q + "/reject", headers=actors["admin"], json={"reason": "uses eval on input"})
    body = client.get("/api/v1/gears/acme/hello/1.0.0", headers=actors["dev"]).json
    assert body["status"] == "rejected" and body["review_reason"] == "uses eval on input"
    assert body["signature"] is None


def test_revet_queues_a_new_run(client, actors, make_gear_archive, session):
    from marketplace.vetting.models import VettingJob

    upload(client, actors["dev"], make_gear_archive("acme/hello", "1.0.0"))
    resp = client.post(Q + "/revet", headers=actors["admin"], json={"reason": "new rules"})
    assert resp.status_code == 202 and resp.json["vetting"]["state"] == "queued"
    assert len(session.scalars(select(VettingJob)).all()) == 2
    assert session.scalar(select(AuditEntry.reason).where(
        AuditEntry.action == "version.revet")) == "new rules"
