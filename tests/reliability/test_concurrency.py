"""Concurrency through a real multi-worker server: racing publishes of one version, and a
bounded mixed load with every answer checked.

The load run lasts ``GEARS_LOAD_SECONDS`` (10 by default) with
``GEARS_LOAD_THREADS`` threads (8); the long form is
``python -m tests.reliability.load --seconds 300``.
"""

from __future__ import annotations

import os
import threading

import pytest
import requests

from tests.fixtures.app import postgres_schema_url
from tests.reliability.load import prepare, run_load
from tests.sdk.malicious import gear_zip

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

RACERS = 6
ROUNDS = 3


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_settings(request):
    if request.param == "sqlite":
        yield {}
        return
    with postgres_schema_url() as url:
        yield {"GEARS_DATABASE_URL": url}


def test_racing_publishes_of_one_version_exactly_one_wins(database_settings, live_registry):
    # database_settings first: its schema must outlive the server (teardown runs in reverse).
    reg = live_registry(**database_settings)
    target = prepare(reg)
    url = reg.start(workers=3)
    auth = {"Authorization": f"Bearer {target.dev_token}"}
    admin = {"Authorization": f"Bearer {target.admin_token}"}

    for round_ in range(ROUNDS):
        version = f"1.0.{round_}"
        # Different bytes for the same name+version: only one may ever be stored.
        archives = [gear_zip(manifest={"name": "acme/race", "version": version,
                                       "summary": f"racer {i}"}) for i in range(RACERS)]
        barrier = threading.Barrier(RACERS)
        results: list[tuple[int, dict]] = []

        def race(data: bytes, barrier: threading.Barrier, results: list) -> None:
            session = requests.Session()
            barrier.wait()
            resp = session.post(f"{url}/api/v1/gears", headers=auth,
                                files={"file": ("g.gear", data)}, timeout=60)
            results.append((resp.status_code, resp.json()))

        threads = [threading.Thread(target=race, args=(a, barrier, results)) for a in archives]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        statuses = sorted(s for s, _ in results)
        assert statuses == [201] + [409] * (RACERS - 1), results
        assert all(b["error"]["code"] == "version_exists" for s, b in results if s == 409)
        winner = next(b for s, b in results if s == 201)
        stored = requests.get(f"{url}/api/v1/gears/acme/race/{version}", headers=admin,
                              timeout=10).json()
        assert stored["sha256"] == winner["sha256"]
    gear = requests.get(f"{url}/api/v1/gears/acme/race", headers=admin, timeout=10).json()
    assert sorted(v["version"] for v in gear["versions"]) == [f"1.0.{r}" for r in range(ROUNDS)]


def test_racing_publishes_of_one_precedence_exactly_one_wins(database_settings, live_registry):
    """``1.0.0+build.N`` are one version: racing archives that differ only in build
    metadata (and bytes) leave exactly one row, whoever wins."""
    reg = live_registry(**database_settings)
    target = prepare(reg)
    url = reg.start(workers=3)
    auth = {"Authorization": f"Bearer {target.dev_token}"}
    admin = {"Authorization": f"Bearer {target.admin_token}"}
    archives = [gear_zip(manifest={"name": "acme/build-race", "version": f"2.0.0+build.{i}",
                                   "summary": f"racer {i}"}) for i in range(RACERS)]
    barrier = threading.Barrier(RACERS)
    results: list[tuple[int, dict]] = []

    def race(data: bytes) -> None:
        session = requests.Session()
        barrier.wait()
        resp = session.post(f"{url}/api/v1/gears", headers=auth,
                            files={"file": ("g.gear", data)}, timeout=60)
        results.append((resp.status_code, resp.json()))

    threads = [threading.Thread(target=race, args=(a,)) for a in archives]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = sorted(s for s, _ in results)
    assert statuses == [201] + [409] * (RACERS - 1), results
    assert all(b["error"]["code"] == "version_exists" for s, b in results if s == 409)
    gear = requests.get(f"{url}/api/v1/gears/acme/build-race", headers=admin, timeout=10).json()
    assert len(gear["versions"]) == 1, gear["versions"]


def test_bounded_mixed_load_has_no_errors_and_no_corrupted_downloads(live_registry):
    reg = live_registry()
    target = prepare(reg)
    target.url = reg.start(workers=2)
    seconds = float(os.environ.get("GEARS_LOAD_SECONDS", "10"))
    threads = int(os.environ.get("GEARS_LOAD_THREADS", "8"))
    report = run_load(target, seconds=seconds, threads=threads)
    summary = report.summary()
    print(summary)
    assert not report.errors, summary
    assert not report.corrupted, summary
    for op in ("publish", "approve", "download", "search", "install"):
        assert report.counts[op] > 0, summary
    health = requests.get(f"{target.url}/healthz", timeout=10)
    assert health.status_code == 200
