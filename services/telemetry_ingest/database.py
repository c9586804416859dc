"""Writes batches of readings: COPY into a session staging table, then one INSERT ... ON
CONFLICT DO NOTHING into the hypertable, so a duplicate (in the batch or already stored) is
skipped by the key instead of failing the batch.

Held until stored: during a move between sites the ingest may write to a database that takes
no writes (the new site's hot standby, or the old site's primary once the cutover fences it).
An MQTT bridge gives the new site's ingest every reading the old site's broker gets, and the old
site's ingest stores it on the old primary, from where replication brings it to the standby. So
a refused batch is looked up, read-only, on the same database: when every one of its readings is
already there, the source stored it and the batch is acknowledged (as duplicates, counted
``by_source``); when any is missing, :class:`HeldForSource` makes the batcher keep the whole
batch, unacknowledged, and retry it with its backoff until replication brings the rest or the
database is promoted (then the INSERT succeeds and ON CONFLICT skips the ones already there).
Nothing is acknowledged that is not stored, and the broker's queue keeps draining meanwhile
instead of overflowing and dropping readings around the cutover.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import psycopg
from psycopg import errors
from psycopg_pool import ConnectionPool

from telemetry_ingest.validation import Reading

COLUMNS = "device_id, ts, domain, metrics, received_at"

# ON COMMIT DELETE ROWS: the staging rows disappear with each commit, the table stays for the
# session, so a batch costs no catalog churn. Made by the batch's own transaction (IF NOT EXISTS:
# once a session), not when the pool connects: against a database that takes no writes (a move's
# standby, a fenced source) that connection would fail, and the ingest with it, where only its
# batches must wait (the batcher retries them) and its reads and probes go on.
STAGING_DDL = """
CREATE TEMP TABLE IF NOT EXISTS readings_staging (
    device_id text, ts timestamptz, domain text, metrics jsonb, received_at timestamptz
) ON COMMIT DELETE ROWS
"""
COPY_SQL = f"COPY readings_staging ({COLUMNS}) FROM STDIN"
INSERT_SQL = (
    f"INSERT INTO readings ({COLUMNS}) SELECT {COLUMNS} FROM readings_staging ON CONFLICT (device_id, ts) DO NOTHING"
)

# How many of the batch's readings have no row under their key (device_id, ts), in one query:
# a read-only SELECT, which a hot standby and a fenced primary both answer. The batch's own time
# range, as constants, lets TimescaleDB skip the chunks the batch cannot be in, so the lookup
# stays cheap however long the hypertable is; a key given twice in the batch counts twice, as
# the readings are what the message says are held.
MISSING_SQL = """
SELECT count(*) FROM unnest(%s::text[], %s::timestamptz[]) AS batch(device_id, ts)
WHERE NOT EXISTS (
    SELECT 1 FROM readings
    WHERE readings.device_id = batch.device_id AND readings.ts = batch.ts
      AND readings.ts >= %s AND readings.ts <= %s
)
"""


class HeldForSource(Exception):
    """The database takes no writes and some of the batch's readings are not in it yet: the
    batch stays unacknowledged (the batcher retries it) until they arrive or writes are back."""

    def __init__(self, missing: int, total: int) -> None:
        super().__init__(
            f"database takes no writes: {missing} of {total} readings not stored yet; "
            "held until they arrive by replication or the database is promoted"
        )
        self.missing = missing
        self.total = total


class Written(NamedTuple):
    """What became of a batch: ``stored`` new rows; ``duplicates`` readings already stored
    (redeliveries, re-sends, and the ``by_source`` ones), so ``stored + duplicates`` is the
    batch's size; ``by_source`` those of the duplicates that a database taking no writes already
    held, i.e. the move's source site stored them and replication brought them."""

    stored: int
    duplicates: int
    by_source: int = 0


class ReadingStore:
    """The ``sink`` of the ingest's batcher."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def write(self, readings: Sequence[Reading]) -> tuple[int, int]:
        """Store a batch in one transaction; returns (new rows, duplicates skipped)."""
        written = self.write_batch(readings)
        return written.stored, written.duplicates

    def write_batch(self, readings: Sequence[Reading]) -> Written:
        """Store a batch in one transaction, or, where the database takes no writes, confirm that
        it holds every reading already; raises :class:`HeldForSource` when it does not."""
        with self._pool.connection() as conn:
            try:
                with conn.transaction(), conn.cursor() as cur:
                    cur.execute(STAGING_DDL)
                    with cur.copy(COPY_SQL) as copy:
                        for r in readings:
                            copy.write_row((r.device_id, r.ts, r.domain, r.metrics_json, r.received_at))
                    cur.execute(INSERT_SQL)
                    stored = cur.rowcount
            except errors.ReadOnlySqlTransaction as refused:
                # SQLSTATE 25006: a standby ("cannot execute ... in a read-only transaction") or
                # default_transaction_read_only. Any other error is not ours to judge: it goes to
                # the batcher unchanged, which retries the batch.
                missing = self._missing(conn, readings)
                if missing:
                    raise HeldForSource(missing, len(readings)) from refused
                return Written(0, len(readings), len(readings))
        return Written(stored, len(readings) - stored)

    @staticmethod
    def _missing(conn: psycopg.Connection, readings: Sequence[Reading]) -> int:
        if not readings:
            return 0
        stamps = [r.ts for r in readings]
        # Its own transaction: the refused one is rolled back, and the pool gets the connection
        # back idle.
        with conn.transaction(), conn.cursor() as cur:
            cur.execute(MISSING_SQL, ([r.device_id for r in readings], stamps, min(stamps), max(stamps)))
            row = cur.fetchone()
        assert row is not None
        return int(row[0])
