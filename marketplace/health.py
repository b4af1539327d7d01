"""``/healthz``: whether this replica can serve, for load balancers and operators.

It checks the two things every request depends on, and that both take writes:
the database commits a write that changes nothing (:func:`marketplace.db.probe_write`),
the blob store writes, syncs and removes a small file or checks its bucket
(``check()``). It answers 200 when both work, 503 when one does not: a full or
read-only disk is a replica that cannot publish. Failure details go to the log;
the response names only the failing part, so it leaks nothing about the deployment.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Flask, Response, jsonify

from marketplace.blobs import get_blob_store
from marketplace.db import probe_write
from marketplace.storage import StorageError

log = logging.getLogger(__name__)

bp = Blueprint("health", __name__)


def _check(name: str, probe: Callable[[], Any]) -> dict[str, Any]:
    try:
        result = probe()
    except StorageError as exc:
        log.warning("health check %s failed: %s", name, exc)
        return {"ok": False, "error": exc.code}
    except Exception as exc:
        log.warning("health check %s failed: %s", name, exc)
        return {"ok": False, "error": f"{name}_unavailable"}
    if result is False:
        return {"ok": False, "error": "check_failed"}
    return {"ok": True}


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    checks = {
        "database": _check("database", probe_write),
        "storage": _check("storage", lambda: get_blob_store().check()),
    }
    healthy = all(c["ok"] for c in checks.values())
    body = {"status": "ok" if healthy else "unavailable", "checks": checks}
    resp = jsonify(body)
    resp.headers["Cache-Control"] = "no-store"
    return resp, 200 if healthy else 503


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
