"""The lifecycle outbox (``engine_outbox``): rows written in the change's own transaction,
claimed by exactly one node, in order per installation, retried when a claim runs out,
on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from marketplace.accounts import create_token
from marketplace.blobs import get_blob_store
from marketplace.db import database, utcnow
from marketplace.engine.lifecycle import Lifecycle
from marketplace.errors import MarketplaceError
from marketplace.registry import publish as publishing
from marketplace.registry import states
from marketplace.workspaces import install, set_enabled, uninstall, update_config, upgrade
from marketplace.workspaces.outbox import EngineEvent, EventKind, claim, finish, pending

SCHEMA = {"type": "object", "properties": {
    "api_key": {"type": "string", "format": "secret"}, "label": {"type": "string"}}}


@pytest.fixture
def people(make_user, make_publisher, make_workspace) -> dict[str, Any]:
    dev = make_user(role="developer")
    admin = make_user(role="admin")
    member = make_user(role="business")
    make_publisher(name="acme", owner=dev)
    ws = make_workspace(member=member, name="shop")
    return {"dev": dev, "admin": admin, "member": member, "ws": ws}


@pytest.fixture
def release(app, session, people, make_gear_archive):
    _, token = create_token(session, people["dev"], ["publish:acme"])
    session.commit()

    def make(name: str = "acme/hello", version: str = "1.0.0", **overrides: Any):
        data = make_gear_archive(name, version, **overrides)
        row = publishing.publish(session, get_blob_store(app),
                                 publishing.Upload(data=data, user=people["dev"], token=token))
        states.review(session, people["admin"], row, approve=True, reason=None)
        return row

    return make


@pytest.fixture
def quiet(app):
    """No in-process drain: rows stay for the test to read, as they do for a web server
    whose engine runs in nodes of its own."""
    lifecycle = app.extensions["gears_engine_lifecycle"]
    lifecycle.disconnect()
    yield
    lifecycle.connect()


def rows(session) -> list[EngineEvent]:
    session.expire_all()
    return list(session.scalars(select(EngineEvent).order_by(EngineEvent.id)))


def test_every_change_writes_its_row_in_the_same_transaction(app, session, people, release,
                                                              quiet):
    release(config_schema=SCHEMA)
    release(version="1.1.0", config_schema=SCHEMA)
    with pytest.raises(MarketplaceError):  # refused: nothing committed, no row
        install(session, people["ws"], "acme/hello", version_spec="9.9.9", consent=True,
                actor=people["member"])
    assert rows(session) == []

    inst = install(session, people["ws"], "acme/hello", version_spec="1.0.0",
                   config={"api_key": "outbox-secret-value"}, consent=True,
                   actor=people["member"])
    upgrade(session, inst, version_spec="1.1.0", actor=people["member"])
    update_config(session, inst, {"label": "x"}, people["member"])
    set_enabled(session, inst, False, people["member"])
    iid = inst.id
    uninstall(session, inst, people["member"])

    found = rows(session)
    assert [r.kind for r in found] == [EventKind.installed, EventKind.changed,
                                        EventKind.changed, EventKind.changed,
                                        EventKind.uninstalled]
    assert {r.installation_id for r in found} == {iid}
    assert [r.version for r in found] == ["1.0.0", "1.1.0", "1.1.0", "1.1.0", "1.1.0"]
    last = found[-1]
    assert last.config == {"label": "x"}
    assert last.secrets_encrypted and "outbox-secret-value" not in last.secrets_encrypted
    from marketplace.workspaces.secrets import box_for

    assert box_for(session).decrypt(last.secrets_encrypted) == {
        "api_key": "outbox-secret-value"}
    assert all(r.secrets_encrypted is None and r.config is None for r in found[:-1])


def test_an_embedded_engine_drains_the_outbox_at_once(app, session, people, release):
    release()
    inst = install(session, people["ws"], "acme/hello", consent=True, actor=people["member"])
    set_enabled(session, inst, False, people["member"])
    uninstall(session, inst, people["member"])
    assert pending(session) == 0
    done = app.extensions["gears_engine_lifecycle"].done
    assert (done["installed"], done["changed"], done["uninstalled"]) == (1, 1, 1)


def _add(session, n: int, *, same_installation: bool = False) -> list[int]:
    made = [EngineEvent(kind=EventKind.changed,
                        installation_id="i-same" if same_installation else f"i-{k:04d}",
                        workspace="shop", gear="acme/hello", version="1.0.0")
            for k in range(n)]
    session.add_all(made)
    session.commit()
    return [r.id for r in made]


def test_two_claimers_racing_take_each_row_exactly_once(app, session, quiet):
    ids = _add(session, 120)
    maker = database(app).sessionmaker
    barrier = threading.Barrier(2)
    taken: dict[str, list[int]] = {"a": [], "b": []}
    errors: list[BaseException] = []

    def run(node: str) -> None:
        try:
            barrier.wait(timeout=30)
            while True:
                with maker() as own:
                    got = claim(own, node, limit=7)
                    if not got:
                        return
                    for row in got:
                        taken[node].append(row.id)
                        assert finish(own, row, node)
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in taken]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert not set(taken["a"]) & set(taken["b"])
    assert sorted(taken["a"] + taken["b"]) == ids
    assert pending(session) == 0


def test_two_lifecycles_act_on_each_row_once(app, session, quiet):
    """Two nodes draining one database: every ``changed`` row retires a worker once."""
    from marketplace.engine import get_engine

    ids = _add(session, 60)
    seen: list[tuple[str, int]] = []
    lock = threading.Lock()
    nodes = [Lifecycle(get_engine(app), node=f"node-{k}") for k in range(2)]
    for lc in nodes:
        def changed(event: EngineEvent, name: str = lc.node) -> None:
            with lock:
                seen.append((name, event.id))
        lc.changed = changed  # type: ignore[method-assign]
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def run(lc: Lifecycle) -> None:
        try:
            barrier.wait(timeout=30)
            lc.drain()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(lc,)) for lc in nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert sorted(i for _, i in seen) == ids
    assert sum(lc.done["changed"] for lc in nodes) == len(ids)
    assert pending(session) == 0


def test_a_dead_nodes_claim_runs_out_and_another_node_takes_the_row(app, session, quiet):
    [event_id] = _add(session, 1)
    now = utcnow()
    with database(app).sessionmaker() as own:
        assert [r.id for r in claim(own, "dies", lease=60, now=now)] == [event_id]
        assert claim(own, "other", now=now + timedelta(seconds=30)) == []
        again = claim(own, "other", now=now + timedelta(seconds=61))
        assert [r.id for r in again] == [event_id] and again[0].attempts == 2
        assert not finish(own, again[0], "dies")  # the dead node's late finish does nothing
        assert finish(own, again[0], "other")
    assert pending(session) == 0


def test_one_installations_rows_are_taken_in_order(app, session, quiet):
    first, second = _add(session, 2, same_installation=True)
    with database(app).sessionmaker() as own:
        got = claim(own, "a")
        assert [r.id for r in got] == [first]
        assert claim(own, "b") == []  # the second waits for the first to be done
        finish(own, got[0], "a")
        assert [r.id for r in claim(own, "b")] == [second]
