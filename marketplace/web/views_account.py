"""Signing in and out of the web pages."""

from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from marketplace.accounts import authenticate_password
from marketplace.auth import Limiter, failure_limiter
from marketplace.db import get_session
from marketplace.ratelimit import WINDOW_SECONDS, login_failures
from marketplace.web.session import current_user, log_in, log_out, safe_next

bp = Blueprint("web_account", __name__)

MAX_EMAIL = 254
MAX_PASSWORD = 1024


def _limit_key(email: str) -> str:
    return f"{request.remote_addr or '?'}|{email}"


def account_failures() -> Limiter:
    """Failed sign-ins per account (``LOGIN_ACCOUNT_FAILURE_LIMIT``), whatever the address,
    shared by every process. Never per address alone: people behind one NAT or proxy must
    not lock each other out."""
    limit = int(current_app.config["LOGIN_ACCOUNT_FAILURE_LIMIT"])
    return failure_limiter("gears_login_account_failures", limit, WINDOW_SECONDS)


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response | tuple[str, int] | str:
    """The sign-in form; ``next`` may only name a page of this site."""
    target = safe_next(request.values.get("next"))
    if request.method == "GET":
        if current_user() is not None:
            return redirect(target)
        return render_template("account/login.html", next=target, email="", error=None)

    email = (request.form.get("email") or "").strip().lower()[:MAX_EMAIL]
    password = (request.form.get("password") or "")[:MAX_PASSWORD]
    key = _limit_key(email)
    wait = max(login_failures.retry_after(key), account_failures().retry_after("account:" + email))
    if wait:
        minutes = max(1, -(-wait // 60))
        error = (f"Too many failed sign-ins. Try again in {minutes} "
                 f"minute{'s' if minutes != 1 else ''}.")
        page = render_template("account/login.html", next=target, email=email, error=error)
        return Response(page, 429, {"Retry-After": str(wait)}, mimetype="text/html")
    user = authenticate_password(get_session(), email, password) if email and password else None
    if user is None:
        login_failures.hit(key)
        account_failures().hit("account:" + email)
        return render_template("account/login.html", next=target, email=email,
                               error="The email or password is not right."), 401
    login_failures.reset(key)
    get_session().commit()  # a password hash upgraded on sign-in is kept
    log_in(user)
    flash(f"Signed in as {user.email}.", "success")
    return redirect(target)


@bp.post("/logout")
def logout() -> Response:
    log_out()
    flash("You have signed out.", "success")
    return redirect(url_for("web_catalog.home"))
