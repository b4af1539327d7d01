"""Writing the shared health: the runtime's deltas added to ``installation_health``.

The runtime counts calls, errors, latencies, restarts and ``ctx.log`` lines in its
:class:`~marketplace.runtime.health.HealthLedger` without waiting on anything. A
:class:`HealthSync` per engine manager takes those deltas and adds them to each
installation's row in the database, so every web process and engine node shows the
same numbers, and they outlive restarts:

* from a background thread about once a second (:data:`FLUSH_INTERVAL_S`), and at
  once (the thread is woken) when a breaker trips or a worker fails to start;
* synchronously after a request's transaction ended (:meth:`HealthSync.flush_urgent`),
  so the request that tripped a breaker answers after the reason is stored;
* when the manager closes and when the process exits.

One flush is one transaction with a deadline (:data:`FLUSH_DEADLINE_S`): for each
installation, in id order (two nodes never wait on each other in a cycle), the row
is created if missing (``INSERT … ON CONFLICT DO NOTHING``, only while the
installation exists), then locked (``SELECT … FOR UPDATE``; on SQLite the insert
already took the write lock) and updated: counters as ``calls = calls + :n``, the
JSON parts (errors by code, latency histogram, recent logs) merged with what the
locked row holds. A flush that fails is logged and its deltas are put back for the
next one: nothing is lost silently, and no gear call ever waits for the database.
"""

from __future__ import annotations

import atexit
import logging
import threading
import weakref
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, Table, exists, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite

from marketplace.db import SQLITE_BUSY_TIMEOUT_MS
from marketplace.runtime.health import (
    RECENT_LOGS,
    HealthDelta,
    HealthLedger,
    add_histograms,
)
from marketplace.workspaces.models import Installation, InstallationHealth

log = logging.getLogger(__name__)

#: How often the background thread flushes.
FLUSH_INTERVAL_S = 1.0
#: Longest a flush may wait for the database (locks included) before it gives up;
#: its deltas are kept for the next flush.
FLUSH_DEADLINE_S = 5.0

_table: Table = InstallationHealth.__table__  # type: ignore[assignment]


def _insert_missing(conn: Connection, installation: str) -> None:
    """Create the installation's row when missing, and only while the installation exists."""
    dialect = conn.dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    source = select(literal(installation), literal(datetime.now(UTC), _table.c.updated_at.type),
                    literal(0), literal(0), literal(0), literal(0), literal(0),
                    literal({}, _table.c.failures.type), literal([], _table.c.logs.type),
                    literal([], _table.c.latency_buckets.type)).where(
        exists().where(Installation.id == installation))
    conn.execute(insert(_table).from_select(
        ["installation_id", "updated_at", "calls", "errors", "timeouts", "restarts", "busy",
         "failures", "logs", "latency_buckets"], source)
        .on_conflict_do_nothing(index_elements=["installation_id"]))


def apply_delta(conn: Connection, installation: str, delta: HealthDelta) -> bool:
    """Add ``delta`` to the installation's row (inside the caller's transaction); ``False``
    when the installation no longer exists (its delta is dropped)."""
    _insert_missing(conn, installation)
    row = conn.execute(select(_table.c.failures, _table.c.latency_buckets, _table.c.logs)
                       .where(_table.c.installation_id == installation)
                       .with_for_update()).first()
    if row is None:
        return False
    failures = {str(k): int(v) for k, v in dict(row.failures or {}).items()}
    for code, n in delta.codes.items():
        failures[code] = failures.get(code, 0) + n
    now = datetime.now(UTC)
    values: dict[str, Any] = {
        "calls": _table.c.calls + delta.calls, "errors": _table.c.errors + delta.errors,
        "timeouts": _table.c.timeouts + delta.timeouts,
        "restarts": _table.c.restarts + delta.restarts, "busy": _table.c.busy + delta.busy,
        "failures": failures,
        "latency_buckets": add_histograms(row.latency_buckets or [], delta.buckets),
        "updated_at": now,
    }
    if delta.logs:
        values["logs"] = (list(row.logs or []) + delta.logs)[-RECENT_LOGS:]
    if delta.last_error_at is not None:
        values["last_error"], values["last_error_at"] = delta.last_error, delta.last_error_at
    if delta.last_call_at is not None:
        values["last_call_at"] = delta.last_call_at
    if delta.started_at is not None:
        values["started_at"] = delta.started_at
    if delta.not_running_changed:
        if delta.not_running is None:
            values.update(not_running_code=None, not_running_reason=None, not_running_at=None)
        else:
            code, reason, when = delta.not_running
            values.update(not_running_code=code, not_running_reason=reason, not_running_at=when)
    conn.execute(update(_table).where(_table.c.installation_id == installation).values(values))
    return True


def _set_deadline(conn: Connection, seconds: float) -> None:
    if conn.dialect.name == "postgresql":
        ms = int(seconds * 1000)
        conn.exec_driver_sql(f"SET LOCAL statement_timeout = {ms}")
        conn.exec_driver_sql(f"SET LOCAL lock_timeout = {ms}")
    elif conn.dialect.name == "sqlite":
        conn.exec_driver_sql(f"PRAGMA busy_timeout={int(seconds * 1000)}")


def flush_deltas(engine: Engine, deltas: dict[str, HealthDelta],
                 deadline_s: float = FLUSH_DEADLINE_S) -> int:
    """Write ``deltas`` in one transaction; how many installations were written (the
    others no longer exist). Raises when the database refused or the deadline passed."""
    written = 0
    with engine.connect() as conn:
        sqlite_db = conn.dialect.name == "sqlite"
        try:
            with conn.begin():
                _set_deadline(conn, deadline_s)
                for installation in sorted(deltas):
                    written += apply_delta(conn, installation, deltas[installation])
        finally:
            if sqlite_db:
                conn.exec_driver_sql(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    return written


class HealthSync:
    """Moves one ledger's deltas into the database for the installations ``owns`` accepts."""

    def __init__(self, engine: Engine, ledger: HealthLedger, owns: Callable[[str], bool], *,
                 interval: float = FLUSH_INTERVAL_S, deadline: float = FLUSH_DEADLINE_S):
        self.engine = engine
        self.ledger = ledger
        self.owns = owns
        self.interval = interval
        self.deadline = deadline
        #: flushes that failed (their deltas were kept)
        self.failed_flushes = 0
        self._flushing = threading.Lock()
        #: the flush under way carries a tripped breaker or a failed start
        self._urgent_in_flight = False
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        ledger.wake = self._wake.set
        ref = weakref.ref(self)
        # a process that exits normally (gunicorn's graceful stop, Ctrl-C) flushes first
        atexit.register(lambda: (lambda s: s.stop() if s is not None else None)(ref()))

    # -- flushing -----------------------------------------------------------------------

    def flush(self) -> bool:
        """Write everything pending now; ``False`` when the database refused (the deltas
        are kept for the next flush)."""
        with self._flushing:
            self._urgent_in_flight = self.ledger.urgent()
            try:
                return self._flush()
            finally:
                self._urgent_in_flight = False

    def _flush(self) -> bool:
        deltas = self.ledger.take(self.owns)
        if not deltas:
            return True
        try:
            flush_deltas(self.engine, deltas, self.deadline)
        except Exception as exc:
            self.failed_flushes += 1
            self.ledger.restore(deltas)
            log.error("could not write the health of %d installation(s), kept for the "
                      "next flush: %s", len(deltas),
                      str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            return False
        return True

    def flush_urgent(self) -> None:
        """Flush now when a breaker tripped or a start failed since the last flush; a
        flush under way (the thread's, woken by the same event) has committed on return."""
        # urgent() is read first: a flush sets _urgent_in_flight before it takes the deltas,
        # so one of the two is seen while that work is uncommitted. Otherwise a request
        # never waits for the thread.
        if self.ledger.urgent() or self._urgent_in_flight:
            self.flush()  # waits for a flush under way, then writes what is left

    # -- the background thread ----------------------------------------------------------

    def start(self) -> HealthSync:
        """Flush about every :attr:`interval` seconds from a daemon thread (idempotent)."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="gears-health-sync",
                                            daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # never let the thread die: the next round tries again
                log.exception("the health flush failed")

    def stop(self) -> None:
        """Stop the thread (waiting at most the flush deadline) and flush what is left."""
        self._stop.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(self.deadline + self.interval)
        self.flush()
