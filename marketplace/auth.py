"""Who is calling the JSON API: bearer tokens and scope checks.

The API authenticates with ``Authorization: Bearer <token>`` only (no cookies,
so no CSRF exposure). A request without the header is anonymous; a request
with a header that is malformed, unknown, expired or revoked is refused with
401 rather than silently treated as anonymous, so a client with a bad token
learns about it instead of seeing less than it expects.

Use the helpers inside views (``token = require_scope(f"publish:{name}")``),
or the decorators when the scope is fixed.

Failed authentications are limited without locking anyone else out: a token
that failed ``TOKEN_FAILURE_LIMIT`` times within ``TOKEN_FAILURE_WINDOW``
seconds gets ``429 rate_limited`` with ``Retry-After`` (counted per token, by
its hash), and so does any *failing* token from a client address that sent
more than ``TOKEN_FAILURE_LIMIT`` failing ones (guessing with fresh strings).
A valid token is looked up first and always passes, so a flood of revoked
tokens from the same address — a NAT, a load balancer — never locks out a good
one. The client address is the socket's peer unless ``TRUSTED_PROXIES`` says
how many proxy hops in front of the server set ``X-Forwarded-For`` (see
:func:`marketplace.app.create_app`). The counts live in process memory, so each
The counts live in the database (``auth_failures``), so every process and
replica shares them; ``RATE_LIMIT_STORE=memory`` keeps them per process.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, Protocol, TypeVar, cast

from flask import current_app, g, request

from marketplace.accounts.failures import DatabaseLimiter
from marketplace.accounts.tokens import authenticate_token, hash_token, token_allows
from marketplace.db import COMMITTED, database, get_session
from marketplace.errors import APIError
from marketplace.models import ApiToken, User
from marketplace.ratelimit import SlidingWindowLimiter

F = TypeVar("F", bound=Callable[..., Any])


class Limiter(Protocol):
    """What the failure limits need from a store (in memory or in the database)."""

    def retry_after(self, key: str) -> int: ...

    def hit(self, key: str) -> None: ...

    def reset(self, key: str) -> None: ...


_UNSET = object()

_LIMITER_KEY = "gears_token_failures"


def failure_limiter(name: str, limit: int, window: float) -> Limiter:
    """The app's limiter ``name``: counted in the database, shared by every process
    and replica (:class:`~marketplace.accounts.failures.DatabaseLimiter`), unless
    ``RATE_LIMIT_STORE`` is ``memory`` (each process counts on its own)."""
    limiter = current_app.extensions.get(name)
    if limiter is None:
        if current_app.config["RATE_LIMIT_STORE"] == "memory":
            limiter = SlidingWindowLimiter(limit=limit, window=window)
        else:
            limiter = DatabaseLimiter(database().engine, limit=limit, window=window)
        current_app.extensions[name] = limiter
    return cast(Limiter, limiter)


def token_failures() -> Limiter:
    """The app's limiter of failed token authentications."""
    cfg = current_app.config
    return failure_limiter(
        _LIMITER_KEY, int(cfg["TOKEN_FAILURE_LIMIT"]), float(cfg["TOKEN_FAILURE_WINDOW"]))


def _failure_keys(plaintext: str | None) -> tuple[str, str]:
    """The limiter keys of a failed authentication: the token's own, and its address's."""
    token_key = "token:" + hash_token(plaintext or "")
    return token_key, "address:" + (request.remote_addr or "?")


def _refuse_failure(plaintext: str | None, failure: APIError) -> APIError:
    """Count a failed authentication; ``failure`` itself, or ``429`` once over a limit."""
    limiter = token_failures()
    keys = _failure_keys(plaintext)
    wait = max(limiter.retry_after(key) for key in keys)
    if wait:
        return APIError(429, "rate_limited", f"too many failed authentications with this "
                        f"token or from this address; try again in {wait} seconds",
                        headers={"Retry-After": str(wait)})
    for key in keys:
        limiter.hit(key)
    return failure


def _bearer() -> str | None:
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, credentials = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        raise APIError.unauthorized(
            "the Authorization header must be 'Bearer <token>'", error="invalid_request")
    return credentials.strip()


def current_token() -> ApiToken | None:
    """The request's token, or ``None`` when anonymous. Raises 401 for a bad token."""
    cached = g.get("gears_token", _UNSET)
    if cached is not _UNSET:
        return cast("ApiToken | None", cached)
    token = None
    try:
        plaintext = _bearer()
    except APIError as exc:
        raise _refuse_failure(request.headers.get("Authorization"), exc) from None
    if plaintext is not None:
        session = get_session()
        token = authenticate_token(session, plaintext)
        if token is None:
            raise _refuse_failure(plaintext, APIError.unauthorized(
                "the API token is invalid, expired or revoked; create a new one",
                error="invalid_token"))
        if session.dirty:  # last_used_at moved on
            session.commit()
            session.info.pop(COMMITTED, None)  # bookkeeping, not the request's change
    g.gears_token = token
    return token


def current_user() -> User | None:
    """The user behind the request's token, or ``None`` when anonymous."""
    token = current_token()
    return token.user if token is not None else None


def require_token() -> ApiToken:
    """The request's token; 401 ``unauthorized`` when there is none."""
    token = current_token()
    if token is None:
        raise APIError.unauthorized("this endpoint needs an API token: send "
                                    "'Authorization: Bearer <token>'")
    return token


def require_scope(scope: str) -> ApiToken:
    """The request's token if it allows ``scope``; 401 without a token, 403 otherwise."""
    token = require_token()
    if not token_allows(token, scope):
        raise APIError.forbidden(f"this token does not allow {scope!r}; create a token with "
                                 f"that scope (and membership, for publish/workspace scopes)")
    return token


def token_required(view: F) -> F:
    """Decorator form of :func:`require_token`."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        require_token()
        return view(*args, **kwargs)

    return cast(F, wrapper)


def scope_required(scope: str) -> Callable[[F], F]:
    """Decorator form of :func:`require_scope` for views whose scope is fixed."""

    def decorate(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            require_scope(scope)
            return view(*args, **kwargs)

        return cast(F, wrapper)

    return decorate
