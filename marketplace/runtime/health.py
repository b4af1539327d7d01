"""Per-installation health: counters, latency percentiles, the circuit breaker.

The breaker trips after ``threshold`` consecutive failed calls (any kind:
the hook raised, timed out, crashed, broke the protocol, returned a refused
result, or its worker could not be planned, started or cleaned up). A
tripped installation stays disabled — the engine stops calling it — until
someone re-enables it; the reason is kept for the UI and API and
handed to the ``on_disable`` callback so it can be persisted.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: How many recent latencies feed the percentiles.
LATENCY_WINDOW = 1024
DEFAULT_FAILURE_THRESHOLD = 5

OnDisable = Callable[[str, str], None]


def _percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


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
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def success(self, latency_ms: float) -> None:
        with self._lock:
            self.calls += 1
            self.consecutive_failures = 0
            self.latencies_ms.append(latency_ms)

    def failure(self, message: str, *, timeout: bool = False,
                latency_ms: float | None = None, code: str = "gear_error") -> None:
        """Count a failed call; trips the breaker on the threshold-th in a row."""
        with self._lock:
            self.calls += 1
            self.timeouts += int(timeout)
            if latency_ms is not None:
                self.latencies_ms.append(latency_ms)
            trip = self._failed(message, code)
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

    def refused(self, message: str, code: str) -> None:
        """The engine refused what the last call (already counted) returned, when
        applying it: that call becomes a failure, and counts toward the breaker."""
        with self._lock:
            trip = self._failed(message, code)
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
