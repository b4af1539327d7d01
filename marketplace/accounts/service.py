"""Users, publishers and workspaces: the account operations behind the CLI, API and web.

Plain functions over a SQLAlchemy session, with no Flask in them, so the
operator CLI, the API and background jobs share one implementation. They flush
but never commit: the caller owns the transaction, and every change is
recorded in the audit log within it. Failures raise
:class:`~marketplace.errors.MarketplaceError` with a message for the user.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from marketplace import audit
from marketplace.accounts.passwords import (
    MIN_PASSWORD_LENGTH,
    hash_password,
    needs_rehash,
    verify_password,
)
from marketplace.accounts.sessions import end_user_sessions
from marketplace.accounts.validation import normalize_email, validate_name
from marketplace.audit import Actor
from marketplace.errors import APIError, ValidationError
from marketplace.models import Publisher, PublisherMember, Role, User, Workspace, WorkspaceMember

MEMBER_ROLES = ("owner", "member")


def _role(role: Role | str) -> Role:
    if isinstance(role, Role):
        return role
    try:
        return Role(role)
    except ValueError:
        choices = ", ".join(r.value for r in Role)
        raise ValidationError(f"unknown role {role!r}: use one of {choices}",
                              path="$.role", code="invalid_role") from None


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters",
                              path="$.password", code="weak_password")


def get_user(session: Session, email: str) -> User | None:
    """The user with ``email`` (case-insensitive), or ``None``."""
    return session.scalar(select(User).where(User.email == email.strip().lower()))


def require_user(session: Session, email: str) -> User:
    """The user with ``email``, or a 404 error naming it."""
    user = get_user(session, email)
    if user is None:
        raise APIError.not_found(f"no user with the email {email!r}", code="user_not_found")
    return user


def create_user(session: Session, email: str, role: Role | str, password: str | None = None,
                *, display_name: str | None = None, actor: Actor = None) -> User:
    """Create a user. Without a password the user can only use API tokens."""
    email = normalize_email(email)
    role = _role(role)
    if get_user(session, email) is not None:
        raise APIError.conflict(f"a user with the email {email} already exists",
                                code="user_exists")
    if password is not None:
        _check_password(password)
    user = User(email=email, role=role, display_name=display_name,
                password_hash=hash_password(password) if password is not None else None)
    session.add(user)
    session.flush()
    audit.record(session, actor, "user.create", "user", email,
                 after={"role": role.value, "has_password": password is not None})
    return user


def set_password(session: Session, user: User, password: str, *,
                 actor: Actor = None) -> None:
    """Replace ``user``'s password; every web session of the user ends."""
    _check_password(password)
    user.password_hash = hash_password(password)
    end_user_sessions(session, user)
    audit.record(session, actor, "user.set_password", "user", user.email)


def authenticate_password(session: Session, email: str, password: str) -> User | None:
    """The active user whose email and password match, else ``None``.

    Unknown emails and password-less users still cost one hash verification,
    so response times do not reveal which accounts exist.
    """
    user = get_user(session, email) if isinstance(email, str) else None
    ok = verify_password(user.password_hash if user else None, password)
    if user is None or not ok or not user.is_active:
        return None
    if user.password_hash and needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    return user


# -- publishers -----------------------------------------------------------------------------


def get_publisher(session: Session, name: str) -> Publisher | None:
    return session.scalar(select(Publisher).where(Publisher.name == name))


def _membership(session: Session, publisher: Publisher, user: User) -> PublisherMember | None:
    return session.get(PublisherMember, (publisher.id, user.id))


def _check_can_publish(user: User) -> None:
    if user.role is Role.business:
        raise APIError.unprocessable(
            f"{user.email} is a business user; only developers and admins can join a publisher",
            code="wrong_role")


def create_publisher(session: Session, name: str, owner_email: str, *,
                     display_name: str | None = None, actor: Actor = None) -> Publisher:
    """Create the publisher namespace ``name`` owned by an existing developer or admin."""
    validate_name(name, what="publisher name")
    owner = require_user(session, owner_email)
    _check_can_publish(owner)
    if get_publisher(session, name) is not None:
        raise APIError.conflict(f"the publisher {name} already exists", code="publisher_exists")
    publisher = Publisher(name=name, display_name=display_name)
    session.add(publisher)
    session.flush()
    audit.record(session, actor, "publisher.create", "publisher", name,
                 after={"owner": owner.email})
    add_publisher_member(session, publisher, owner, role="owner", actor=actor)
    return publisher


def add_publisher_member(session: Session, publisher: Publisher, user: User,
                         role: str = "member", *, actor: Actor = None) -> PublisherMember:
    """Make ``user`` a member (or owner) of ``publisher``; publishing needs a developer or admin."""
    _check_role(role)
    _check_can_publish(user)
    return _set_member(session, _membership(session, publisher, user),
                       lambda: PublisherMember(publisher=publisher, user=user, role=role),
                       "publisher", publisher.name, user, role, actor)


def _check_role(role: str) -> None:
    if role not in MEMBER_ROLES:
        raise ValidationError(f"unknown member role {role!r}: use owner or member",
                              path="$.role", code="invalid_role")


def _set_member(session: Session, member: Any, new: Any, kind: str, name: str, user: User,
                role: str, actor: Actor) -> Any:
    """Create the membership (``new()``) or change its role, with its audit entry."""
    if member is not None:
        if member.role == role:
            return member
        before: dict[str, Any] | None = {"role": member.role}
        member.role = role
    else:
        before = None
        member = new()
        session.add(member)
    session.flush()
    audit.record(session, actor, f"{kind}.member.add", kind, name,
                 before=before, after={"user": user.email, "role": role})
    return member


def remove_publisher_member(session: Session, publisher: Publisher, user: User, *,
                            actor: Actor = None) -> None:
    """Remove ``user`` from ``publisher``; their ``publish:`` tokens stop working at once."""
    member = _membership(session, publisher, user)
    if member is None:
        raise APIError.not_found(f"{user.email} is not a member of {publisher.name}")
    session.delete(member)
    session.flush()
    session.expire(user, ["publisher_memberships"])
    session.expire(publisher, ["members"])
    audit.record(session, actor, "publisher.member.remove", "publisher", publisher.name,
                 before={"user": user.email, "role": member.role})


# -- workspaces -----------------------------------------------------------------------------


def get_workspace(session: Session, name: str) -> Workspace | None:
    return session.scalar(select(Workspace).where(Workspace.name == name))


def create_workspace(session: Session, name: str, member_email: str, *,
                     display_name: str | None = None, actor: Actor = None) -> Workspace:
    """Create the workspace ``name`` with an existing user as its owner."""
    validate_name(name, what="workspace name")
    member = require_user(session, member_email)
    if get_workspace(session, name) is not None:
        raise APIError.conflict(f"the workspace {name} already exists", code="workspace_exists")
    workspace = Workspace(name=name, display_name=display_name)
    session.add(workspace)
    session.flush()
    audit.record(session, actor, "workspace.create", "workspace", name,
                 after={"owner": member.email})
    add_workspace_member(session, workspace, member, role="owner", actor=actor)
    return workspace


def add_workspace_member(session: Session, workspace: Workspace, user: User,
                         role: str = "member", *, actor: Actor = None) -> WorkspaceMember:
    """Make ``user`` a member (or owner) of ``workspace``."""
    _check_role(role)
    member: WorkspaceMember = _set_member(
        session, session.get(WorkspaceMember, (workspace.id, user.id)),
        lambda: WorkspaceMember(workspace=workspace, user=user, role=role),
        "workspace", workspace.name, user, role, actor)
    return member


def remove_workspace_member(session: Session, workspace: Workspace, user: User, *,
                            actor: Actor = None) -> None:
    """Remove ``user`` from ``workspace``; their ``workspace:`` tokens stop working at once."""
    member = session.get(WorkspaceMember, (workspace.id, user.id))
    if member is None:
        raise APIError.not_found(f"{user.email} is not a member of {workspace.name}")
    session.delete(member)
    session.flush()
    session.expire(user, ["workspace_memberships"])
    session.expire(workspace, ["members"])
    audit.record(session, actor, "workspace.member.remove", "workspace", workspace.name,
                 before={"user": user.email, "role": member.role})
