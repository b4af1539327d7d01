"""Scheduled connector syncs, run by ``marketplace engine worker``.

A schedule is an interval per connector installation. The worker wakes every
``poll_seconds``, picks the schedules whose ``next_run_at`` has passed, and
*claims* each one by moving ``next_run_at`` forward with a conditional
``UPDATE`` before syncing it: when several workers poll the same database,
exactly one wins each due sync, and a worker that dies mid-sync only delays
the next run by one interval.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import Any

from flask import Flask
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from marketplace.db import database, utcnow
from marketplace.engine.connectors import connector, sync
from marketplace.engine.manager import EngineManager
from marketplace.engine.models import SyncSchedule
from marketplace.engine.validation import invalid, problem
from marketplace.errors import MarketplaceError
from marketplace.models import Workspace

log = logging.getLogger(__name__)

MIN_INTERVAL = 1
MAX_INTERVAL = 7 * 24 * 60


def schedule_json(row: SyncSchedule | None, installation: str) -> dict[str, Any]:
    if row is None:
        return {"installation": installation, "interval_minutes": None, "next_run_at": None,
                "last_run_at": None}
    return {"installation": installation, "interval_minutes": row.interval_minutes,
            "next_run_at": row.next_run_at.isoformat(),
            "last_run_at": row.last_run_at.isoformat() if row.last_run_at else None}


def set_schedule(engine: EngineManager, session: Session, workspace: Workspace,
                 installation: str, body: Any) -> SyncSchedule | None:
    """``{"interval_minutes": N}`` sets the interval, ``null`` removes it; the caller commits."""
    connector(engine, session, workspace, installation)
    minutes = body.get("interval_minutes", "missing") if isinstance(body, dict) else "missing"
    row = session.get(SyncSchedule, installation)
    if minutes is None:
        if row is not None:
            session.delete(row)
        return None
    if not isinstance(minutes, int) or isinstance(minutes, bool) \
            or not MIN_INTERVAL <= minutes <= MAX_INTERVAL:
        raise invalid("interval_minutes must be a whole number of minutes, or null to stop",
                      [problem("$.interval_minutes", f"from {MIN_INTERVAL} to {MAX_INTERVAL}, "
                               "or null")], "invalid_schedule")
    if row is None:
        row = SyncSchedule(installation_id=installation, workspace_id=workspace.id)
        session.add(row)
    row.interval_minutes = minutes
    row.next_run_at = utcnow() + timedelta(minutes=minutes) if row.last_run_at is None \
        else row.last_run_at + timedelta(minutes=minutes)
    session.flush()
    return row


def _claim(session: Session, row: SyncSchedule, now: datetime) -> bool:
    nxt = now + timedelta(minutes=row.interval_minutes)
    claimed = session.execute(
        update(SyncSchedule).where(SyncSchedule.installation_id == row.installation_id,
                                   SyncSchedule.next_run_at == row.next_run_at)
        .values(next_run_at=nxt, last_run_at=now)
        .execution_options(synchronize_session=False))
    session.commit()
    return bool(getattr(claimed, "rowcount", 0))


def run_due(app: Flask, engine: EngineManager, now: datetime | None = None) -> list[dict[str, Any]]:
    """Sync every connector whose schedule is due; the runs, as JSON."""
    now = now or utcnow()
    runs = []
    session = database(app).sessionmaker()
    try:
        due = session.execute(select(SyncSchedule, Workspace).join(
            Workspace, SyncSchedule.workspace_id == Workspace.id)
            .where(SyncSchedule.next_run_at <= now).order_by(SyncSchedule.next_run_at)).all()
        for row, workspace in due:
            if not _claim(session, row, now):
                continue
            try:
                runs.append(sync(engine, session, workspace, row.installation_id,
                                 trigger="schedule"))
            except MarketplaceError as exc:
                session.rollback()
                log.warning("scheduled sync of %s skipped: %s", row.installation_id, exc)
                runs.append({"installation": row.installation_id, "status": "skipped",
                             "error": exc.message})
            engine.flush_failures()
    finally:
        session.close()
    return runs


def worker_loop(app: Flask, engine: EngineManager, *, once: bool = False,
                poll_seconds: float = 30.0) -> None:
    """Run due syncs forever (or once); errors are logged and the loop goes on."""
    while True:
        try:
            for run in run_due(app, engine):
                log.info("sync of %s: %s", run.get("installation"), run.get("status"))
        except Exception:
            log.exception("the scheduler pass failed; retrying in %s s", poll_seconds)
        if once:
            return
        time.sleep(poll_seconds)
