"""Idempotent inserts on both databases: ``INSERT … ON CONFLICT``.

Two engine requests may create the same row at once (a profile, an event
id, a gear's state row). Reading first and inserting when nothing was
found races: both read nothing, both insert, one hits the unique
constraint. These helpers let the database decide instead, in one
statement, on SQLite and on PostgreSQL alike.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def insert_for(session: Session, model: Any) -> Any:
    """The dialect's ``insert(model)`` (it has ``on_conflict_do_nothing``/``_do_update``)."""
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        return postgresql.insert(model)
    if bind.dialect.name == "sqlite":
        return sqlite.insert(model)
    raise NotImplementedError(f"no upsert for the {bind.dialect.name} dialect")


def ensure_rows(session: Session, model: Any, key: str, workspace_id: int, ids: list[str],
                defaults: dict[str, Any]) -> list[str]:
    """Create the rows of ``model`` missing among ``ids`` (``key`` unique per workspace),
    from ``defaults``; the ids this call created. A row a concurrent request created
    first is left alone, so reading the rows afterwards finds every one of them."""
    created: list[str] = []
    column = getattr(model, key)
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        created += session.scalars(
            insert_for(session, model)
            .values([{"workspace_id": workspace_id, key: i, **defaults} for i in chunk])
            .on_conflict_do_nothing(index_elements=["workspace_id", key])
            .returning(column)).all()
    return created
