"""The shared health row under concurrency and failure, on SQLite and PostgreSQL:
concurrent flushes from many threads (as from many processes) add up exactly, a flush
that cannot get its lock in time keeps its deltas for the next one, and the percentiles
come from the fixed-bucket histogram."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import text

from marketplace.db import database
from marketplace.engine.health_sync import HealthSync, flush_deltas
from marketplace.runtime.health import (
    LATENCY_BUCKETS_MS,
    Health,
    HealthLedger,
    histogram_percentile,
)
from marketplace.workspaces.models import InstallationHealth

THREADS, FLUSHES = 6, 15


@pytest.fixture
def installation(session, make_workspace, make_publisher) -> str:
    from marketplace.models import Gear, GearVersion, VersionStatus
    from marketplace.workspaces.models import Installation

    ws = make_workspace(name="shop")
    pub = make_publisher(name="acme")
    gear = Gear(publisher_id=pub.id, name="acme/hello", kind="template", title="Hello",
                summary="s", categories=[])
    session.add(gear)
    session.flush()
    session.add(GearVersion(gear_id=gear.id, version="1.0.0", sha256="0" * 64, size=1,
                            manifest={}, status=VersionStatus.approved))
    inst = Installation(workspace_id=ws.id, gear_id=gear.id, version="1.0.0",
                        constraint="1.0.0", config={}, consented_capabilities=[])
    session.add(inst)
    session.commit()
    return inst.id


def _row(session: Any, iid: str) -> InstallationHealth:
    session.expire_all()
    row = session.get(InstallationHealth, iid)
    assert row is not None
    return row


def test_concurrent_flushes_add_up_exactly(app, session, installation):
    """Threads flushing into the same (not yet existing) row at once: no lost update and
    no duplicate-key error, on either database."""
    engine = database(app).engine
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def node(n: int) -> None:
        try:
            start.wait(10)
            for i in range(FLUSHES):
                ledger = HealthLedger()
                health = Health(installation, threshold=10**6, ledger=ledger)
                health.success(3.0)
                health.failure(f"failure {n}.{i}", code=f"code{n % 2}", latency_ms=150.0)
                ledger.logged(installation, "info", f"line {n}.{i}")
                flush_deltas(engine, ledger.take())
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=node, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    row = _row(session, installation)
    total = THREADS * FLUSHES
    assert (row.calls, row.errors) == (2 * total, total)
    assert row.failures == {"code0": total // 2, "code1": total // 2}
    assert sum(row.latency_buckets) == 2 * total
    assert len(row.logs) == 20 and row.last_error.startswith("failure ")


def test_a_flush_that_misses_its_deadline_keeps_its_deltas(app, session, installation):
    engine = database(app).engine
    ledger = HealthLedger()
    sync = HealthSync(engine, ledger, lambda iid: True, deadline=0.5)
    health = Health(installation, ledger=ledger)
    health.success(1.0)
    assert sync.flush()
    for _ in range(3):
        health.success(1.0)

    blocker = engine.connect()
    try:  # another process holds the row (PostgreSQL) or the database's write lock (SQLite)
        if engine.dialect.name == "sqlite":
            blocker.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            blocker.execute(text("SELECT calls FROM installation_health "
                                 "WHERE installation_id = :i FOR UPDATE"), {"i": installation})
        assert sync.flush() is False
        assert sync.failed_flushes == 1 and ledger.pending() == 1
        health.success(1.0)  # counted meanwhile, after the failed flush's deltas
    finally:
        blocker.rollback()
        blocker.close()
    assert sync.flush() is True and ledger.pending() == 0
    assert _row(session, installation).calls == 5  # none lost, none counted twice


def test_background_thread_flushes_and_stop_flushes_what_is_left(app, session, installation):
    ledger = HealthLedger()
    sync = HealthSync(database(app).engine, ledger, lambda iid: True, interval=0.05).start()
    health = Health(installation, ledger=ledger)
    health.success(2.0)
    health.restarted()
    sync.stop()
    row = _row(session, installation)
    assert (row.calls, row.restarts) == (1, 1)


def test_percentiles_come_from_the_fixed_buckets():
    assert histogram_percentile([], 0.5) is None
    counts = [0] * (len(LATENCY_BUCKETS_MS) + 1)
    counts[2] = 98   # <= 5 ms
    counts[8] = 1    # <= 500 ms
    counts[-1] = 1   # slower than the last bound
    assert histogram_percentile(counts, 0.50) == 5.0
    assert histogram_percentile(counts, 0.99) == 500.0
    assert histogram_percentile(counts, 1.0) == LATENCY_BUCKETS_MS[-1]


def test_deltas_are_kept_in_order_when_put_back():
    ledger = HealthLedger()
    health = Health("i1", ledger=ledger)
    health.failure("first", code="a")
    taken = ledger.take()
    health.failure("second", code="b")
    ledger.logged("i1", "info", "x" * 10_000)
    ledger.restore(taken)
    merged = ledger.take()["i1"]
    assert (merged.calls, merged.errors, merged.codes) == (2, 2, {"a": 1, "b": 1})
    assert merged.last_error == "second" and len(merged.logs[0]["message"]) == 500
