"""The demo seed (``make run`` = ``marketplace init`` + ``seed-demo``) acts only on its own
example archives: a developer's uploads into the same namespace are never vetted,
approved nor signed by it, however often it runs, and it is audited as itself."""

from __future__ import annotations

import io

import pytest
from sqlalchemy import select

from marketplace.accounts import service
from marketplace.models import AuditEntry, Gear, GearVersion, VersionStatus
from marketplace.vetting.models import JobState, VettingJob

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

SNEAKY = '''
import socket
import subprocess

from gears_sdk import hookimpl


@hookimpl
def gear_render(profile, content, config, ctx):
    subprocess.run(["id"])
    socket.create_connection(("collector.example.com", 443))
    return {"html": "<p>hi</p>"}
'''


def _upload(client, token: str, data: bytes):
    return client.post("/api/v1/gears", headers={"Authorization": f"Bearer {token}"},
                       data={"file": (io.BytesIO(data), "g.gear")},
                       content_type="multipart/form-data")


def _row(session, name: str, version: str) -> GearVersion:
    session.expire_all()
    return session.scalars(select(GearVersion).join(Gear).where(
        Gear.name == name, GearVersion.version == version)).one()


def test_seeding_twice_leaves_a_developers_uploads_alone(runner, session, client, make_user,
                                                        make_token, make_gear_archive):
    make_user(role="admin", email="admin@gears.local")  # what `marketplace init` creates
    first = runner.invoke("seed-demo")
    assert first.exit_code == 0, first.output
    assert "approved acme/hero-banner 1.0.0" in first.stdout

    # A developer follows the README and publishes into acme through the real API.
    dev = service.require_user(session, "dev@gears.local")
    token = make_token(dev, ["publish:acme"])
    risky = make_gear_archive("acme/sneaky", "1.0.0", module_source=SNEAKY)
    assert _upload(client, token, risky).status_code == 201
    # ... a new version of an example gear, with other bytes ...
    other = make_gear_archive("acme/hero-banner", "1.1.0", summary="not the demo's")
    assert _upload(client, token, other).status_code == 201
    # ... and one they yanked while it waited.
    assert _upload(client, token, make_gear_archive("acme/oops", "0.1.0")).status_code == 201
    resp = client.post("/api/v1/gears/acme/oops/0.1.0/yank",
                       headers={"Authorization": f"Bearer {token}"}, json={"reason": "typo"})
    assert resp.status_code == 200, resp.json
    audit_before = session.scalars(select(AuditEntry.id)).all()

    second = runner.invoke("seed-demo")
    assert second.exit_code == 0, second.output
    assert "approved" not in second.stdout and "published" not in second.stdout

    for name, version in (("acme/sneaky", "1.0.0"), ("acme/hero-banner", "1.1.0"),
                          ("acme/oops", "0.1.0")):
        row = _row(session, name, version)
        assert row.status is VersionStatus.pending, (name, row.status)
        assert row.signature is None and row.reviewed_at is None
        # Not even vetted by the seed: their jobs wait for the registry's own workers.
        job = session.scalars(select(VettingJob).where(VettingJob.version_id == row.id)).one()
        assert job.state is JobState.queued and job.attempts == 0
    assert _row(session, "acme/oops", "0.1.0").yanked
    # The second run wrote nothing at all.
    assert session.scalars(select(AuditEntry.id)).all() == audit_before


def test_the_seed_is_audited_as_itself_never_as_a_person(runner, session, make_user):
    make_user(role="admin", email="admin@gears.local")
    before = set(session.scalars(select(AuditEntry.id)).all())
    result = runner.invoke("seed-demo")
    assert result.exit_code == 0, result.output
    entries = [e for e in session.scalars(select(AuditEntry)).all() if e.id not in before]
    approvals = [e for e in entries if e.action == "version.approve"]
    assert approvals, [e.action for e in entries]
    for entry in entries:
        if entry.action == "version.auto_approve":
            assert entry.actor_system == "vetting"
            continue
        assert entry.actor_id is None and entry.actor_system == "demo-seed", (
            entry.action, entry.actor_id, entry.actor_system)
    for v in session.scalars(select(GearVersion)).all():
        assert v.status is VersionStatus.approved and v.signature and v.reviewed_by_id is None
