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


class SlowFirstStore(FakeStore):
    """The first batch's commit hangs until ``release`` is set (a slow WAL flush)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.first = True

    def write(self, items: Sequence[int]) -> tuple[int, int]:
        with self.lock:
            first, self.first = self.first, False
        if first:
            assert self.release.wait(10), "never released"
        return super().write(items)


def test_a_slow_batch_does_not_hold_the_readings_behind_it() -> None:
    store = SlowFirstStore()
    acked: list[int] = []
    batcher = Batcher(store.write, max_size=2, max_wait_s=0.01, queue_size=100, writers=2)
    batcher.start()
    for i in (1, 2):
        batcher.put(Pending(i, lambda i=i: acked.append(i)))
    wait_for(lambda: not store.first)  # the first batch is stuck in its commit
    for i in (3, 4):
        batcher.put(Pending(i, lambda i=i: acked.append(i)))
    # The second writer stores and acknowledges the later readings meanwhile; the stuck ones
    # stay unacknowledged until their own commit.
    wait_for(lambda: sorted(acked) == [3, 4])
    assert store.rows == {3, 4}
    store.release.set()
    wait_for(lambda: sorted(acked) == [1, 2, 3, 4])
    assert batcher.stop(5)
    assert store.rows == {1, 2, 3, 4} and (batcher.stats.stored, batcher.stats.batches) == (4, 2)


def test_writers_drain_everything_on_stop_and_count_each_reading_once() -> None:
    store = FakeStore()
    acked: list[int] = []
    batcher = Batcher(store.write, max_size=7, max_wait_s=0.01, queue_size=1000, writers=3)
    batcher.start()
    for i in range(500):
        batcher.put(Pending(i % 400, lambda i=i: acked.append(i)))
    assert batcher.stop(10)
    assert sorted(acked) == list(range(500))
    assert store.rows == set(range(400))
    assert (batcher.stats.stored, batcher.stats.duplicates) == (400, 100)


def test_writers_wait_for_the_prepare_step() -> None:
    prepared = threading.Event()
    store = FakeStore()

    def write(items: Sequence[int]) -> tuple[int, int]:
        assert prepared.is_set(), "wrote before the schema was prepared"
        return store.write(items)

    def prepare() -> None:
        time.sleep(0.2)
        prepared.set()

    batcher = Batcher(write, max_size=1, max_wait_s=0.01, queue_size=10, writers=3, before_first=prepare)
    for i in range(5):
        batcher.put(Pending(i, lambda: None))
    batcher.start()
    assert batcher.stop(5)
    assert store.rows == set(range(5)) and batcher.stats.failures == 0


def test_no_writer_is_refused() -> None:
    with pytest.raises(ValueError, match="writers"):
        Batcher(FakeStore().write, max_size=1, max_wait_s=0.01, queue_size=10, writers=0)
