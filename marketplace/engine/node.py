"""An engine node: the engine in a process of its own (``marketplace engine serve``).

A node is one process holding one app, so one :class:`EngineManager` and one
runtime: an installation has at most one sandboxed worker per node, whatever
the web server's concurrency. It serves

* ``/engine/v1/...``, the engine API (the web server forwards its own
  ``/engine/v1`` requests here), with its workspace tokens;
* ``/engine/v1/_node/...``, for the processes of the installation only
  (bearer ``ENGINE_NODE_TOKEN``): ``GET status`` (what runs here) and
  ``POST workspaces/<ws>/connectors/<installation>/sync`` (the scheduler's
  way to have a due sync run);
* ``/healthz``.

Everything else is ``404``: the registry and the pages are the web server's.
Beside its requests the node polls the kill list, drains the lifecycle outbox
(:mod:`marketplace.engine.lifecycle`) and, on shutdown, stops every worker it
started with their control groups and data-dir mounts.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Mapping
from typing import IO, Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from sqlalchemy import select

from marketplace.app import create_app
from marketplace.db import get_session
from marketplace.engine import get_engine, shutdown
from marketplace.engine.connectors import sync
from marketplace.engine.lifecycle import node_id
from marketplace.engine.manager import data_root
from marketplace.engine_service import token_matches
from marketplace.errors import MarketplaceError
from marketplace.http_input import json_body
from marketplace.models import Workspace
from marketplace.settings import engine_version

log = logging.getLogger(__name__)

#: Paths a node answers; the rest belongs to the web server.
NODE_PATHS = ("/engine/v1/", "/engine/v1", "/healthz")
NODE_EXTENSION = "gears_engine_node"

bp = Blueprint("engine_node", __name__, url_prefix="/engine/v1/_node")


class NodeInfo:
    """Who this node is, for ``status`` and the outbox's claims."""

    def __init__(self, node_id: str) -> None:
        self.id = node_id
        self.pid = os.getpid()
        self.started = time.time()
        self.started_monotonic = time.monotonic()


def create_node_app(config: Mapping[str, Any] | None = None) -> Flask:
    """The app of one engine node: the whole app with an embedded engine (``ENGINE_URLS``
    forced empty: the node *is* the engine), answering only the engine's paths."""
    app = create_app({**dict(config or {}), "ENGINE_URLS": []})
    app.register_blueprint(bp)
    app.before_request(_engine_paths_only)
    return app


#: Beside the installations' data dirs: held (``flock``) by the node using them.
DATA_LOCK = ".engine-node.lock"


def claim_data_root(app: Flask) -> IO[str]:
    """Hold the node's data root for as long as this process (and the server it forks)
    lives; the kernel lets go when it dies, however it dies.

    Two engine processes running one installation's workers in one data dir would
    mount its filesystem image twice and corrupt it: a second node on the same machine
    with the same ``GEAR_DATA_PATH`` is refused with ``data_path_in_use``.
    """
    root = data_root(app)
    root.mkdir(parents=True, exist_ok=True)
    held = open(root / DATA_LOCK, "a+")  # noqa: SIM115 (kept open: the lock is the file)
    try:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        held.close()
        raise MarketplaceError(
            500, "data_path_in_use", f"another engine node on this machine uses {root} for "
            "gears' data dirs; give each node its own GEARS_GEAR_DATA_PATH") from None
    return held


def start_node(app: Flask) -> NodeInfo:
    """Start the node's background work in this (the serving) process: the kill-list
    poller and the lifecycle outbox drain. Called once the server process exists."""
    lifecycle = app.extensions["gears_engine_lifecycle"]
    lifecycle.node = node_id()  # this process's, not the one that built the app
    info = NodeInfo(lifecycle.node)
    app.extensions[NODE_EXTENSION] = info
    manager = get_engine(app)
    manager.runtime  # noqa: B018 (built now: the kill list is polled from the start)
    manager.reconcile()  # suspend/resume installations for this engine's version now
    try:
        gone = manager.remove_orphan_data()
        if gone:
            log.info("removed the data dirs of %d installations that no longer exist",
                     len(gone))
    except Exception:  # leftovers cost disk only: never a reason not to serve
        log.exception("could not look for data dirs of removed installations")
    lifecycle.start()
    log.info("engine node %s (pid %s) started", info.id, info.pid)
    return info


def stop_node(app: Flask) -> None:
    """Stop the outbox drain, every worker, the kill-list poller and the runtime."""
    shutdown(app)


def _engine_paths_only() -> None:
    if not (request.path == "/engine/v1" or request.path.startswith(NODE_PATHS)):
        raise MarketplaceError(404, "not_found", "an engine node serves /engine/v1 only; the "
                               "registry and the pages are on the web server")


@bp.before_request
def _node_token() -> None:
    if not token_matches(current_app.config["ENGINE_NODE_TOKEN"],
                         request.headers.get("Authorization")):
        raise MarketplaceError(401, "unauthorized", "node endpoints take the node token "
                               "(ENGINE_NODE_TOKEN) as a bearer token",
                               headers={"WWW-Authenticate": 'Bearer realm="gears-engine-node"'})


def status(app: Flask) -> dict[str, Any]:
    """What runs on this node: its id, engine version, pid, uptime, one entry per
    installation with a running worker, and how its health flushes are doing."""
    manager = get_engine(app)
    info: NodeInfo | None = app.extensions.get(NODE_EXTENSION)
    lifecycle = app.extensions.get("gears_engine_lifecycle")
    runtime = manager.runtime_if_built()
    workers = []
    if runtime is not None:
        for iid, snap in sorted(runtime.health().items()):
            if snap.get("pid") is None:
                continue
            workers.append({"installation": iid, "gear": snap.get("gear"), "pid": snap["pid"],
                            "calls": snap.get("calls", 0), "restarts": snap.get("restarts", 0)})
    return {
        "node": info.id if info else (lifecycle.node if lifecycle else None),
        "engine_version": engine_version(app.config),
        "pid": os.getpid(),
        "uptime_seconds": round(time.monotonic() - info.started_monotonic, 3) if info else None,
        "sandbox_level": runtime.level if runtime is not None else None,
        "workers": workers,
        "outbox_done": dict(lifecycle.done) if lifecycle else {},
        # installations whose counts wait for the next health flush, and failed flushes
        "health": {"pending": runtime.ledger.pending() if runtime is not None else 0,
                   "failed_flushes": manager.health_sync.failed_flushes
                   if manager.health_sync is not None else 0},
    }


@bp.get("/status")
def get_status() -> Response:
    return jsonify(status(current_app))


@bp.post("/workspaces/<ws>/connectors/<installation>/sync")
def run_sync(ws: str, installation: str) -> tuple[Response, int]:
    """Run one sync now for a process of the installation (the scheduler): the run, as
    ``POST /engine/v1/workspaces/<ws>/connectors/<installation>/sync`` answers it."""
    data = json_body(max_bytes=4096, optional=True)
    trigger = data.get("trigger", "manual") if isinstance(data, dict) else "manual"
    if trigger not in ("manual", "schedule"):
        raise MarketplaceError(422, "invalid_trigger", "'trigger' is 'manual' or 'schedule'",
                               [{"path": "$.trigger", "message": "manual or schedule",
                                 "code": "enum"}])
    session = get_session()
    workspace = session.scalar(select(Workspace).where(Workspace.name == ws))
    if workspace is None:
        raise MarketplaceError(404, "workspace_not_found", f"there is no workspace {ws!r}")
    manager = get_engine(current_app)
    run = sync(manager, session, workspace, installation, trigger=trigger)
    session.commit()
    manager.flush_failures()
    return jsonify(run), 200
