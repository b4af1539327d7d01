"""Who is signed in to the web pages, and where they may be sent afterwards.

The session lives in Flask's signed cookie (HttpOnly, SameSite=Lax, Secure
under an https ``BASE_URL``; see :func:`marketplace.app.create_app`), and is
revocable server-side: the cookie carries a random key whose hash is a row of
``web_sessions`` (:mod:`marketplace.accounts.sessions`), and a request is signed
in only while that row lives. Sign-out deletes it, so a cookie copied before
sign-out stops working; a password change, a role change and deactivation
delete all of the user's rows. Any replica can serve any request, because the
row is in the shared database. The cookie also holds a fingerprint of the
password hash, a second check that a password change ends every session.
Signing in clears the old session and starts a new one with a fresh CSRF token
and key, so a cookie planted before sign-in (session fixation) never becomes an
authenticated one.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from flask import Flask, current_app, g, redirect, request, session, url_for

from marketplace.accounts.sessions import end_session, session_user, start_session
from marketplace.db import get_session
from marketplace.models import Role, User
from marketplace.registry.viewer import Viewer
from marketplace.web import csrf

F = TypeVar("F", bound=Callable[..., Any])

USER_KEY = "uid"
FINGERPRINT_KEY = "pwf"
NONCE_KEY = "sid"


def _fingerprint(user: User) -> str:
    return hashlib.sha256(f"{user.id}:{user.password_hash or ''}".encode()).hexdigest()[:24]


def current_user() -> User | None:
    """The signed-in user, or ``None``; a stale or tampered session counts as signed out."""
    if "web_user" in g:
        return cast("User | None", g.web_user)
    user = None
    uid = session.get(USER_KEY)
    if isinstance(uid, int):
        found = session_user(get_session(), session.get(NONCE_KEY))
        if found is not None and found.id == uid and \
                secrets.compare_digest(session.get(FINGERPRINT_KEY) or "", _fingerprint(found)):
            user = found
    g.web_user = user
    return user


def current_viewer() -> Viewer:
    """The :class:`Viewer` the registry queries use for the signed-in user."""
    return Viewer(user=current_user())


def is_admin(user: User | None) -> bool:
    return user is not None and user.role is Role.admin


def log_in(user: User) -> None:
    """Start a brand-new session for ``user`` (never reuse the anonymous one), recorded
    server-side and committed."""
    db = get_session()
    key = start_session(db, user, current_app.permanent_session_lifetime)
    db.commit()
    session.clear()
    session[USER_KEY] = user.id
    session[FINGERPRINT_KEY] = _fingerprint(user)
    session[NONCE_KEY] = key
    csrf.new_token()
    g.web_user = user


def log_out() -> None:
    """End the session server-side too: a copy of the cookie no longer signs anyone in."""
    key = session.get(NONCE_KEY)
    if key is not None:
        db = get_session()
        end_session(db, key)
        db.commit()
    session.clear()
    g.web_user = None


def safe_next(target: str | None, default: str = "/") -> str:
    """``target`` if it is a path on this site, else ``default`` (no open redirects).

    Only plain relative paths pass: no scheme, no host, no ``//`` or ``/\\``
    (browsers read both as another host), no control characters.
    """
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return default
    if any(ord(ch) < 32 or ch == "\\" for ch in target):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return default
    return target


def login_required(view: F) -> F:
    """Send anonymous visitors to the sign-in page, and back here afterwards."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if current_user() is None:
            path = request.full_path if request.query_string else request.path
            return redirect(url_for("web_account.login", next=path))
        return view(*args, **kwargs)

    return cast(F, wrapper)


def init_app(app: Flask) -> None:
    # Flask's own defaults leave SameSite unset; a sign-in cookie must never ride along
    # on cross-site POSTs (CSRF tokens are the second line of defence).
    app.config["SESSION_COOKIE_SAMESITE"] = app.config.get("SESSION_COOKIE_SAMESITE") or "Lax"
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    app.jinja_env.globals["current_user"] = current_user
    app.jinja_env.globals["is_admin"] = is_admin
