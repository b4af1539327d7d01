"""``ctx.state`` in the database: the runtime's state store, one row per installation.

A gear's state must survive restarts and be shared by every engine replica,
so it lives in the engine's database rather than in a file. It implements
the runtime's :class:`~marketplace.runtime.state.StateStore` protocol and
keeps its rule: JSON values only, at most the manifest's ``limits.state_kb``.

No database transaction may stay open while gear code runs (a slow gear
would hold SQLite's write lock, or PostgreSQL's row locks, and stall every
other writer). So during an engine operation (:func:`staged_state`) a
gear's writes are *staged* in memory: the gear reads back what it wrote,
and the operation writes the staged state together with its own results
(:func:`write_staged`) once the gears have answered, in one short
transaction; a failed operation drops them. Outside an engine operation
(``gear_install``, say) each write commits on its own, in its own short
transaction.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from marketplace.db import utcnow
from marketplace.engine.models import InstallationState
from marketplace.engine.upserts import insert_for


@dataclass
class StagedState:
    """State written by gears during one engine operation, not yet in the database."""

    #: installation id -> (workspace id, the installation's whole new state)
    writes: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)


_current: ContextVar[StagedState | None] = ContextVar("gears_engine_state", default=None)


@contextmanager
def staged_state() -> Iterator[StagedState]:
    """Stage gears' state writes made during the block (see the module's docstring)."""
    staged = StagedState()
    token = _current.set(staged)
    try:
        yield staged
    finally:
        _current.reset(token)


def write_staged(session: Session, staged: StagedState) -> None:
    """Write ``staged`` in ``session``'s transaction (an upsert: a concurrent first
    write of the same installation's state cannot fail on the primary key)."""
    now = utcnow()
    for installation, (workspace_id, data) in staged.writes.items():
        size = len(json.dumps(data, separators=(",", ":"), allow_nan=False))
        values = {"installation_id": installation, "workspace_id": workspace_id,
                  "data": data, "size": size, "updated_at": now}
        stmt = insert_for(session, InstallationState).values(**values)
        session.execute(stmt.on_conflict_do_update(
            index_elements=[InstallationState.installation_id],
            set_={"data": data, "size": size, "updated_at": now}))
    staged.writes.clear()


class DbStateStore:
    """The state of installation ``installation_id``, capped at ``limit_kb``."""

    def __init__(self, sessions: Callable[[], Session], installation_id: str,
                 workspace_id: int, limit_kb: int = 256):
        self.sessions = sessions
        self.installation_id = installation_id
        self.workspace_id = workspace_id
        self.limit_bytes = int(limit_kb) * 1024

    @contextmanager
    def _session(self) -> Iterator[Session]:
        session = self.sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def _data(self) -> dict[str, Any]:
        staged = _current.get()
        if staged is not None and self.installation_id in staged.writes:
            return json.loads(json.dumps(staged.writes[self.installation_id][1]))
        with self._session() as session:
            row = session.get(InstallationState, self.installation_id)
            return dict(row.data or {}) if row is not None else {}

    def get(self, key: str) -> Any:
        return self._data().get(key)

    def keys(self) -> list[str]:
        return sorted(self._data())

    def set(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            raise TypeError("state keys must be strings")
        value = json.loads(json.dumps(value, allow_nan=False))
        self._write(lambda data: {**data, key: value})

    def delete(self, key: str) -> None:
        self._write(lambda data: {k: v for k, v in data.items() if k != key})

    def _write(self, change: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        new = change(self._data())
        size = len(json.dumps(new, separators=(",", ":"), allow_nan=False))
        if size > self.limit_bytes:
            raise ValueError(f"state would hold {size} bytes; the limit is "
                             f"{self.limit_bytes} (limits.state_kb in gear.json)")
        staged = _current.get()
        if staged is not None:
            staged.writes[self.installation_id] = (self.workspace_id, new)
            return
        with self._session() as session:
            write_staged(session, StagedState({self.installation_id: (self.workspace_id, new)}))
