"""Serving the app with gunicorn (a production WSGI server, never Flask's dev server).

Workers use the ``gthread`` class (:class:`JsonErrorWorker`, which answers
gunicorn's own 414/431/400 refusals in the JSON error shape): requests are mostly short database and
storage calls, and threads keep memory low while a slow download or upload
does not block a whole worker. Each worker opens its own database connections
(the parent's pool is discarded after the fork).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from flask import Flask
from gunicorn import util
from gunicorn.app.base import BaseApplication
from gunicorn.http import errors as http_errors
from gunicorn.workers.gthread import ThreadWorker

from marketplace.db import database

DEFAULT_THREADS = 4

#: gunicorn's own refusals of a request it could not parse, as (status, code, message).
#: Checked in order: the first class that matches wins.
PARSE_ERRORS: tuple[tuple[type[Exception], int, str, str], ...] = (
    (http_errors.LimitRequestLine, 414, "uri_too_long",
     "the request line is too long (at most 8190 bytes); send long parameters in a body"),
    (http_errors.LimitRequestHeaders, 431, "headers_too_large",
     "the request headers are too large or too many; send fewer or shorter headers"),
    (http_errors.UnsupportedTransferCoding, 501, "not_implemented",
     "this Transfer-Encoding is not supported"),
    (http_errors.ForbiddenProxyRequest, 403, "forbidden", "proxy requests are not accepted"),
    (http_errors.ExpectationFailed, 417, "expectation_failed",
     "only 'Expect: 100-continue' is supported"),
    (http_errors.ParseException, 400, "bad_request", "the request is not valid HTTP"),
)


def parse_error_answer(exc: BaseException) -> bytes | None:
    """The JSON answer to a request gunicorn refused before the app saw it, or ``None``
    for anything else (an application error keeps gunicorn's own handling).

    Every error the registry gives is ``{"error": {"code", "message", "details"}}``;
    gunicorn's built-in pages are HTML, so the worker answers these itself.
    """
    if isinstance(exc, (http_errors.InvalidResponseHeader,
                        http_errors.InvalidResponseHeaderName)):
        return None  # the application's fault, not the client's
    for kind, status, code, message in PARSE_ERRORS:
        if isinstance(exc, kind):
            body = json.dumps({"error": {"code": code, "message": message, "details": []}})
            reason = HTTPStatus(status).phrase
            head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
                    "Content-Type: application/json\r\nX-Content-Type-Options: nosniff\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n")
            return (head + body).encode("latin-1")
    return None


class JsonErrorWorker(ThreadWorker):
    """gunicorn's threaded worker, answering its own parse errors (414, 431, 400 …) in
    the registry's JSON error shape instead of gunicorn's HTML page."""

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        answer = parse_error_answer(exc)
        if answer is None:
            super().handle_error(req, client, addr, exc)
            return
        self.log.warning("Invalid request from ip=%s: %s", (addr or ("",))[0], exc)
        try:
            util.write_nonblock(client, answer)
        except Exception:  # the client may be gone; nothing left to tell it
            self.log.debug("Failed to send error message.")


def default_workers() -> int:
    """Two workers per CPU is plenty for an I/O-bound app; at least 2, at most 8."""
    return max(2, min(8, (os.cpu_count() or 1) * 2))


class GearsServer(BaseApplication):
    """A gunicorn application serving an already-built Flask app."""

    def __init__(self, app: Flask, options: dict[str, Any]) -> None:
        self.application = app
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            if key in self.cfg.settings and value is not None:
                self.cfg.set(key, value)

    def load(self) -> Flask:
        return self.application


def _post_fork(_server: Any, _worker: Any, app: Flask) -> None:
    # Connections opened by the parent must not be shared with the children.
    database(app).engine.dispose(close=False)


def serve(app: Flask, *, host: str = "127.0.0.1", port: int = 8000,
          workers: int | None = None, threads: int = DEFAULT_THREADS,
          proc_name: str = "gears-registry",
          worker_start: Callable[[Flask], Any] | None = None,
          worker_stop: Callable[[Flask], Any] | None = None) -> None:
    """Serve ``app`` on ``host:port`` until interrupted.

    ``worker_start`` runs in each worker process once it is ready (threads started
    before the fork would not exist in the worker), ``worker_stop`` in each worker as
    it exits (Ctrl-C, SIGTERM, a restart): an engine node starts and stops its engine
    there."""
    database(app).engine.dispose()
    options = {
        "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "workers": workers or default_workers(),
        "worker_class": "marketplace.server.JsonErrorWorker",
        "threads": threads,
        "timeout": 60,
        "graceful_timeout": 30,
        "keepalive": 5,
        "accesslog": "-",
        "errorlog": "-",
        "loglevel": "info",
        "proc_name": proc_name,
        # One shared control socket per user would collide between several servers.
        "control_socket_disable": True,
        "post_fork": lambda server, worker: _post_fork(server, worker, app),
    }
    if worker_start is not None:
        options["post_worker_init"] = lambda worker: worker_start(app)
    if worker_stop is not None:
        options["worker_exit"] = lambda server, worker: worker_stop(app)
    GearsServer(app, options).run()
