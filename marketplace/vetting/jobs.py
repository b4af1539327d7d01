"""The vetting queue: enqueue on publish, claim atomically, run, record, retry when stale.

Claiming is one conditional ``UPDATE … WHERE id = ? AND (state = 'queued' OR
(state = 'running' AND claimed_at < cutoff))``: the database lets exactly
one transaction change the row, so two workers (threads, processes or
replicas) never run the same job. Each claim carries a fresh token in
``claimed_by``, and results are only written by a second conditional
``UPDATE`` that still matches that token: a worker that was presumed dead
(its claim went stale and another worker re-claimed the job) cannot
overwrite the newer run's report.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from gears_sdk.archive import read_archive
from marketplace.db import utcnow
from marketplace.models import GearVersion
from marketplace.vetting.approval import approval_reason, auto_approval_refusal, baseline
from marketplace.vetting.context import SandboxOptions, VetContext
from marketplace.vetting.findings import finding
from marketplace.vetting.models import JobState, VettingJob, VettingReport
from marketplace.vetting.runner import DEFAULT_BUDGET, JobFailed, run_job

log = logging.getLogger(__name__)

STALE_AFTER = timedelta(minutes=10)
MAX_ATTEMPTS = 3


class Approver(Protocol):
    """Auto-approves (and signs) a version inside the caller's transaction."""

    def __call__(self, session: Session, version: GearVersion, reason: str) -> None: ...


@dataclass(frozen=True)
class Claim:
    job_id: int
    version_id: int
    token: str
    attempt: int


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def enqueue(session: Session, version: GearVersion) -> VettingJob:
    """Queue a vetting run for ``version`` and reset its report to ``queued``; the caller
    commits (publish does so together with the version row)."""
    job = VettingJob(version_id=version.id, state=JobState.queued)
    session.add(job)
    report = session.scalar(select(VettingReport).where(VettingReport.version_id == version.id))
    if report is None:
        report = VettingReport(version_id=version.id)
        session.add(report)
    report.state, report.findings = JobState.queued, []
    report.started_at = report.finished_at = None
    return job


def claim(session: Session, worker: str | None = None, *, stale_after: timedelta = STALE_AFTER,
          max_attempts: int = MAX_ATTEMPTS, now: datetime | None = None,
          versions: Collection[int] | None = None) -> Claim | None:
    """Claim the oldest runnable job (of ``versions`` only, when given), or ``None``.
    Commits."""
    now = now or utcnow()
    cutoff = now - stale_after
    _give_up_exhausted(session, cutoff, max_attempts)
    runnable = or_(VettingJob.state == JobState.queued,
                   and_(VettingJob.state == JobState.running, VettingJob.claimed_at < cutoff))
    if versions is not None:
        runnable = and_(runnable, VettingJob.version_id.in_(list(versions)))
    candidates = session.scalars(
        select(VettingJob.id).where(runnable, VettingJob.attempts < max_attempts)
        .order_by(VettingJob.created_at, VettingJob.id).limit(10)).all()
    session.rollback()
    for job_id in candidates:
        token = f"{worker or worker_name()}:{uuid.uuid4().hex[:12]}"
        result = session.execute(
            update(VettingJob).where(VettingJob.id == job_id, runnable,
                                     VettingJob.attempts < max_attempts)
            .values(state=JobState.running, claimed_at=now, claimed_by=token,
                    attempts=VettingJob.attempts + 1)
            .execution_options(synchronize_session=False))
        session.commit()
        if result.rowcount == 1:  # type: ignore[attr-defined]
            job = session.get(VettingJob, job_id, populate_existing=True)
            assert job is not None
            return Claim(job_id, job.version_id, token, job.attempts)
    return None


def _give_up_exhausted(session: Session, cutoff: datetime, max_attempts: int) -> None:
    """Stale runs out of attempts: the job errors and the report says so (still pending)."""
    stale = session.scalars(select(VettingJob).where(
        VettingJob.state == JobState.running, VettingJob.claimed_at < cutoff,
        VettingJob.attempts >= max_attempts)).all()
    for job in stale:
        _record(session, job, [finding("scanner_error", f"vetting did not finish after "
                                       f"{job.attempts} attempts; an admin must review by "
                                       "hand or re-run it").to_dict()], JobState.error,
                "gave up: stale after the last attempt")
    session.commit()


def finish(session: Session, claim_: Claim, findings: list[dict[str, Any]],
           approver: Approver | None = None, *, error: str | None = None) -> bool:
    """Record the result if the claim is still ours; auto-approve when allowed. Commits.

    Returns ``False`` (and writes nothing) when the claim was lost.
    """
    state = JobState.error if error else JobState.done
    result = session.execute(
        update(VettingJob).where(VettingJob.id == claim_.job_id,
                                 VettingJob.claimed_by == claim_.token,
                                 VettingJob.state == JobState.running)
        .values(state=state, finished_at=utcnow(), error=error)
        .execution_options(synchronize_session=False))
    if result.rowcount != 1:  # type: ignore[attr-defined]
        session.rollback()
        log.warning("vetting job %s: claim %s was lost; result discarded", claim_.job_id,
                    claim_.token)
        return False
    job = session.get(VettingJob, claim_.job_id, populate_existing=True)
    assert job is not None
    report = _record(session, job, findings, state, error)
    if approver is not None and report.state is JobState.done:
        version = job.version
        if auto_approval_refusal(version, findings) is None:
            approver(session, version, approval_reason(version))
    session.commit()
    return True


def _record(session: Session, job: VettingJob, findings: list[dict[str, Any]],
            state: JobState, error: str | None) -> VettingReport:
    report = session.scalar(select(VettingReport).where(VettingReport.version_id ==
                                                        job.version_id))
    if report is None:
        report = VettingReport(version_id=job.version_id)
        session.add(report)
    has_scanner_error = any(f.get("code") == "scanner_error" for f in findings)
    report.state = JobState.error if (error or has_scanner_error) else state
    report.findings = findings
    report.started_at, report.finished_at = job.claimed_at, utcnow()
    job.state = state
    job.error = error
    return report


def vet_version(version: GearVersion, data: bytes, sandbox: SandboxOptions,
                budget: float | None = DEFAULT_BUDGET) -> list[dict[str, Any]]:
    """Every check on ``version``'s archive bytes, in a child process within ``budget``
    seconds (:mod:`~marketplace.vetting.runner`). ``budget=None`` runs them in this
    process without a budget: only for tests that replace a check, never in a server."""
    previous = baseline(version)
    if budget is None:
        # in this process only for tests: the checks load in the vetting child otherwise
        from marketplace.vetting.pipeline import run_checks

        return run_checks(VetContext(
            archive=read_archive(data), previous_manifest=previous.manifest if previous else None,
            previous_version=previous.version if previous else None, sandbox=sandbox))
    return run_job(data, previous_manifest=previous.manifest if previous else None,
                   previous_version=previous.version if previous else None,
                   sandbox=sandbox, budget=budget)


def run_claim(session: Session, store: Any, claim_: Claim, sandbox: SandboxOptions,
              approver: Approver | None = None, *, max_attempts: int = MAX_ATTEMPTS,
              budget: float | None = DEFAULT_BUDGET) -> bool:
    """Run a claimed job to the end.

    A job whose checks overran the budget or killed their process is over at once:
    ``scanner_error``, the version stays pending, no retry (the same bytes would do
    it again). A failure outside the checks (storage, the database) requeues the job
    until its attempts run out, then records ``scanner_error``."""
    version = session.get(GearVersion, claim_.version_id)
    try:
        if version is None:
            raise LookupError(f"version {claim_.version_id} no longer exists")
        findings = vet_version(version, store.read(version.sha256), sandbox, budget)
    except JobFailed as exc:
        log.warning("vetting job %s: %s", claim_.job_id, exc)
        session.rollback()
        return finish(session, claim_, [finding("scanner_error", str(exc)).to_dict()],
                      error=str(exc)[:1000])
    except Exception as exc:  # recorded, never swallowed
        log.exception("vetting job %s failed", claim_.job_id)
        session.rollback()
        message = f"{type(exc).__name__}: {exc}"[:1000]
        if claim_.attempt < max_attempts:
            session.execute(update(VettingJob).where(
                VettingJob.id == claim_.job_id, VettingJob.claimed_by == claim_.token)
                .values(state=JobState.queued, error=message)
                .execution_options(synchronize_session=False))
            session.commit()
            return False
        return finish(session, claim_, [finding("scanner_error", f"vetting failed: "
                                                f"{message}").to_dict()], error=message)
    return finish(session, claim_, findings, approver)
