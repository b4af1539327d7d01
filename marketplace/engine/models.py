"""The engine's tables: what a workspace knows about its users and what it shows them.

Every row belongs to one workspace (``workspace_id``, cascading), so a
workspace is deleted with its data and engines can be partitioned by
workspace. Rows that belong to an installation (cursors, schedules, state)
name it by its id without a foreign key: the installation's row lives in
another domain, and the engine deletes these rows itself when it hears the
``on_uninstalled`` signal, after the installation's row is already gone.

Events are append-only: nothing updates or deletes them except workspace
deletion. Profiles are the running result of events, connector imports and
extension patches.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from marketplace.db import Base, UTCDateTime, utcnow


class SyncStatus(enum.Enum):
    """A sync run is ``running`` until it ends ``succeeded`` or ``failed``."""

    running = "running"
    succeeded = "succeeded"
    failed = "failed"


def _str_enum(cls: type[enum.Enum]) -> Enum:
    return Enum(cls, native_enum=False, length=16,
                values_callable=lambda members: [m.value for m in members])


def _workspace_fk() -> Mapped[int]:
    return mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)


class Profile(Base):
    """One end user of a workspace: ``attributes`` (facts) and ``traits`` (derived)."""

    __tablename__ = "engine_profiles"
    __table_args__ = (UniqueConstraint("workspace_id", "user_id",
                                       name="uq_engine_profiles_workspace_user"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    workspace_id: Mapped[int] = _workspace_fk()
    user_id: Mapped[str] = mapped_column(String(200))
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    traits: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Event(Base):
    """Something a user did. ``event_id`` makes retried batches idempotent."""

    __tablename__ = "engine_events"
    __table_args__ = (
        UniqueConstraint("workspace_id", "event_id", name="uq_engine_events_workspace_event"),
        Index("ix_engine_events_user_time", "workspace_id", "user_id", "timestamp"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(16))
    name: Mapped[str | None] = mapped_column(String(100))
    properties: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CatalogItem(Base):
    """Something a workspace can recommend (a product, an article...)."""

    __tablename__ = "engine_catalog_items"
    __table_args__ = (
        UniqueConstraint("workspace_id", "item_id", name="uq_engine_catalog_items_workspace_item"),
        Index("ix_engine_catalog_items_category", "workspace_id", "category"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    item_id: Mapped[str] = mapped_column(String(200))
    title: Mapped[str] = mapped_column(String(300), default="")
    category: Mapped[str | None] = mapped_column(String(100))
    price: Mapped[float | None] = mapped_column(Float)
    url: Mapped[str | None] = mapped_column(String(2000))
    image_url: Mapped[str | None] = mapped_column(String(2000))
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Segment(Base):
    """A named audience defined by a rule (:mod:`marketplace.engine.segments`)."""

    __tablename__ = "engine_segments"
    __table_args__ = (UniqueConstraint("workspace_id", "name",
                                       name="uq_engine_segments_workspace_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    workspace_id: Mapped[int] = _workspace_fk()
    name: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(200), default="")
    rule: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Campaign(Base):
    """What a placement shows: ordered experiences, the first whose segment matches wins.

    ``experiences`` is a list of ``{"name", "segment", "installation",
    "content"}`` (``segment`` ``None`` matches everyone); ``fallback`` is the
    static ``{"html", "data"}`` shown when no experience matches or its
    template fails. Among several active campaigns on one placement the
    highest ``priority`` wins, and between equal priorities the first name in
    alphabetical order: :func:`campaign_order`, the one order of campaigns that
    decisions, the API and the pages all use.
    """

    __tablename__ = "engine_campaigns"
    __table_args__ = (
        UniqueConstraint("workspace_id", "name", name="uq_engine_campaigns_workspace_name"),
        Index("ix_engine_campaigns_placement", "workspace_id", "placement"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(200), default="")
    placement: Mapped[str] = mapped_column(String(64))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    experiences: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    fallback: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


def campaign_order() -> tuple[Any, ...]:
    """The one order of campaigns: by placement, then the one a decision picks first
    (highest priority, then name), so a placement's first active campaign in any list
    is the one that answers its decisions."""
    return (Campaign.placement, Campaign.priority.desc(), Campaign.name)


class ConnectorCursor(Base):
    """Where a connector installation's stream stopped; written with the batch it ends."""

    __tablename__ = "engine_connector_cursors"

    installation_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    stream: Mapped[str] = mapped_column(String(100), primary_key=True)
    workspace_id: Mapped[int] = _workspace_fk()
    cursor: Mapped[Any] = mapped_column(JSON, nullable=True)
    records: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SyncSchedule(Base):
    """A connector installation synced every ``interval_minutes``: claimed when due by
    ``marketplace engine scheduler`` (run on a node) or ``engine worker`` (in-process)."""

    __tablename__ = "engine_sync_schedules"

    installation_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    workspace_id: Mapped[int] = _workspace_fk()
    interval_minutes: Mapped[int] = mapped_column(Integer)
    next_run_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SyncRun(Base):
    """One sync of a connector installation: what it read and how it ended."""

    __tablename__ = "engine_sync_runs"
    __table_args__ = (Index("ix_engine_sync_runs_installation", "installation_id", "started_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    workspace_id: Mapped[int] = _workspace_fk()
    installation_id: Mapped[str] = mapped_column(String(32))
    trigger: Mapped[str] = mapped_column(String(16), default="manual")
    status: Mapped[SyncStatus] = mapped_column(_str_enum(SyncStatus), default=SyncStatus.running)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: when the running sync last made progress (started, read a page); a run silent for
    #: longer than ``connectors.STALE_RUN`` died with its engine node
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    stats: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text)


class InstallationState(Base):
    """``ctx.state`` of one installation: one JSON object, capped by ``limits.state_kb``."""

    __tablename__ = "engine_installation_state"

    installation_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    workspace_id: Mapped[int] = _workspace_fk()
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    size: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Decision(Base):
    """The decision log: what was shown to whom, and which gears helped or failed."""

    __tablename__ = "engine_decisions"
    __table_args__ = (Index("ix_engine_decisions_workspace_at", "workspace_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    user_id: Mapped[str] = mapped_column(String(200))
    placement: Mapped[str] = mapped_column(String(64))
    campaign: Mapped[str | None] = mapped_column(String(64))
    experience: Mapped[str | None] = mapped_column(String(64))
    fallback: Mapped[bool] = mapped_column(Boolean, default=False)
    gears: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    took_ms: Mapped[float] = mapped_column(Float, default=0.0)
