"""The app's blob store, opened once from its settings.

Every part of the registry that reads or writes archives goes through
:func:`get_blob_store`, so the backend (local directory or S3) is chosen in one
place, from ``STORAGE_URL``, ``S3_ENDPOINT_URL`` and ``S3_REGION``.
"""

from __future__ import annotations

from pathlib import Path

from flask import Flask, current_app

from marketplace.storage import BlobStore, open_blob_store

EXTENSION_KEY = "gears_storage"


def open_from_config(app: Flask) -> BlobStore:
    """A new store for ``app``'s settings (relative ``file:`` paths start at the working dir)."""
    cfg = app.config
    return open_blob_store(
        cfg["STORAGE_URL"],
        s3_endpoint_url=cfg.get("S3_ENDPOINT_URL"),
        s3_region=cfg.get("S3_REGION"),
        base_dir=Path.cwd(),
    )


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
