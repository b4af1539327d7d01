"""The audit log with filters, and user, publisher and token management."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Blueprint, abort, render_template, request, url_for
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from marketplace.admin import accounts
from marketplace.admin.access import act, admin, admin_required
from marketplace.audit import SystemActor
from marketplace.db import get_session
from marketplace.errors import MarketplaceError
from marketplace.models import ApiToken, AuditEntry, Publisher, Role, User

bp = Blueprint("admin_manage", __name__, url_prefix="/admin")

PER_PAGE = 50


#: Dates the audit filter accepts: the log cannot hold anything outside them.
MIN_DATE, MAX_DATE = datetime(1970, 1, 1, tzinfo=UTC), datetime(9000, 1, 1, tzinfo=UTC)
MAX_PAGE = 1_000_000


def _date(name: str) -> datetime | None:
    """``YYYY-MM-DD`` from :data:`MIN_DATE` to :data:`MAX_DATE`; 400 otherwise."""
    raw = (request.args.get(name) or "").strip()
    if not raw:
        return None
    try:
        day = datetime.strptime(raw, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        day = None
    if day is None or not MIN_DATE <= day < MAX_DATE:
        raise _bad_filter(name, "a date YYYY-MM-DD between 1970 and 8999")
    return day


def _page() -> int:
    raw = (request.args.get("page") or "1").strip()
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 7 and 1 <= int(raw) <= MAX_PAGE):
        raise _bad_filter("page", f"a page number from 1 to {MAX_PAGE}")
    return int(raw)


def _bad_filter(name: str, what: str) -> MarketplaceError:
    return MarketplaceError(400, "invalid_parameter", f"'{name}' must be {what}",
                            [{"path": f"query.{name}", "message": f"must be {what}",
                              "code": "invalid_parameter"}])


#: Non-person actors the audit filter accepts by name (``system`` matches all of them).
SYSTEM_ACTORS = frozenset(a.value for a in SystemActor)


@bp.get("/audit")
@admin_required
def audit_log() -> str:
    """Who did what to which object, when, with before/after; filterable."""
    session = get_session()
    stmt = select(AuditEntry).options(selectinload(AuditEntry.actor))
    actor = (request.args.get("actor") or "").strip().lower()
    action = (request.args.get("action") or "").strip()
    target = (request.args.get("target") or "").strip()
    since, until = _date("from"), _date("to")
    if actor == "system":
        stmt = stmt.where(AuditEntry.actor_id.is_(None))
    elif actor in SYSTEM_ACTORS:
        stmt = stmt.where(AuditEntry.actor_system == actor)
    elif actor:
        stmt = stmt.join(User, AuditEntry.actor_id == User.id).where(
            func.lower(User.email).contains(actor, autoescape=True))
    if action:
        stmt = stmt.where(AuditEntry.action == action)
    if target:
        stmt = stmt.where(AuditEntry.target_id.contains(target, autoescape=True))
    if since:
        stmt = stmt.where(AuditEntry.at >= since)
    if until:
        stmt = stmt.where(AuditEntry.at < until + timedelta(days=1))
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    page = _page()
    entries = session.scalars(stmt.order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
                              .offset((page - 1) * PER_PAGE).limit(PER_PAGE)).all()
    actions = session.scalars(select(AuditEntry.action).distinct().order_by(
        AuditEntry.action)).all()
    return render_template("admin/audit.html", entries=entries, total=total, page=page,
                           pages=max(1, -(-total // PER_PAGE)), actions=actions,
                           filters={"actor": actor, "action": action, "target": target,
                                    "from": request.args.get("from", ""),
                                    "to": request.args.get("to", "")})


# -- users --------------------------------------------------------------------


@bp.get("/users")
@admin_required
def users() -> str:
    rows = get_session().scalars(select(User).options(
        selectinload(User.publisher_memberships)).order_by(User.email)).all()
    return render_template("admin/users.html", users=rows, roles=[r.value for r in Role])


def _user(user_id: int) -> User:
    user = get_session().get(User, user_id)
    if user is None:
        abort(404)
    return user


@bp.post("/users/<int:user_id>/role")
@admin_required
def user_role(user_id: int) -> Any:
    user, role = _user(user_id), request.form.get("role", "")
    return act(url_for(".users"), lambda: accounts.set_role(get_session(), admin(), user, role),
               f"{user.email} is now a {role}")


@bp.post("/users/<int:user_id>/<any(activate, deactivate):change>")
@admin_required
def user_active(user_id: int, change: str) -> Any:
    user = _user(user_id)
    on = change == "activate"
    return act(url_for(".users"), lambda: accounts.set_active(get_session(), admin(), user, on),
               f"{user.email} {'reactivated' if on else 'deactivated: sessions and tokens stop working'}")


# -- publishers -----------------------------------------------------------------


@bp.get("/publishers")
@admin_required
def publishers() -> str:
    rows = get_session().scalars(select(Publisher).options(
        selectinload(Publisher.members), selectinload(Publisher.gears))
        .order_by(Publisher.name)).all()
    return render_template("admin/publishers.html", publishers=rows)


@bp.post("/publishers/<name>/<any(verify, unverify):change>")
@admin_required
def publisher_verify(name: str, change: str) -> Any:
    publisher = get_session().scalar(select(Publisher).where(Publisher.name == name))
    if publisher is None:
        abort(404)
    on = change == "verify"
    return act(url_for(".publishers"),
               lambda: accounts.set_verified(get_session(), admin(), publisher, on),
               f"{name} {'verified' if on else 'no longer verified'}")


# -- tokens ---------------------------------------------------------------------


@bp.get("/tokens")
@admin_required
def tokens() -> str:
    show = request.args.get("show", "active")
    stmt = select(ApiToken).options(selectinload(ApiToken.user)).order_by(
        ApiToken.created_at.desc(), ApiToken.id.desc())
    if show == "active":
        stmt = stmt.where(ApiToken.revoked_at.is_(None))
    return render_template("admin/tokens.html", tokens=get_session().scalars(stmt).all(),
                           show=show, now=datetime.now(UTC))


@bp.post("/tokens/<int:token_id>/revoke")
@admin_required
def token_revoke(token_id: int) -> Any:
    token = get_session().get(ApiToken, token_id)
    if token is None:
        abort(404)
    return act(url_for(".tokens"), lambda: accounts.revoke(get_session(), admin(), token),
               f"token {token.prefix}… of {token.user.email} revoked")
