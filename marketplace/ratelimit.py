"""Slowing down password guessing on the sign-in page.

A sliding window of failed attempts per key (the client's IP address together
with the email tried). It lives in process memory, so each replica (and each
server worker) keeps its own count: with N workers an attacker gets at most N
times the limit, which still turns guessing into a crawl. A shared store
(Redis, the database) would make the limit exact across replicas.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

#: Failed sign-ins allowed per IP+email within the window.
MAX_FAILURES = 5
WINDOW_SECONDS = 15 * 60
#: Keys tracked at most; the oldest are forgotten first, so memory stays bounded.
MAX_KEYS = 10_000


class SlidingWindowLimiter:
    """Counts events per key over the last ``window`` seconds."""

    def __init__(self, limit: int = MAX_FAILURES, window: float = WINDOW_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._events: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _prune(self, key: str, now: float) -> deque[float]:
        events = self._events.get(key)
        if events is None:
            return deque()
        while events and events[0] <= now - self.window:
            events.popleft()
        if not events:
            del self._events[key]
        return events

    def retry_after(self, key: str) -> int:
        """Seconds until ``key`` may try again; 0 when it may now."""
        with self._lock:
            now = self.clock()
            events = self._prune(key, now)
            if len(events) < self.limit:
                return 0
            return max(1, int(events[0] + self.window - now) + 1)

    def hit(self, key: str) -> None:
        """Record one failure for ``key``."""
        with self._lock:
            now = self.clock()
            self._prune(key, now)
            if key not in self._events and len(self._events) >= MAX_KEYS:
                self._events.pop(next(iter(self._events)))
            self._events.setdefault(key, deque()).append(now)

    def reset(self, key: str) -> None:
        """Forget ``key``'s failures (after a successful sign-in)."""
        with self._lock:
            self._events.pop(key, None)


#: The sign-in page's limiter (one per process).
login_failures = SlidingWindowLimiter()
