"""Read-only queries over the ``readings`` hypertable (written by telemetry-ingest)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool


class ReadingQueries:
    def __init__(self, pool: ConnectionPool, statement_timeout_ms: int) -> None:
        self._pool = pool
        self._timeout = statement_timeout_ms

    def _fetch(self, query: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        with self._pool.connection() as conn, conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            cur.execute("SELECT set_config('statement_timeout', %s, true)", (str(self._timeout),))
            return cur.execute(query, params).fetchall()  # type: ignore[arg-type] - constant SQL

    def latest(self, *, domain: str | None, since: timedelta, limit: int) -> list[dict[str, Any]]:
        """The newest reading of each device that reported within ``since``."""
        return self._fetch(
            "SELECT DISTINCT ON (device_id) device_id, domain, ts, metrics FROM readings "
            "WHERE ts > now() - %(since)s AND (%(domain)s::text IS NULL OR domain = %(domain)s) "
            "ORDER BY device_id, ts DESC LIMIT %(limit)s",
            {"since": since, "domain": domain, "limit": limit},
        )

    def device_latest(self, device_id: str) -> dict[str, Any] | None:
        rows = self._fetch(
            "SELECT device_id, domain, ts, metrics FROM readings WHERE device_id = %(id)s ORDER BY ts DESC LIMIT 1",
            {"id": device_id},
        )
        return rows[0] if rows else None

    def raw(self, device_id: str, start: datetime, end: datetime, limit: int) -> list[dict[str, Any]]:
        return self._fetch(
            "SELECT ts, metrics FROM readings WHERE device_id = %(id)s AND ts >= %(start)s AND ts < %(end)s "
            "ORDER BY ts LIMIT %(limit)s",
            {"id": device_id, "start": start, "end": end, "limit": limit},
        )

    def buckets(
        self, device_id: str, metric: str, start: datetime, end: datetime, bucket: timedelta
    ) -> list[dict[str, Any]]:
        """Per ``bucket`` (TimescaleDB time_bucket): count, avg, min, max of one metric."""
        return self._fetch(
            "SELECT time_bucket(%(bucket)s, ts) AS bucket, count(*) AS count, "
            "avg((metrics ->> %(metric)s)::float8) AS avg, min((metrics ->> %(metric)s)::float8) AS min, "
            "max((metrics ->> %(metric)s)::float8) AS max "
            "FROM readings WHERE device_id = %(id)s AND ts >= %(start)s AND ts < %(end)s "
            "AND metrics ? %(metric)s GROUP BY 1 ORDER BY 1",
            {"bucket": bucket, "metric": metric, "id": device_id, "start": start, "end": end},
        )
