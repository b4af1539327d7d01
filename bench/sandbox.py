"""Sandbox section: what a hook call costs through a sandboxed worker, and what a worker costs.

* hook call: ``pm.hook.gear_on_event(...)`` through the installation's proxy
  plugin and its persistent worker, against the same gear code registered
  in-process in a plain pluggy ``PluginManager``;
* cold start: ``Runtime.start`` (launch, confine, handshake, import the gear);
* install to first call: fetch the archive from a blob store, verify and
  unpack it into an empty cache, start the worker, make the first call;
* memory: resident set size of each worker's processes, from ``/proc``.
"""

from __future__ import annotations

import importlib.util
import statistics
import sys
import tempfile
import time
import types
from dataclasses import dataclass
from pathlib import Path

from bench.gears import COUNTER, gear_archive, manifest, write_gear
from bench.report import Goal, Row, Section
from bench.util import percentile, progress, rss_kib

EVENT = {"type": "view", "item": "sku-1"}
PROFILE = {"user_id": "u1", "attributes": {"first_name": "Ada"}, "traits": {"events_seen": 3}}


@dataclass(frozen=True)
class SandboxSize:
    """How much work the section does; :meth:`quick` is for smoke runs."""

    calls: int = 5000
    warmup: int = 200
    repeats: int = 3
    cold_starts: int = 10
    installs: int = 5

    @classmethod
    def quick(cls) -> SandboxSize:
        return cls(calls=500, warmup=50, repeats=2, cold_starts=3, installs=2)

    @classmethod
    def tiny(cls) -> SandboxSize:
        return cls(calls=20, warmup=2, repeats=1, cold_starts=1, installs=1)


def _load_module(gear_dir: Path, entrypoint: str) -> types.ModuleType:
    """Import a gear's package in this process, as the in-process baseline does."""
    spec = importlib.util.spec_from_file_location(
        f"bench_inproc_{entrypoint}", gear_dir / entrypoint / "__init__.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _timed_hook_calls(pm: object, n: int, warmup: int) -> list[float]:
    hook = pm.hook.gear_on_event  # type: ignore[attr-defined]
    for _ in range(warmup):
        hook(event=EVENT, profile=PROFILE, config={}, ctx=None)
    out = []
    clock = time.perf_counter
    for _ in range(n):
        t0 = clock()
        hook(event=EVENT, profile=PROFILE, config={}, ctx=None)
        out.append((clock() - t0) * 1000.0)
    return out


def _process_tree_rss(pid: int) -> tuple[int | None, int]:
    """(RSS of the deepest process — the worker's interpreter —, RSS of the whole tree) in KiB."""
    from bench.util import child_pids

    tree, frontier, deepest = [], [pid], pid
    while frontier:
        nxt = []
        for p in frontier:
            tree.append(p)
            kids = child_pids(p)
            if kids:
                deepest = kids[-1]
            nxt.extend(kids)
        frontier = nxt
    total = sum(rss_kib(p) or 0 for p in tree)
    return rss_kib(deepest), total


def run(size: SandboxSize | None = None) -> Section:
    """Measure the sandbox; returns the section's rows and goals."""
    from gears_sdk.hookspecs import get_plugin_manager
    from gears_sdk.manifest import load_manifest
    from marketplace.runtime import Installation, Runtime
    from marketplace.runtime.loader import GearCache, StoreFetcher
    from marketplace.storage import LocalBlobStore

    size = size or SandboxSize()
    sec = Section("sandbox", "Sandbox: hook calls and workers", primary="sandboxed")
    with tempfile.TemporaryDirectory(prefix="gears-bench-sandbox-") as tmp_s:
        tmp = Path(tmp_s)
        man = manifest("bench/counter", write=["traits.events_seen"])
        gear_dir = write_gear(tmp / "gears", man, COUNTER)
        loaded = load_manifest(gear_dir)
        rt = Runtime(min_level="dev-unsafe", allow_private_hosts=frozenset(),
                     root_dir=tmp / "runtime")
        sec.versions["sandbox level"] = rt.level
        sec.method = [
            f"one extension gear (`gear_on_event` returning a one-field patch), sandbox level "
            f"`{rt.level}` ({', '.join(k for k, v in rt.report.layers.items() if v)})",
            f"hook call: `pm.hook.gear_on_event(...)` timed one call at a time, {size.calls} "
            f"calls after {size.warmup} warm-up calls, {size.repeats} runs; in-process = the "
            "same module registered directly in a `PluginManager`; sandboxed = the "
            "installation's proxy plugin, which filters the profile, crosses the pipe to "
            "the persistent worker and checks the returned patch",
            f"cold start: `Runtime.start` of a fresh installation, {size.cold_starts} times",
            f"install to first call: empty cache → fetch from a local blob store → sha256 "
            f"check → safe unpack → per-file verify → worker start → first call, "
            f"{size.installs} times",
            "memory: VmRSS from `/proc` of the worker's interpreter (and of its whole process "
            "tree, which includes bubblewrap at `strict`) after the calls",
        ]
        try:
            _hook_calls(sec, size, rt, gear_dir, loaded, Installation, get_plugin_manager, tmp)
            _cold_starts(sec, size, rt, gear_dir, loaded, Installation)
            _install_to_first_call(sec, size, rt, tmp, Installation, GearCache, StoreFetcher,
                                   LocalBlobStore)
        finally:
            rt.close()
    return sec


def _hook_calls(sec: Section, size: SandboxSize, rt: object, gear_dir: Path, loaded: object,
                installation_cls: type, get_pm: object, tmp: Path) -> None:
    progress(f"sandbox: {size.repeats} x {size.calls} hook calls, in-process and sandboxed")
    module = _load_module(gear_dir, "counter")
    inproc_pm = get_pm()  # type: ignore[operator]
    inproc_pm.register(module, name="inproc")
    inst = installation_cls(id="bench-calls", workspace="bench", gear_dir=gear_dir,
                            manifest=loaded)
    rt.start(inst)  # type: ignore[attr-defined]
    sandbox_pm = get_pm()  # type: ignore[operator]
    sandbox_pm.register(rt.proxy(inst.id), name=inst.id)  # type: ignore[attr-defined]
    rows = {k: {m: Row(f"hook call {m}", k, "ms") for m in ("median", "p99")}
            for k in ("sandboxed", "in-process")}
    for _ in range(size.repeats):
        for subject, pm in (("in-process", inproc_pm), ("sandboxed", sandbox_pm)):
            lat = _timed_hook_calls(pm, size.calls, size.warmup)
            rows[subject]["median"].samples.append(statistics.median(lat))
            rows[subject]["p99"].samples.append(percentile(lat, 99))
    results = sandbox_pm.hook.gear_on_event(event=EVENT, profile=PROFILE, config={}, ctx=None)
    if not results or not results[0].ok:
        sec.notes.append(f"the sandboxed call failed: {results!r}")
    for m in ("median", "p99"):
        sec.rows += [rows["sandboxed"][m], rows["in-process"][m]]
    pid = rt.worker(inst.id).pid  # type: ignore[attr-defined]
    worker_rss, tree_rss = _process_tree_rss(pid) if pid else (None, 0)
    if worker_rss:
        sec.rows.append(Row("worker RSS (interpreter)", "sandboxed", "MiB", [worker_rss / 1024]))
        sec.rows.append(Row("worker RSS (process tree)", "sandboxed", "MiB", [tree_rss / 1024]))
    else:
        sec.rows.append(Row("worker RSS (interpreter)", "sandboxed", "MiB",
                            note="/proc not readable on this platform"))
    median = rows["sandboxed"]["median"].median
    sec.goals.append(Goal("sandboxed hook call median", "< 0.1 ms",
                          f"{median:.3f} ms" if median is not None else "—",
                          median < 0.1 if median is not None else None))
    rt.stop(inst.id)  # type: ignore[attr-defined]


def _cold_starts(sec: Section, size: SandboxSize, rt: object, gear_dir: Path, loaded: object,
                 installation_cls: type) -> None:
    progress(f"sandbox: {size.cold_starts} cold starts")
    row = Row("worker cold start", "sandboxed", "ms")
    for i in range(size.cold_starts):
        inst = installation_cls(id=f"bench-cold-{i}", workspace="bench", gear_dir=gear_dir,
                                manifest=loaded)
        t0 = time.perf_counter()
        rt.start(inst)  # type: ignore[attr-defined]
        row.samples.append((time.perf_counter() - t0) * 1000.0)
        rt.stop(inst.id)  # type: ignore[attr-defined]
    sec.rows.append(row)
    median = row.median
    sec.goals.append(Goal("worker cold start median", "< 50 ms",
                          f"{median:.1f} ms" if median is not None else "—",
                          median < 50 if median is not None else None))


def _install_to_first_call(sec: Section, size: SandboxSize, rt: object, tmp: Path,
                           installation_cls: type, cache_cls: type, fetcher_cls: type,
                           store_cls: type) -> None:
    from gears_sdk.manifest import load_manifest

    progress(f"sandbox: {size.installs} installs to first call")
    store = store_cls(tmp / "blobs")
    store.ensure()
    row = Row("install to first call", "sandboxed", "ms")
    for i in range(size.installs):
        name = f"bench/fresh-{i}"
        data, digest = gear_archive(tmp / "archives", name, filler=19_000)
        store.put(digest, data)
        cache = cache_cls(tmp / f"cache-{i}", fetcher_cls(store))
        t0 = time.perf_counter()
        path = cache.load(name, "1.0.0", digest)
        inst = installation_cls(id=f"bench-install-{i}", workspace="bench", gear_dir=path,
                                manifest=load_manifest(path))
        rt.start(inst)  # type: ignore[attr-defined]
        rt.call(inst.id, "gear_on_event", event=EVENT, profile=PROFILE)  # type: ignore[attr-defined]
        row.samples.append((time.perf_counter() - t0) * 1000.0)
        rt.stop(inst.id)  # type: ignore[attr-defined]
    sec.rows.append(row)


if __name__ == "__main__":  # pragma: no cover - manual use
    from bench.report import render_text

    sys.stdout.write(render_text([run(SandboxSize.quick())]))
