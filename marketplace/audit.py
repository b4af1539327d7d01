"""The audit log: every state change, who made it, and what it changed.

:func:`record` adds the entry to the caller's session, so it is committed (or
rolled back) together with the change it describes; an audit entry can never
claim a change that did not happen, nor a change go unrecorded.

The actor is who really acted: a :class:`~marketplace.models.User` for what a
person did through the API or the web, a :class:`SystemActor` for what the
operator CLI, the demo seed or the vetting pipeline did on its own. A change
made on a person's behalf by a tool (``marketplace create-token EMAIL``) is the
tool's, never the person's.
"""

from __future__ import annotations

import enum
from typing import Any

from sqlalchemy.orm import Session

from marketplace.models import AuditEntry, User


class SystemActor(enum.Enum):
    """The non-person actors, stored in ``audit_entries.actor_system``."""

    cli = "operator-cli"
    seed = "demo-seed"
    vetting = "vetting"
    engine = "engine"


Actor = User | SystemActor | None


def record(
    session: Session,
    actor: Actor,
    action: str,
    target_type: str,
    target_id: str | int,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    reason: str | None = None,
) -> AuditEntry:
    """Add an audit entry for ``action`` (e.g. ``"version.approve"``) to ``session``.

    ``actor`` is a user, a :class:`SystemActor`, or ``None`` for the system itself.
    """
    entry = AuditEntry(
        actor=actor if isinstance(actor, User) else None,
        actor_system=actor.value if isinstance(actor, SystemActor) else None,
        action=action,
        target_type=target_type,
        target_id=str(target_id),
        before=before,
        after=after,
        reason=reason,
    )
    session.add(entry)
    return entry


def actor_label(entry: AuditEntry) -> str:
    """How the audit page names who acted."""
    if entry.actor is not None:
        return entry.actor.email
    return entry.actor_system or "system"
