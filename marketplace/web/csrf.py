"""Cross-site request forgery protection for the web pages.

Each browser session holds one random token; every form carries it in a hidden
``csrf_token`` field (or an ``X-CSRF-Token`` header for scripts), and every
unsafe request outside ``/api`` must send it back. The JSON API is exempt
because it authenticates with bearer tokens only, which a foreign site cannot
make a browser send. The token is replaced when the session is rotated at sign-in.
"""

from __future__ import annotations

import hmac
import secrets

from flask import Flask, request, session
from markupsafe import Markup, escape

from marketplace.errors import MarketplaceError, is_api_request

SESSION_KEY = "csrf"
FIELD_NAME = "csrf_token"
HEADER_NAME = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


def get_token() -> str:
    """The session's token, created on first use (so a form page always has one)."""
    token = session.get(SESSION_KEY)
    if not isinstance(token, str) or not token:
        token = secrets.token_urlsafe(32)
        session[SESSION_KEY] = token
    return token


def new_token() -> str:
    """Replace the token (at sign-in, together with the rest of the session)."""
    session[SESSION_KEY] = secrets.token_urlsafe(32)
    return str(session[SESSION_KEY])


def hidden_field() -> Markup:
    """The hidden input every form includes: ``{{ csrf_field() }}``."""
    return Markup(  # noqa: S704 (the only variable part is escaped)
        f'<input type="hidden" name="{FIELD_NAME}" value="{escape(get_token())}">')


def check_request() -> None:
    """Refuse an unsafe request whose token is missing or wrong (403 ``csrf_failed``)."""
    if request.method in SAFE_METHODS or is_api_request():
        return
    expected = session.get(SESSION_KEY)
    sent = request.form.get(FIELD_NAME) or request.headers.get(HEADER_NAME) or ""
    if not isinstance(expected, str) or not expected or not hmac.compare_digest(
            expected.encode(), sent.encode()):
        raise MarketplaceError(
            403, "csrf_failed",
            "this form has expired or did not come from this site; reload the page and try again")


def init_app(app: Flask) -> None:
    app.before_request(check_request)
    app.jinja_env.globals["csrf_field"] = hidden_field
