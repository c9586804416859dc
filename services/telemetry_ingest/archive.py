"""Hourly archive: each closed hour of readings becomes one gzip CSV object in the
``telemetry-archive`` bucket, ``readings/YYYY/MM/DD/HH.csv.gz``.

Built from the database, not from memory: at 2,000 readings/s an hour is ~7 million rows, far
more than a pod's memory or its 64 Mi /tmp. The rows stream from ``COPY ... TO STDOUT`` through
gzip into an S3 multipart upload, so memory stays at a few chunks. An hour is archived once it
has been closed for ``grace`` (late readings); ``archived_hours`` records what is done, so a
restart or a second replica (advisory lock) does not repeat or skip an hour.
"""

from __future__ import annotations

import io
import logging
import threading
import zlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

log = logging.getLogger(__name__)

ARCHIVE_LOCK = 4_011_900_002
HOUR = timedelta(hours=1)


def floor_hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def object_key(hour: datetime) -> str:
    return f"readings/{hour:%Y/%m/%d/%H}.csv.gz"


def due_hours(now: datetime, *, grace: timedelta, lookback_hours: int, done: set[datetime]) -> list[datetime]:
    """Closed hours (ended at least ``grace`` ago) within the look-back, oldest first, not done."""
    last = floor_hour(now - grace) - HOUR
    first = floor_hour(now) - timedelta(hours=lookback_hours)
    hours = []
    hour = first
    while hour <= last:
        if hour not in done:
            hours.append(hour)
        hour += HOUR
    return hours


class GzipStream(io.RawIOBase):
    """A readable gzip stream over an iterator of byte chunks; counts lines of the input."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._gzip = zlib.compressobj(6, zlib.DEFLATED, 31)  # 31: gzip container
        self._buffer = bytearray()
        self._done = False
        self.lines = 0

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        while len(self._buffer) < len(target) and not self._done:
            chunk = next(self._chunks, None)
            if chunk is None:
                self._buffer += self._gzip.flush()
                self._done = True
            else:
                self.lines += chunk.count(b"\n")
                self._buffer += self._gzip.compress(chunk)
        size = min(len(target), len(self._buffer))
        target[:size] = self._buffer[:size]
        del self._buffer[:size]
        return size


def _copy_chunks(copy: psycopg.Copy) -> Iterator[bytes]:
    while data := copy.read():
        yield bytes(data)


TAKES_WRITES_SQL = "SELECT NOT pg_is_in_recovery() AND current_setting('transaction_read_only') = 'off'"
"""Whether this transaction may write: not a hot standby, and not read-only (a move's cutover
fences the old site with ``default_transaction_read_only``, which every new transaction inherits)."""


def takes_writes(conn: Any) -> bool:
    row = conn.execute(TAKES_WRITES_SQL).fetchone()
    return bool(row and row[0])


class Archiver:
    """Runs :meth:`run_once` every ``interval_s`` on its own thread."""

    def __init__(
        self,
        pool: ConnectionPool,
        s3: Any,
        bucket: str,
        *,
        interval_s: float,
        grace: timedelta,
        lookback_hours: int,
        wait_for: threading.Event | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._pool, self._s3, self._bucket = pool, s3, bucket
        self._interval_s, self._grace, self._lookback = interval_s, grace, lookback_hours
        self._wait_for = wait_for
        self._clock = clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="archiver", daemon=True)
        self.archived = 0
        self.last_error = ""

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        if self._wait_for is not None:
            while not self._wait_for.wait(1):
                if self._stop.is_set():
                    return
        while not self._stop.is_set():
            try:
                self.run_once()
                self.last_error = ""
            except Exception as error:  # noqa: BLE001 - retried next interval, visible in /v1/stats
                self.last_error = f"{type(error).__name__}: {error}"[:300]
                log.warning("archive run failed", extra={"error": self.last_error})
            self._stop.wait(self._interval_s)

    def run_once(self) -> list[str]:
        """Archive every due hour that has readings; returns the object keys written."""
        written: list[str] = []
        with self._pool.connection() as conn, conn.transaction():
            if not takes_writes(conn):
                # A move's standby (in recovery) or a fenced source (read-only by default): an
                # object written now would be one its database never records, on a side whose
                # bucket the move mirrors or compares. The next interval asks again.
                return written
            locked = conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (ARCHIVE_LOCK,)).fetchone()
            if not locked or not locked[0]:
                return written  # another replica is archiving
            now = self._clock()
            start = floor_hour(now) - timedelta(hours=self._lookback)
            done = {row[0] for row in conn.execute("SELECT hour FROM archived_hours WHERE hour >= %s", (start,))}
            for hour in due_hours(now, grace=self._grace, lookback_hours=self._lookback, done=done):
                has_rows = conn.execute(
                    "SELECT EXISTS (SELECT 1 FROM readings WHERE ts >= %s AND ts < %s)", (hour, hour + HOUR)
                ).fetchone()
                if not has_rows or not has_rows[0]:
                    continue
                key = object_key(hour)
                count = self._upload(conn, hour, key)
                conn.execute(
                    "INSERT INTO archived_hours (hour, object_key, readings) VALUES (%s, %s, %s) "
                    "ON CONFLICT (hour) DO NOTHING",
                    (hour, key, count),
                )
                written.append(key)
                self.archived += 1
                log.info("archived an hour", extra={"hour": hour.isoformat(), "object": key, "readings": count})
        return written

    def _upload(self, conn: psycopg.Connection, hour: datetime, key: str) -> int:
        query = sql.SQL(
            "COPY (SELECT device_id, ts, domain, metrics FROM readings WHERE ts >= {} AND ts < {} "
            "ORDER BY ts, device_id) TO STDOUT WITH (FORMAT csv, HEADER)"
        ).format(sql.Literal(hour), sql.Literal(hour + HOUR))
        with conn.cursor() as cur, cur.copy(query) as copy:
            stream = GzipStream(_copy_chunks(copy))
            self._s3.upload_fileobj(
                io.BufferedReader(stream, buffer_size=1 << 20),
                self._bucket,
                key,
                ExtraArgs={"ContentType": "text/csv", "ContentEncoding": "gzip"},
            )
        return max(stream.lines - 1, 0)  # minus the header
