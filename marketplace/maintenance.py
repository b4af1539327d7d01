"""Housekeeping jobs the operator runs: blob garbage collection.

Blobs are written before their version row is committed (so a row never
points at a missing blob). A failed or abandoned publish can therefore leave a
blob no row references; :func:`collect_garbage` removes those, but only once
they are older than a grace period, so a publish still in flight is never
robbed of its blob.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from marketplace.db import utcnow
from marketplace.models import GearVersion
from marketplace.storage import BlobInfo, BlobStore

DEFAULT_GRACE = timedelta(hours=24)


@dataclass(frozen=True)
class Removed:
    """A blob garbage collection removed (or would remove, in a dry run)."""

    sha256: str
    size: int
    modified: datetime


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def unreferenced_blobs(session: Session, store: BlobStore,
                       grace: timedelta = DEFAULT_GRACE) -> Iterator[BlobInfo]:
    """Blobs no version references and that were last written before ``now - grace``."""
    cutoff = utcnow() - grace
    referenced = set(session.scalars(select(GearVersion.sha256).distinct()))
    for blob in store.iter_blobs():
        if blob.sha256 not in referenced and _aware(blob.modified) < cutoff:
            yield blob


def collect_garbage(session: Session, store: BlobStore, *, grace: timedelta = DEFAULT_GRACE,
                    dry_run: bool = False) -> list[Removed]:
    """Delete unreferenced blobs older than ``grace``; returns what was (or would be) removed."""
    removed = []
    for blob in list(unreferenced_blobs(session, store, grace)):
        # Look again just before deleting: an old orphan may have just been
        # published again (same bytes, same sha256) while the store was listed.
        if _referenced(session, blob.sha256):
            continue
        if not dry_run:
            store.delete(blob.sha256)
        removed.append(Removed(blob.sha256, blob.size, blob.modified))
    return removed


def _referenced(session: Session, sha256: str) -> bool:
    session.rollback()  # end the read transaction, so SQLite sees newer commits too
    query = select(GearVersion.id).where(GearVersion.sha256 == sha256).limit(1)
    return session.scalar(query) is not None
