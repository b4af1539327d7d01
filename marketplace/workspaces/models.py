"""The ``installations`` table: which gear version runs in which workspace, and how.

One row per (workspace, gear): a workspace runs at most one version of a gear,
which is also what the resolver (:mod:`.resolver`) assumes. ``version`` is the concrete
version chosen when the gear was installed or last upgraded; ``constraint`` is
what the user asked for (a range such as ``^1.2.0``, or the exact version), so
an "update within range" can be offered later without guessing.

Secret config values never sit in ``config``: they live, encrypted, in
``secrets_encrypted`` (see :mod:`marketplace.workspaces.secrets`).
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Enum,
    ForeignKey,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from marketplace.db import Base, UTCDateTime, utcnow
from marketplace.models import Gear, User, Workspace


class InstallationStatus(enum.Enum):
    """Why an installation runs or not.

    ``active``: it runs. ``disabled``: a user turned it off. ``failed``: the
    runtime's circuit breaker turned it off after repeated failures; the
    reason says why, and re-enabling it clears the reason. ``suspended``: the
    installed version's ``engine`` range excludes the engine that runs it (the
    reason says which engine it needs); it resumes by itself when the engine
    or the installed version changes so that the range includes it again.
    """

    active = "active"
    disabled = "disabled"
    failed = "failed"
    suspended = "suspended"


def new_installation_id() -> str:
    """32 hex characters: unguessable, so ids in URLs reveal nothing about other rows."""
    return uuid.uuid4().hex


class Installation(Base):
    """One gear installed into one workspace."""

    __tablename__ = "installations"
    __table_args__ = (UniqueConstraint("workspace_id", "gear_id",
                                       name="uq_installations_workspace_gear"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_installation_id)
    workspace_id: Mapped[int] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    gear_id: Mapped[int] = mapped_column(ForeignKey("gears.id", ondelete="CASCADE"), index=True)
    version: Mapped[str] = mapped_column(String(100))
    constraint: Mapped[str] = mapped_column(String(200))
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    secrets_encrypted: Mapped[str | None] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    status: Mapped[InstallationStatus] = mapped_column(
        Enum(InstallationStatus, native_enum=False, length=16,
             values_callable=lambda members: [m.value for m in members]),
        default=InstallationStatus.active)
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    consented_capabilities: Mapped[list[str]] = mapped_column(JSON, default=list)
    installed_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    workspace: Mapped[Workspace] = relationship()
    gear: Mapped[Gear] = relationship()
    installed_by: Mapped[User | None] = relationship()

    def __repr__(self) -> str:
        return f"<Installation {self.id} {self.gear_id}@{self.version} {self.status.value}>"


class InstallationHealth(Base):
    """How an installation's gear has been doing, one row shared by every process and node.

    Engine processes add what they counted since their last flush (about once a
    second, and at once when a breaker trips or a start fails; see
    :mod:`marketplace.engine.health_sync`): counters with ``SET calls = calls + :n``,
    the JSON parts under a row lock. Read by one function,
    :func:`marketplace.workspaces.health.installation_state`, for the API and the pages.
    ``latency_buckets`` counts calls per bucket of
    :data:`marketplace.runtime.health.LATENCY_BUCKETS_MS` (p50/p99 come from it);
    ``logs`` holds the last ``ctx.log`` lines (already stripped of control sequences);
    ``not_running_code``/``_reason`` say why the last start failed, cleared by the next
    start that succeeds.
    """

    __tablename__ = "installation_health"

    installation_id: Mapped[str] = mapped_column(
        ForeignKey("installations.id", ondelete="CASCADE"), primary_key=True)
    calls: Mapped[int] = mapped_column(BigInteger, default=0)
    errors: Mapped[int] = mapped_column(BigInteger, default=0)
    timeouts: Mapped[int] = mapped_column(BigInteger, default=0)
    restarts: Mapped[int] = mapped_column(BigInteger, default=0)
    busy: Mapped[int] = mapped_column(BigInteger, default=0)
    failures: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    latency_buckets: Mapped[list[int]] = mapped_column(JSON, default=list)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    logs: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    not_running_code: Mapped[str | None] = mapped_column(String(40))
    not_running_reason: Mapped[str | None] = mapped_column(Text)
    not_running_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_call_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def __repr__(self) -> str:
        return f"<InstallationHealth {self.installation_id} calls={self.calls}>"
