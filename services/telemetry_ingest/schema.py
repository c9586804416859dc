"""The telemetry schema, as ordered idempotent migrations.

Who runs them: deployed, each release's migration Job (``python -m telemetry_ingest.migrate``)
as ``telemetry_owner``, which owns the ``telemetry`` database (environments/defaults.yaml); the
ingest itself is told ``MIGRATE_ON_START=false``, connects as ``telemetry_ingest`` with DML only
(the database setup's ``write`` grant, default privileges included) and waits for the schema
(:func:`require_schema`). Locally the ingest may migrate at start (the default). Concurrent
migrations serialise on an advisory lock. Tables the owner creates are readable by ``open_data``
and writable by the ingest through the default privileges the database setup grants.
"""

from __future__ import annotations

import psycopg

from service_common import migrations

# Any fixed number; the ingest's replicas take it to migrate one at a time.
MIGRATION_LOCK = 4_011_900_001

MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        1,
        """
        CREATE TABLE IF NOT EXISTS readings (
            device_id   text        NOT NULL,
            ts          timestamptz NOT NULL,
            domain      text        NOT NULL,
            metrics     jsonb       NOT NULL,
            received_at timestamptz NOT NULL,
            stored_at   timestamptz NOT NULL DEFAULT now(),
            -- The idempotence key: a reading delivered twice is the same row.
            PRIMARY KEY (device_id, ts)
        );
        SELECT create_hypertable('readings', by_range('ts', INTERVAL '1 day'), if_not_exists => TRUE);
        CREATE TABLE IF NOT EXISTS archived_hours (
            hour        timestamptz PRIMARY KEY,
            object_key  text        NOT NULL,
            readings    bigint      NOT NULL,
            archived_at timestamptz NOT NULL DEFAULT now()
        );
        """,
    ),
)


class MissingExtension(RuntimeError):
    """The telemetry database has no TimescaleDB (the image or the init script is wrong)."""


def require_timescaledb(conn: psycopg.Connection) -> None:
    if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone() is None:
        raise MissingExtension(
            "the timescaledb extension is not installed in this database; the database setup Job "
            "creates it where the server offers it (shared_preload_libraries = 'timescaledb')"
        )


def migrate(conn: psycopg.Connection) -> int:
    """Apply what is missing; returns the schema version. Safe to run from every replica."""
    return migrations.apply(conn, MIGRATION_LOCK, MIGRATIONS, precheck=require_timescaledb)


def require_schema(conn: psycopg.Connection) -> int:
    """The running ingest's check when the migration Job owns the schema."""
    return migrations.require(conn, MIGRATIONS)
