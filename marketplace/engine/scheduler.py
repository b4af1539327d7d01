"""Scheduled connector syncs: ``marketplace engine scheduler`` (and ``engine worker``).

A schedule is an interval per connector installation. The scheduler wakes
every ``poll_seconds``, picks the schedules whose ``next_run_at`` has passed,
and *claims* each one by moving ``next_run_at`` forward with a conditional
``UPDATE`` before the sync runs: when several schedulers poll the same
database, exactly one wins each due sync, and one that dies mid-sync only
delays the next run by one interval.

``marketplace engine scheduler`` runs no gear: it asks an engine node
(``ENGINE_URLS``) to run each claimed sync (:func:`node_runner`).
``marketplace engine worker`` runs them in its own process with an embedded
engine (:func:`local_runner`), for a deployment without nodes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from flask import Flask
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from marketplace.db import database, utcnow
from marketplace.engine.connectors import connector, sync
from marketplace.engine.manager import EngineManager
from marketplace.engine.models import SyncSchedule
from marketplace.engine.validation import invalid, problem
from marketplace.engine_service import NodePool
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


#: ``(session, workspace, installation id) -> the run as JSON``; raises MarketplaceError.
Runner = Callable[[Session, Workspace, str], dict[str, Any]]


def local_runner(engine: EngineManager) -> Runner:
    """Run a sync in this process's engine."""

    def run(session: Session, workspace: Workspace, installation: str) -> dict[str, Any]:
        try:
            return sync(engine, session, workspace, installation, trigger="schedule")
        finally:
            engine.flush_failures()

    return run


def node_runner(pool: NodePool) -> Runner:
    """Ask an engine node to run a sync (``POST /engine/v1/_node/.../sync``, node token)."""

    def run(session: Session, workspace: Workspace, installation: str) -> dict[str, Any]:
        session.rollback()  # hold no transaction while the node works
        answer = pool.call("POST", f"/engine/v1/_node/workspaces/{quote(workspace.name, safe='')}"
                           f"/connectors/{quote(installation, safe='')}/sync",
                           json={"trigger": "schedule"})
        return answer if isinstance(answer, dict) else {"installation": installation}

    return run


def run_due(app: Flask, engine: EngineManager | Runner, now: datetime | None = None, *,
            stop: threading.Event | None = None) -> list[dict[str, Any]]:
    """Claim every due schedule and run its sync (in ``engine``, or through a runner);
    the runs, as JSON. A sync that cannot run is ``skipped`` with the error, logged.

    Once ``stop`` is set no further schedule is claimed (the sync running goes on to its
    end): the rest stay due, unclaimed, for the next scheduler, instead of each being
    claimed and run by one asked to stop."""
    runner = local_runner(engine) if isinstance(engine, EngineManager) else engine
    now = now or utcnow()
    runs = []
    session = database(app).sessionmaker()
    try:
        due = session.execute(select(SyncSchedule, Workspace).join(
            Workspace, SyncSchedule.workspace_id == Workspace.id)
            .where(SyncSchedule.next_run_at <= now).order_by(SyncSchedule.next_run_at)).all()
        for row, workspace in due:
            if stop is not None and stop.is_set():
                break
            if not _claim(session, row, now):
                continue
            try:
                runs.append(runner(session, workspace, row.installation_id))
            except MarketplaceError as exc:
                session.rollback()
                log.warning("scheduled sync of %s skipped: %s", row.installation_id, exc)
                runs.append({"installation": row.installation_id, "status": "skipped",
                             "error": exc.message})
    finally:
        session.close()
    return runs


def worker_loop(app: Flask, engine: EngineManager | Runner, *, once: bool = False,
                poll_seconds: float = 30.0, stop: threading.Event | None = None) -> None:
    """Run due syncs forever (or once, or until ``stop`` is set); errors are logged and the
    loop goes on."""
    stop = stop or threading.Event()
    while True:
        try:
            for run in run_due(app, engine, stop=stop):
                log.info("sync of %s: %s", run.get("installation"), run.get("status"))
        except Exception:
            log.exception("the scheduler pass failed; retrying in %s s", poll_seconds)
        if once or stop.wait(poll_seconds):
            return
