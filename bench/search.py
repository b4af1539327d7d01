"""Catalog section: search latency at 10,000 gears, in-process and over HTTP, and gear pages.

The catalog is filled straight through the models (bulk inserts: 10,000
gears from 100 publishers, each with one approved version) because
publishing 10,000 archives would measure the publish path, not search.
Titles and summaries draw from a fixed vocabulary, so common words match
thousands of gears and rare ones a handful, as in a real catalog.
"""

from __future__ import annotations

import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import requests

from bench.report import Goal, Row, Section
from bench.util import (
    free_port,
    percentile,
    progress,
    python_env,
    server_process,
    wait_http,
)
from bench.util import (
    run as run_command,
)

_WORDS = (
    "score recommend segment email profile event churn cart price stock weather loyalty "
    "coupon banner carousel product catalog search rank boost decay session click purchase "
    "view funnel cohort retention lifetime value margin inventory shipping region language "
    "currency discount bundle upsell crosssell similar trending popular fresh seasonal "
    "holiday birthday anniversary welcome onboarding reactivation winback survey review "
    "rating sentiment affinity brand color size style gender age device mobile desktop "
    "tablet browser referrer campaign channel attribution budget forecast anomaly signal"
)
VOCABULARY = tuple(_WORDS.split())
CATEGORIES = ("scoring", "recommendations", "connectors", "email", "analytics", "content",
              "commerce", "experiments", "segments", "privacy", "weather", "loyalty")
KIND_CYCLE = ("extension", "template", "connector")
#: The query mix: (label, query string parameters). Each is run the same number of times.
QUERIES: tuple[tuple[str, dict[str, str]], ...] = (
    ("browse (no words)", {}),
    ("one common word", {"q": "score"}),
    ("prefix", {"q": "rec"}),
    ("two words", {"q": "email welcome"}),
    ("rare word", {"q": "anniversary forecast anomaly"}),
    ("no match", {"q": "zzzzqqq"}),
    ("word + kind facet", {"q": "product", "kind": "template"}),
    ("word + category facet", {"q": "price", "category": "commerce"}),
)


@dataclass(frozen=True)
class SearchSize:
    """How much work the section does; :meth:`quick` is for a fast look."""

    gears: int = 10_000
    rounds: int = 20
    http_rounds: int = 8
    pages: int = 200
    repeats: int = 3

    @classmethod
    def quick(cls) -> SearchSize:
        return cls(gears=10_000, rounds=10, http_rounds=4, pages=50, repeats=1)

    @classmethod
    def tiny(cls) -> SearchSize:
        return cls(gears=200, rounds=1, http_rounds=1, pages=5, repeats=1)


def fill_catalog(app: Any, n: int, seed: int = 7) -> list[str]:
    """Insert ``n`` public gears (one approved version each); their names."""
    from sqlalchemy import insert

    from marketplace.db import database
    from marketplace.models import Gear, GearVersion, Publisher, VersionStatus

    rng = random.Random(seed)
    session = database(app).sessionmaker()
    try:
        publishers = [{"name": f"pub{p:03d}", "display_name": f"Publisher {p}"}
                      for p in range(100)]
        session.execute(insert(Publisher), publishers)
        ids: dict[str, int] = {name: pid for name, pid in session.execute(
            Publisher.__table__.select().with_only_columns(Publisher.name, Publisher.id))}
        gears: list[dict[str, Any]] = []
        names: list[str] = []
        for i in range(n):
            words = rng.sample(VOCABULARY, 3)
            pub = f"pub{i % 100:03d}"
            name = f"{pub}/{'-'.join(words[:2])}-{i}"
            names.append(name)
            gears.append({
                "publisher_id": ids[pub], "name": name, "kind": KIND_CYCLE[i % 3],
                "title": " ".join(w.title() for w in words),
                "summary": " ".join(rng.choices(VOCABULARY, k=14)) + ".",
                "categories": rng.sample(CATEGORIES, 2),
                "install_count": int(rng.paretovariate(1.2) * 10), "listed": True,
            })
        session.execute(insert(Gear), gears)
        gear_ids = dict(session.execute(
            Gear.__table__.select().with_only_columns(Gear.name, Gear.id)).all())
        versions = [{
            "gear_id": gear_ids[g["name"]], "version": "1.0.0", "sha256": f"{i:064x}",
            "size": 20_000, "status": VersionStatus.approved,
            "manifest": {"name": g["name"], "version": "1.0.0", "kind": g["kind"],
                         "title": g["title"], "summary": g["summary"],
                         "config_schema": {"type": "object", "properties": {}},
                         "permissions": {"network": [], "profile": {"read": [], "write": []}},
                         "hooks": [], "categories": g["categories"]},
        } for i, g in enumerate(gears)]
        session.execute(insert(GearVersion), versions)
        session.commit()
    finally:
        session.close()
    return names


def _timed(fn: Callable[..., object], *args: Any) -> float:
    """Milliseconds one call of ``fn(*args)`` took."""
    t0 = time.perf_counter()
    fn(*args)
    return (time.perf_counter() - t0) * 1000.0


def _add(rows: dict[str, Row], metric: str, subject: str, lat: list[float]) -> None:
    for stat, value in (("p50", statistics.median(lat)), ("p99", percentile(lat, 99))):
        key = f"{metric} {stat}"
        rows.setdefault(key + subject, Row(key, subject, "ms")).samples.append(value)


def run(size: SearchSize | None = None) -> Section:
    """Fill a catalog, then time search and gear pages."""
    size = size or SearchSize()
    sec = Section("search", "Catalog search and gear page")
    with tempfile.TemporaryDirectory(prefix="gears-bench-search-") as tmp_s, ExitStack() as stack:
        tmp = Path(tmp_s)
        env = _env(tmp)
        run_command([sys.executable, "-m", "marketplace.cli", "init"], env=env, cwd=tmp, timeout=120)
        from marketplace import create_app
        from marketplace.registry import search as web_search

        app = create_app({"DATABASE_URL": env["GEARS_DATABASE_URL"],
                          "STORAGE_URL": env["GEARS_STORAGE_URL"],
                          "SECRET_KEY": env["GEARS_SECRET_KEY"]})
        progress(f"search: inserting {size.gears:,} gears with approved versions")
        t0 = time.perf_counter()
        names = fill_catalog(app, size.gears)
        sec.notes.append(f"filling the catalog ({size.gears:,} gears) took "
                         f"{time.perf_counter() - t0:.1f} s")
        with app.app_context():
            from marketplace.db import get_session

            fts = web_search.has_fts(get_session())
        index = ("SQLite FTS5 index `gears_fts`" if fts else
                 "no full-text index in this database (search falls back to LIKE scans)")
        sec.versions["catalog search index"] = "FTS5" if fts else "LIKE fallback"
        sec.method = [
            f"{size.gears:,} gears from 100 publishers, one approved version each, inserted "
            f"through the models; SQLite; {index}",
            f"query mix ({len(QUERIES)} kinds): "
            + "; ".join(f"{label} {params or ''}" for label, params in QUERIES),
            f"in-process: `marketplace.registry.search.search()` (the search page's function, with "
            f"facet counts) and `marketplace.registry.queries.search_gears()` (what `GET "
            f"/api/v1/gears` calls), anonymous viewer, {size.rounds} rounds of the mix per run",
            f"HTTP: `GET /search?…` (HTML, facets) and `GET /api/v1/gears?…` (JSON) against "
            f"`marketplace serve`, one client, keep-alive, {size.http_rounds} rounds per run",
            f"gear page: `GET /gears/<publisher>/<name>` for {size.pages} random gears per run",
            f"{size.repeats} run(s); p50/p99 are over every request of a run",
        ]
        rows: dict[str, Row] = {}
        _in_process(app, size, rows, sec.notes)
        _over_http(stack, tmp, env, names, size, rows)
        sec.rows = list(rows.values())
    web = next((r for r in sec.rows if r.metric == "search p99"
                and r.subject == "search() in-process"), None)
    p99 = web.median if web else None
    sec.goals.append(Goal(f"catalog search p99 at {size.gears:,} gears", "< 10 ms",
                          f"{p99:.2f} ms (web search function, in-process)" if p99 else "—",
                          p99 < 10 if p99 is not None else None))
    return sec


def _env(tmp: Path) -> dict[str, str]:
    env = python_env()
    env.update(GEARS_DATABASE_URL=f"sqlite:///{tmp / 'registry.db'}",
               GEARS_STORAGE_URL=f"file://{tmp / 'blobs'}", GEARS_SECRET_KEY="bench-secret",
               GEARS_INSTANCE_PATH=str(tmp / "instance"), GEARS_ADMIN_EMAIL="admin@bench.test",
               GEARS_ADMIN_PASSWORD="bench-password")
    return env


def _in_process(app: Any, size: SearchSize, rows: dict[str, Row],
                notes: list[str]) -> None:
    from marketplace.db import get_session
    from marketplace.registry import queries
    from marketplace.registry.search import CatalogQuery, search

    viewer = queries.Viewer()
    web_queries = [CatalogQuery(q=p.get("q", ""), kind=p.get("kind", ""),
                                category=p.get("category", "")) for _, p in QUERIES]
    api_queries = [queries.SearchQuery(q=p.get("q", ""), kind=p.get("kind"),
                                       category=p.get("category")) for _, p in QUERIES]
    by_label: dict[str, list[float]] = {}
    for r in range(size.repeats):
        progress(f"search: in-process run {r + 1}/{size.repeats}")
        with app.app_context():
            session = get_session()
            web_lat: list[float] = []
            api_lat: list[float] = []
            for _ in range(size.rounds):
                for (label, _), wq, aq in zip(QUERIES, web_queries, api_queries, strict=True):
                    one = _timed(search, session, wq, viewer)
                    web_lat.append(one)
                    by_label.setdefault(label, []).append(one)
                    api_lat.append(_timed(queries.search_gears, session, aq, viewer))
                session.expire_all()
        _add(rows, "search", "search() in-process", web_lat)
        _add(rows, "search", "search_gears() in-process", api_lat)
    slowest = sorted(by_label.items(), key=lambda kv: -statistics.median(kv[1]))[:3]
    notes.append("slowest query kinds for search() (median): " + ", ".join(
        f"{label} {statistics.median(lat):.1f} ms" for label, lat in slowest))


def _over_http(stack: ExitStack, tmp: Path, env: dict[str, str], names: list[str],
               size: SearchSize, rows: dict[str, Row]) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp / "server.log"
    proc = stack.enter_context(server_process(
        [sys.executable, "-m", "marketplace.cli", "serve", "--host", "127.0.0.1", "--port",
         str(port), "--engine-port", "0"], log=log, env=env, cwd=tmp))
    wait_http(f"{url}/healthz", process=proc, log=log)
    http = requests.Session()
    rng = random.Random(11)

    def get(path: str) -> None:
        resp = http.get(f"{url}{path}", timeout=30)
        if resp.status_code != 200:
            raise RuntimeError(f"GET {path}: {resp.status_code}")

    for path in ("/search", "/api/v1/gears", f"/gears/{names[0]}"):  # warm every worker
        for _ in range(8):
            get(path)
    for r in range(size.repeats):
        progress(f"search: HTTP run {r + 1}/{size.repeats}")
        page_lat: list[float] = []
        api_lat: list[float] = []
        for _ in range(size.http_rounds):
            for _, params in QUERIES:
                qs = f"?{urlencode(params)}" if params else ""
                page_lat.append(_timed(get, f"/search{qs}"))
                api_lat.append(_timed(get, f"/api/v1/gears{qs}"))
        _add(rows, "search", "GET /search (HTTP)", page_lat)
        _add(rows, "search", "GET /api/v1/gears (HTTP)", api_lat)
        picks = [rng.choice(names) for _ in range(size.pages)]
        gear_lat = [_timed(get, f"/gears/{n}") for n in picks]
        _add(rows, "gear page", "GET /gears/<p>/<n> (HTTP)", gear_lat)
