"""A sync whose engine node died mid-way (killed, its run left ``running``) blocks the
connector's next sync only until it has been silent for ``STALE_RUN``; a long sync that
keeps reading pages keeps its claim however long it runs. Then the stale run is marked
failed with the reason, and a real sync beats at every page. SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from marketplace.db import database, utcnow
from marketplace.engine.connectors import STALE_RUN, _start_run
from marketplace.engine.models import SyncRun, SyncStatus
from marketplace.errors import MarketplaceError


def _left_running(app: Any, ws_id: int, started_ago: timedelta,
                  beat_ago: timedelta | None) -> int:
    now = utcnow()
    with database(app).sessionmaker() as s:
        run = SyncRun(workspace_id=ws_id, installation_id="conn1", trigger="schedule",
                      status=SyncStatus.running, started_at=now - started_ago,
                      heartbeat_at=None if beat_ago is None else now - beat_ago, stats={})
        s.add(run)
        s.commit()
        return run.id


def _start(app: Any, ws: Any) -> int:
    with database(app).sessionmaker() as s:
        return _start_run(s, s.merge(ws), "conn1", "manual").id


def test_a_silent_run_no_longer_blocks_the_next_sync(app, people):
    ws = people["ws"]
    dead = _left_running(app, ws.id, started_ago=STALE_RUN * 2, beat_ago=STALE_RUN * 2)
    new = _start(app, ws)
    with database(app).sessionmaker() as s:
        old = s.get(SyncRun, dead)
        assert old.status is SyncStatus.failed and old.finished_at is not None
        assert "stopped making progress" in old.error
        assert s.get(SyncRun, new).status is SyncStatus.running


def test_a_run_from_before_heartbeats_is_judged_by_its_start(app, people):
    _left_running(app, people["ws"].id, started_ago=STALE_RUN * 2, beat_ago=None)
    _start(app, people["ws"])


def test_a_long_run_that_keeps_beating_still_blocks(app, people):
    ws = people["ws"]
    alive = _left_running(app, ws.id, started_ago=timedelta(hours=3),
                          beat_ago=STALE_RUN / 10)
    with pytest.raises(MarketplaceError) as refused:
        _start(app, ws)
    assert refused.value.status == 409 and refused.value.code == "sync_running"
    with database(app).sessionmaker() as s:
        assert s.get(SyncRun, alive).status is SyncStatus.running
        assert len(s.scalars(select(SyncRun)).all()) == 1
