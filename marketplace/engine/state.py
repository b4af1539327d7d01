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

Writes are kept as the keys they set or deleted, never as a whole new
object: they are replayed on the row read again under a row lock, so two
operations running at once (two request threads, two engine nodes) that
write different keys keep both; on one key the last to commit wins. A
replay that would take the state past its limit (the other operation's
keys count too) is refused whole and reported as that installation's
failure.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from marketplace.db import utcnow
from marketplace.engine.models import InstallationState
from marketplace.engine.upserts import insert_for

#: A key a gear deleted, in :attr:`StagedWrite.changes`.
DELETED = object()


@dataclass
class StagedWrite:
    """One installation's state writes during an operation."""

    workspace_id: int
    limit_bytes: int
    gear: str
    #: the state as the gear now sees it (what it read, with its own writes on top)
    view: dict[str, Any]
    #: the keys it set (their values) or deleted (:data:`DELETED`), to replay
    changes: dict[str, Any] = field(default_factory=dict)


@dataclass
class StagedState:
    """State written by gears during one engine operation, not yet in the database."""

    #: installation id -> its staged writes
    writes: dict[str, StagedWrite] = field(default_factory=dict)


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


def _size(data: dict[str, Any]) -> int:
    return len(json.dumps(data, separators=(",", ":"), allow_nan=False))


def _locked(session: Session, installation: str, workspace_id: int) -> InstallationState:
    """The installation's state row, created empty if missing, locked until the transaction
    ends (on SQLite the insert has taken the database's write lock already)."""
    now = utcnow()
    session.execute(insert_for(session, InstallationState).values(
        installation_id=installation, workspace_id=workspace_id, data={}, size=2,
        updated_at=now).on_conflict_do_nothing(index_elements=["installation_id"]))
    row = session.scalar(select(InstallationState)
                         .where(InstallationState.installation_id == installation)
                         .with_for_update().execution_options(populate_existing=True))
    assert row is not None
    return row


def _replay(row: InstallationState, changes: dict[str, Any], limit_bytes: int) -> str | None:
    """Apply ``changes`` to the locked ``row``; why not (past the limit), or ``None``."""
    data = dict(row.data or {})
    for key, value in changes.items():
        if value is DELETED:
            data.pop(key, None)
        else:
            data[key] = value
    size = _size(data)
    if size > limit_bytes:
        return (f"state would hold {size} bytes once merged with a concurrent write; "
                f"the limit is {limit_bytes} (limits.state_kb in gear.json)")
    row.data, row.size, row.updated_at = data, size, utcnow()
    return None


def write_staged(session: Session, staged: StagedState) -> list[tuple[str, str, str, str]]:
    """Replay ``staged`` on the locked state rows in ``session``'s transaction (in
    installation order, so two operations never wait on each other crosswise); the
    installations whose writes were refused, as (installation, gear, code, message)."""
    refused: list[tuple[str, str, str, str]] = []
    for installation in sorted(staged.writes):
        write = staged.writes[installation]
        if not write.changes:
            continue
        row = _locked(session, installation, write.workspace_id)
        why = _replay(row, write.changes, write.limit_bytes)
        if why is not None:
            refused.append((installation, write.gear, "state_full", why))
    staged.writes.clear()
    return refused


class DbStateStore:
    """The state of installation ``installation_id``, capped at ``limit_kb``."""

    def __init__(self, sessions: Callable[[], Session], installation_id: str,
                 workspace_id: int, limit_kb: int = 256, gear: str = ""):
        self.sessions = sessions
        self.installation_id = installation_id
        self.gear = gear
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
            return json.loads(json.dumps(staged.writes[self.installation_id].view))
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
        self._write(key, json.loads(json.dumps(value, allow_nan=False)))

    def delete(self, key: str) -> None:
        self._write(key, DELETED)

    def _write(self, key: str, value: Any) -> None:
        view = self._data()
        if value is DELETED:
            view.pop(key, None)
        else:
            view[key] = value
        size = _size(view)
        if size > self.limit_bytes:
            raise ValueError(f"state would hold {size} bytes; the limit is "
                             f"{self.limit_bytes} (limits.state_kb in gear.json)")
        staged = _current.get()
        if staged is not None:
            write = staged.writes.setdefault(self.installation_id, StagedWrite(
                self.workspace_id, self.limit_bytes, self.gear, view))
            write.view = view
            write.changes.pop(key, None)  # keep the order of the last writes
            write.changes[key] = value
            return
        with self._session() as session:
            why = _replay(_locked(session, self.installation_id, self.workspace_id),
                          {key: value}, self.limit_bytes)
            if why is not None:
                raise ValueError(why)
