"""Engine section: events per second through sandboxed extensions, and decision latency.

A workspace gets three gears, published and approved through the registry
API and installed through the workspaces API, each running in its own
sandboxed worker:

* two extensions (``gear_on_event`` and ``gear_score_items``): every event
  goes through both, every decision asks both to score the item pool;
* one template (``gear_render``) that renders the chosen items.

The engine is then driven through the app's engine service
(``services.engine(app)``: ``ingest`` and ``decide``, in this process, the
same code ``POST /events`` and ``POST /decide`` run, without HTTP). When the
engine is not part of this build the section says so instead of inventing a
number.
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.gears import manifest, write_gear
from bench.report import Goal, Row, Section
from bench.util import percentile, progress, python_env
from bench.util import run as run_command

SCORER = """
@hookimpl
def gear_on_event(event, profile, config, ctx):
    return {"set": {"traits.%(trait)s": event.get("type")}, "increment": {"traits.%(count)s": 1}}


@hookimpl
def gear_score_items(profile, items, config, ctx):
    return [{"item_id": i["id"], "score": (i.get("price") or 0) %% %(mod)d} for i in items]
"""

TEMPLATE = """
import html


@hookimpl
def gear_render(profile, content, config, ctx):
    items = content.get("items") or []
    rows = "".join("<li>" + html.escape(i["title"]) + "</li>" for i in items)
    return {"html": "<h2>" + html.escape(content.get("title", "")) + "</h2><ul>" + rows
            + "</ul>", "data": {"ids": [i["id"] for i in items]}}
"""

WORKSPACE = "bench-shop"
PLACEMENT = "recs"


@dataclass(frozen=True)
class EngineSize:
    """How much work the section does; :meth:`quick` is for a fast look."""

    events: int = 5000
    batch: int = 100
    users: int = 200
    decisions: int = 500
    items: int = 100
    repeats: int = 3

    @classmethod
    def quick(cls) -> EngineSize:
        return cls(events=1000, decisions=100, repeats=1)

    @classmethod
    def tiny(cls) -> EngineSize:
        return cls(events=20, batch=10, users=5, decisions=5, items=10, repeats=1)


def engine_available() -> str | None:
    """None when the engine service offers what the section drives, else why not."""
    try:
        from marketplace.engine_service import EngineService
    except ImportError as exc:
        return f"marketplace.engine_service cannot be imported ({exc})"
    missing = [f for f in ("ingest", "decide", "node_status", "close")
               if not hasattr(EngineService, f)]
    return f"the engine service lacks {', '.join(missing)}" if missing else None


@contextlib.contextmanager
def _environ(env: dict[str, str]) -> Iterator[None]:
    """The registry's ``GEARS_`` settings for this process, restored afterwards."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("GEARS_")}
    for k in saved:
        del os.environ[k]
    os.environ.update({k: v for k, v in env.items() if k.startswith("GEARS_")})
    try:
        yield
    finally:
        for k in [k for k in os.environ if k.startswith("GEARS_")]:
            del os.environ[k]
        os.environ.update(saved)


def run(size: EngineSize | None = None) -> Section:
    """Set up a workspace with three sandboxed gears and time ingest and decide."""
    size = size or EngineSize()
    sec = Section("engine", "Engine: ingest and decide through sandboxed gears")
    why = engine_available()
    ingest_row = Row(f"ingest events/s (2 extensions, batches of {size.batch})", "engine", "/s")
    p50 = Row("decide p50 (2 scorers + 1 template)", "engine", "ms")
    p99 = Row("decide p99 (2 scorers + 1 template)", "engine", "ms")
    sec.rows = [ingest_row, p50, p99]
    if why:
        for row in sec.rows:
            row.note = f"engine not available: {why}"
        sec.goals += [Goal("engine ingest", ">= 5,000 events/s", "engine not available", None),
                      Goal("engine decide p99", "< 10 ms", "engine not available", None)]
        return sec
    with tempfile.TemporaryDirectory(prefix="gears-bench-engine-") as tmp_s:
        tmp = Path(tmp_s)
        env = _env(tmp)
        with _environ(env):
            _measure(sec, size, tmp, env, ingest_row, p50, p99)
    events = ingest_row.median
    sec.goals.append(Goal("engine ingest", ">= 5,000 events/s",
                          f"{events:,.0f} events/s" if events else "—",
                          events >= 5000 if events is not None else None))
    d99 = p99.median
    sec.goals.append(Goal("engine decide p99", "< 10 ms", f"{d99:.2f} ms" if d99 else "—",
                          d99 < 10 if d99 is not None else None))
    return sec


def _env(tmp: Path) -> dict[str, str]:
    env = python_env()
    env.update(GEARS_DATABASE_URL=f"sqlite:///{tmp / 'registry.db'}",
               GEARS_STORAGE_URL=f"file://{tmp / 'blobs'}", GEARS_SECRET_KEY="bench-secret",
               GEARS_INSTANCE_PATH=str(tmp / "instance"), GEARS_ADMIN_EMAIL="admin@bench.test",
               GEARS_ADMIN_PASSWORD="bench-password")
    return env


def _setup(tmp: Path, env: dict[str, str], size: EngineSize) -> tuple[Any, list[str]]:
    """Accounts, three approved gears installed into the workspace, items and a campaign."""
    cli = [sys.executable, "-m", "marketplace.cli"]

    def operator(*args: str) -> str:
        return run_command([*cli, *args], env=env, cwd=tmp, timeout=120).strip()

    operator("init")
    operator("create-user", "dev@bench.test", "--role", "developer")
    operator("create-user", "biz@bench.test", "--role", "business")
    operator("create-publisher", "bench", "--owner", "dev@bench.test")
    operator("create-workspace", WORKSPACE, "--member", "biz@bench.test")
    dev = operator("create-token", "dev@bench.test", "--scope", "publish:bench")
    admin = operator("create-token", "admin@bench.test", "--scope", "admin")
    ws = operator("create-token", "biz@bench.test", "--scope", f"workspace:{WORKSPACE}")

    from gears_sdk.archive import build_archive_bytes
    from marketplace import create_app

    app = create_app()
    client = app.test_client()
    gears = [
        (manifest("bench/scorer-a", hooks=["gear_on_event", "gear_score_items"],
                  read=["traits.*"], write=["traits.last_a", "traits.seen_a"]),
         SCORER % {"trait": "last_a", "count": "seen_a", "mod": 7}),
        (manifest("bench/scorer-b", hooks=["gear_on_event", "gear_score_items"],
                  read=["traits.*"], write=["traits.last_b", "traits.seen_b"]),
         SCORER % {"trait": "last_b", "count": "seen_b", "mod": 11}),
        (manifest("bench/list", kind="template", read=["traits.*"]), TEMPLATE),
    ]
    ids = []
    for man, source in gears:
        data, _ = build_archive_bytes(write_gear(tmp / "src", man, source))
        _ok(client.post("/api/v1/gears", headers=_auth(dev),
                        data={"file": (io.BytesIO(data), "g.gear")},
                        content_type="multipart/form-data"), 201)
        _ok(client.post(f"/api/v1/admin/gears/{man['name']}/1.0.0/approve",
                        headers=_auth(admin), json={}), 200)
        resp = _ok(client.post(f"/api/v1/workspaces/{WORKSPACE}/installations",
                               headers=_auth(ws), json={"gear": man["name"], "consent": True}),
                   201)
        ids.append(resp.get_json()["id"])
    base = f"/engine/v1/workspaces/{WORKSPACE}"
    rng = random.Random(5)
    items = [{"id": f"sku-{i}", "title": f"Item {i}", "category": rng.choice(["a", "b", "c"]),
              "price": rng.randint(1, 500)} for i in range(size.items)]
    _ok(client.put(f"{base}/catalog/items", headers=_auth(ws), json={"items": items}), 200)
    campaign = {"placement": PLACEMENT, "experiences": [
        {"name": "all", "segment": None, "installation": ids[2],
         "content": {"title": "For you", "items": {"count": 4}}}],
        "fallback": {"html": "<p>Welcome</p>", "data": {"default": True}}}
    _ok(client.put(f"{base}/campaigns/home", headers=_auth(ws), json=campaign), 200)
    return app, ids


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _ok(resp: Any, status: int) -> Any:
    if resp.status_code != status:
        raise RuntimeError(f"{resp.request.method} {resp.request.path}: {resp.status_code} "
                           f"{resp.get_data(as_text=True)[:300]}")
    return resp


def _measure(sec: Section, size: EngineSize, tmp: Path, env: dict[str, str], ingest_row: Row,
             p50: Row, p99: Row) -> None:
    from marketplace import services

    progress("engine: publishing, approving and installing three gears")
    app, _ = _setup(tmp, env, size)
    engine = services.engine(app)
    try:
        level = engine.node_status().get("sandbox_level")
        sec.versions["engine sandbox level"] = str(level or "default")
        sec.method = [
            "one workspace, three gears published and approved through the registry API, "
            "installed through the workspaces API, each in its own sandboxed worker: two "
            "extensions (`gear_on_event` + `gear_score_items`) and one template "
            "(`gear_render`); SQLite",
            f"ingest: the engine service's `ingest()` (in-process) with batches of {size.batch} new "
            f"events over {size.users} users, {size.events:,} events per run; every event "
            "goes through both extensions and their patches are applied; events/s = events ÷ "
            "wall time",
            f"decide: the engine service's `decide()` for a placement whose campaign asks for 4 "
            f"of {size.items} catalog items: both extensions score the pool, the template "
            f"renders, the HTML is sanitized and the decision logged; {size.decisions} "
            "decisions per run over random users, timed one at a time",
            f"{size.repeats} run(s); the workers are started (and warmed by one batch and "
            "one decision) before the clock starts",
        ]
        rng = random.Random(3)
        serial = iter(range(10**9))

        def batch(n: int) -> list[dict[str, Any]]:
            return [{"id": f"e{next(serial)}", "user_id": f"u{rng.randrange(size.users)}",
                     "type": rng.choice(["view", "click", "purchase"])} for _ in range(n)]

        warm = engine.ingest(WORKSPACE, batch(size.batch))
        _check_ingest(sec, warm, size.batch)
        first = engine.decide(WORKSPACE, "u0", PLACEMENT)
        if first.get("fallback"):
            sec.notes.append(f"the warm-up decision fell back: {first.get('gears')}")
        for r in range(size.repeats):
            progress(f"engine: run {r + 1}/{size.repeats}")
            batches = [batch(size.batch) for _ in range(max(1, size.events // size.batch))]
            t0 = time.perf_counter()
            results = [engine.ingest(WORKSPACE, b) for b in batches]
            elapsed = time.perf_counter() - t0
            ingest_row.samples.append(sum(len(b) for b in batches) / elapsed)
            for res, b in zip(results, batches, strict=True):
                _check_ingest(sec, res, len(b))
            lat = []
            fallbacks = 0
            for _ in range(size.decisions):
                user = f"u{rng.randrange(size.users)}"
                t0 = time.perf_counter()
                d = engine.decide(WORKSPACE, user, PLACEMENT)
                lat.append((time.perf_counter() - t0) * 1000.0)
                fallbacks += bool(d.get("fallback"))
            p50.samples.append(statistics.median(lat))
            p99.samples.append(percentile(lat, 99))
            if fallbacks:
                sec.notes.append(f"{fallbacks} of {size.decisions} decisions fell back in run "
                                 f"{r + 1}")
    finally:
        engine.close()


def _check_ingest(sec: Section, result: dict[str, Any], sent: int) -> None:
    """Notes when a batch was not fully accepted or a gear failed: such a run is suspect."""
    if result.get("accepted") != sent:
        sec.notes.append(f"a batch of {sent} events had {result.get('accepted')} accepted")
    if result.get("gear_errors"):
        sec.notes.append(f"gear errors during ingest: {result['gear_errors']}")
