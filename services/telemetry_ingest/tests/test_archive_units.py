"""The archive's pure parts: which hours are due, object keys, the gzip stream."""

from __future__ import annotations

import gzip
import io
from datetime import UTC, datetime, timedelta

import pytest

from telemetry_ingest.archive import TAKES_WRITES_SQL, Archiver, GzipStream, due_hours, object_key

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 28, 22, 5, tzinfo=UTC)


def test_only_closed_hours_past_the_grace_are_due() -> None:
    hours = due_hours(NOW, grace=timedelta(minutes=10), lookback_hours=3, done=set())
    # 21:00-22:00 closed at 22:00 but the grace runs to 22:10: not yet.
    assert hours == [datetime(2026, 11, 28, 19, tzinfo=UTC), datetime(2026, 11, 28, 20, tzinfo=UTC)]


def test_done_hours_are_skipped() -> None:
    done = {datetime(2026, 11, 28, 19, tzinfo=UTC)}
    hours = due_hours(NOW, grace=timedelta(0), lookback_hours=3, done=done)
    assert hours == [datetime(2026, 11, 28, h, tzinfo=UTC) for h in (20, 21)]


def test_object_keys_sort_by_time() -> None:
    assert object_key(datetime(2026, 1, 2, 3, tzinfo=UTC)) == "readings/2026/01/02/03.csv.gz"


def test_gzip_stream_round_trip_and_line_count() -> None:
    lines = [b"device_id,ts\n"] + [f"d-{i},2026-01-01\n".encode() for i in range(50_000)]
    chunks = [b"".join(lines[i : i + 777]) for i in range(0, len(lines), 777)]
    stream = GzipStream(iter(chunks))
    compressed = io.BufferedReader(stream, buffer_size=4096).read()
    assert gzip.decompress(compressed) == b"".join(lines)
    assert stream.lines == 50_001


def test_gzip_stream_of_nothing_is_a_valid_empty_gzip() -> None:
    assert gzip.decompress(io.BufferedReader(GzipStream(iter([]))).read()) == b""


class _Conn:
    """A connection that answers the archive's first question and records every statement."""

    def __init__(self, takes_writes: bool) -> None:
        self.answer = takes_writes
        self.statements: list[str] = []

    def __enter__(self) -> _Conn:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def transaction(self) -> _Conn:
        return self

    def execute(self, statement: str, params: object = None) -> _Conn:
        self.statements.append(statement)
        self._row = (self.answer,) if statement == TAKES_WRITES_SQL else (False,)
        return self

    def fetchone(self) -> tuple[bool]:
        return self._row


class _Pool:
    def __init__(self, conn: _Conn) -> None:
        self.conn = conn

    def connection(self) -> _Conn:
        return self.conn


class _S3:
    def __init__(self) -> None:
        self.uploads: list[str] = []

    def upload_fileobj(self, _body: object, _bucket: str, key: str, **_: object) -> None:
        self.uploads.append(key)


@pytest.mark.parametrize("writable", [False, True])
def test_a_database_that_takes_no_writes_is_not_archived(writable: bool) -> None:
    """On a move's standby or a fenced source the archive asks first and stops there: nothing
    locked, read or uploaded. A writable database goes on to the lock (which this stand-in
    refuses, as when another replica archives)."""
    conn, s3 = _Conn(writable), _S3()
    archiver = Archiver(_Pool(conn), s3, "archive", interval_s=60, grace=timedelta(0), lookback_hours=3)
    assert archiver.run_once() == []
    assert s3.uploads == []
    expected = [TAKES_WRITES_SQL, "SELECT pg_try_advisory_xact_lock(%s)"] if writable else [TAKES_WRITES_SQL]
    assert conn.statements == expected


def test_the_question_covers_recovery_and_a_read_only_default() -> None:
    assert "pg_is_in_recovery()" in TAKES_WRITES_SQL
    assert "current_setting('transaction_read_only') = 'off'" in TAKES_WRITES_SQL
