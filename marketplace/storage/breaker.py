"""A circuit breaker in front of a blob store: a stalled store fails fast.

With short client timeouts a stalled S3 endpoint still costs every request
that touches it a few seconds, and under load those requests occupy every
server thread, so search, pages and the engine stop answering too. After
:attr:`CircuitBreakerStore.threshold` consecutive :class:`StorageUnavailable`
failures the breaker *opens*: for :attr:`~CircuitBreakerStore.cooldown` seconds
every call fails at once with ``StorageUnavailable`` (a ``503`` for a publish
or a download) without touching the store. Then one call is let through as a
probe; its success closes the breaker, its failure opens it again. Only
unavailability counts: a missing blob or a bad digest is an answer, not a
stall.

The breaker is per process (each server worker learns on its own within
``threshold`` calls); that is enough to bound the damage, and needs no shared
state that could itself stall.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import IO, Any, BinaryIO, TypeVar

from .base import BlobInfo, BlobStore
from .errors import StorageUnavailable

T = TypeVar("T")

DEFAULT_THRESHOLD = 3
DEFAULT_COOLDOWN = 30.0


class CircuitBreakerStore(BlobStore):
    """``inner`` behind a circuit breaker; same interface, same errors."""

    def __init__(self, inner: BlobStore, *, threshold: int = DEFAULT_THRESHOLD,
                 cooldown: float = DEFAULT_COOLDOWN,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.inner = inner
        self.threshold = max(1, threshold)
        self.cooldown = cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._open_until: float | None = None
        self._probing = False
        self.description = getattr(inner, "description", repr(inner))

    # -- state ---------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        """Whether calls currently fail fast."""
        with self._lock:
            return self._open_until is not None and (self._probing
                                                     or self._clock() < self._open_until)

    def _admit(self) -> bool:
        """Whether this call may go to the store; ``True`` for the one probe."""
        with self._lock:
            if self._open_until is None:
                return False
            if self._probing or self._clock() < self._open_until:
                left = max(0.0, self._open_until - self._clock())
                wait = (f"calls to it fail at once for {left:.0f} more seconds, then it is "
                        "tried again")
                raise StorageUnavailable(f"the blob store {self.description} stopped "
                                         f"answering; {wait}",
                                         public=f"the blob store is not answering; {wait}")
            self._probing = True
            return True

    def _record(self, ok: bool, probe: bool) -> None:
        with self._lock:
            if probe:
                self._probing = False
            if ok:
                self._failures, self._open_until = 0, None
                return
            self._failures += 1
            if probe or self._failures >= self.threshold:
                self._open_until = self._clock() + self.cooldown

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        probe = self._admit()
        try:
            result = fn(*args, **kwargs)
        except StorageUnavailable:
            self._record(False, probe)
            raise
        except BaseException:
            self._record(True, probe)  # the store answered (not found, bad digest...)
            raise
        self._record(True, probe)
        return result

    # -- the BlobStore interface ------------------------------------------------

    def put(self, sha256: str, data: bytes | IO[bytes]) -> None:
        self._call(self.inner.put, sha256, data)

    def exists(self, sha256: str) -> bool:
        return self._call(self.inner.exists, sha256)

    def open(self, sha256: str) -> BinaryIO:
        return self._call(self.inner.open, sha256)

    def size(self, sha256: str) -> int:
        return self._call(self.inner.size, sha256)

    def delete(self, sha256: str) -> None:
        self._call(self.inner.delete, sha256)

    def iter_blobs(self) -> Iterator[BlobInfo]:
        probe = self._admit()
        try:
            yield from self.inner.iter_blobs()
        except StorageUnavailable:
            self._record(False, probe)
            raise
        self._record(True, probe)

    def check(self) -> None:
        self._call(self.inner.check)

    def ensure(self) -> None:
        self._call(self.inner.ensure)

    def read(self, sha256: str) -> bytes:
        return self._call(self.inner.read, sha256)

    def verify(self, sha256: str) -> bool:
        return self._call(self.inner.verify, sha256)

    def presigned_url(self, sha256: str, expires: int = 300,
                      filename: str | None = None) -> str | None:
        return self._call(self.inner.presigned_url, sha256, expires, filename)

    def __getattr__(self, name: str) -> Any:  # backend specifics (bucket, root, client)
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        return f"CircuitBreakerStore({self.inner!r})"
