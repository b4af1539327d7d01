"""Small shared helpers: statistics, the machine's description, servers on loopback, timing."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import requests

#: The benchmark package's own directory; peers and scratch data live beneath it.
BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class BenchError(RuntimeError):
    """A benchmark could not run; the message says what is missing or what failed."""


# -- statistics ---------------------------------------------------------------


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation; samples need not be sorted."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


@dataclass(frozen=True)
class Spread:
    """Minimum, median and maximum of one figure over repeated runs."""

    min: float
    median: float
    max: float
    runs: int

    @classmethod
    def of(cls, samples: Sequence[float]) -> Spread:
        return cls(min(samples), statistics.median(samples), max(samples), len(samples))

    @property
    def relative_range(self) -> float:
        """(max - min) / median: how far apart the repeated runs were."""
        return (self.max - self.min) / self.median if self.median else 0.0


def time_calls(fn: Callable[[], object], n: int, *, warmup: int = 0) -> list[float]:
    """Call ``fn`` ``n`` times after ``warmup`` untimed calls; each call's latency in ms."""
    for _ in range(warmup):
        fn()
    out: list[float] = []
    clock = time.perf_counter
    for _ in range(n):
        t0 = clock()
        fn()
        out.append((clock() - t0) * 1000.0)
    return out


# -- the machine ----------------------------------------------------------------


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / (1024 * 1024)
    return None


def load_average() -> tuple[float, float, float] | None:
    """The 1, 5 and 15 minute load averages, where the platform has them."""
    try:
        return os.getloadavg()
    except OSError:
        return None


def machine_info() -> dict[str, str]:
    """What the numbers were measured on, as label → text."""
    from gears_sdk import __version__ as gears_version

    mem = _memory_gib()
    load = load_average()
    return {
        "CPU": _cpu_model(),
        "cores": str(os.cpu_count() or "?"),
        "memory": f"{mem:.1f} GiB" if mem else "unknown",
        "kernel": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "gears": gears_version,
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load average at start": " / ".join(f"{x:.2f}" for x in load) if load else "unknown",
    }


# -- processes and loopback servers ---------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def require_loopback(url: str) -> str:
    """``url`` itself, or :class:`BenchError` when it points anywhere but this machine."""
    host = urlsplit(url).hostname or ""
    if host not in LOOPBACK_HOSTS and not host.startswith("127."):
        raise BenchError(f"refusing to send load to {host!r}: benchmarks target loopback only")
    return url


def wait_http(url: str, *, timeout: float = 60.0, ok: Callable[[int], bool] = lambda s: s < 500,
              process: subprocess.Popen[bytes] | None = None, log: Path | None = None) -> None:
    """Poll ``url`` until it answers with a status ``ok`` accepts; else :class:`BenchError`."""
    require_loopback(url)
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(requests.RequestException):
            if ok(requests.get(url, timeout=2).status_code):
                return
        if process is not None and process.poll() is not None:
            break
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
    raise BenchError(f"{url} did not come up\n{tail}")


@contextlib.contextmanager
def server_process(argv: Sequence[str], *, log: Path, env: dict[str, str] | None = None,
                   cwd: Path | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server in its own process group, logging to ``log``; stopped on exit."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        proc = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT, env=env,
                                cwd=cwd, start_new_session=True, stdin=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        stop_process_group(proc)


def stop_process_group(proc: subprocess.Popen[bytes], grace: float = 15.0) -> None:
    """SIGTERM the group ``proc`` leads, then SIGKILL it after ``grace`` seconds."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def run(argv: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
        timeout: float = 600, input: str | None = None) -> str:
    """Run a command to completion; its stdout, or :class:`BenchError` with its output."""
    try:
        done = subprocess.run(list(argv), env=env, cwd=cwd, capture_output=True, text=True,
                              timeout=timeout, input=input,
                              stdin=None if input is not None else subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BenchError(f"{argv[0]}: {exc}") from None
    if done.returncode != 0:
        raise BenchError(f"{' '.join(map(str, argv))} exited {done.returncode}:\n"
                         f"{(done.stderr or done.stdout)[-2000:]}")
    return done.stdout


def python_env() -> dict[str, str]:
    """This process's environment without the developer's ``GEARS_`` settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith("GEARS_")}


def rss_kib(pid: int) -> int | None:
    """Resident set size of ``pid`` in KiB, from ``/proc``; None where that cannot be read."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


def child_pids(pid: int) -> list[int]:
    """Direct children of ``pid`` (Linux ``/proc``); empty where that is unavailable."""
    out: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, ValueError):
                out.extend(int(x) for x in (task / "children").read_text().split())
    return out


def progress(message: str) -> None:
    """A progress line on stderr, so stdout keeps only the final table."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)
