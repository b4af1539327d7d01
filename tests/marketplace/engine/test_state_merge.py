"""``ctx.state`` written by operations that ran at the same time (two request threads, two
engine nodes): each operation's keys are replayed on the row under a lock, so different
keys are all kept, and a merge past the limit is refused whole, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from marketplace.db import database
from marketplace.engine.models import InstallationState
from marketplace.engine.state import DbStateStore, StagedState, staged_state, write_staged


def _commit(app: Any, staged: StagedState) -> list[tuple[str, str, str, str]]:
    with database(app).sessionmaker() as session:
        refused = write_staged(session, staged)
        session.commit()
    return refused


def _stored(app: Any, installation: str) -> dict[str, Any]:
    with database(app).sessionmaker() as session:
        row = session.get(InstallationState, installation)
        return dict(row.data) if row is not None else {}


def test_two_operations_keep_each_others_keys(app, people):
    store = DbStateStore(database(app).sessionmaker, "inst-merge", people["ws"].id, 1,
                         "acme/counter")
    store.set("base", 1)
    store.set("old", 1)
    # both operations read the state before either wrote it
    with staged_state() as first:
        store.set("a", 1)
        store.delete("old")
        assert store.keys() == ["a", "base"]
    with staged_state() as second:
        store.set("b", 2)
        store.set("base", 3)
        assert store.keys() == ["b", "base", "old"]
    assert _commit(app, first) == []
    assert _commit(app, second) == []
    assert _stored(app, "inst-merge") == {"a": 1, "b": 2, "base": 3}
    assert store.get("a") == 1 and store.get("old") is None


def test_a_merge_past_the_limit_is_refused_whole(app, people):
    store = DbStateStore(database(app).sessionmaker, "inst-full", people["ws"].id, 1,
                         "acme/counter")
    with staged_state() as first:
        store.set("a", "x" * 600)
    with staged_state() as second:
        store.set("b", "y" * 600)
        store.set("c", 1)
    assert _commit(app, first) == []
    refused = _commit(app, second)
    assert [(i, g, c) for i, g, c, _ in refused] == [("inst-full", "acme/counter", "state_full")]
    assert _stored(app, "inst-full") == {"a": "x" * 600}


def test_writes_outside_an_operation_merge_too(app, people):
    sessions = database(app).sessionmaker
    one = DbStateStore(sessions, "inst-direct", people["ws"].id, 1, "acme/counter")
    other = DbStateStore(sessions, "inst-direct", people["ws"].id, 1, "acme/counter")
    one.set("a", 1)
    other.set("b", 2)
    one.delete("a")
    assert _stored(app, "inst-direct") == {"b": 2}
