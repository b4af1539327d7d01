"""Bounded waiting for something one caller at a time may use (a worker, a start).

A gear that hangs must not gather the server's request threads behind it:
a caller waits for its turn at most as long as its own deadline, and only
while fewer than ``max_waiters`` others wait; anyone else is told at once
that it is busy. Health checks never take a turn.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


class Turns:
    """One holder at a time over ``lock``, at most ``max_waiters`` waiting, each bounded."""

    def __init__(self, max_waiters: int, lock: Any | None = None):
        self.max_waiters = max_waiters
        self.lock = lock if lock is not None else threading.Lock()
        self._waiters = 0
        self._count = threading.Lock()

    @property
    def waiting(self) -> int:
        return self._waiters

    @contextmanager
    def take(self, wait_s: float, busy: Callable[[str], Exception]) -> Iterator[None]:
        """Hold the turn for the block; raise ``busy(why)`` instead of waiting too long."""
        if not self.lock.acquire(blocking=False):
            with self._count:
                if self._waiters >= self.max_waiters:
                    raise busy(f"{self._waiters} other call(s) already wait")
                self._waiters += 1
            try:
                got = self.lock.acquire(timeout=max(0.0, wait_s))
            finally:
                with self._count:
                    self._waiters -= 1
            if not got:
                raise busy(f"it was still busy after {wait_s * 1000:.0f} ms")
        try:
            yield
        finally:
            self.lock.release()
