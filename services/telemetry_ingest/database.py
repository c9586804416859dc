"""Writes batches of readings: COPY into a session staging table, then one INSERT ... ON
CONFLICT DO NOTHING into the hypertable, so a duplicate (in the batch or already stored) is
skipped by the key instead of failing the batch."""

from __future__ import annotations

from collections.abc import Sequence

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


class ReadingStore:
    """The ``sink`` of the ingest's batcher."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def write(self, readings: Sequence[Reading]) -> tuple[int, int]:
        """Store a batch in one transaction; returns (new rows, duplicates skipped)."""
        with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            cur.execute(STAGING_DDL)
            with cur.copy(COPY_SQL) as copy:
                for r in readings:
                    copy.write_row((r.device_id, r.ts, r.domain, r.metrics_json, r.received_at))
            cur.execute(INSERT_SQL)
            stored = cur.rowcount
        return stored, len(readings) - stored
