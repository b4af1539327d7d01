"""Who may see the admin pages: signed-in admins only (others get 403, strangers sign in)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from typing import Any, TypeVar, cast

from flask import abort, flash, redirect, request

from marketplace.db import get_session
from marketplace.errors import MarketplaceError
from marketplace.models import User
from marketplace.web.session import current_user, is_admin, login_required

F = TypeVar("F", bound=Callable[..., Any])


def admin_required(view: F) -> F:
    @wraps(view)
    @login_required
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not is_admin(current_user()):
            abort(403, "only admins may open the admin pages")
        return view(*args, **kwargs)

    return cast(F, wrapper)


def admin() -> User:
    user = current_user()
    assert user is not None
    return user


def act(back: str, action: Callable[[], Any], done: str, *, back_on_error: str | None = None
        ) -> Any:
    """Run a state change from a form: flash ``done`` and go ``back``, or flash the
    error's message and go ``back_on_error`` (default ``back``)."""
    try:
        action()
    except MarketplaceError as exc:
        get_session().rollback()
        flash(exc.message, "error")
        return redirect(back_on_error or back)
    flash(done, "success")
    return redirect(back)


def form_reason() -> str | None:
    return (request.form.get("reason") or "").strip() or None


def age(when: datetime | None) -> str:
    """``5 min``, ``3 h``, ``2 days``: how long something has waited."""
    if when is None:
        return "—"
    seconds = max(0, int((datetime.now(UTC) - when).total_seconds()))
    if seconds < 3600:
        return f"{max(1, seconds // 60)} min"
    if seconds < 172800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"
