"""State changes two people make at once, through a real multi-worker server on SQLite and
PostgreSQL: of concurrent conflicting actions exactly one wins, the others get ``409`` (or
``404`` for something already gone) with the state now, and derived counts never drift."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from sqlalchemy import create_engine, text

from marketplace.db import normalize_url
from tests.fixtures.app import postgres_schema_url
from tests.reliability.load import prepare
from tests.sdk.malicious import gear_zip

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

ROUNDS = 4


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_settings(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    # Vetting stays queued (no inline thread): versions stay pending for the reviews.
    settings = {"GEARS_VETTING_INLINE_THREAD": "0"}
    if request.param == "sqlite":
        yield settings
        return
    with postgres_schema_url() as url:
        yield {**settings, "GEARS_DATABASE_URL": url}


def race(calls: list[Callable[[requests.Session], requests.Response]]
         ) -> list[tuple[int, dict[str, Any]]]:
    """Run every call in its own thread, released at the same instant."""
    barrier = threading.Barrier(len(calls))
    results: list[tuple[int, dict[str, Any]]] = []
    lock = threading.Lock()

    def run(call: Callable[[requests.Session], requests.Response]) -> None:
        http = requests.Session()
        barrier.wait()
        resp = call(http)
        body = resp.json() if resp.content else {}
        with lock:
            results.append((resp.status_code, body))

    threads = [threading.Thread(target=run, args=(c,)) for c in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def scalar(reg: Any, sql: str, **params: Any) -> Any:
    """One value straight from the registry's database."""
    engine = create_engine(normalize_url(reg.env["GEARS_DATABASE_URL"]))
    try:
        with engine.connect() as conn:
            return conn.execute(text(sql), params).scalar()
    finally:
        engine.dispose()


class Client:
    def __init__(self, url: str, tokens: dict[str, str]) -> None:
        self.url, self.tokens = url, tokens

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def publish(self, name: str, version: str) -> None:
        resp = requests.post(f"{self.url}/api/v1/gears", headers=self.auth("dev"),
                             files={"file": ("g.gear", gear_zip(manifest={
                                 "name": name, "version": version}))}, timeout=60)
        assert resp.status_code == 201, resp.text

    def review(self, name: str, version: str, action: str
               ) -> Callable[[requests.Session], requests.Response]:
        body = {"reason": "not this one"} if action == "reject" else {}
        return lambda http: http.post(
            f"{self.url}/api/v1/admin/gears/{name}/{version}/{action}", json=body,
            headers=self.auth("admin"), timeout=60)


def test_concurrent_reviews_have_one_winner(database_settings, live_registry):
    reg = live_registry(**database_settings)
    target = prepare(reg)
    api = Client(reg.start(workers=3), {"dev": target.dev_token, "admin": target.admin_token})
    for round_ in range(ROUNDS):
        mixed, same = f"1.0.{round_}", f"2.0.{round_}"
        api.publish("acme/review-race", mixed)
        api.publish("acme/review-race", same)
        cases = [(mixed, ["approve", "reject", "approve", "reject"]),
                 (same, ["approve"] * 4)]
        for version, actions in cases:
            results = race([api.review("acme/review-race", version, a) for a in actions])
            assert sorted(s for s, _ in results) == [200, 409, 409, 409], results
            winner = next(b for s, b in results if s == 200)
            for status, body in results:
                if status == 409:
                    assert body["error"]["code"] == "invalid_state"
                    assert body["error"]["current"]["status"] == winner["status"]
            stored = requests.get(f"{api.url}/api/v1/gears/acme/review-race/{version}",
                                  headers=api.auth("admin"), timeout=10).json()
            assert stored["status"] == winner["status"]
            target_id = f"acme/review-race@{version}"
            reviews = scalar(reg, "SELECT count(*) FROM audit_entries WHERE target_id = :t AND "
                             "action IN ('version.approve', 'version.reject')", t=target_id)
            assert reviews == 1, f"{target_id} reviewed {reviews} times"
            signed = scalar(reg, "SELECT count(*) FROM version_signatures s JOIN gear_versions v "
                            "ON v.id = s.version_id JOIN gears g ON g.id = v.gear_id WHERE "
                            "g.name = 'acme/review-race' AND v.version = :v", v=version)
            if stored["status"] == "approved":
                assert stored["review_reason"] is None and signed == 1
            else:
                assert stored["review_reason"] == "not this one" and signed == 0
    listed = scalar(reg, "SELECT listed FROM gears WHERE name = 'acme/review-race'")
    gear = requests.get(f"{api.url}/api/v1/gears/acme/review-race", timeout=10)
    assert bool(listed) == (gear.status_code == 200)


def test_concurrent_yanks_and_quarantines_have_one_winner(database_settings, live_registry):
    reg = live_registry(**database_settings)
    target = prepare(reg)
    api = Client(reg.start(workers=3), {"dev": target.dev_token, "admin": target.admin_token})
    api.publish("acme/yank-race", "1.0.0")
    assert api.review("acme/yank-race", "1.0.0", "approve")(requests.Session()).ok
    base = f"{api.url}/api/v1/gears/acme/yank-race/1.0.0"
    for action, who in [("yank", "dev"), ("unyank", "dev")]:
        results = race([lambda http, a=action, w=who: http.post(
            f"{base}/{a}", json={"reason": "broken"}, headers=api.auth(w), timeout=60)] * 4)
        assert sorted(s for s, _ in results) == [200, 409, 409, 409], results
    quarantine = f"{api.url}/api/v1/admin/gears/acme/yank-race/1.0.0/quarantine"
    results = race([lambda http: http.post(quarantine, json={"reason": "malware"},
                                           headers=api.auth("admin"), timeout=60)] * 4)
    assert sorted(s for s, _ in results) == [200, 409, 409, 409], results
    actions = scalar(reg, "SELECT count(*) FROM audit_entries WHERE target_id = "
                     "'acme/yank-race@1.0.0' AND action IN ('version.yank', 'version.unyank', "
                     "'version.quarantine')")
    assert actions == 3


def test_concurrent_uninstalls_run_once_and_keep_the_count(database_settings, live_registry):
    reg = live_registry(**database_settings)
    target = prepare(reg)
    api = Client(reg.start(workers=3), {"dev": target.dev_token, "admin": target.admin_token,
                                        "business": target.business_token})
    api.publish("acme/uninstall-race", "1.0.0")
    assert api.review("acme/uninstall-race", "1.0.0", "approve")(requests.Session()).ok
    # Installed elsewhere too (an admin may manage any workspace): the count must stay 1.
    reg.marketplace("create-workspace", "mall", "--member", "biz@shop.test")
    installs = f"{api.url}/api/v1/workspaces/%s/installations"
    other = requests.post(installs % "mall", json={"gear": "acme/uninstall-race",
                                                     "consent": True},
                          headers=api.auth("admin"), timeout=60)
    assert other.status_code == 201, other.text
    for _ in range(ROUNDS):
        made = requests.post(installs % "shop", json={"gear": "acme/uninstall-race",
                                                        "consent": True},
                             headers=api.auth("business"), timeout=60)
        assert made.status_code == 201, made.text
        one = f"{installs % 'shop'}/{made.json()['id']}"
        results = race([lambda http, one=one: http.delete(
            one, headers=api.auth("business"), timeout=60)] * 6)
        statuses = sorted(s for s, _ in results)
        assert statuses.count(204) == 1 and set(statuses) <= {204, 404, 409}, results
        gear = requests.get(f"{api.url}/api/v1/gears/acme/uninstall-race", timeout=10).json()
        assert gear["install_count"] == 1
        uninstalls = scalar(reg, "SELECT count(*) FROM audit_entries WHERE action = "
                            "'installation.uninstall' AND target_id = :t", t=made.json()["id"])
        assert uninstalls == 1


def test_an_admins_review_during_vetting_stands_against_auto_approval(tmp_path, clean_env):
    """The vetting worker read the version as pending; an admin rejected it meanwhile."""
    from sqlalchemy import select

    from marketplace.db import database
    from marketplace.models import GearVersion, VersionStatus
    from marketplace.registry import states
    from tests.reliability.conftest import build_registry

    reg = build_registry(f"sqlite:///{tmp_path / 'r.db'}", tmp_path)
    assert reg.publish(gear_zip(manifest={"name": "acme/vetted", "version": "1.0.0"})
                       ).status_code == 201
    signed: list[str] = []
    with database(reg.app).sessionmaker() as worker:
        stale = worker.scalar(select(GearVersion))
        assert stale.status is VersionStatus.pending
        rejected = reg.client.post("/api/v1/admin/gears/acme/vetted/1.0.0/reject",
                                   headers=reg.headers("admin"), json={"reason": "no"})
        assert rejected.status_code == 200
        states.auto_approve(worker, stale, reason="clean",
                            sign=lambda s, v: signed.append(v.version))
        worker.commit()
    stored = reg.client.get("/api/v1/gears/acme/vetted/1.0.0", headers=reg.headers("admin"))
    assert stored.get_json()["status"] == "rejected"
    assert stored.get_json()["review_reason"] == "no"
    assert signed == []
    database(reg.app).engine.dispose()
