"""Blob garbage collection removes only unreferenced blobs older than the grace period."""

from __future__ import annotations

import hashlib
import os
import time

from marketplace.blobs import get_blob_store
from marketplace.models import Gear, GearVersion


def _put(store, data: bytes) -> str:
    sha = hashlib.sha256(data).hexdigest()
    store.put(sha, data)
    return sha


def _age(store, sha: str, hours: float) -> None:
    """Backdate a local blob's modification time."""
    path = next(p for p in store.root.rglob(f"*{sha}*") if p.is_file())
    past = time.time() - hours * 3600
    os.utime(path, (past, past))


def test_gc_removes_only_old_unreferenced_blobs(app, runner, session, make_publisher):
    store = get_blob_store(app)
    referenced = _put(store, b"referenced archive")
    old_orphan = _put(store, b"old orphan")
    new_orphan = _put(store, b"new orphan")
    for sha in (referenced, old_orphan):
        _age(store, sha, 48)

    publisher = make_publisher(name="acme")
    gear = Gear(publisher=publisher, name="acme/hello", kind="template", title="Hello",
                summary="", categories=[])
    session.add(gear)
    session.add(GearVersion(gear=gear, version="1.0.0", sha256=referenced, size=18,
                            manifest={"name": "acme/hello"}))
    session.commit()

    dry = runner.invoke("gc", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert f"would remove {old_orphan}" in dry.stdout
    assert store.exists(old_orphan)

    result = runner.invoke("gc")
    assert result.exit_code == 0, result.output
    assert f"removed {old_orphan}" in result.stdout
    assert referenced not in result.stdout and new_orphan not in result.stdout
    assert not store.exists(old_orphan)
    assert store.exists(referenced) and store.exists(new_orphan)

    result = runner.invoke("gc", "--grace-hours", "0")
    assert f"removed {new_orphan}" in result.stdout
    assert store.exists(referenced)
