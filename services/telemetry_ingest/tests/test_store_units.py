"""The store while its database takes no writes (a move's standby, a fenced source): a refused
batch that the database already holds is acknowledged as stored by the source; one it does not
hold yet is held (raised, so the batcher keeps it unacknowledged); any other error is the
batcher's as before. A stand-in pool answers the store's four statements."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg import errors

from telemetry_ingest.batching import Batcher, Pending
from telemetry_ingest.database import (
    COPY_SQL,
    INSERT_SQL,
    MISSING_SQL,
    STAGING_DDL,
    HeldForSource,
    ReadingStore,
    Written,
)
from telemetry_ingest.validation import Reading

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 28, 22, 0, tzinfo=UTC)
Key = tuple[str, datetime]


def reading(device_id: str, seconds: int) -> Reading:
    return Reading(device_id, "parking", T0 + timedelta(seconds=seconds), '{"occupied": 1}', T0)


class Database:
    """A ``readings`` table keyed by (device_id, ts). ``refuse_at``: the statement a database
    taking no writes refuses (STAGING_DDL on a standby or a fresh session; INSERT_SQL where the
    session made its staging table before the fence), or None when it takes writes."""

    def __init__(self, rows: Iterable[Key] = (), refuse_at: str | None = STAGING_DDL) -> None:
        self.rows: set[Key] = set(rows)
        self.refuse_at = refuse_at
        self.fail_insert: Exception | None = None
        self.statements: list[str] = []
        self.lock = threading.Lock()

    def takes_writes(self) -> None:
        self.refuse_at = None

    def connection(self) -> Connection:
        return Connection(self)


class Connection:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.staged: list[Key] = []
        self.rowcount = -1
        self._row: tuple[int] | None = None

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    @contextmanager
    def transaction(self) -> Iterator[None]:
        try:
            yield
        finally:
            self.staged = []  # ON COMMIT DELETE ROWS, and a rollback forgets them too

    def cursor(self) -> Connection:
        return self

    @contextmanager
    def copy(self, statement: str) -> Iterator[Connection]:
        assert statement == COPY_SQL
        self.db.statements.append(statement)
        yield self

    def write_row(self, row: tuple[object, ...]) -> None:
        self.staged.append((row[0], row[1]))  # type: ignore[arg-type]

    def execute(self, statement: str, params: tuple[object, ...] | None = None) -> None:
        db = self.db
        with db.lock:
            db.statements.append(statement)
            if statement == db.refuse_at:
                raise errors.ReadOnlySqlTransaction("cannot execute CREATE TABLE in a read-only transaction")
            if statement == INSERT_SQL:
                if db.fail_insert is not None:
                    raise db.fail_insert
                new = set(self.staged) - db.rows
                db.rows |= new
                self.rowcount = len(new)
            elif statement == MISSING_SQL:
                assert params is not None
                ids, stamps, low, high = params
                keys = list(zip(ids, stamps, strict=True))  # type: ignore[call-overload]
                assert all(low <= ts <= high for _, ts in keys), "the time range must cover the batch"
                self._row = (sum(key not in db.rows for key in keys),)
            else:
                assert statement == STAGING_DDL, statement

    def fetchone(self) -> tuple[int] | None:
        return self._row


def written(db: Database) -> list[str]:
    return [s for s in db.statements if s in (COPY_SQL, INSERT_SQL)]


BATCH = [reading("p-1", 0), reading("p-2", 0), reading("p-1", 1)]


def test_a_database_that_takes_writes_stores_and_looks_nothing_up() -> None:
    db = Database({BATCH[0].key}, refuse_at=None)
    assert ReadingStore(db).write_batch(BATCH) == Written(2, 1, 0)  # type: ignore[arg-type]
    assert db.rows == {r.key for r in BATCH}
    assert MISSING_SQL not in db.statements


@pytest.mark.parametrize("refuse_at", [STAGING_DDL, INSERT_SQL], ids=["standby", "fenced-session"])
def test_a_refused_batch_the_database_already_holds_is_acknowledged_as_stored_by_its_source(refuse_at: str) -> None:
    stored_by_source = {r.key for r in BATCH}
    db = Database(stored_by_source, refuse_at=refuse_at)
    store = ReadingStore(db)  # type: ignore[arg-type]
    assert store.write_batch(BATCH) == Written(0, 3, 3)
    assert store.write(BATCH) == (0, 3)  # the batcher's shape: all duplicates, so acknowledged
    assert db.rows == stored_by_source
    assert db.statements.count(MISSING_SQL) == 2, "one lookup per batch"


@pytest.mark.parametrize("refuse_at", [STAGING_DDL, INSERT_SQL], ids=["standby", "fenced-session"])
def test_a_refused_batch_with_a_reading_missing_is_held(refuse_at: str) -> None:
    db = Database({BATCH[0].key, BATCH[2].key}, refuse_at=refuse_at)
    with pytest.raises(HeldForSource) as held:
        ReadingStore(db).write_batch(BATCH)  # type: ignore[arg-type]
    assert (held.value.missing, held.value.total) == (1, 3)
    assert "database takes no writes: 1 of 3 readings not stored yet; held until" in str(held.value)
    assert isinstance(held.value.__cause__, errors.ReadOnlySqlTransaction)
    assert db.rows == {BATCH[0].key, BATCH[2].key}
    assert db.statements.count(MISSING_SQL) == 1


@pytest.mark.parametrize(
    "error",
    [
        psycopg.OperationalError("server closed the connection unexpectedly"),
        errors.InsufficientPrivilege("permission denied for table readings"),
        errors.AdminShutdown("terminating connection due to administrator command"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_any_other_error_reaches_the_batcher_unchanged_and_nothing_is_looked_up(error: Exception) -> None:
    db = Database({r.key for r in BATCH}, refuse_at=None)
    db.fail_insert = error
    with pytest.raises(type(error)) as raised:
        ReadingStore(db).write_batch(BATCH)  # type: ignore[arg-type]
    assert raised.value is error
    assert MISSING_SQL not in db.statements


def test_an_empty_batch_needs_no_lookup() -> None:
    db = Database(refuse_at=STAGING_DDL)
    assert ReadingStore(db).write_batch([]) == Written(0, 0, 0)  # type: ignore[arg-type]
    assert MISSING_SQL not in db.statements


def wait_for(predicate, timeout: float = 10.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.mark.parametrize("how", ["replication", "promotion"])
def test_the_batcher_holds_the_batch_until_it_is_stored(how: str) -> None:
    """Nothing of a held batch is acknowledged, not even its readings the source stored, until
    replication brings the rest (then all are the source's) or the database is promoted (then
    the missing one is written and the others are duplicates by the key)."""
    db = Database({BATCH[0].key, BATCH[1].key})
    acked: list[Reading] = []
    batcher = Batcher(ReadingStore(db).write, max_size=10, max_wait_s=0.05, queue_size=10)  # type: ignore[arg-type]
    for r in BATCH:
        batcher.put(Pending(r, lambda r=r: acked.append(r)))
    batcher.start()
    wait_for(lambda: batcher.stats.failures >= 2)
    assert acked == [] and written(db) == []
    assert "1 of 3 readings not stored yet" in batcher.stats.last_error
    if how == "replication":
        with db.lock:
            db.rows.add(BATCH[2].key)
    else:
        db.takes_writes()
    wait_for(lambda: len(acked) == 3)
    assert batcher.stop(5)
    assert db.rows == {r.key for r in BATCH}
    expected = (0, 3) if how == "replication" else (1, 2)
    assert (batcher.stats.stored, batcher.stats.duplicates, batcher.stats.batches) == (*expected, 1)
