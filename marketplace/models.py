"""The registry's tables.

Conventions: integer primary keys; enums stored as their string values (no
native database enum types, so adding a member needs no type migration);
timestamps are timezone-aware UTC (:class:`~marketplace.db.UTCDateTime`);
structured values (scopes, categories, manifests, audit snapshots) are JSON.
The schema itself is owned by the migrations in ``marketplace/migrations``; a
test keeps them and these models identical.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates
from sqlalchemy.sql.expression import false as sa_false

from gears_sdk.versions import precedence_key
from marketplace.db import Base, UTCDateTime, utcnow


def _str_enum(cls: type[enum.Enum], length: int = 16) -> Enum:
    return Enum(cls, native_enum=False, length=length,
                values_callable=lambda members: [m.value for m in members])


class Role(enum.Enum):
    """What a user is: admins review, developers publish, business users install."""

    admin = "admin"
    developer = "developer"
    business = "business"


class VersionStatus(enum.Enum):
    """Review state of a published version; only ``approved`` is visible and installable."""

    pending = "pending"
    approved = "approved"
    rejected = "rejected"


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    role: Mapped[Role] = mapped_column(_str_enum(Role))
    display_name: Mapped[str | None] = mapped_column(String(200))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    publisher_memberships: Mapped[list[PublisherMember]] = relationship(
        back_populates="user", cascade="all, delete-orphan")
    workspace_memberships: Mapped[list[WorkspaceMember]] = relationship(
        back_populates="user", cascade="all, delete-orphan")
    tokens: Mapped[list[ApiToken]] = relationship(
        back_populates="user", cascade="all, delete-orphan")

    @validates("email")
    def _lower_email(self, _key: str, value: str) -> str:
        # Emails are identities: "Ann@X.org" and "ann@x.org" must be one user.
        return value.strip().lower()

    def __repr__(self) -> str:
        return f"<User {self.email} {self.role.value if self.role else '?'}>"


class Publisher(Base):
    """A namespace gears are published under (the ``acme`` in ``acme/rfm-score``)."""

    __tablename__ = "publishers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(40), unique=True)
    display_name: Mapped[str | None] = mapped_column(String(200))
    verified: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    members: Mapped[list[PublisherMember]] = relationship(
        back_populates="publisher", cascade="all, delete-orphan")
    gears: Mapped[list[Gear]] = relationship(back_populates="publisher")

    def __repr__(self) -> str:
        return f"<Publisher {self.name}>"


class PublisherMember(Base):
    __tablename__ = "publisher_members"

    publisher_id: Mapped[int] = mapped_column(
        ForeignKey("publishers.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True)
    role: Mapped[str] = mapped_column(String(16), default="member")

    publisher: Mapped[Publisher] = relationship(back_populates="members")
    user: Mapped[User] = relationship(back_populates="publisher_memberships")


class Workspace(Base):
    """Where business users install gears; the engine runs one set of gears per workspace."""

    __tablename__ = "workspaces"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(40), unique=True)
    display_name: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    members: Mapped[list[WorkspaceMember]] = relationship(
        back_populates="workspace", cascade="all, delete-orphan")

    def __repr__(self) -> str:
        return f"<Workspace {self.name}>"


class WorkspaceMember(Base):
    __tablename__ = "workspace_members"

    workspace_id: Mapped[int] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True)
    role: Mapped[str] = mapped_column(String(16), default="member")

    workspace: Mapped[Workspace] = relationship(back_populates="members")
    user: Mapped[User] = relationship(back_populates="workspace_memberships")


class ApiToken(Base):
    """A bearer token for the CLI and automation. Only its sha256 is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(12))
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship(back_populates="tokens")

    def __repr__(self) -> str:
        return f"<ApiToken {self.prefix}… {self.scopes}>"


class WebSession(Base):
    """A signed-in web session. The cookie carries a random key; only its sha256 is
    stored. Deleting the row ends the session wherever the cookie was copied to."""

    __tablename__ = "web_sessions"

    key_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship()


class AuthFailure(Base):
    """Failed authentications of one key (a token's hash, an address, an account) in the
    current window; see :mod:`marketplace.accounts.failures`. Keys are stored hashed."""

    __tablename__ = "auth_failures"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    count: Mapped[int] = mapped_column(Integer, default=0)


class Gear(Base):
    """A gear across all its versions; ``name`` is the full ``publisher/gear``."""

    __tablename__ = "gears"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    publisher_id: Mapped[int] = mapped_column(ForeignKey("publishers.id"), index=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(String(200))
    summary: Mapped[str] = mapped_column(Text, default="")
    categories: Mapped[list[str]] = mapped_column(JSON, default=list)
    install_count: Mapped[int] = mapped_column(Integer, default=0)
    #: Has an approved, non-yanked, non-quarantined version: the catalog lists it.
    #: Kept by :func:`marketplace.registry.states.refresh_listing` on every state
    #: change, so searches filter on an index instead of scanning versions.
    listed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    __table_args__ = (Index("ix_gears_listed_installs", "listed", "install_count"),)

    publisher: Mapped[Publisher] = relationship(back_populates="gears")
    versions: Mapped[list[GearVersion]] = relationship(
        back_populates="gear", cascade="all, delete-orphan", order_by="GearVersion.id")

    def __repr__(self) -> str:
        return f"<Gear {self.name}>"


class GearVersion(Base):
    """One published, immutable archive of a gear, with its review and lifecycle state."""

    __tablename__ = "gear_versions"
    __table_args__ = (
        UniqueConstraint("gear_id", "version", name="uq_gear_version"),
        # Semver precedence ignores build metadata: 1.0.0 and 1.0.0+build.2 are one
        # version, so the database keeps one archive per precedence, whoever races.
        Index("uq_gear_versions_precedence", "gear_id", "precedence", unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    gear_id: Mapped[int] = mapped_column(ForeignKey("gears.id", ondelete="CASCADE"))
    version: Mapped[str] = mapped_column(String(100))
    #: ``version`` without build metadata (:func:`gears_sdk.versions.precedence_key`),
    #: set whenever ``version`` is.
    precedence: Mapped[str] = mapped_column(String(100))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(Integer)
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[VersionStatus] = mapped_column(
        _str_enum(VersionStatus), default=VersionStatus.pending, index=True)
    review_reason: Mapped[str | None] = mapped_column(Text)
    reviewed_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"))
    reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    yanked: Mapped[bool] = mapped_column(Boolean, default=False)
    yank_reason: Mapped[str | None] = mapped_column(Text)
    yanked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    quarantined: Mapped[bool] = mapped_column(Boolean, default=False)
    quarantine_reason: Mapped[str | None] = mapped_column(Text)
    signature: Mapped[str | None] = mapped_column(Text)
    uploaded_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    gear: Mapped[Gear] = relationship(back_populates="versions")
    reviewed_by: Mapped[User | None] = relationship(foreign_keys=[reviewed_by_id])
    uploaded_by: Mapped[User | None] = relationship(foreign_keys=[uploaded_by_id])

    @validates("version")
    def _set_precedence(self, _key: str, value: str) -> str:
        self.precedence = precedence_key(value)
        return value

    def __repr__(self) -> str:
        return f"<GearVersion {self.gear_id}@{self.version} {self.status.value}>"


class AuditEntry(Base):
    """One state change: who did what to which object, with before/after snapshots."""

    __tablename__ = "audit_entries"
    __table_args__ = (Index("ix_audit_entries_target", "target_type", "target_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True)
    #: A non-person actor (``operator-cli``, ``demo-seed``, ``vetting``) when no user
    #: acted; see :class:`marketplace.audit.SystemActor`.
    actor_system: Mapped[str | None] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(64), index=True)
    target_type: Mapped[str] = mapped_column(String(32))
    target_id: Mapped[str] = mapped_column(String(200))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    reason: Mapped[str | None] = mapped_column(Text)

    actor: Mapped[User | None] = relationship()

    def __repr__(self) -> str:
        return f"<AuditEntry {self.action} {self.target_type}:{self.target_id}>"
