"""Load generators for loopback servers: ``wrk`` when installed, else a threaded Python one.

Both send only to loopback (:func:`bench.util.require_loopback`), run for a
fixed number of seconds and stop by themselves.
"""

from __future__ import annotations

import http.client
import re
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests

from bench.util import BenchError, require_loopback, run


@dataclass(frozen=True)
class LoadResult:
    """Throughput of one load run; ``errors`` counts non-2xx/3xx answers and socket errors."""

    requests_per_s: float
    requests: int
    errors: int
    tool: str


def wrk_path() -> str | None:
    return shutil.which("wrk")


def wrk_version() -> str:
    """``wrk``'s version line, or why it is not there."""
    path = wrk_path()
    if path is None:
        return "not installed (Python fallback load generator used)"
    import subprocess

    done = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
    first = (done.stdout or done.stderr).strip().splitlines()
    return first[0].split(" [")[0] if first else "unknown"


_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
_TOTAL = re.compile(r"(\d+) requests in")
_NON2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_SOCKERR = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


def parse_wrk(out: str) -> LoadResult:
    """Throughput and error counts from ``wrk``'s report."""
    rps = _RPS.search(out)
    total = _TOTAL.search(out)
    if rps is None or total is None:
        raise BenchError(f"could not read wrk's output:\n{out[-1000:]}")
    errors = int(m.group(1)) if (m := _NON2XX.search(out)) else 0
    if m := _SOCKERR.search(out):
        errors += sum(int(x) for x in m.groups())
    return LoadResult(float(rps.group(1)), int(total.group(1)), errors, "wrk")


def wrk(url: str, *, concurrency: int, seconds: float, threads: int = 2) -> LoadResult:
    """``wrk -t threads -c concurrency -d seconds url``."""
    path = wrk_path()
    if path is None:
        raise BenchError("wrk is not installed")
    require_loopback(url)
    out = run([path, f"-t{min(threads, concurrency)}", f"-c{concurrency}",
               f"-d{max(1, round(seconds))}s", "--timeout", "10s", url],
              timeout=seconds + 60)
    return parse_wrk(out)


def python_load(url: str, *, concurrency: int, seconds: float) -> LoadResult:
    """``concurrency`` threads, each with one keep-alive connection, GETting ``url``."""
    require_loopback(url)
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    stop_at = time.monotonic() + seconds
    counts = [0] * concurrency
    errors = [0] * concurrency

    def worker(i: int) -> None:
        conn = http.client.HTTPConnection(host, parts.port, timeout=10)
        while time.monotonic() < stop_at:
            try:
                conn.request("GET", target)
                resp = conn.getresponse()
                resp.read()
                if resp.status >= 400:
                    errors[i] += 1
                counts[i] += 1
            except (OSError, http.client.HTTPException):
                errors[i] += 1
                conn.close()
                conn = http.client.HTTPConnection(host, parts.port, timeout=10)
        conn.close()

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 30)
    elapsed = time.monotonic() - t0
    total = sum(counts)
    return LoadResult(total / elapsed, total, sum(errors), "python")


def get_load(url: str, *, concurrency: int, seconds: float) -> LoadResult:
    """``wrk`` when installed, else :func:`python_load`."""
    if wrk_path() is not None:
        return wrk(url, concurrency=concurrency, seconds=seconds)
    return python_load(url, concurrency=concurrency, seconds=seconds)


def timed_uploads(items: Sequence[Any], upload: Callable[[requests.Session, Any], None], *,
                  concurrency: int) -> tuple[float, int]:
    """Upload every item with ``concurrency`` clients; (uploads per second, failures).

    Each client thread keeps one HTTP session, as a CI job publishing in a loop would.
    """
    local = threading.local()
    failures: list[BaseException] = []

    def one(item: Any) -> None:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        try:
            upload(session, item)
        except Exception as exc:  # counted and reported, the run goes on
            failures.append(exc)

    t0 = time.perf_counter()
    if concurrency == 1:
        for item in items:
            one(item)
    else:
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(one, items))
    elapsed = time.perf_counter() - t0
    if failures and len(failures) == len(items):
        raise BenchError(f"every upload failed; the first: {failures[0]!r}")
    return (len(items) - len(failures)) / elapsed, len(failures)
