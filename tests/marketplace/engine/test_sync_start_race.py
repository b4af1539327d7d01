"""Two syncs of one connector started at once (two engine nodes, or two threads of one):
the check for a running sync and the new run's insert happen under the installation's row
lock, so the second waits for the first's run and answers ``409 sync_running``. On
PostgreSQL, the database several nodes share; the interleaving is forced, not hoped for."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select, text

from marketplace.db import database
from marketplace.engine.connectors import _start_run
from marketplace.engine.models import SyncRun, SyncStatus
from marketplace.errors import MarketplaceError
from tests.fixtures.app import postgres_schema_url
from tests.marketplace.engine.conftest import write_gear

pytestmark = pytest.mark.postgres

NOOP = """
from gears_sdk import hookimpl


@hookimpl
def gear_on_event(event, profile, config, ctx):
    return None
"""


@pytest.fixture
def db_url() -> Iterator[str]:
    """PostgreSQL only (skips when unreachable): SQLite ignores row locks."""
    with postgres_schema_url() as url:
        yield url


def test_second_sync_started_meanwhile_waits_and_is_refused(app, people, publish, install,
                                                            tmp_path):
    iid = install(publish(write_gear(tmp_path / "g", "acme/noop", "extension",
                                     ["gear_on_event"], NOOP)))
    sessions = database(app).sessionmaker
    first, second = sessions(), sessions()
    at_commit, release = threading.Event(), threading.Event()
    real_commit = first.commit

    def held_commit() -> None:  # the first run is inserted, not yet committed
        at_commit.set()
        release.wait(60)
        real_commit()

    first.commit = held_commit  # type: ignore[method-assign]
    second_pid = second.scalar(text("SELECT pg_backend_pid()"))
    outcome: dict[str, Any] = {}

    def start(name: str, session: Any) -> None:
        workspace = session.merge(people["ws"])
        try:
            outcome[name] = _start_run(session, workspace, iid, "manual").id
        except MarketplaceError as exc:
            outcome[name] = exc.code

    one = threading.Thread(target=start, args=("first", first))
    one.start()
    assert at_commit.wait(60)
    two = threading.Thread(target=start, args=("second", second))
    two.start()
    deadline = time.monotonic() + 60
    with sessions() as probe:
        while two.is_alive() and time.monotonic() < deadline:
            waiting = probe.scalar(text(
                "SELECT wait_event_type FROM pg_stat_activity WHERE pid = :pid"),
                {"pid": second_pid})
            probe.rollback()
            if waiting == "Lock":
                break
            time.sleep(0.05)
    release.set()
    one.join(60)
    two.join(60)
    first.close()
    second.close()
    assert isinstance(outcome["first"], int) and outcome["second"] == "sync_running", outcome
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(SyncRun).where(
            SyncRun.installation_id == iid, SyncRun.status == SyncStatus.running)) == 1
