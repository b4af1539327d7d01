"""The app's blob store, opened once from its settings.

Every part of the registry that reads or writes archives goes through
:func:`get_blob_store`, so the backend (local directory or S3) is chosen in one
place, from ``STORAGE_URL``, ``S3_ENDPOINT_URL`` and ``S3_REGION``.
"""

from __future__ import annotations

from pathlib import Path

from flask import Flask, current_app

from marketplace.storage import BlobStore, open_blob_store
from marketplace.storage.breaker import CircuitBreakerStore

EXTENSION_KEY = "gears_storage"


def open_from_config(app: Flask) -> BlobStore:
    """A new store for ``app``'s settings (relative ``file:`` paths start at the working dir),
    with the S3 client timeouts and behind a circuit breaker
    (:mod:`marketplace.storage.breaker`): a stalled store fails fast with ``503`` while
    everything that does not need it keeps answering."""
    cfg = app.config
    store = open_blob_store(
        cfg["STORAGE_URL"],
        s3_endpoint_url=cfg.get("S3_ENDPOINT_URL"),
        s3_region=cfg.get("S3_REGION"),
        base_dir=Path.cwd(),
        s3_timeouts={"connect_timeout": float(cfg["S3_CONNECT_TIMEOUT"]),
                     "read_timeout": float(cfg["S3_READ_TIMEOUT"]),
                     "max_attempts": int(cfg["S3_MAX_ATTEMPTS"])},
    )
    return CircuitBreakerStore(store, threshold=int(cfg["STORAGE_BREAKER_FAILURES"]),
                               cooldown=float(cfg["STORAGE_BREAKER_SECONDS"]))


def get_blob_store(app: Flask | None = None) -> BlobStore:
    """The app's store (the current app when none is given), opened on first use."""
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    store = app.extensions.get(EXTENSION_KEY)
    if store is None:
        store = app.extensions[EXTENSION_KEY] = open_from_config(app)
    return store


def init_app(app: Flask) -> None:
    """Open the store now, so a malformed ``STORAGE_URL`` fails at start-up, not on a request.

    Opening contacts nothing; reachability is checked by ``/healthz`` and ``marketplace init``.
    """
    get_blob_store(app)
