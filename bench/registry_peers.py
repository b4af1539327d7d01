"""Registry section: Gears against pypiserver, devpi and verdaccio, in one run on loopback.

* publish: N distinct ~20 KB packages, uploaded one after another and then
  by 4 concurrent clients, through each registry's own upload API;
* download: one package file fetched for a fixed time by 16 concurrent
  connections (``wrk``, or the Python fallback when wrk is missing).

All servers run at once and the repeats are interleaved (each repeat runs
every subject before the next repeat starts), so a burst of background load
hits every subject rather than one.
"""

from __future__ import annotations

import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from bench import peers
from bench.load import get_load, timed_uploads, wrk_path, wrk_version
from bench.report import Goal, Row, Section
from bench.servers import Devpi, Gears, Payload, PyPIServer, Subject, Verdaccio, wait_quiet
from bench.util import BenchError, progress


@dataclass(frozen=True)
class RegistrySize:
    """How much work the section does; :meth:`quick` is for a fast look."""

    packages: int = 200
    repeats: int = 3
    publish_concurrency: int = 4
    download_concurrency: int = 16
    download_seconds: float = 10.0

    @classmethod
    def quick(cls) -> RegistrySize:
        return cls(packages=40, repeats=1, download_seconds=3.0)


def subjects() -> list[Subject]:
    """Gears and the peers, installing the peers first where needed."""
    py_reason = peers.ensure_python_peers()
    node_reason, verdaccio_version = peers.ensure_verdaccio()
    return [Gears(), PyPIServer(py_reason), Devpi(py_reason),
            Verdaccio(node_reason, verdaccio_version)]


def run(size: RegistrySize | None = None) -> Section:
    """Measure publish and download throughput of every subject."""
    size = size or RegistrySize()
    sec = Section("registry", "Registry vs peers: publish and download", primary="gears")
    subs = subjects()
    seq = f"publish uploads/s (sequential, {size.packages} pkgs)"
    conc = f"publish uploads/s (concurrency {size.publish_concurrency})"
    down = (f"download req/s (concurrency {size.download_concurrency}, "
            f"{size.download_seconds:g} s)")
    rows = {(m, s.name): Row(m, s.name, "/s") for m in (seq, conc, down) for s in subs}
    sec.rows = list(rows.values())
    _describe(sec, size, subs)
    with tempfile.TemporaryDirectory(prefix="gears-bench-registry-") as tmp, ExitStack() as stack:
        running = _start_all(Path(tmp), stack, subs, rows)
        batches = {s.name: _payloads(s, size) for s in running}
        for r in range(size.repeats):
            for metric, kind, clients in ((seq, "s", 1), (conc, "c", size.publish_concurrency)):
                for s in running:
                    progress(f"registry: repeat {r + 1}/{size.repeats}, {s.name}, {metric}")
                    rate, failed = timed_uploads(batches[s.name][f"r{r}{kind}"], s.upload,
                                                 concurrency=clients)
                    rows[(metric, s.name)].samples.append(rate)
                    if failed:
                        sec.notes.append(f"{s.name}: {failed} of {size.packages} uploads failed "
                                         f"in repeat {r + 1} ({metric})")
                    wait_quiet()
        urls = {s.name: s.download_url() for s in running}
        for r in range(size.repeats):
            for s in running:
                progress(f"registry: repeat {r + 1}/{size.repeats}, {s.name}, {down}")
                result = get_load(urls[s.name], concurrency=size.download_concurrency,
                                  seconds=size.download_seconds)
                rows[(down, s.name)].samples.append(result.requests_per_s)
                if result.errors:
                    sec.notes.append(f"{s.name}: {result.errors} of {result.requests} download "
                                     f"requests failed in repeat {r + 1}")
                wait_quiet()
    _goals(sec, rows, subs, seq, conc, down)
    return sec


def _describe(sec: Section, size: RegistrySize, subs: list[Subject]) -> None:
    tool = ("`wrk` (2 threads)" if wrk_path() else
            "a threaded Python load generator (wrk is not installed; `make bench-deps` "
            "installs it) — it saturates sooner than wrk, so it understates fast servers")
    sec.method = [
        "all servers run at the same time on 127.0.0.1 and the repeats are interleaved; "
        f"{size.repeats} repeat(s), each with fresh package names",
        f"publish: {size.packages} distinct packages of about 20 KB (random, incompressible "
        "content), built before the clock starts; uploaded one at a time and then by "
        f"{size.publish_concurrency} concurrent clients (one keep-alive HTTP session each); "
        "uploads/s = accepted uploads ÷ wall time",
        "Gears: `.gear` archives `POST /api/v1/gears` with a publish token (the archive is "
        "read and validated and the blob stored before the 201; review happens later, off "
        "the request path); pypiserver and devpi: sdists through the upload API twine uses "
        "(`:action=file_upload`; pypiserver with basic auth, devpi with the login token "
        "`devpi upload` sends, since its basic auth runs a deliberately slow password hash "
        "per request); verdaccio: the `npm publish` request (`PUT "
        "/<name>` with the tarball attached as base64, bearer token)",
        f"download: {tool} at concurrency {size.download_concurrency} for "
        f"{size.download_seconds:g} s against one package file per server, anonymous; Gears "
        "serves `GET /api/v1/gears/<publisher>/<name>/<version>/download` from local storage; "
        f"by then every server holds the same {size.packages * 2 * size.repeats:,} packages "
        "(pypiserver finds a file by walking its package list, so its download rate falls as "
        "its index grows)",
    ]
    sec.method += [f"{s.name} {s.version}: {s.settings}" for s in subs if not s.unavailable]
    sec.versions.update({s.name: s.version or "—" for s in subs})
    sec.versions["wrk"] = wrk_version()
    for s in subs:
        if s.unavailable:
            for row in sec.rows:
                if row.subject == s.name:
                    row.note = f"not installed: {s.unavailable}"


def _start_all(tmp: Path, stack: ExitStack, subs: list[Subject],
               rows: dict[tuple[str, str], Row]) -> list[Subject]:
    running = []
    for s in subs:
        if s.unavailable:
            continue
        progress(f"registry: starting {s.name}")
        try:
            s.start(tmp, stack)
        except BenchError as exc:
            s.unavailable = f"did not start: {str(exc).splitlines()[0][:200]}"
            for (_, name), row in rows.items():
                if name == s.name:
                    row.note = s.unavailable
            continue
        running.append(s)
    return running


def _payloads(s: Subject, size: RegistrySize) -> dict[str, list[Payload]]:
    progress(f"registry: building {size.packages * 2 * size.repeats} packages for {s.name}")
    return {f"r{r}{kind}": s.payloads(f"r{r}{kind}", size.packages)
            for r in range(size.repeats) for kind in "sc"}


def _goals(sec: Section, rows: dict[tuple[str, str], Row], subs: list[Subject], seq: str,
           conc: str, down: str) -> None:
    peer_names = [s.name for s in subs if s.name != "gears"]

    def fastest(metric: str) -> tuple[str, float] | None:
        measured = [(n, rows[(metric, n)].median) for n in peer_names]
        best = [(n, m) for n, m in measured if m]
        return max(best, key=lambda x: x[1]) if best else None

    for metric, factor, label in ((down, 1.5, "download req/s"),
                                  (seq, 1.0, "publish uploads/s, sequential"),
                                  (conc, 1.0, "publish uploads/s, concurrent")):
        ours = rows[(metric, "gears")].median
        best = fastest(metric)
        target = f">= {factor:g} x fastest peer" if factor != 1 else ">= fastest peer"
        if ours is None or best is None:
            sec.goals.append(Goal(label, target, "—", None))
            continue
        ratio = ours / best[1]
        sec.goals.append(Goal(label, target,
                              f"{ours:,.0f}/s = {ratio:.2f} x {best[0]} ({best[1]:,.0f}/s)",
                              ratio >= factor))
        if ratio < factor:
            sec.notes.append(WHY_SLOWER[label])


#: Where the time of a Gears request goes (from cProfile of the request in-process),
#: shown when Gears is behind a goal.
WHY_SLOWER = {
    "download req/s": (
        "Download: every Gears download runs in Python — routing, the bearer-token check, "
        "one indexed version lookup (status, yank and quarantine are re-checked on every "
        "request, so the row is not cached) and `send_file` (gunicorn then uses sendfile) — "
        "about 0.6 ms of CPU per request in-process, against a static file lookup by name "
        "for pypiserver. To serve archive bytes faster, put them off the Python path: S3 "
        "storage answers with presigned redirects (`DOWNLOAD_REDIRECT`), or a reverse proxy "
        "in front of local storage can serve the blob directory itself."),
    "publish uploads/s, sequential": (
        "Publish: a Gears upload is read by the safe archive reader (every member checked "
        "and decompressed with caps), the manifest validated against its JSON Schema, the "
        "blob written with fsync and read back to verify its sha256, then the version, its "
        "audit entry and its queued vetting job commit in one transaction — "
        "pypiserver writes the file and returns, without fsync or a database."),
    "publish uploads/s, concurrent": (
        "Concurrent publish: SQLite takes one writer at a time, so the four clients queue "
        "on the commit; PostgreSQL (`GEARS_DATABASE_URL`) lifts that limit."),
}
