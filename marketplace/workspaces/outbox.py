"""The lifecycle outbox: installation changes for the engine nodes, written in the change's
own transaction.

Every change of an installation (installed, upgraded, config or enabled changed,
uninstalled) adds one :class:`EngineEvent` row **before** the change commits, so
the row exists exactly when the change does: a rolled-back change leaves no
row, a committed one cannot lose its row to a crash between the commit and a
notification. Engine nodes (:mod:`marketplace.engine.lifecycle`) take rows with
:func:`claim`, a conditional ``UPDATE`` that only one node wins per row, act
(``gear_install``, retire the worker, uninstall cleanup) and :func:`finish` it
(the row is deleted). A claim is a lease: a node killed mid-way leaves a row
whose lease runs out, and another node takes it again. A row is only claimed
when no older row of the same installation is left, so one installation's
changes are acted on in the order they were made.

An ``uninstalled`` row carries the installation's last config and its secrets
still encrypted as stored (``gear_uninstall`` needs them; the row is gone once
done). This module imports nothing from the engine: the workspaces service
writes rows, the engine reads them.
"""

from __future__ import annotations

import enum
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, Enum, Integer, String, Text, delete, exists, or_, select, update
from sqlalchemy.orm import Mapped, Session, aliased, mapped_column

from marketplace.db import Base, UTCDateTime, utcnow

#: A claim older than this is taken to belong to a node that died; another node retries.
LEASE_SECONDS = 120.0
#: A row whose work failed this many times is dropped (logged by the engine) rather than
#: retried forever.
MAX_ATTEMPTS = 5


class EventKind(enum.StrEnum):
    installed = "installed"
    changed = "changed"
    uninstalled = "uninstalled"


class EngineEvent(Base):
    """One installation change waiting for an engine node."""

    __tablename__ = "engine_outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[EventKind] = mapped_column(
        Enum(EventKind, native_enum=False, length=16,
             values_callable=lambda members: [m.value for m in members]))
    installation_id: Mapped[str] = mapped_column(String(32), index=True)
    workspace: Mapped[str] = mapped_column(String(100))
    gear: Mapped[str] = mapped_column(String(214))
    version: Mapped[str] = mapped_column(String(100))
    #: ``uninstalled`` only: the last config, and the secrets as stored (encrypted)
    config: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    secrets_encrypted: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    claimed_by: Mapped[str | None] = mapped_column(String(200))
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)


def record(session: Session, kind: EventKind, inst: Any, *, final: bool = False) -> EngineEvent:
    """Add the row announcing ``kind`` for ``inst`` (an ``Installation``) to the session's
    transaction; the caller commits. ``final`` keeps the config and the encrypted secrets
    (the row outlives the installation)."""
    row = EngineEvent(kind=kind, installation_id=inst.id, workspace=inst.workspace.name,
                      gear=inst.gear.name, version=inst.version,
                      config=dict(inst.config or {}) if final else None,
                      secrets_encrypted=inst.secrets_encrypted if final else None)
    session.add(row)
    return row


def claim(session: Session, node: str, *, limit: int = 20, lease: float = LEASE_SECONDS,
          now: datetime | None = None) -> list[EngineEvent]:
    """Take up to ``limit`` rows for ``node`` and commit; the rows it won, oldest first.

    A row is free when unclaimed or its lease ran out, and it is first in line for its
    installation. Each is taken by a conditional ``UPDATE`` (free → ``node``): of several
    nodes racing for a row, exactly one updates it.
    """
    now = now or utcnow()
    older = aliased(EngineEvent)
    free = or_(EngineEvent.claimed_until.is_(None), EngineEvent.claimed_until < now)
    candidates = session.scalars(
        select(EngineEvent.id).where(free, ~exists().where(
            older.installation_id == EngineEvent.installation_id, older.id < EngineEvent.id))
        .order_by(EngineEvent.id).limit(limit)).all()
    session.rollback()
    won: list[int] = []
    for event_id in candidates:
        taken = session.execute(
            update(EngineEvent).where(EngineEvent.id == event_id, free)
            .values(claimed_by=node, claimed_until=now + timedelta(seconds=lease),
                    attempts=EngineEvent.attempts + 1)
            .execution_options(synchronize_session=False))
        session.commit()
        if getattr(taken, "rowcount", 0) == 1:
            won.append(event_id)
    if not won:
        return []
    rows = session.scalars(select(EngineEvent).where(EngineEvent.id.in_(won))
                           .order_by(EngineEvent.id)).all()
    session.expunge_all()
    session.rollback()
    return [r for r in rows if r.claimed_by == node]


def finish(session: Session, event: EngineEvent, node: str) -> bool:
    """Delete ``event`` once done, if ``node`` still holds it; commits."""
    gone = session.execute(delete(EngineEvent).where(EngineEvent.id == event.id,
                                                     EngineEvent.claimed_by == node)
                           .execution_options(synchronize_session=False))
    session.commit()
    return getattr(gone, "rowcount", 0) == 1


def failed(session: Session, event: EngineEvent, node: str, error: str) -> bool:
    """Record why ``event`` failed and let any node retry it after a backoff (``False``),
    or drop it after :data:`MAX_ATTEMPTS` (``True``); commits."""
    if event.attempts >= MAX_ATTEMPTS:
        finish(session, event, node)
        return True
    retry = utcnow() + timedelta(seconds=2 ** event.attempts)
    session.execute(update(EngineEvent).where(EngineEvent.id == event.id,
                                              EngineEvent.claimed_by == node)
                    .values(claimed_by=None, claimed_until=retry, last_error=error[:2000])
                    .execution_options(synchronize_session=False))
    session.commit()
    return False


def pending(session: Session) -> int:
    """How many rows wait (claimed or not)."""
    from sqlalchemy import func

    return int(session.scalar(select(func.count()).select_from(EngineEvent)) or 0)
