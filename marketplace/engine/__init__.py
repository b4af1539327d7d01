"""The personalization engine: profiles, events, catalog, segments, campaigns, decisions.

Gears live here. Events flow in (:mod:`~marketplace.engine.ingest`) through
the workspace's extensions, connectors sync data in and segments out
(:mod:`~marketplace.engine.connectors`), and decisions
(:mod:`~marketplace.engine.decisions`) pick an experience and let a template
render it. Every gear call goes through the sandboxed runtime owned by the
app's :class:`~marketplace.engine.manager.EngineManager`.

``init_app`` attaches one manager to the app (``app.extensions["gears_engine"]``),
connects it to the installation signals, mounts ``/engine/v1`` and registers the
in-process engine service (:class:`~marketplace.engine.service.LocalEngine`), through
which the pages, the demo seed and the bench drive the engine without HTTP.
"""

from __future__ import annotations

from flask import Flask

from marketplace import services
from marketplace.engine import models  # noqa: F401  (registers the tables)
from marketplace.engine.api import bp
from marketplace.engine.lifecycle import Lifecycle
from marketplace.engine.manager import EngineManager
from marketplace.engine.openapi import bp as openapi_bp
from marketplace.engine.service import LocalEngine

__all__ = ["EngineManager", "get_engine", "init_app", "shutdown"]


def init_app(app: Flask) -> None:
    """Attach the engine manager, drain the lifecycle outbox on installation changes, mount
    the API."""
    manager = EngineManager(app)
    lifecycle = Lifecycle(manager)
    lifecycle.connect()
    app.extensions["gears_engine"] = manager
    app.extensions["gears_engine_lifecycle"] = lifecycle
    app.extensions[services.ENGINE] = LocalEngine(app, manager, lambda: shutdown(app))
    app.register_blueprint(bp)
    app.register_blueprint(openapi_bp)


def get_engine(app: Flask) -> EngineManager:
    """The app's :class:`EngineManager`."""
    manager: EngineManager = app.extensions["gears_engine"]
    return manager


def shutdown(app: Flask) -> None:
    """Stop listening to signals, stop the app's workers and close the runtime its
    manager built (an attached one stays open)."""
    lifecycle = app.extensions.pop("gears_engine_lifecycle", None)
    if lifecycle is not None:
        lifecycle.disconnect()
        lifecycle.stop()
    manager = app.extensions.get("gears_engine")
    if manager is not None:
        manager.shutdown()
