"""Per-installation health: counters, latency percentiles, the circuit breaker.

The breaker trips after ``threshold`` consecutive failed calls (any kind:
the hook raised, timed out, crashed, broke the protocol, returned a refused
result, or its worker could not be planned, started or cleaned up). A
tripped installation stays disabled — the engine stops calling it — until
someone re-enables it; the reason is kept for the UI and API and
handed to the ``on_disable`` callback so it can be persisted.

These counters are one process's view. What every process and node must see
the same is kept in the database by the engine: each :class:`Health` also adds
what happens to its runtime's :class:`HealthLedger` (deltas since the last
flush, never blocking a call), and the engine takes those deltas about once a
second and adds them to the installation's row (``marketplace.engine.health_sync``).
A flush that fails puts its deltas back, so nothing is lost.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

#: How many recent latencies feed the percentiles.
LATENCY_WINDOW = 1024
DEFAULT_FAILURE_THRESHOLD = 5

#: Upper bounds (milliseconds) of the shared latency histogram's buckets; one more
#: bucket counts everything slower than the last bound. Fixed, so histograms from
#: every process add up; a percentile read from it is its bucket's upper bound.
LATENCY_BUCKETS_MS: tuple[float, ...] = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000,
                                         5000, 10000, 30000, 60000)
#: How many recent ``ctx.log`` lines are kept per installation.
RECENT_LOGS = 20
#: Longest ``ctx.log`` line kept (characters); the host's log has the whole line.
LOG_LINE_CHARS = 500
#: Longest last-error message kept (characters).
ERROR_CHARS = 2000

OnDisable = Callable[[str, str], None]


def _percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def latency_bucket(latency_ms: float) -> int:
    """The index of the histogram bucket ``latency_ms`` falls in."""
    return bisect.bisect_left(LATENCY_BUCKETS_MS, latency_ms)


def empty_histogram() -> list[int]:
    return [0] * (len(LATENCY_BUCKETS_MS) + 1)


def add_histograms(a: Iterable[int], b: Iterable[int]) -> list[int]:
    """Bucket-wise sum (a stored histogram of another length is padded or clipped)."""
    out = empty_histogram()
    for hist in (a, b):
        for i, n in enumerate(list(hist)[:len(out)]):
            out[i] += max(0, int(n))
    return out


def histogram_percentile(counts: Iterable[int], q: float) -> float | None:
    """The upper bound of the bucket holding the ``q``-quantile call, or ``None`` without
    calls; calls slower than the last bound report that bound."""
    counts = list(counts)
    total = sum(counts)
    if total <= 0:
        return None
    rank = max(1, math.ceil(q * total))  # the ceil(q·n)-th call, 1-based
    seen = 0
    for i, n in enumerate(counts):
        seen += n
        if seen >= rank:
            return float(LATENCY_BUCKETS_MS[min(i, len(LATENCY_BUCKETS_MS) - 1)])
    return float(LATENCY_BUCKETS_MS[-1])


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class HealthDelta:
    """What happened to one installation since the last flush."""

    calls: int = 0
    errors: int = 0
    timeouts: int = 0
    restarts: int = 0
    busy: int = 0
    codes: dict[str, int] = field(default_factory=dict)
    buckets: list[int] = field(default_factory=empty_histogram)
    last_error: str | None = None
    last_error_at: datetime | None = None
    last_call_at: datetime | None = None
    #: recent ``ctx.log`` lines, oldest first: ``{"at", "level", "message"}``
    logs: list[dict[str, str]] = field(default_factory=list)
    #: why the last start failed ``(code, reason, when)``; see ``not_running_changed``
    not_running: tuple[str, str, datetime] | None = None
    #: the not-running reason changed (set, or cleared by a start that succeeded)
    not_running_changed: bool = False
    started_at: datetime | None = None

    def count_call(self, latency_ms: float | None) -> None:
        self.calls += 1
        self.last_call_at = _now()
        if latency_ms is not None:
            self.buckets[latency_bucket(latency_ms)] += 1

    def count_error(self, message: str, code: str) -> None:
        self.errors += 1
        self.codes[code] = self.codes.get(code, 0) + 1
        self.last_error, self.last_error_at = message[:ERROR_CHARS], _now()

    def then(self, later: HealthDelta) -> HealthDelta:
        """This delta followed by ``later``: counts add up, the later last values win."""
        codes = dict(self.codes)
        for code, n in later.codes.items():
            codes[code] = codes.get(code, 0) + n
        newer_error = later.last_error_at is not None
        return HealthDelta(
            calls=self.calls + later.calls, errors=self.errors + later.errors,
            timeouts=self.timeouts + later.timeouts, restarts=self.restarts + later.restarts,
            busy=self.busy + later.busy, codes=codes,
            buckets=add_histograms(self.buckets, later.buckets),
            last_error=later.last_error if newer_error else self.last_error,
            last_error_at=later.last_error_at if newer_error else self.last_error_at,
            last_call_at=later.last_call_at or self.last_call_at,
            logs=(self.logs + later.logs)[-RECENT_LOGS:],
            not_running=later.not_running if later.not_running_changed else self.not_running,
            not_running_changed=self.not_running_changed or later.not_running_changed,
            started_at=later.started_at or self.started_at)


class HealthLedger:
    """Per-installation deltas since the last flush, shared by a runtime's installations.

    Every method takes one short lock and never waits on anything else, so counting
    never slows a gear call. ``urgent`` is set when something the user must see at
    once happened (a breaker tripped, a start failed); ``wake`` (set by whoever
    flushes) is called then.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[str, HealthDelta] = {}
        self._urgent: set[str] = set()
        self.wake: Callable[[], None] | None = None

    def _delta(self, installation: str) -> HealthDelta:
        delta = self._pending.get(installation)
        if delta is None:
            delta = self._pending[installation] = HealthDelta()
        return delta

    def record(self, installation: str, change: Callable[[HealthDelta], None], *,
               urgent: bool = False) -> None:
        with self._lock:
            change(self._delta(installation))
            if urgent:
                self._urgent.add(installation)
        if urgent and self.wake is not None:
            self.wake()

    def logged(self, installation: str, level: str, message: str) -> None:
        """One ``ctx.log`` line (already stripped of control sequences)."""
        line = {"at": _now().isoformat(), "level": level[:16],
                "message": message[:LOG_LINE_CHARS]}

        def add(d: HealthDelta) -> None:
            d.logs = [*d.logs, line][-RECENT_LOGS:]

        self.record(installation, add)

    def not_running(self, installation: str, code: str, reason: str) -> None:
        """The installation's worker could not start: why (shown until a start succeeds)."""
        def change(d: HealthDelta) -> None:
            d.not_running, d.not_running_changed = (code[:40], reason[:ERROR_CHARS], _now()), True

        self.record(installation, change, urgent=True)

    def started(self, installation: str) -> None:
        """The installation's worker started: clears the not-running reason."""
        def change(d: HealthDelta) -> None:
            d.not_running, d.not_running_changed, d.started_at = None, True, _now()

        self.record(installation, change)

    def urgent(self) -> bool:
        with self._lock:
            return bool(self._urgent)

    def take(self, keep: Callable[[str], bool] | None = None) -> dict[str, HealthDelta]:
        """The pending deltas (of the installations ``keep`` accepts), removed from the ledger."""
        with self._lock:
            taken = {i: d for i, d in self._pending.items() if keep is None or keep(i)}
            for installation in taken:
                del self._pending[installation]
                self._urgent.discard(installation)
            return taken

    def restore(self, deltas: dict[str, HealthDelta]) -> None:
        """Put back deltas a flush could not write, before anything counted since."""
        with self._lock:
            for installation, delta in deltas.items():
                newer = self._pending.get(installation)
                self._pending[installation] = delta.then(newer) if newer else delta

    def discard(self, installation: str) -> None:
        """Drop what is pending for an installation that no longer exists."""
        with self._lock:
            self._pending.pop(installation, None)
            self._urgent.discard(installation)

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)


@dataclass
class Health:
    """Counters for one installation; thread-safe through the owning lock."""

    installation: str
    threshold: int = DEFAULT_FAILURE_THRESHOLD
    on_disable: OnDisable | None = None
    calls: int = 0
    errors: int = 0
    timeouts: int = 0
    restarts: int = 0
    #: calls refused at once because the worker was busy (not a breaker failure)
    busy: int = 0
    consecutive_failures: int = 0
    disabled: bool = False
    reason: str | None = None
    last_error: str | None = None
    #: failed calls by error code (``invalid_result``, ``timeout``...)
    codes: dict[str, int] = field(default_factory=dict)
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))
    #: where the shared health's deltas go (``None``: counted here only)
    ledger: HealthLedger | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _shared(self, change: Callable[[HealthDelta], None], *, urgent: bool = False) -> None:
        if self.ledger is not None:
            self.ledger.record(self.installation, change, urgent=urgent)

    def success(self, latency_ms: float) -> None:
        with self._lock:
            self.calls += 1
            self.consecutive_failures = 0
            self.latencies_ms.append(latency_ms)
        self._shared(lambda d: d.count_call(latency_ms))

    def failure(self, message: str, *, timeout: bool = False,
                latency_ms: float | None = None, code: str = "gear_error") -> None:
        """Count a failed call; trips the breaker on the threshold-th in a row."""
        with self._lock:
            self.calls += 1
            self.timeouts += int(timeout)
            if latency_ms is not None:
                self.latencies_ms.append(latency_ms)
            trip = self._failed(message, code)

        def change(d: HealthDelta) -> None:
            d.count_call(latency_ms)
            d.timeouts += int(timeout)
            d.count_error(message, code)

        self._shared(change, urgent=trip is not None)
        if trip and self.on_disable is not None:
            self.on_disable(self.installation, trip)

    def rejected(self, message: str) -> None:
        """Count a call refused as ``busy``: an error the gear's slowness caused, but
        not a failure in a row (load alone must never trip a working gear's breaker;
        a gear that hangs trips it through its timeouts)."""
        with self._lock:
            self.calls += 1
            self.errors += 1
            self.busy += 1
            self.codes["busy"] = self.codes.get("busy", 0) + 1
            self.last_error = message

        def change(d: HealthDelta) -> None:
            d.count_call(None)
            d.busy += 1
            d.count_error(message, "busy")

        self._shared(change)

    def refused(self, message: str, code: str) -> None:
        """The engine refused what the last call (already counted) returned, when
        applying it: that call becomes a failure, and counts toward the breaker."""
        with self._lock:
            trip = self._failed(message, code)
        self._shared(lambda d: d.count_error(message, code), urgent=trip is not None)
        if trip and self.on_disable is not None:
            self.on_disable(self.installation, trip)

    def _failed(self, message: str, code: str) -> str | None:
        self.errors += 1
        self.codes[code] = self.codes.get(code, 0) + 1
        self.consecutive_failures += 1
        self.last_error = message
        if not self.disabled and self.consecutive_failures >= self.threshold:
            self.disabled = True
            self.reason = (f"disabled after {self.consecutive_failures} consecutive "
                           f"failures: {message}")
            return self.reason
        return None

    def restarted(self) -> None:
        with self._lock:
            self.restarts += 1

        def change(d: HealthDelta) -> None:
            d.restarts += 1

        self._shared(change)

    def logged(self, level: str, message: str) -> None:
        """A ``ctx.log`` line the host admitted (stripped, under the output rate limit)."""
        if self.ledger is not None:
            self.ledger.logged(self.installation, level, message)

    def enable(self) -> None:
        """Re-enable after an operator or the gear's publisher fixed the cause."""
        with self._lock:
            self.disabled, self.reason, self.consecutive_failures = False, None, 0

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            ordered = sorted(self.latencies_ms)
            return {
                "installation": self.installation, "calls": self.calls,
                "errors": self.errors, "timeouts": self.timeouts, "restarts": self.restarts,
                "busy": self.busy,
                "consecutive_failures": self.consecutive_failures,
                "disabled": self.disabled, "reason": self.reason,
                "last_error": self.last_error, "failures": dict(self.codes),
                "p50_ms": _percentile(ordered, 0.50), "p99_ms": _percentile(ordered, 0.99),
            }
