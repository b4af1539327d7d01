"""``ctx.state`` in the database: the runtime's state store, one row per installation.

A gear's state must survive restarts and be shared by every engine replica,
so it lives in the engine's database rather than in a file. It implements
the runtime's :class:`~marketplace.runtime.state.StateStore` protocol and
keeps its rule: JSON values only, at most the manifest's ``limits.state_kb``.

Writes join the engine's current transaction when there is one
(:func:`bound_session`): state changed while handling an event batch commits
or rolls back with that batch, and on SQLite a second connection writing
while the batch holds the write lock would only wait for itself. Outside
an engine operation (``gear_install``, say) each write commits on its own.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from sqlalchemy.orm import Session

from marketplace.db import utcnow
from marketplace.engine.models import InstallationState

_current: ContextVar[Session | None] = ContextVar("gears_engine_session", default=None)


@contextmanager
def bound_session(session: Session) -> Iterator[Session]:
    """Make gear state reads and writes during the block use ``session``."""
    token = _current.set(session)
    try:
        yield session
    finally:
        _current.reset(token)


class DbStateStore:
    """The state of installation ``installation_id``, capped at ``limit_kb``."""

    def __init__(self, sessions: Callable[[], Session], installation_id: str,
                 workspace_id: int, limit_kb: int = 256):
        self.sessions = sessions
        self.installation_id = installation_id
        self.workspace_id = workspace_id
        self.limit_bytes = int(limit_kb) * 1024

    @contextmanager
    def _session(self) -> Iterator[tuple[Session, bool]]:
        bound = _current.get()
        if bound is not None:
            yield bound, False
            return
        session = self.sessions()
        try:
            yield session, True
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def _row(self, session: Session) -> InstallationState | None:
        return session.get(InstallationState, self.installation_id)

    def _data(self) -> dict[str, Any]:
        with self._session() as (session, _own):
            row = self._row(session)
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
        with self._session() as (session, _own):
            row = self._row(session)
            new = change(dict(row.data or {}) if row is not None else {})
            size = len(json.dumps(new, separators=(",", ":"), allow_nan=False))
            if size > self.limit_bytes:
                raise ValueError(f"state would hold {size} bytes; the limit is "
                                 f"{self.limit_bytes} (limits.state_kb in gear.json)")
            if row is None:
                session.add(InstallationState(installation_id=self.installation_id,
                                              workspace_id=self.workspace_id, data=new,
                                              size=size, updated_at=utcnow()))
            else:
                row.data, row.size, row.updated_at = new, size, utcnow()
            session.flush()
