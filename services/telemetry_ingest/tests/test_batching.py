"""The batcher: batches by size and age, acknowledges only after a successful store, retries a
failed store with the same batch, and drains on stop."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest

from telemetry_ingest.batching import Batcher, Pending

pytestmark = pytest.mark.unit


class FakeStore:
    """A sink keyed like the hypertable: an item stored twice counts once."""

    def __init__(self, fail_first: int = 0) -> None:
        self.rows: set[int] = set()
        self.batches: list[list[int]] = []
        self.fail_first = fail_first
        self.lock = threading.Lock()

    def write(self, items: Sequence[int]) -> tuple[int, int]:
        with self.lock:
            if self.fail_first:
                self.fail_first -= 1
                raise ConnectionError("database went away")
            self.batches.append(list(items))
            new = set(items) - self.rows
            self.rows |= new
            return len(new), len(items) - len(new)


def wait_for(predicate, timeout: float = 5.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_batches_by_size_and_acks_after_store() -> None:
    store = FakeStore()
    acked: list[int] = []
    batcher = Batcher(store.write, max_size=10, max_wait_s=5, queue_size=100)
    for i in range(25):
        batcher.put(Pending(i, lambda i=i: acked.append(i)))
    batcher.start()
    wait_for(lambda: len(store.batches) >= 2)
    assert [len(b) for b in store.batches[:2]] == [10, 10]
    assert batcher.stop(5)
    assert sorted(store.rows) == list(range(25)) and sorted(acked) == list(range(25))


def test_a_partial_batch_goes_after_max_wait() -> None:
    store = FakeStore()
    batcher = Batcher(store.write, max_size=1000, max_wait_s=0.05, queue_size=100)
    batcher.start()
    batcher.put(Pending(1, lambda: None))
    wait_for(lambda: store.batches == [[1]], timeout=2)
    batcher.stop(2)


def test_duplicates_are_counted_not_stored_twice() -> None:
    store = FakeStore()
    batcher = Batcher(store.write, max_size=3, max_wait_s=0.01, queue_size=100)
    batcher.start()
    for item in (1, 2, 2, 1, 3):
        batcher.put(Pending(item, lambda: None))
    batcher.stop(5)
    assert store.rows == {1, 2, 3}
    assert (batcher.stats.stored, batcher.stats.duplicates) == (3, 2)


def test_a_failed_store_is_retried_and_nothing_is_acked_before() -> None:
    store = FakeStore(fail_first=2)
    acked: list[int] = []
    batcher = Batcher(store.write, max_size=5, max_wait_s=0.01, queue_size=100)
    batcher.start()
    batcher.put(Pending(7, lambda: acked.append(7)))
    wait_for(lambda: batcher.stats.failures >= 1)
    assert acked == []
    wait_for(lambda: acked == [7], timeout=10)
    assert store.batches == [[7]] and batcher.stats.failures == 2 and batcher.stats.last_error == ""
    batcher.stop(2)


def test_stop_gives_up_after_its_deadline_when_the_store_stays_down() -> None:
    store = FakeStore(fail_first=10**6)
    acked: list[int] = []
    batcher = Batcher(store.write, max_size=5, max_wait_s=0.01, queue_size=100)
    batcher.start()
    batcher.put(Pending(1, lambda: acked.append(1)))
    assert batcher.stop(0.5) is False
    assert acked == []  # never acknowledged: the broker may redeliver it


def test_prepare_runs_before_the_first_batch_and_is_retried() -> None:
    calls: list[str] = []
    store = FakeStore()

    def prepare() -> None:
        calls.append("prepare")
        if len(calls) < 2:
            raise ConnectionError("not yet")

    batcher = Batcher(store.write, max_size=5, max_wait_s=0.01, queue_size=10, before_first=prepare)
    batcher.put(Pending(1, lambda: None))
    batcher.start()
    wait_for(batcher.ready.is_set, timeout=5)
    wait_for(lambda: store.rows == {1})
    assert calls == ["prepare", "prepare"]
    batcher.stop(2)
