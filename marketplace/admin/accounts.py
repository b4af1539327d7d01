"""Account administration: roles, deactivation, publisher verification, token revocation.

Each change is checked against the current state and writes its audit entry
in the same transaction, like every other state change in the registry.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from marketplace import audit
from marketplace.accounts.sessions import end_user_sessions
from marketplace.accounts.tokens import revoke_token, role_may_hold
from marketplace.errors import MarketplaceError
from marketplace.models import ApiToken, Publisher, Role, User


def _user_state(user: User) -> dict[str, Any]:
    return {"role": user.role.value, "is_active": user.is_active}


def _last_admin(session: Session, user: User) -> bool:
    from sqlalchemy import func, select

    if user.role is not Role.admin or not user.is_active:
        return False
    admins = session.scalar(select(func.count()).select_from(User).where(
        User.role == Role.admin, User.is_active.is_(True)))
    return (admins or 0) <= 1


def set_role(session: Session, actor: User, user: User, role: str) -> User:
    """Change a user's role; the last active admin cannot demote themself out of the registry.

    Every web session of the user ends (pages were rendered for the old role), and
    every token holding a scope the new role may not hold is revoked: a developer
    made a business user loses their publish tokens, a former admin their admin ones.
    """
    try:
        new = Role(role)
    except ValueError:
        raise MarketplaceError(422, "invalid_role", f"unknown role {role!r}") from None
    if new is user.role:
        raise MarketplaceError(409, "invalid_state", f"{user.email} is already a {new.value}")
    if new is not Role.admin and _last_admin(session, user):
        raise MarketplaceError(409, "last_admin", "this is the last active admin; make "
                               "someone else an admin first")
    before = _user_state(user)
    user.role = new
    audit.record(session, actor, "user.set_role", "user", user.email, before=before,
                 after=_user_state(user))
    end_user_sessions(session, user)
    for token in user.tokens:
        if token.revoked_at is None and not all(role_may_hold(new, s) for s in token.scopes):
            revoke_token(session, token, actor=actor,
                         reason=f"its scopes are not for a {new.value}")
    session.commit()
    return user


def set_active(session: Session, actor: User, user: User, active: bool) -> User:
    """Deactivating ends every session and token of the user at once (both check it)."""
    if user.is_active == active:
        raise MarketplaceError(409, "invalid_state", f"{user.email} is already "
                               f"{'active' if active else 'deactivated'}")
    if not active and (user.id == actor.id or _last_admin(session, user)):
        raise MarketplaceError(409, "last_admin" if user.id != actor.id else "self",
                               "you cannot deactivate yourself or the last active admin")
    before = _user_state(user)
    user.is_active = active
    audit.record(session, actor, "user.activate" if active else "user.deactivate", "user",
                 user.email, before=before, after=_user_state(user))
    if not active:
        end_user_sessions(session, user)
    session.commit()
    return user


def set_verified(session: Session, actor: User, publisher: Publisher, verified: bool) -> Publisher:
    """Verified publishers' clean updates (never a first version, never new capabilities)
    may be auto-approved (:mod:`marketplace.vetting.approval`)."""
    if publisher.verified == verified:
        raise MarketplaceError(409, "invalid_state", f"{publisher.name} is already "
                               f"{'verified' if verified else 'unverified'}")
    publisher.verified = verified
    audit.record(session, actor, "publisher.verify" if verified else "publisher.unverify",
                 "publisher", publisher.name, before={"verified": not verified},
                 after={"verified": verified})
    session.commit()
    return publisher


def revoke(session: Session, actor: User, token: ApiToken) -> ApiToken:
    if token.revoked_at is not None:
        raise MarketplaceError(409, "invalid_state", "this token is already revoked")
    revoke_token(session, token, actor=actor)
    session.commit()
    return token
