"""Server-side web sessions: what makes signing out, and every account change, final.

The web session cookie is signed, so nobody can forge one, but a signed cookie
alone stays valid wherever it was copied to until it expires. So the cookie
also carries a random session key whose sha256 is a row of ``web_sessions``;
a request is signed in only while that row exists and has not expired.

Sign-out deletes the row. A password change, a role change and deactivation
delete every row of the user (:func:`end_user_sessions`), on every replica at
once, because the database is the one shared store.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from marketplace.db import utcnow
from marketplace.models import User, WebSession

#: How long a session lasts at most, whatever the cookie says (Flask's own default).
DEFAULT_LIFETIME = timedelta(days=31)


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def start_session(session: Session, user: User,
                  lifetime: timedelta = DEFAULT_LIFETIME) -> str:
    """Record a new session for ``user``; returns the key for the cookie. Does not commit.
    The user's expired sessions are swept on the way."""
    now = utcnow()
    session.execute(delete(WebSession).where(WebSession.user_id == user.id,
                                             WebSession.expires_at <= now))
    key = secrets.token_urlsafe(32)
    session.add(WebSession(key_hash=_hash(key), user_id=user.id, created_at=now,
                           expires_at=now + lifetime))
    return key


def session_user(session: Session, key: object) -> User | None:
    """The active user of the live session ``key``, or ``None``."""
    if not isinstance(key, str) or not key or len(key) > 100:
        return None
    row = session.scalar(select(WebSession).where(WebSession.key_hash == _hash(key)))
    if row is None or row.expires_at <= utcnow() or not row.user.is_active:
        return None
    return row.user


def end_session(session: Session, key: object) -> None:
    """End one session (sign-out). Does not commit."""
    if isinstance(key, str) and key:
        session.execute(delete(WebSession).where(WebSession.key_hash == _hash(key)))


def end_user_sessions(session: Session, user: User) -> int:
    """End every session of ``user``; returns how many there were. Does not commit."""
    result = session.execute(delete(WebSession).where(WebSession.user_id == user.id))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
