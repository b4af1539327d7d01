"""A bounded mixed-load run against a registry on loopback, checking every answer.

Threads repeat a weighted mix of what real clients do — publish (and approve),
download (verifying sha256 against what was published and against
``X-Gears-Sha256``), search, whoami, install and uninstall into a workspace —
for a fixed number of seconds, then stop. Every answer is classified:

* expected: the operation's success status, or a documented 4xx the operation
  can meet under concurrency (``409`` when two installs race, say);
* an error: any 5xx, any other status, a connection failure or timeout;
* corrupted: a download whose bytes do not hash to what was published.

Use it from tests (:func:`run_load` on a started registry) or on its own::

    python -m tests.reliability.load --seconds 60 --threads 16 [--workers 4] [--json]

which starts a registry on loopback in a temporary directory first. Traffic
goes only to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

#: Relative weights of the operations in the mix.
DEFAULT_MIX = {"publish": 2, "download": 6, "search": 4, "whoami": 1, "install": 2}
#: Statuses each operation may meet without anything being wrong.
EXPECTED = {
    "publish": {201},
    "approve": {200},
    "download": {200},
    "search": {200},
    "whoami": {200},
    "install": {201, 409},  # 409: another thread installed the same gear first
    "uninstall": {204, 404},
}


@dataclass
class Target:
    """A running registry and the tokens the mix needs (publish:acme, admin, workspace:shop)."""

    url: str
    dev_token: str
    admin_token: str
    business_token: str
    workspace: str = "shop"
    publisher: str = "acme"

    def require_loopback(self) -> None:
        host = urlsplit(self.url).hostname
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"load runs only against loopback, not {host!r}")


@dataclass
class LoadReport:
    seconds: float
    threads: int
    counts: Counter[str] = field(default_factory=Counter)
    statuses: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    errors: list[str] = field(default_factory=list)
    corrupted: list[str] = field(default_factory=list)
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    @property
    def requests(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> dict[str, Any]:
        ops = {}
        for op, lat in sorted(self.latencies.items()):
            lat = sorted(lat)
            ops[op] = {
                "count": self.counts[op],
                "statuses": dict(sorted(self.statuses[op].items())),
                "p50_ms": round(statistics.median(lat) * 1000, 1),
                "p95_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.95))] * 1000, 1),
                "max_ms": round(lat[-1] * 1000, 1),
            }
        return {"seconds": round(self.seconds, 1), "threads": self.threads,
                "requests": self.requests,
                "requests_per_s": round(self.requests / self.seconds, 1) if self.seconds else 0,
                "errors": len(self.errors), "corrupted_downloads": len(self.corrupted),
                "operations": ops, "first_errors": self.errors[:10]}


class _Shared:
    """What the threads know about: published versions (with their sha256) and installs."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.approved: list[tuple[str, str, str]] = []  # (gear, version, sha256)
        self.seq = itertools.count(1)


def _archive(name: str, version: str, filler: int) -> bytes:
    from tests.sdk.malicious import Member, gear_zip

    payload = random.Random(f"{name}@{version}").randbytes(filler)
    return gear_zip(Member("data.bin", payload), manifest={"name": name, "version": version})


class _Worker:
    def __init__(self, target: Target, shared: _Shared, report: LoadReport, rng: random.Random,
                 filler: int, lock: threading.Lock) -> None:
        self.t, self.shared, self.report, self.rng = target, shared, report, rng
        self.filler, self.lock = filler, lock
        self.http = requests.Session()

    def _auth(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    def _record(self, op: str, started: float, resp: requests.Response | None,
                problem: str | None = None) -> bool:
        elapsed = time.monotonic() - started
        with self.lock:
            self.report.counts[op] += 1
            self.report.latencies[op].append(elapsed)
            if resp is not None:
                self.report.statuses[op][resp.status_code] += 1
            if problem is None and resp is not None and resp.status_code not in EXPECTED[op]:
                problem = f"{op}: HTTP {resp.status_code} {resp.text[:200]}"
            if problem:
                self.report.errors.append(problem)
        return problem is None

    def _send(self, op: str, method: str, path: str, **kw: Any) -> requests.Response | None:
        started = time.monotonic()
        try:
            resp = self.http.request(method, self.t.url + path, timeout=60, **kw)
        except requests.RequestException as exc:
            self._record(op, started, None, f"{op}: {type(exc).__name__}: {exc}")
            return None
        self._record(op, started, resp)
        return resp

    def publish(self) -> None:
        gear = f"{self.t.publisher}/load-{self.rng.randrange(4)}"
        version = f"1.{next(self.shared.seq)}.0"
        data = _archive(gear, version, self.filler)
        resp = self._send("publish", "POST", "/api/v1/gears", headers=self._auth(self.t.dev_token),
                          files={"file": ("g.gear", data)})
        if resp is None or resp.status_code != 201:
            return
        ok = self._send("approve", "POST", f"/api/v1/admin/gears/{gear}/{version}/approve",
                        headers=self._auth(self.t.admin_token))
        if ok is not None and ok.status_code == 200:
            with self.shared.lock:
                self.shared.approved.append((gear, version, hashlib.sha256(data).hexdigest()))

    def download(self) -> None:
        with self.shared.lock:
            if not self.shared.approved:
                return self.search()
            gear, version, sha = self.rng.choice(self.shared.approved)
        resp = self._send("download", "GET", f"/api/v1/gears/{gear}/{version}/download")
        if resp is not None and resp.status_code == 200:
            got = hashlib.sha256(resp.content).hexdigest()
            header = resp.headers.get("X-Gears-Sha256") or \
                (resp.history[0].headers.get("X-Gears-Sha256") if resp.history else None)
            if got != sha or header != sha:
                with self.lock:
                    self.report.corrupted.append(f"{gear} {version}: got {got}, header {header}, "
                                                 f"published {sha}")
        return None

    def search(self) -> None:
        q = self.rng.choice(["load", "hello", "", "zzz"])
        self._send("search", "GET", f"/api/v1/gears?q={q}&per_page=20")

    def whoami(self) -> None:
        self._send("whoami", "GET", "/api/v1/whoami", headers=self._auth(self.t.dev_token))

    def install(self) -> None:
        with self.shared.lock:
            if not self.shared.approved:
                return self.search()
            gear = self.rng.choice(self.shared.approved)[0]
        base = f"/api/v1/workspaces/{self.t.workspace}/installations"
        auth = self._auth(self.t.business_token)
        resp = self._send("install", "POST", base, headers=auth,
                          json={"gear": gear, "consent": True})
        if resp is not None and resp.status_code == 201:
            self._send("uninstall", "DELETE", f"{base}/{resp.json()['id']}", headers=auth)
        return None


def run_load(target: Target, *, seconds: float = 10.0, threads: int = 8,
             mix: dict[str, int] | None = None, filler: int = 16_000,
             seed: int = 1) -> LoadReport:
    """Run the mix for ``seconds`` with ``threads`` threads; returns the report."""
    target.require_loopback()
    mix = dict(mix or DEFAULT_MIX)
    report = LoadReport(seconds=0.0, threads=threads)
    shared, lock = _Shared(), threading.Lock()
    deadline = time.monotonic() + seconds
    ops, weights = list(mix), list(mix.values())

    def loop(n: int) -> None:
        rng = random.Random(seed * 1000 + n)
        w = _Worker(target, shared, report, rng, filler, lock)
        w.publish()  # every thread starts with something to download
        while time.monotonic() < deadline:
            getattr(w, rng.choices(ops, weights)[0])()

    started = time.monotonic()
    pool = [threading.Thread(target=loop, args=(n,), daemon=True) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=seconds + 120)
    report.seconds = time.monotonic() - started
    return report


def prepare(reg: Any) -> Target:
    """Accounts and tokens on a :class:`tests.fixtures.live.LiveRegistry` after ``init``
    (before ``start``). Done in this process through the account functions the operator
    CLI calls, against the registry's own database: much faster than one CLI run each."""
    from marketplace import create_app
    from marketplace.accounts import (
        create_publisher,
        create_token,
        create_user,
        create_workspace,
        get_user,
    )
    from marketplace.db import database, session_scope

    env = reg.env
    app = create_app({"DATABASE_URL": env["GEARS_DATABASE_URL"],
                      "STORAGE_URL": env["GEARS_STORAGE_URL"],
                      "SECRET_KEY": env["GEARS_SECRET_KEY"],
                      "INSTANCE_PATH": env["GEARS_INSTANCE_PATH"]})
    try:
        with session_scope(app) as s:
            dev = create_user(s, "dev@acme.test", "developer")
            biz = create_user(s, "biz@shop.test", "business")
            create_publisher(s, "acme", dev.email)
            create_workspace(s, "shop", biz.email)
            s.flush()
            s.refresh(dev)
            s.refresh(biz)
            admin = get_user(s, env["GEARS_ADMIN_EMAIL"])
            tokens = [create_token(s, user, [scope], name="load")[0]
                      for user, scope in ((dev, "publish:acme"), (admin, "admin"),
                                          (biz, "workspace:shop"))]
    finally:
        database(app).engine.dispose()
    return Target(url="", dev_token=tokens[0], admin_token=tokens[1], business_token=tokens[2])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--workers", type=int, default=4, help="registry server workers")
    parser.add_argument("--database-url", help="GEARS_DATABASE_URL (default: SQLite)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)

    from tests.fixtures.live import LiveRegistry, registry_env

    with tempfile.TemporaryDirectory(prefix="gears-load-") as tmp:
        settings = {"GEARS_DATABASE_URL": args.database_url} if args.database_url else {}
        reg = LiveRegistry(Path(tmp), registry_env(Path(tmp), **settings))
        reg.marketplace("init")
        target = prepare(reg)
        try:
            target.url = reg.start(workers=args.workers)
            report = run_load(target, seconds=args.seconds, threads=args.threads)
        finally:
            reg.stop()
    summary = report.summary()
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"{summary['requests']} requests in {summary['seconds']} s "
              f"({summary['requests_per_s']}/s) from {args.threads} threads; "
              f"{summary['errors']} errors, {summary['corrupted_downloads']} corrupted downloads")
        for op, s in summary["operations"].items():
            print(f"  {op:<10} {s['count']:>6}  p50 {s['p50_ms']:>7} ms  p95 {s['p95_ms']:>7} ms  "
                  f"max {s['max_ms']:>7} ms  {s['statuses']}")
        for line in summary["first_errors"]:
            print(f"  error: {line}")
    return 1 if summary["errors"] or summary["corrupted_downloads"] else 0


if __name__ == "__main__":
    sys.exit(main())
