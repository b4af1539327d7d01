"""Vetting tables: the job queue (``vetting_jobs``) and the reports (``vetting_reports``).

The queue lives in the database the registry already has, so any number of
registry replicas and ``marketplace vet worker`` processes share it without
another service: a job is claimed by one conditional ``UPDATE`` (see
:mod:`marketplace.vetting.jobs`), which the database serializes. Findings
are stored as JSON on the report: they are always read and written together,
for one version, and their shape is the API's.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Enum, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from marketplace.db import Base, UTCDateTime, utcnow
from marketplace.models import GearVersion


class JobState(enum.Enum):
    """``queued`` → ``running`` → ``done`` (checks ran, even if some errored) or ``error``
    (the run itself failed after every attempt)."""

    queued = "queued"
    running = "running"
    done = "done"
    error = "error"


def _state_enum() -> Enum:
    return Enum(JobState, native_enum=False, length=16,
                values_callable=lambda members: [m.value for m in members])


class VettingJob(Base):
    """One request to vet one version; ``claimed_at`` lets stale runs be retried."""

    __tablename__ = "vetting_jobs"
    __table_args__ = (Index("ix_vetting_jobs_state_created", "state", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(
        ForeignKey("gear_versions.id", ondelete="CASCADE"), index=True)
    state: Mapped[JobState] = mapped_column(_state_enum(), default=JobState.queued)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_by: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(Text)

    version: Mapped[GearVersion] = relationship()

    def __repr__(self) -> str:
        return f"<VettingJob {self.id} v{self.version_id} {self.state.value}>"


class VettingReport(Base):
    """The latest vetting result of a version: its state and every finding."""

    __tablename__ = "vetting_reports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(
        ForeignKey("gear_versions.id", ondelete="CASCADE"), unique=True)
    state: Mapped[JobState] = mapped_column(_state_enum(), default=JobState.queued)
    findings: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    version: Mapped[GearVersion] = relationship()

    def __repr__(self) -> str:
        return f"<VettingReport v{self.version_id} {self.state.value}>"
