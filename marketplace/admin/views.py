"""The review queue and the version review page, with their actions."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, render_template, url_for
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from gears_sdk.archive import GearArchive, read_archive
from marketplace import audit
from marketplace.admin import diffs
from marketplace.admin.access import act, admin, admin_required, age, form_reason
from marketplace.blobs import get_blob_store
from marketplace.db import get_session
from marketplace.models import AuditEntry, Gear, GearVersion, VersionStatus
from marketplace.registry import queries, states
from marketplace.registry.signing import VersionSignature, keyring, sign_version
from marketplace.vetting.approval import baseline, waiting_reason
from marketplace.vetting.findings import SEVERITIES, rank, worst
from marketplace.vetting.jobs import enqueue
from marketplace.vetting.models import JobState, VettingReport

bp = Blueprint("admin_review", __name__, url_prefix="/admin")


def _report(version: GearVersion) -> VettingReport | None:
    return get_session().scalar(select(VettingReport).where(VettingReport.version_id ==
                                                            version.id))


def _findings(report: VettingReport | None) -> list[dict[str, Any]]:
    found = list(report.findings or []) if report else []
    return sorted(found, key=lambda f: -rank(str(f.get("severity"))))


@bp.get("/")
@admin_required
def queue() -> str:
    """Pending versions, oldest first: whoever waited longest is reviewed first."""
    session = get_session()
    pending = session.scalars(
        select(GearVersion).where(GearVersion.status == VersionStatus.pending)
        .options(selectinload(GearVersion.gear).selectinload(Gear.publisher))
        .order_by(GearVersion.created_at, GearVersion.id)).all()
    reports = {r.version_id: r for r in session.scalars(select(VettingReport).where(
        VettingReport.version_id.in_([v.id for v in pending])))}
    rows = []
    for v in pending:
        report = reports.get(v.id)
        findings = _findings(report)
        rows.append({"v": v, "age": age(v.created_at), "report": report,
                     "waiting": _waiting(v, report, findings),
                     "worst": worst(findings) if findings else None,
                     "counts": {s: sum(1 for f in findings if f.get("severity") == s)
                                for s in reversed(SEVERITIES) if s != "info"}})
    quarantined = session.scalars(select(GearVersion).where(
        GearVersion.quarantined.is_(True)).order_by(GearVersion.id)).all()
    return render_template("admin/queue.html", rows=rows, quarantined=quarantined)


def _version(publisher: str, name: str, version: str) -> GearVersion:
    row = queries.get_version(get_session(), publisher, name, version)
    if row is None:
        abort(404, f"{publisher}/{name} {version} does not exist")
    return row


def _archive(version: GearVersion | None) -> GearArchive | None:
    if version is None:
        return None
    return read_archive(get_blob_store().read(version.sha256))


@bp.get("/gears/<publisher>/<name>/<version>")
@admin_required
def version_page(publisher: str, name: str, version: str) -> str:
    row = _version(publisher, name, version)
    report = _report(row)
    previous = baseline(row)
    archive_error = None
    try:
        changes = diffs.file_changes(_archive(previous), _archive(row))  # type: ignore[arg-type]
    except Exception as exc:  # storage trouble must not hide the findings
        changes, archive_error = [], f"{type(exc).__name__}: {exc}"
    return render_template(
        "admin/version.html", v=row, report=report, findings=_findings(report),
        previous=previous, changes=changes, archive_error=archive_error,
        caps=diffs.capabilities(previous.manifest if previous else None, row.manifest),
        signature=get_session().get(VersionSignature, row.id), age=age(row.created_at),
        audit=_audit_for(row), waiting=_waiting(row, report, _findings(report)))


def _waiting(version: GearVersion, report: VettingReport | None,
             findings: list[dict[str, Any]]) -> str | None:
    """Why a pending version waits for a human (the auto-approval rule's answer)."""
    vetted = report is not None and report.state in (JobState.done, JobState.error)
    return waiting_reason(version, findings, vetted)


def _audit_for(row: GearVersion) -> list[Any]:
    return list(get_session().scalars(select(AuditEntry).where(
        AuditEntry.target_type == "version",
        AuditEntry.target_id == f"{row.gear.name}@{row.version}").order_by(AuditEntry.id)))


def _back(publisher: str, name: str, version: str) -> str:
    return url_for("admin_review.version_page", publisher=publisher, name=name, version=version)


@bp.post("/gears/<publisher>/<name>/<version>/<action>")
@admin_required
def version_action(publisher: str, name: str, version: str, action: str) -> Any:
    row = _version(publisher, name, version)
    session, user, reason = get_session(), admin(), form_reason()
    label = f"{row.gear.name} {row.version}"

    def sign(s: Any, v: GearVersion) -> object:
        return sign_version(s, v, keyring(), get_blob_store())

    actions: dict[str, tuple[Any, str]] = {
        "approve": (lambda: states.review(session, user, row, approve=True, reason=reason,
                                          sign=sign), f"{label} approved and signed"),
        "reject": (lambda: states.review(session, user, row, approve=False, reason=reason),
                   f"{label} rejected; the publisher sees your reason"),
        "quarantine": (lambda: states.set_quarantined(session, user, row, quarantined=True,
                                                      reason=reason),
                       f"{label} quarantined: runtimes stop it at their next kill-list poll"),
        "unquarantine": (lambda: states.set_quarantined(session, user, row, quarantined=False,
                                                        reason=reason),
                         f"{label} released from quarantine"),
        "revet": (lambda: _revet(session, user, row, reason), f"{label} queued for vetting"),
    }
    if action not in actions:
        abort(404)
    run, done = actions[action]
    here = _back(publisher, name, version)
    back = url_for("admin_review.queue") if action in ("approve", "reject") else here
    return act(back, run, done, back_on_error=here)


def _revet(session: Any, user: Any, row: GearVersion, reason: str | None) -> None:
    enqueue(session, row)
    audit.record(session, user, "version.revet", "version", f"{row.gear.name}@{row.version}",
                 reason=reason)
    session.commit()
