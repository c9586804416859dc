"""Collect readings into batches by size or age, store each batch, then acknowledge it.

At-least-once: a message is acknowledged to its broker only after the batch holding it has
committed, so a crash before the commit gets it redelivered, and the store's key makes the
redelivery a no-op. The queue is bounded: when the database is slow, ``put`` blocks the MQTT
network thread, the broker's in-flight window (Receive Maximum) fills, and the broker holds
further messages instead of us buffering without end.

Pipelined: ``writers`` threads take batches from the one queue, so a batch that is slow to
commit (a WAL flush, a busy database host) does not hold the readings arriving behind it; they go
in the next writer's batch at once. Each writer acknowledges only its own batch after its commit,
so the guarantee above holds per batch, and the store's key makes their order irrelevant.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Pending(Generic[T]):
    """An item and how to acknowledge it once stored."""

    item: T
    ack: Callable[[], None]


@dataclass
class BatchStats:
    """Counts of the sink's answers. ``stored``: rows the sink wrote. ``duplicates``: readings of
    acknowledged batches the sink did not write because their key was stored already, whoever
    stored it: a redelivery, a re-send via another broker pod, or (the ingest's database.py)
    during a move the source site, whose readings reach a database taking no writes by
    replication. ``failures``: failed attempts, a batch held for its source included."""

    batches: int = 0
    stored: int = 0
    duplicates: int = 0
    failures: int = 0
    last_error: str = ""
    last_flush_s: float = 0.0


class Batcher(Generic[T]):
    """Writer threads: ``sink(items) -> (stored, duplicates)`` runs once per batch, retried with
    backoff until it succeeds (or the batcher is stopped past its drain deadline); ``sink`` must
    be safe to call from ``writers`` threads at once (one database connection each). A sink holds
    a batch by raising: nothing of it is acknowledged until a later call returns (the ingest's
    store does so while its database takes no writes and lacks some of the batch)."""

    def __init__(
        self,
        sink: Callable[[Sequence[T]], tuple[int, int]],
        *,
        max_size: int,
        max_wait_s: float,
        queue_size: int,
        before_first: Callable[[], None] | None = None,
        writers: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if writers < 1:
            raise ValueError(f"writers: 1 or more, got {writers}")
        self._sink = sink
        self._max_size = max_size
        self._max_wait_s = max_wait_s
        self._queue: queue.Queue[Pending[T]] = queue.Queue(maxsize=queue_size)
        self._before_first = before_first
        self._clock = clock
        self._stopping = threading.Event()
        self._abandon = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(index,), name=f"batcher-{index}", daemon=True)
            for index in range(writers)
        ]
        self._stats_lock = threading.Lock()
        self.ready = threading.Event()
        self.stats = BatchStats()
        self.on_flush: Callable[[Sequence[T], float], None] | None = None

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def put(self, pending: Pending[T]) -> None:
        """Blocks while the queue is full (back-pressure to the broker)."""
        while True:
            try:
                self._queue.put(pending, timeout=0.5)
                return
            except queue.Full:
                if self._abandon.is_set():
                    return

    def queued(self) -> int:
        return self._queue.qsize()

    def stop(self, timeout_s: float) -> bool:
        """Store what is queued, then stop; False if it could not within ``timeout_s``."""
        self._stopping.set()
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(deadline - time.monotonic(), 0))
        if any(thread.is_alive() for thread in self._threads):
            self._abandon.set()
            for thread in self._threads:
                thread.join(2)
            return False
        return True

    # writer thread -----------------------------------------------------------------------------

    def _run(self, index: int) -> None:
        if index == 0:
            if self._before_first is not None:
                self._retry(self._before_first, "prepare")
            self.ready.set()
        else:
            # The others write only once the first has prepared (the schema exists).
            while not self.ready.wait(0.2):
                if self._abandon.is_set() or (self._stopping.is_set() and not self._threads[0].is_alive()):
                    return
        while not self._abandon.is_set():
            batch = self._collect()
            if batch:
                self._store(batch)
            elif self._stopping.is_set():
                return

    def _collect(self) -> list[Pending[T]]:
        try:
            first = self._queue.get(timeout=0.2)
        except queue.Empty:
            return []
        batch = [first]
        deadline = self._clock() + self._max_wait_s
        while len(batch) < self._max_size:
            remaining = deadline - self._clock()
            try:
                if remaining <= 0 or self._stopping.is_set():
                    batch.append(self._queue.get_nowait())  # draining: take what is there, wait for nothing
                else:
                    batch.append(self._queue.get(timeout=min(remaining, 0.1)))
            except queue.Empty:
                if remaining <= 0 or self._stopping.is_set():
                    break
        return batch

    def _store(self, batch: list[Pending[T]]) -> None:
        items = [p.item for p in batch]
        started = self._clock()

        def write() -> None:
            stored, duplicates = self._sink(items)
            with self._stats_lock:
                self.stats.stored += stored
                self.stats.duplicates += duplicates

        if not self._retry(write, "store"):
            return
        with self._stats_lock:
            self.stats.batches += 1
            self.stats.last_flush_s = self._clock() - started
        for pending in batch:
            try:
                pending.ack()
            except Exception:  # noqa: BLE001 - a lost ack means a redelivery, which the key absorbs
                log.warning("could not acknowledge a stored message", exc_info=True)
        if self.on_flush is not None:
            self.on_flush(items, self.stats.last_flush_s)

    def _retry(self, action: Callable[[], None], what: str) -> bool:
        delay = 0.5
        while True:
            try:
                action()
                with self._stats_lock:
                    self.stats.last_error = ""
                return True
            except Exception as error:  # noqa: BLE001 - keep the data, retry, report through readiness
                with self._stats_lock:
                    self.stats.failures += 1
                    self.stats.last_error = f"{type(error).__name__}: {error}"[:300]
                log.warning(f"{what} failed; retrying in {delay:.1f}s", extra={"error": self.stats.last_error})
            if self._abandon.wait(delay):
                return False
            delay = min(delay * 2, 5.0)
