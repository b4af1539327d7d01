"""The one way an API endpoint reads what a client sent: JSON bodies, queries, path values.

Every JSON body of the registry (``/api/v1``), the engine (``/engine/v1``) and
the installations API goes through :func:`json_body` instead of
``request.get_json``:

* the body is read from the WSGI stream and counted as it arrives, so a
  chunked body without ``Content-Length`` is cut off at the limit exactly like
  one that announces its size (``413``);
* it must be UTF-8 JSON; it is parsed by :func:`gears_sdk.values.parse_json`,
  the one validator for values crossing a trust boundary: depth checked before
  parsing (``400``), then finite numbers, 64-bit integers, valid Unicode
  without NUL, bounded strings and sizes (``422`` with the JSON path).

Query strings and path values of every request are checked before any view
runs (:func:`check_request_values`): no NUL or lone surrogate, bounded length
(``400`` naming the parameter). Nothing is stored before these checks pass.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, request

from gears_sdk.values import ValueLimits, ValueRejected, check_value, parse_json
from marketplace.errors import MarketplaceError

#: Bodies of the registry's and the installations' endpoints (a reason, a config).
DEFAULT_BODY_BYTES = 1024 * 1024
#: What one request body may hold: nesting, values, sizes (see ``gears_sdk.values``).
BODY_LIMITS = ValueLimits(max_depth=32, max_bytes=DEFAULT_BODY_BYTES, max_nodes=200_000)
#: Longest query or path value accepted.
MAX_PARAMETER = 2048
#: Longest URL-encoded form field (the engine pages' JSON textareas).
MAX_FORM_FIELD = 256 * 1024

_CHUNK = 64 * 1024
_STATUS = {"invalid_json": 400, "too_deep": 400, "too_large": 413}


def read_body(max_bytes: int) -> bytes:
    """The raw body, at most ``max_bytes``; ``413`` as soon as more arrives, whether or
    not the client announced a ``Content-Length``."""
    if (request.content_length or 0) > max_bytes:
        raise _too_large(max_bytes)
    stream = request.stream
    chunks: list[bytes] = []
    total = 0
    while True:
        chunk = stream.read(min(_CHUNK, max_bytes + 1 - total))
        if not chunk:
            break
        total += len(chunk)
        if total > max_bytes:
            raise _too_large(max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(max_bytes: int) -> MarketplaceError:
    return MarketplaceError(413, "payload_too_large", f"the body is larger than {max_bytes} "
                            "bytes; send less per request")


def json_body(*, max_bytes: int = DEFAULT_BODY_BYTES, limits: ValueLimits = BODY_LIMITS,
              optional: bool = False) -> Any:
    """The request's JSON body under the input contract.

    ``optional``: an empty body is ``None`` instead of ``400``. A non-empty body
    must be sent as ``application/json``.
    """
    raw = read_body(max_bytes)
    if not raw.strip():
        if optional:
            return None
        raise MarketplaceError(400, "invalid_json", "the body must be JSON "
                               "(Content-Type: application/json)")
    if not request.is_json:
        raise MarketplaceError(400, "invalid_json", "the body must be sent as JSON "
                               "(Content-Type: application/json)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MarketplaceError(400, "invalid_json", f"the body is not UTF-8 (byte "
                               f"{exc.start})") from None
    try:
        return parse_json(text, limits.with_(max_bytes=max(limits.max_bytes, max_bytes)))
    except ValueRejected as exc:
        raise rejected(exc) from None


def rejected(exc: ValueRejected, where: str = "body") -> MarketplaceError:
    """A contract violation as the API error: 400 (malformed or too deep), 413 (too
    large) or 422, with the path."""
    status = _STATUS.get(exc.code, 422)
    detail = {"path": exc.path, "message": exc.message, "code": exc.code}
    return MarketplaceError(status, exc.code if status != 422 else "invalid_value",
                            f"the request {where} is not acceptable: {exc.path}: "
                            f"{exc.message}", [detail])


def check_request_values() -> None:
    """Query, path and URL-encoded form values of every request: text without NUL or lone
    surrogates, at most :data:`MAX_PARAMETER` characters (``400`` naming the parameter; JSON under
    the APIs, the error page elsewhere)."""
    # NUL: PostgreSQL cannot compare text with it (a 500 there, a miss on SQLite).
    values: list[tuple[str, Any]] = [(f"query.{k}", v) for k in request.args
                                     for v in request.args.getlist(k)]
    values += [(f"path.{k}", v) for k, v in (request.view_args or {}).items()]
    limits = ValueLimits(max_depth=2, max_string=MAX_PARAMETER, max_key=MAX_PARAMETER)
    try:
        for name, value in values:
            check_value(name, limits, path="query")  # the parameter's name itself
            check_value(value, limits, path=name)
        if request.mimetype == "application/x-www-form-urlencoded":  # web forms (sign-in...);
            # multipart uploads are left to their views, which check auth before parsing
            for key in request.form:
                check_value(key, limits, path="form")
                for value in request.form.getlist(key):
                    check_value(value, limits.with_(max_string=MAX_FORM_FIELD),
                                path=f"form.{key}")
        # the whole path too: a route that did not match has no path values
        check_value(request.path, limits.with_(max_string=4 * MAX_PARAMETER), path="path")
    except ValueRejected as exc:
        raise MarketplaceError(400, "invalid_parameter", f"{exc.path}: {exc.message}",
                               [{"path": exc.path, "message": exc.message,
                                 "code": exc.code}]) from None


def init_app(app: Flask) -> None:
    """Check every API request's query and path values before its view runs."""
    app.before_request(check_request_values)
