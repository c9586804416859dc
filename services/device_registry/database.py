"""The ``devices`` database: the schema and the queries of the registry."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from device_registry.models import Device, DeviceIn, Location
from service_common import migrations

MIGRATION_LOCK = 4_011_900_101
MIGRATIONS: tuple[migrations.Migration, ...] = (
    (
        1,
        """
        CREATE TABLE IF NOT EXISTS devices (
            id             text PRIMARY KEY,
            device_class   text NOT NULL,
            latitude       double precision NOT NULL,
            longitude      double precision NOT NULL,
            location_label text,
            registered_at  timestamptz NOT NULL DEFAULT now(),
            retired_at     timestamptz
        );
        CREATE INDEX IF NOT EXISTS devices_class_idx ON devices (device_class) WHERE retired_at IS NULL;
        CREATE TABLE IF NOT EXISTS commands (
            id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            device_id       text NOT NULL REFERENCES devices (id),
            command         text NOT NULL,
            args            jsonb NOT NULL,
            topic           text NOT NULL,
            brokers_reached integer,
            created_at      timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX IF NOT EXISTS commands_device_idx ON commands (device_id, created_at);
        """,
    ),
)

_COLUMNS = "id, device_class, latitude, longitude, location_label, registered_at, retired_at"


def migrate(conn: psycopg.Connection) -> int:
    return migrations.apply(conn, MIGRATION_LOCK, MIGRATIONS)


def require_schema(conn: psycopg.Connection) -> int:
    """The running registry's check when the migration Job owns the schema."""
    return migrations.require(conn, MIGRATIONS)


class AlreadyRegistered(Exception):
    pass


def _device(row: dict[str, Any]) -> Device:
    return Device(
        id=row["id"],
        device_class=row["device_class"],
        location=Location(latitude=row["latitude"], longitude=row["longitude"], label=row["location_label"]),
        registered_at=row["registered_at"],
        retired_at=row["retired_at"],
    )


class DeviceStore:
    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def register(self, device: DeviceIn) -> Device:
        with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(
                f"INSERT INTO devices (id, device_class, latitude, longitude, location_label) "
                f"VALUES (%s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING RETURNING {_COLUMNS}",
                (device.id, device.device_class, device.location.latitude, device.location.longitude,
                 device.location.label),
            )  # fmt: skip
            row = cur.fetchone()
        if row is None:
            raise AlreadyRegistered(device.id)
        return _device(row)

    def get(self, device_id: str) -> Device | None:
        with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(f"SELECT {_COLUMNS} FROM devices WHERE id = %s", (device_id,)).fetchone()
        return None if row is None else _device(row)

    def list(self, *, device_class: str | None, include_retired: bool, after: str | None, limit: int) -> list[Device]:
        """Devices ordered by id; ``after`` is the last id of the previous page."""
        with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(
                f"SELECT {_COLUMNS} FROM devices "
                "WHERE (%(class)s::text IS NULL OR device_class = %(class)s) "
                "AND (%(retired)s OR retired_at IS NULL) "
                "AND (%(after)s::text IS NULL OR id > %(after)s) "
                "ORDER BY id LIMIT %(limit)s",
                {"class": device_class, "retired": include_retired, "after": after, "limit": limit},
            ).fetchall()
        return [_device(row) for row in rows]

    def retire(self, device_id: str) -> Device | None:
        """Mark retired (kept for history and its commands); retiring twice keeps the first time."""
        with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                f"UPDATE devices SET retired_at = COALESCE(retired_at, now()) WHERE id = %s RETURNING {_COLUMNS}",
                (device_id,),
            ).fetchone()
        return None if row is None else _device(row)

    def record_command(self, device_id: str, command: str, args: dict[str, Any], topic: str) -> tuple[int, datetime]:
        with self._pool.connection() as conn:
            row = conn.execute(
                "INSERT INTO commands (device_id, command, args, topic) VALUES (%s, %s, %s::jsonb, %s) "
                "RETURNING id, created_at",
                (device_id, command, json.dumps(args), topic),
            ).fetchone()
        assert row is not None
        return row[0], row[1]

    def command_sent(self, command_id: int, brokers_reached: int) -> None:
        with self._pool.connection() as conn:
            conn.execute("UPDATE commands SET brokers_reached = %s WHERE id = %s", (brokers_reached, command_id))
