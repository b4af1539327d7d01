"""API tokens: creation, authentication, revocation and scope checks.

A token's plaintext (``gears_`` + 43 random URL-safe characters) is shown once
and never stored: the database keeps its sha256, which is enough to look it
up and useless to a thief of the database. Its first 12 characters are kept
as ``prefix`` so people can tell their tokens apart.

Scopes (see :mod:`marketplace.accounts.validation`):

* ``read``: read what the user may see; every token can read.
* ``admin``: everything, but only while the token's user is an admin.
* ``publish:<publisher>``: publish and yank under that namespace, only while
  the user is a member of the publisher.
* ``workspace:<workspace>``: manage that workspace's installations, only while
  the user is a member of the workspace.

Membership and role are checked on every use, so removing someone from a
publisher disables their tokens for it immediately.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from marketplace import audit
from marketplace.accounts.validation import validate_scope
from marketplace.audit import Actor
from marketplace.db import utcnow
from marketplace.errors import APIError, ValidationError
from marketplace.models import ApiToken, Role, User

TOKEN_PREFIX = "gears_"  # noqa: S105 (a marker, not a secret)
DISPLAY_PREFIX_LENGTH = 12
#: ``last_used_at`` is written at most this often, so busy tokens do not turn
#: every read into a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)
MAX_TOKEN_LENGTH = 200


def hash_token(plaintext: str) -> str:
    """The sha256 hex digest stored for a token."""
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


def role_may_hold(role: Role, scope: str) -> bool:
    """Whether a user of ``role`` may hold ``scope`` at all (membership aside):
    ``admin`` is for admins, ``publish:…`` not for business users."""
    kind = scope.partition(":")[0]
    if scope == "admin":
        return role is Role.admin
    if kind == "publish":
        return role is not Role.business
    return True


def _check_grantable(user: User, scope: str) -> None:
    """Refuse, at creation, scopes the user could never use, so mistakes show up early."""
    kind, _, arg = scope.partition(":")
    if scope == "admin" and user.role is not Role.admin:
        raise APIError.forbidden(f"{user.email} is not an admin; the admin scope is for admins")
    if kind == "publish" and arg not in {m.publisher.name for m in user.publisher_memberships}:
        raise APIError.forbidden(
            f"{user.email} is not a member of the publisher {arg!r}; add them with "
            f"`marketplace create-publisher` or as a member first")
    if kind == "workspace" and arg not in {m.workspace.name for m in user.workspace_memberships}:
        raise APIError.forbidden(f"{user.email} is not a member of the workspace {arg!r}")


def create_token(session: Session, user: User, scopes: Iterable[str], *, name: str = "cli",
                 expires_days: int | None = None,
                 actor: Actor = None) -> tuple[str, ApiToken]:
    """Create a token for ``user``; returns ``(plaintext, row)``. Show the plaintext once.

    ``actor`` is who creates it (an admin, the operator CLI, the demo seed); ``None``
    means ``user`` creates their own."""
    wanted = list(dict.fromkeys(scopes))  # unique, in the order given
    if not wanted:
        raise ValidationError("a token needs at least one scope", path="$.scopes",
                              code="invalid_scope")
    for scope in wanted:
        validate_scope(scope)
        _check_grantable(user, scope)
    if expires_days is not None and expires_days < 1:
        raise ValidationError("expires_days must be at least 1", path="$.expires_days")
    name = (name or "").strip() or "cli"
    if len(name) > 100:
        raise ValidationError("the token name may be at most 100 characters", path="$.name")

    plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = utcnow()
    token = ApiToken(
        user=user, name=name, token_hash=hash_token(plaintext),
        prefix=plaintext[:DISPLAY_PREFIX_LENGTH], scopes=wanted, created_at=now,
        expires_at=now + timedelta(days=expires_days) if expires_days else None,
    )
    session.add(token)
    session.flush()
    audit.record(session, actor or user, "token.create", "token", token.id,
                 after={"user": user.email, "name": name, "scopes": wanted,
                        "prefix": token.prefix,
                        "expires_at": token.expires_at.isoformat() if token.expires_at else None})
    return plaintext, token


def authenticate_token(session: Session, plaintext: str) -> ApiToken | None:
    """The live token matching ``plaintext``, or ``None`` (unknown, expired, revoked,
    or its user deactivated). Notes when it was used, at most once a minute."""
    if not isinstance(plaintext, str) or not plaintext.startswith(TOKEN_PREFIX) \
            or len(plaintext) > MAX_TOKEN_LENGTH:
        return None
    token = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(plaintext)))
    if token is None or token.revoked_at is not None or not token.user.is_active:
        return None
    now = utcnow()
    if token.expires_at is not None and token.expires_at <= now:
        return None
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        token.last_used_at = now
    return token


def revoke_token(session: Session, token: ApiToken, *, actor: Actor = None,
                 reason: str | None = None) -> None:
    """Revoke ``token`` for good; revoking twice is harmless."""
    if token.revoked_at is not None:
        return
    token.revoked_at = utcnow()
    audit.record(session, actor, "token.revoke", "token", token.id,
                 after={"user": token.user.email, "prefix": token.prefix}, reason=reason)


def token_allows(token: ApiToken, scope: str) -> bool:
    """Whether ``token`` may act with ``scope`` right now (see the module docstring)."""
    user = token.user
    if token.revoked_at is not None or not user.is_active:
        return False
    if token.expires_at is not None and token.expires_at <= utcnow():
        return False
    if "admin" in token.scopes and user.role is Role.admin:
        return True
    if scope == "read":
        return True
    if scope not in token.scopes or not role_may_hold(user.role, scope):
        return False
    kind, _, arg = scope.partition(":")
    if kind == "publish":
        return any(m.publisher.name == arg for m in user.publisher_memberships)
    if kind == "workspace":
        return any(m.workspace.name == arg for m in user.workspace_memberships)
    return False  # "admin" held by a user who is no longer an admin
