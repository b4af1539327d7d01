"""Serving the app with gunicorn (a production WSGI server, never Flask's dev server).

Workers use the ``gthread`` class: requests are mostly short database and
storage calls, and threads keep memory low while a slow download or upload
does not block a whole worker. Each worker opens its own database connections
(the parent's pool is discarded after the fork).
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

from marketplace.db import database

DEFAULT_THREADS = 4


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
          workers: int | None = None, threads: int = DEFAULT_THREADS) -> None:
    """Serve ``app`` on ``host:port`` until interrupted."""
    database(app).engine.dispose()
    options = {
        "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "workers": workers or default_workers(),
        "worker_class": "gthread",
        "threads": threads,
        "timeout": 60,
        "graceful_timeout": 30,
        "keepalive": 5,
        "accesslog": "-",
        "errorlog": "-",
        "loglevel": "info",
        "proc_name": "gears-registry",
        # One shared control socket per user would collide between several servers.
        "control_socket_disable": True,
        "post_fork": lambda server, worker: _post_fork(server, worker, app),
    }
    GearsServer(app, options).run()
