"""The circuit breaker in front of every blob store: fails fast while a store is stalled,
probes once after the cooldown, and counts only unavailability."""

from __future__ import annotations

import pytest

from marketplace.storage import BlobNotFound, LocalBlobStore, StorageUnavailable
from marketplace.storage.breaker import CircuitBreakerStore

SHA = "0" * 64


class Flaky(LocalBlobStore):
    """A local store whose ``check`` fails while ``down`` is set, counting calls."""

    down = True
    calls = 0

    def check(self) -> None:
        self.calls += 1
        if self.down:
            raise StorageUnavailable("stalled")


def test_opens_after_the_threshold_then_probes_once(tmp_path):
    now = [0.0]
    inner = Flaky(tmp_path)
    store = CircuitBreakerStore(inner, threshold=2, cooldown=30, clock=lambda: now[0])
    for _ in range(2):
        with pytest.raises(StorageUnavailable, match="stalled"):
            store.check()
    assert store.is_open and inner.calls == 2
    with pytest.raises(StorageUnavailable, match="fail at once"):
        store.check()
    assert inner.calls == 2  # the store was not asked
    now[0] = 31.0
    with pytest.raises(StorageUnavailable, match="stalled"):
        store.check()  # the probe fails: open again at once
    assert inner.calls == 3 and store.is_open
    now[0] = 62.0
    inner.down = False
    store.check()  # the probe succeeds: closed
    assert not store.is_open and inner.calls == 4


def test_answers_from_the_store_do_not_open_it(tmp_path):
    store = CircuitBreakerStore(LocalBlobStore(tmp_path), threshold=1)
    for _ in range(3):
        with pytest.raises(BlobNotFound):
            store.read(SHA)
    assert not store.is_open
    assert store.exists(SHA) is False and list(store.iter_blobs()) == []
