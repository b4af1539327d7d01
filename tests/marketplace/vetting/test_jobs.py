"""The vetting queue on SQLite and PostgreSQL: enqueue on publish, atomic claims, stale
retries, scanner errors that keep a version pending, and auto-approval's conditions."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from marketplace.db import database, utcnow
from marketplace.models import AuditEntry, GearVersion, VersionStatus
from marketplace.vetting import jobs
from marketplace.vetting.approval import auto_approval_refusal, baseline
from marketplace.vetting.models import JobState, VettingJob, VettingReport
from marketplace.vetting.worker import process_one
from tests.marketplace.vetting.conftest import upload

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def vet_app(app):
    app.config["VETTING_SANDBOX_MIN_LEVEL"] = "dev-unsafe"  # whatever this host reaches
    return app


def publish(client, actors, make_gear_archive, name="acme/hello", version="1.0.0", **kw):
    resp = upload(client, actors["dev"], make_gear_archive(name, version, **kw))
    assert resp.status_code == 201, resp.json
    return resp.json


def test_publish_queues_a_job_and_returns_at_once(client, actors, make_gear_archive, session):
    body = publish(client, actors, make_gear_archive)
    assert body["vetting"]["state"] == "queued" and body["findings"] == []
    job = session.scalar(select(VettingJob))
    assert job.state is JobState.queued and job.attempts == 0
    # the public sees signatures, never findings
    public = client.get("/api/v1/gears/acme/hello/1.0.0")
    assert public.status_code == 404  # pending: not public at all


@pytest.mark.sandbox
def test_worker_runs_the_checks_and_the_publisher_sees_findings(vet_app, client, actors,
                                                                 make_gear_archive, session):
    publish(client, actors, make_gear_archive)
    assert process_one(vet_app) is True
    assert process_one(vet_app) is False  # queue empty
    body = client.get("/api/v1/gears/acme/hello/1.0.0", headers=actors["dev"]).json
    assert body["vetting"]["state"] == "done" and body["vetting"]["finished_at"]
    codes = [f["code"] for f in body["findings"]]
    assert codes[0] == "archive_ok" and "sandbox_ok" in codes
    assert body["status"] == "pending"  # unverified publisher: an admin decides
    assert {f["severity"] for f in body["findings"]} == {"info"}


def test_a_scanner_error_leaves_the_version_pending(vet_app, client, actors, make_gear_archive,
                                                   session, monkeypatch):
    from marketplace.vetting import pipeline
    from marketplace.vetting.checks.package import check_archive

    def broken(_ctx):
        raise RuntimeError("scanner exploded")

    monkeypatch.setattr(pipeline, "CHECKS", (("archive", check_archive), ("broken", broken)))
    monkeypatch.setattr(pipeline.run_checks, "__defaults__", (pipeline.CHECKS,))
    vet_app.config["VETTING_ISOLATE"] = False  # the replaced check lives in this process
    actors["publisher"].verified = True  # even a verified publisher is not auto-approved
    session.commit()
    publish(client, actors, make_gear_archive)
    assert process_one(vet_app)
    body = client.get("/api/v1/gears/acme/hello/1.0.0", headers=actors["dev"]).json
    assert body["status"] == "pending"
    assert body["vetting"]["state"] == "error"
    (err,) = [f for f in body["findings"] if f["code"] == "scanner_error"]
    assert "scanner exploded" in err["message"] and err["check"] == "broken"


def _pending_version(client, actors, make_gear_archive, session, n: int = 1) -> list[int]:
    for i in range(n):
        publish(client, actors, make_gear_archive, version=f"1.0.{i}")
    return list(session.scalars(select(VettingJob.id).order_by(VettingJob.id)))


def test_two_workers_never_claim_the_same_job(vet_app, client, actors, make_gear_archive,
                                             session):
    job_ids = _pending_version(client, actors, make_gear_archive, session, n=6)
    claimed: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(4)

    def worker(n: int) -> None:
        s = database(vet_app).sessionmaker()
        try:
            start.wait()
            while True:
                got = jobs.claim(s, f"w{n}")
                if got is None:
                    return
                with lock:
                    claimed.append(got.job_id)
        finally:
            s.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(claimed) == sorted(job_ids)  # every job once, none twice


def test_a_stale_claim_is_retried_and_the_old_worker_cannot_write(vet_app, client, actors,
                                                                 make_gear_archive, session):
    _pending_version(client, actors, make_gear_archive, session)
    first = jobs.claim(session, "slow")
    assert first is not None and first.attempt == 1
    assert jobs.claim(session, "other") is None  # running, not stale yet
    later = utcnow() + jobs.STALE_AFTER + timedelta(seconds=1)
    second = jobs.claim(session, "other", now=later)
    assert second is not None and second.job_id == first.job_id and second.attempt == 2
    # the presumed-dead worker finishes after all: its result is discarded
    assert jobs.finish(session, first, [{"code": "archive_ok", "severity": "info"}]) is False
    assert jobs.finish(session, second, [{"code": "archive_ok", "severity": "info"}]) is True
    report = session.scalar(select(VettingReport))
    session.refresh(report)
    assert report.state is JobState.done


def test_a_job_out_of_attempts_becomes_a_scanner_error(vet_app, client, actors,
                                                      make_gear_archive, session):
    _pending_version(client, actors, make_gear_archive, session)
    now = utcnow()
    for n in range(jobs.MAX_ATTEMPTS):
        assert jobs.claim(session, f"w{n}", now=now) is not None
        now += jobs.STALE_AFTER + timedelta(seconds=1)
    assert jobs.claim(session, "last", now=now) is None
    job = session.scalar(select(VettingJob))
    session.refresh(job)
    assert job.state is JobState.error
    report = session.scalar(select(VettingReport))
    session.refresh(report)
    assert report.state is JobState.error
    assert [f["code"] for f in report.findings] == ["scanner_error"]
    assert session.scalar(select(GearVersion.status)) is VersionStatus.pending


def test_storage_failure_requeues_then_gives_up(vet_app, client, actors, make_gear_archive,
                                                session):
    _pending_version(client, actors, make_gear_archive, session)

    class Broken:
        def read(self, sha256):
            raise OSError("disk gone")

    for attempt in range(1, jobs.MAX_ATTEMPTS + 1):
        got = jobs.claim(session, "w")
        assert got is not None and got.attempt == attempt
        jobs.run_claim(session, Broken(), got, jobs.SandboxOptions(enabled=False))
    job = session.scalar(select(VettingJob))
    session.refresh(job)
    assert job.state is JobState.error and "disk gone" in job.error
    assert session.scalar(select(GearVersion.status)) is VersionStatus.pending


# -- auto-approval ------------------------------------------------------------


INFO = [{"code": "archive_ok", "severity": "info"}, {"code": "sandbox_ok", "severity": "info"}]


def _run_with(session, app, findings):
    got = jobs.claim(session, "w")
    from marketplace.vetting.worker import make_approver

    assert jobs.finish(session, got, findings, make_approver(app))


def _approved_first(client, actors, make_gear_archive, session, **kw):
    """1.0.0 published and approved by an admin, its vetting job out of the queue."""
    publish(client, actors, make_gear_archive, version="1.0.0", **kw)
    resp = client.post("/api/v1/admin/gears/acme/hello/1.0.0/approve", headers=actors["admin"])
    assert resp.status_code == 200, resp.json
    session.execute(VettingJob.__table__.delete())
    session.commit()


def _status(client, actors, version):
    return client.get(f"/api/v1/gears/acme/hello/{version}", headers=actors["dev"]).json


@pytest.mark.parametrize(("verified", "findings", "approved"), [
    (True, INFO, True),
    (False, INFO, False),
    (True, [*INFO, {"code": "file_write", "severity": "medium"}], False),
    (True, [*INFO, {"code": "license_missing", "severity": "low"}], False),
    (True, [{"code": "archive_ok", "severity": "info"}], False),  # the gear never ran
])
def test_auto_approval_conditions_for_an_update(vet_app, client, actors, make_gear_archive,
                                                session, verified, findings, approved):
    actors["publisher"].verified = verified
    session.commit()
    _approved_first(client, actors, make_gear_archive, session)
    publish(client, actors, make_gear_archive, version="1.0.1")
    _run_with(session, vet_app, findings)
    body = _status(client, actors, "1.0.1")
    assert (body["status"] == "approved") is approved
    if approved:
        assert body["signature"] and body["key_id"] and "gear.json" in body["files"]
        entry = session.scalar(select(AuditEntry).where(
            AuditEntry.action == "version.auto_approve"))
        assert entry.actor_id is None and entry.actor_system == "vetting"
        assert entry.after["status"] == "approved" and "1.0.0" in entry.reason


def test_a_first_version_always_waits_for_a_human(vet_app, client, actors, make_gear_archive,
                                                  session, make_user):
    """Even from a verified publisher with nothing above info, and reading everything."""
    actors["publisher"].verified = True
    session.commit()
    publish(client, actors, make_gear_archive, version="1.0.0",
            permissions={"network": ["collector.example.com"],
                         "profile": {"read": ["events", "attributes.email", "traits.*"],
                                     "write": []}})
    _run_with(session, vet_app, INFO)
    assert _status(client, actors, "1.0.0")["status"] == "pending"
    version = session.scalar(select(GearVersion))
    assert "first version" in auto_approval_refusal(version, INFO)
    assert session.scalar(select(AuditEntry).where(
        AuditEntry.action == "version.auto_approve")) is None
    _signed_in_admin(client, make_user)
    queue = client.get("/admin/").get_data(as_text=True)
    page = client.get("/admin/gears/acme/hello/1.0.0").get_data(as_text=True)
    for html in (queue, page):
        assert "first version of this gear" in html


def _signed_in_admin(client, make_user):
    from tests.marketplace.web_support import PASSWORD, sign_in

    make_user(role="admin", email="reviewer@gears.test", password=PASSWORD)
    sign_in(client, "reviewer@gears.test")


def test_no_auto_approval_when_capabilities_grow(vet_app, client, actors, make_gear_archive,
                                                 session, make_user):
    from gears_sdk.archive import read_archive
    from marketplace.blobs import get_blob_store
    from marketplace.vetting.checks.package import check_capabilities
    from marketplace.vetting.context import VetContext

    actors["publisher"].verified = True
    session.commit()
    _approved_first(client, actors, make_gear_archive, session)
    publish(client, actors, make_gear_archive, version="1.1.0",
            permissions={"network": ["api.example.com"],
                         "profile": {"read": ["attributes.first_name"], "write": []}})
    version = session.scalar(select(GearVersion).where(GearVersion.version == "1.1.0"))
    archive = read_archive(get_blob_store(vet_app).read(version.sha256))
    prev = baseline(version)
    assert prev is not None and prev.version == "1.0.0"
    grown = [f.to_dict() for f in check_capabilities(VetContext(
        archive, prev.manifest, prev.version))]
    assert "capabilities_added" in [f["code"] for f in grown]
    # Even with every finding reported as info, growth alone refuses auto-approval.
    downgraded = [{**f, "severity": "info"} for f in grown]
    why = auto_approval_refusal(version, INFO + downgraded)
    assert why and "network:api.example.com" in why
    _run_with(session, vet_app, INFO + downgraded)
    session.refresh(version)
    assert version.status is VersionStatus.pending
    _signed_in_admin(client, make_user)
    page = client.get("/admin/gears/acme/hello/1.1.0").get_data(as_text=True)
    assert "Waiting for a human" in page and "network:api.example.com" in page


def test_the_baseline_is_an_earlier_approved_version_never_a_later_one(
        vet_app, client, actors, make_gear_archive, session):
    """0.9.0 published after 1.0.0 was approved has no earlier version: it waits."""
    actors["publisher"].verified = True
    session.commit()
    _approved_first(client, actors, make_gear_archive, session)
    publish(client, actors, make_gear_archive, version="0.9.0")
    _run_with(session, vet_app, INFO)
    assert _status(client, actors, "0.9.0")["status"] == "pending"


@pytest.mark.sandbox
def test_vet_worker_command_processes_the_queue_once(vet_app, runner, client, actors,
                                                     make_gear_archive):
    publish(client, actors, make_gear_archive, version="1.0.0")
    publish(client, actors, make_gear_archive, version="1.0.1")
    result = runner.invoke("vet", "worker", "--once")
    assert result.exit_code == 0, result.output
    assert "vetted 2 versions" in result.output
    body = client.get("/api/v1/gears/acme/hello/1.0.1", headers=actors["dev"]).json
    assert body["vetting"]["state"] == "done"
