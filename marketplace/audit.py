"""The audit log: every state change, who made it, and what it changed.

:func:`record` adds the entry to the caller's session, so it is committed (or
rolled back) together with the change it describes; an audit entry can never
claim a change that did not happen, nor a change go unrecorded.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from marketplace.models import AuditEntry, User


def record(
    session: Session,
    actor: User | None,
    action: str,
    target_type: str,
    target_id: str | int,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    reason: str | None = None,
) -> AuditEntry:
    """Add an audit entry for ``action`` (e.g. ``"version.approve"``) to ``session``.

    ``actor`` is ``None`` for the operator CLI and the system itself.
    """
    entry = AuditEntry(
        actor=actor,
        action=action,
        target_type=target_type,
        target_id=str(target_id),
        before=before,
        after=after,
        reason=reason,
    )
    session.add(entry)
    return entry
