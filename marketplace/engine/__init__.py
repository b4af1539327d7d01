"""The personalization engine: profiles, events, catalog, segments, campaigns, decisions.

Gears live here. Events flow in (:mod:`~marketplace.engine.ingest`) through
the workspace's extensions, connectors sync data in and segments out
(:mod:`~marketplace.engine.connectors`), and decisions
(:mod:`~marketplace.engine.decisions`) pick an experience and let a template
render it. Every gear call goes through the sandboxed runtime owned by the
app's :class:`~marketplace.engine.manager.EngineManager`.

``init_app`` attaches one manager to the app (``app.extensions["gears_engine"]``),
connects it to the installation signals and mounts ``/engine/v1``. The plain
functions below drive the engine without HTTP (benchmarks, scripts).
"""

from __future__ import annotations

from typing import Any

from flask import Flask
from sqlalchemy import select

from marketplace import services
from marketplace.db import session_scope
from marketplace.engine import models  # noqa: F401  (registers the tables)
from marketplace.engine.manager import EngineManager
from marketplace.errors import MarketplaceError
from marketplace.models import Workspace

__all__ = ["EngineManager", "decide", "get_engine", "ingest_events", "init_app", "shutdown"]


def init_app(app: Flask) -> None:
    """Attach the engine manager, drain the lifecycle outbox on installation changes, mount
    the API."""
    from marketplace.engine.api import bp
    from marketplace.engine.connectors import connection_test
    from marketplace.engine.lifecycle import Lifecycle
    from marketplace.engine.openapi import bp as openapi_bp

    manager = EngineManager(app)
    lifecycle = Lifecycle(manager)
    lifecycle.connect()
    app.extensions["gears_engine"] = manager
    app.extensions["gears_engine_lifecycle"] = lifecycle
    app.extensions[services.CONNECTION_TESTER] = lambda row: connection_test(manager, row)
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


def _workspace(session: Any, name: str) -> Workspace:
    row = session.scalar(select(Workspace).where(Workspace.name == name))
    if row is None:
        raise MarketplaceError(404, "workspace_not_found", f"there is no workspace {name!r}")
    return row


def ingest_events(app: Flask, workspace: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    """Validate and ingest one batch in one transaction, as ``POST /events`` does."""
    from marketplace.engine.ingest import ingest
    from marketplace.engine.validation import check_event_batch

    batch = check_event_batch({"events": events})
    manager = get_engine(app)
    with session_scope(app) as session:
        result = ingest(manager, session, _workspace(session, workspace), batch).to_dict()
    manager.flush_failures()
    return result


def decide(app: Flask, workspace: str, user_id: str, placement: str,
           context: dict[str, Any] | None = None) -> dict[str, Any]:
    """One decision, logged, as ``POST /decide`` answers it."""
    from marketplace.engine.decisions import decide as run

    manager = get_engine(app)
    with session_scope(app) as session:
        result = run(manager, session, _workspace(session, workspace), user_id, placement,
                     context)
    manager.flush_failures()
    return result
