"""PostgreSQL backends terminated under a real server (``pg_terminate_backend`` from a
second connection, as a failover or an operator would): every answer is the JSON error
shape or the true outcome, and a publish that committed is never reported as not made."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests
from sqlalchemy.engine import make_url

from tests.fixtures.app import _admin_conninfo, postgres_schema_url, postgres_url
from tests.reliability.load import prepare
from tests.reliability.test_races import scalar
from tests.sdk.malicious import gear_zip

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(300)]

PUBLISHERS, PUBLISHES_EACH = 3, 8


@pytest.fixture
def tagged_postgres() -> Iterator[tuple[str, str]]:
    """A fresh schema's URL whose connections carry an ``application_name`` of their own,
    so the killer ends only this registry's backends (other tests share the server)."""
    with postgres_schema_url() as url:
        name = f"gears-kill-{uuid.uuid4().hex[:10]}"
        parsed = make_url(url)
        tagged = parsed.set(query={**parsed.query, "application_name": name})
        yield tagged.render_as_string(hide_password=False), name


class Killer(threading.Thread):
    """Terminates the tagged backends every few tens of milliseconds until stopped."""

    def __init__(self, application_name: str) -> None:
        super().__init__(daemon=True)
        self.name_, self.stop, self.kills = application_name, threading.Event(), 0

    def run(self) -> None:
        import psycopg

        rng = random.Random(7)
        with psycopg.connect(_admin_conninfo(postgres_url()), autocommit=True) as conn:
            while not self.stop.is_set():
                rows = conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = %s AND pid <> pg_backend_pid()",
                    (self.name_,)).fetchall()
                self.kills += sum(1 for (ok,) in rows if ok)
                time.sleep(rng.uniform(0.1, 1.0))


@dataclass
class Answer:
    what: str
    status: int
    content_type: str
    body: str


def call(answers: list[Answer], what: str, send) -> requests.Response | None:
    try:
        resp = send()
    except requests.RequestException as exc:
        answers.append(Answer(what, 0, "", repr(exc)))
        return None
    answers.append(Answer(what, resp.status_code, resp.headers.get("Content-Type", ""),
                          resp.text))
    return resp


def test_terminated_backends_give_json_503s_or_the_true_outcome(tagged_postgres, live_registry):
    url, application_name = tagged_postgres
    reg = live_registry(GEARS_DATABASE_URL=url, GEARS_VETTING_INLINE_THREAD="0")
    target = prepare(reg)
    base = reg.start(workers=2)
    auth = {"Authorization": f"Bearer {target.dev_token}"}
    answers: list[Answer] = []
    published: dict[str, Answer] = {}
    lock = threading.Lock()

    def publisher(n: int) -> None:
        http = requests.Session()
        for i in range(PUBLISHES_EACH):
            version = f"1.{n}.{i}"
            data = gear_zip(manifest={"name": "acme/killed", "version": version})
            mine: list[Answer] = []
            call(mine, "publish", lambda data=data: http.post(
                f"{base}/api/v1/gears", headers=auth, files={"file": ("g.gear", data)},
                timeout=60))
            with lock:
                answers.extend(mine)
                published[version] = mine[-1]

    def reader(stop: threading.Event) -> None:
        http = requests.Session()
        while not stop.is_set():
            mine: list[Answer] = []
            call(mine, "search", lambda: http.get(f"{base}/api/v1/gears", timeout=30))
            call(mine, "whoami", lambda: http.get(f"{base}/api/v1/whoami", headers=auth,
                                                  timeout=30))
            with lock:
                answers.extend(mine)

    killer, stop_reading = Killer(application_name), threading.Event()
    killer.start()
    threads = [threading.Thread(target=publisher, args=(n,)) for n in range(PUBLISHERS)]
    read = threading.Thread(target=reader, args=(stop_reading,))
    read.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop_reading.set()
    read.join()
    killer.stop.set()
    killer.join()
    assert killer.kills > 0, "no backend was terminated: the test proved nothing"

    problems = []
    for a in answers:
        if a.status == 0 or (a.status >= 500 and a.status != 503):
            problems.append(f"{a.what}: {a.status} {a.body[:200]!r}")
        elif a.status >= 400 and "application/json" not in a.content_type:
            problems.append(f"{a.what}: {a.status} not JSON: {a.body[:200]!r}")
    stored = {v: scalar(reg, "SELECT count(*) FROM gear_versions v JOIN gears g ON "
                        "g.id = v.gear_id WHERE g.name = 'acme/killed' AND v.version = :v", v=v)
              for v in published}
    for version, a in published.items():
        if a.status == 201 and not stored[version]:
            problems.append(f"{version}: 201 but not stored")
        if a.status == 503 and stored[version] and "nothing was" in a.body:
            problems.append(f"{version}: committed, yet answered {a.body[:200]!r}")
    statuses = sorted({(a.what, a.status) for a in answers})
    assert not problems, f"{len(problems)} problems ({killer.kills} kills, {statuses}):\n" + \
        "\n".join(problems)
    print(f"{killer.kills} backends terminated; answers: {statuses}")
    # Once the killing stops, the registry serves again.
    assert requests.get(f"{base}/api/v1/whoami", headers=auth, timeout=30).status_code == 200
