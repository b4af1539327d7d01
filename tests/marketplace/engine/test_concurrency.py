"""Ordinary engine concurrency, with real threads on SQLite and PostgreSQL: two batches
creating the same new profile or reusing an event id, two requests creating the same
segment. Each answer is a success, a counted duplicate or a 409 with the winner's state,
never a 5xx; the database ends with one profile, one event per id, one segment."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from marketplace.db import database
from marketplace.engine.models import CatalogItem, Event, Profile, Segment
from tests.marketplace.engine.conftest import auth

BASE = "/engine/v1/workspaces/shop"
THREADS = 4
ROUNDS = 8


def race(app: Flask, requests: list[Callable[[Any], Any]]) -> list[Any]:
    """Run each request in its own thread and client, released together."""
    barrier = threading.Barrier(len(requests))
    answers: list[Any] = [None] * len(requests)

    def run(i: int) -> None:
        client = app.test_client()
        barrier.wait()
        answers[i] = requests[i](client)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return answers


def count(app: Flask, model: Any, *where: Any) -> int:
    with database(app).sessionmaker() as s:
        return int(s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def test_same_new_profile_and_event_id_from_concurrent_batches(app, people):
    h = auth(people["ws_token"])
    for r in range(ROUNDS):
        user = f"new-user-{r}"

        def post(client: Any, i: int, user: str = user, r: int = r) -> Any:
            # every batch reuses the id "shared-r"; each also has an event of its own
            events = [{"id": f"shared-{r}", "user_id": user, "type": "view"},
                      {"id": f"own-{r}-{i}", "user_id": user, "type": "click"}]
            return client.post(f"{BASE}/events", headers=h, json={"events": events})

        answers = race(app, [lambda c, i=i: post(c, i) for i in range(THREADS)])
        assert [a.status_code for a in answers] == [200] * THREADS, \
            [(a.status_code, a.get_json()) for a in answers]
        bodies = [a.get_json() for a in answers]
        # the shared id is stored once and counted as a duplicate by every other batch
        assert sum(b["accepted"] for b in bodies) == THREADS + 1
        assert sum(b["duplicates"] for b in bodies) == THREADS - 1
        assert sum(b["profiles_created"] for b in bodies) == 1
        assert count(app, Profile, Profile.user_id == user) == 1
        assert count(app, Event, Event.event_id == f"shared-{r}") == 1
        assert count(app, Event, Event.user_id == user) == THREADS + 1


def test_same_new_profile_from_concurrent_batches(app, people):
    h = auth(people["ws_token"])
    for r in range(ROUNDS):
        user = f"fresh-{r}"

        def post(client: Any, i: int, user: str = user, r: int = r) -> Any:
            return client.post(f"{BASE}/events", headers=h, json={"events": [
                {"id": f"e-{r}-{i}", "user_id": user, "type": "view"}]})

        answers = race(app, [lambda c, i=i: post(c, i) for i in range(THREADS)])
        assert [a.status_code for a in answers] == [200] * THREADS, \
            [(a.status_code, a.get_json()) for a in answers]
        assert sum(a.get_json()["profiles_created"] for a in answers) == 1
        assert count(app, Profile, Profile.user_id == user) == 1
        assert count(app, Event, Event.user_id == user) == THREADS


def test_same_new_catalog_item_from_concurrent_requests(app, people):
    h = auth(people["ws_token"])
    for r in range(ROUNDS):
        item = f"sku-{r}"

        def put(client: Any, i: int, item: str = item) -> Any:
            return client.put(f"{BASE}/catalog/items", headers=h, json={"items": [
                {"id": item, "title": f"writer {i}", "price": i}]})

        answers = race(app, [lambda c, i=i: put(c, i) for i in range(THREADS)])
        assert [a.status_code for a in answers] == [200] * THREADS, \
            [(a.status_code, a.get_json()) for a in answers]
        assert count(app, CatalogItem, CatalogItem.item_id == item) == 1


def test_same_new_segment_from_concurrent_requests(app, people):
    h = auth(people["ws_token"])
    for r in range(ROUNDS):
        name = f"buyers-{r}"

        def put(client: Any, i: int, name: str = name) -> Any:
            rule = {"field": "traits.orders", "op": ">=", "value": i}
            return client.put(f"{BASE}/segments/{name}", headers=h,
                              json={"title": f"writer {i}", "rule": rule})

        answers = race(app, [lambda c, i=i: put(c, i) for i in range(THREADS)])
        statuses = [a.status_code for a in answers]
        assert set(statuses) <= {200, 409} and 200 in statuses, \
            [(a.status_code, a.get_json()) for a in answers]
        for a in answers:
            if a.status_code == 409:
                error = a.get_json()["error"]
                assert error["code"] == "conflict"
                assert error["current"]["name"] == name
        assert count(app, Segment, Segment.name == name) == 1
        stored = app.test_client().get(f"{BASE}/segments/{name}", headers=h).get_json()
        assert stored["title"] in {f"writer {i}" for i in range(THREADS)}


@pytest.fixture(autouse=True)
def _no_runtime_needed(app):
    """These races need no gear: nothing here may start a worker."""
    from marketplace.engine import get_engine

    manager = get_engine(app)
    yield
    assert manager._runtime is None
