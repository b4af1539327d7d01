"""The registry's exceptions and how they reach a client.

Every error raised on purpose derives from :class:`MarketplaceError`: it carries
the HTTP ``status``, a stable machine-readable ``code``, a human ``message``
that says what to do, and for invalid input the list of ``details`` (each
``{"path", "message", "code"}``). Under ``/api/`` every error, including
werkzeug's own 404/405/413 and unexpected exceptions, is rendered as::

    {"error": {"code": "...", "message": "...", "details": [...]}}

so clients only ever parse one shape. Other paths keep HTML error pages. The
operator CLI catches :class:`MarketplaceError` once and prints its message.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, g, jsonify, render_template, request
from sqlalchemy import exc as sa_exc
from werkzeug.exceptions import HTTPException

from marketplace.db import commit_outcome_unknown, committed_earlier

log = logging.getLogger(__name__)

Detail = dict[str, str]


class MarketplaceError(Exception):
    """Base class of every error the registry raises on purpose.

    ``MarketplaceError(422, "invalid_manifest", "gear.json has 2 problems", details)``
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: list[Detail] | None = None,
        *,
        headers: dict[str, str] | None = None,
        current: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details: list[Detail] = list(details or [])
        self.headers: dict[str, str] = dict(headers or {})
        #: For a ``409`` lost to a concurrent change: the object's state now.
        self.current = current

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, Any]:
        """The JSON error body."""
        body: dict[str, Any] = {"code": self.code, "message": self.message,
                                "details": self.details}
        if self.current is not None:
            body["current"] = self.current
        return {"error": body}


class APIError(MarketplaceError):
    """A client error with a conventional status; build one with the helpers below."""

    @classmethod
    def bad_request(cls, message: str, *, code: str = "bad_request",
                    details: list[Detail] | None = None) -> APIError:
        return cls(400, code, message, details)

    @classmethod
    def unauthorized(cls, message: str = "a valid API token is required",
                     *, code: str = "unauthorized", error: str | None = None) -> APIError:
        """401 with the ``WWW-Authenticate: Bearer`` challenge clients expect (RFC 6750)."""
        challenge = 'Bearer realm="gears"'
        if error:
            challenge += f', error="{error}"'
        return cls(401, code, message, headers={"WWW-Authenticate": challenge})

    @classmethod
    def forbidden(cls, message: str, *, code: str = "forbidden") -> APIError:
        return cls(403, code, message)

    @classmethod
    def not_found(cls, message: str, *, code: str = "not_found") -> APIError:
        return cls(404, code, message)

    @classmethod
    def conflict(cls, message: str, *, code: str = "conflict") -> APIError:
        return cls(409, code, message)

    @classmethod
    def unprocessable(cls, message: str, *, code: str = "invalid",
                      details: list[Detail] | None = None) -> APIError:
        return cls(422, code, message, details)


class ValidationError(MarketplaceError, ValueError):
    """Invalid input (a name, an email, a scope). Also a ``ValueError`` so plain
    Python callers can catch it without knowing the registry's hierarchy."""

    def __init__(self, message: str, *, path: str = "$", code: str = "invalid") -> None:
        super().__init__(422, code, message, [{"path": path, "message": message, "code": code}])


bad_request = APIError.bad_request
unauthorized = APIError.unauthorized
forbidden = APIError.forbidden
not_found = APIError.not_found
conflict = APIError.conflict
unprocessable = APIError.unprocessable

#: Codes for werkzeug's own errors, so clients can rely on them like ours.
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "too_many_requests",
}


#: Path prefixes whose errors are JSON: the registry's API and the engine's.
API_PREFIXES = ("/api", "/engine/v1")


def is_api_request() -> bool:
    """Whether the current request should get JSON errors."""
    return any(request.path == p or request.path.startswith(p + "/") for p in API_PREFIXES)


def _render(status: int, code: str, message: str, details: list[Detail],
            headers: dict[str, str] | None = None,
            current: dict[str, Any] | None = None) -> Response:
    if is_api_request():
        body: dict[str, Any] = {"code": code, "message": message, "details": details}
        if current is not None:
            body["current"] = current
        resp = jsonify({"error": body})
    else:
        html = render_template("errors/error.html", status=status, code=code, message=message,
                               details=details)
        resp = Response(html, mimetype="text/html")
    resp.status_code = status
    for name, value in (headers or {}).items():
        resp.headers[name] = value
    return resp


def handle_marketplace_error(exc: MarketplaceError) -> Response:
    if exc.status >= 500:
        log.error("%s: %s", exc.code, exc.message)
    return _render(exc.status, exc.code, exc.message, exc.details, exc.headers, exc.current)


def handle_http_exception(exc: HTTPException) -> Response:
    status = exc.code or 500
    code = _HTTP_CODES.get(status, "http_error" if status < 500 else "internal_error")
    message = exc.description or exc.name
    # Keep werkzeug's own headers (Allow on 405, WWW-Authenticate on 401), not its body type.
    headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
    return _render(status, code, message, [], headers)


def handle_unexpected(exc: Exception) -> Response:
    # The traceback goes to the log, never to the client: it may hold secrets.
    log.exception("unhandled error on %s %s", request.method, request.path)
    return _render(500, "internal_error",
                   "the server hit an unexpected error; it has been logged", [])


#: Seconds a client is asked to wait after a database outage or lock contention.
DATABASE_RETRY_AFTER = 2

#: Words in a driver's message that mean "another writer holds the lock".
_BUSY_WORDS = ("database is locked", "database table is locked", "lock timeout",
               "could not obtain lock", "deadlock detected", "could not serialize")


def handle_database_error(exc: sa_exc.SQLAlchemyError) -> Response:
    """The database is down, unreachable or locked: a retryable 503, never a 500.

    SQLite reports a writer that held its lock past the busy timeout as
    ``database is locked``; PostgreSQL reports lock and serialization timeouts
    and deadlocks. Anything else operational (refused connection, server gone
    away, pool exhausted) is ``database_unavailable``. The message tells the
    truth about the change: "nothing was changed" only when no commit was under
    way or done (the session rolled it back); "may or may not" when the
    connection died during the commit; "was saved" when it died after it.
    """
    text = str(getattr(exc, "orig", None) or exc).lower()
    busy = any(word in text for word in _BUSY_WORDS)
    log.warning("database %s on %s %s: %s", "busy" if busy else "unavailable", request.method,
                request.path, text.splitlines()[0] if text else type(exc).__name__)

    retry = {"Retry-After": str(DATABASE_RETRY_AFTER)}
    session = g.get("gears_session")
    if busy:  # a lock or serialization refusal: the transaction was rolled back, never made
        return _render(503, "database_busy", "the database is busy with other writes; "
                       "nothing was changed, try again in a moment", [], retry)
    if commit_outcome_unknown(session):
        # Lost while committing: the server may have saved it. Never claim it did not.
        return _render(503, "database_unavailable", "the connection to the database was lost "
                       "while saving; the change may or may not have been made: check its "
                       "state before trying again", [], retry)
    if committed_earlier(session):
        return _render(503, "database_unavailable", "the change was saved, but the connection "
                       "to the database was lost before the answer was complete: check its "
                       "state instead of repeating it", [], retry)
    return _render(503, "database_unavailable", "the database is unavailable; nothing was "
                   "changed, try again later", [], retry)


def init_app(app: Flask) -> None:
    """Install the handlers that give every error its JSON or HTML shape."""
    app.register_error_handler(MarketplaceError, handle_marketplace_error)
    for db_error in (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.DisconnectionError,
                     sa_exc.TimeoutError):
        app.register_error_handler(db_error, handle_database_error)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(Exception, handle_unexpected)
