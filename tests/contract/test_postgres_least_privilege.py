"""Contract: the APIs' roles get DML only and the owners migrate (issue 11, item 8), on Debian's
PostgreSQL 15 with TimescaleDB (the database image's server and extension).

The init SQL is the program's own, rendered from the repository's settings, and the schemas are
the services' own migrations and write paths. First the layout before this change (each API's role owned its
database and had made its tables), then the program's: an upgrade in place. Afterwards each
API's role reads and writes, TimescaleDB chunks created later included, but cannot DROP, ALTER,
TRUNCATE or CREATE; the owner's migration runs again and changes nothing.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from device_registry.database import migrate as migrate_devices
from device_registry.database import require_schema as devices_schema
from service_common.migrations import SchemaBehind
from smartnation.program.components.database import _roles_databases_grants
from smartnation.program.daemon_config import postgres
from smartnation.settings import load_settings
from smartnation.settings.models import DatabaseSettings
from telemetry_ingest.database import ReadingStore
from telemetry_ingest.schema import migrate as migrate_telemetry
from telemetry_ingest.schema import require_schema as telemetry_schema
from telemetry_ingest.validation import Reading

from .contract_daemons import PgCluster, start_pg_cluster, stop_pg_cluster

pytestmark = pytest.mark.contract

SETTINGS = load_settings("staging").database
OWNERS = {d.name: d.owner for d in SETTINGS.databases}
API_ROLES = {api.database.name: api.database.role for api in load_settings("staging").city_apis.values()
             if api.database is not None and api.database.migrations}  # fmt: skip
READER = "open_data"


def password(role: str) -> str:
    return f"pw-{role}-'quote' $x"


PASSWORDS = {f"{role.name}_password".upper(): password(role.name) for role in SETTINGS.roles if role.login}


def write_scripts(cluster: PgCluster, settings: DatabaseSettings) -> None:
    """The program's init script for ``settings`` (what the database's setup Job runs)."""
    roles, databases, grants = _roles_databases_grants(settings)
    sql = cluster.workdir / "init.sql"
    sql.write_text(postgres.render_init_sql(databases, roles, grants))
    cluster.script.write_text(postgres.render_init_script(databases, roles, grants, sql_path=str(sql)))


def init(cluster: PgCluster) -> None:
    result = subprocess.run(
        ["sh", str(cluster.script)], env=cluster.admin_env() | PASSWORDS, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def conninfo(cluster: PgCluster, role: str, database: str) -> dict[str, object]:
    return {
        "host": "127.0.0.1", "port": cluster.port, "user": role, "password": password(role), "dbname": database,
        "sslmode": "disable", "connect_timeout": 5,
    }  # fmt: skip


def connect(cluster: PgCluster, role: str, database: str) -> psycopg.Connection:
    return psycopg.connect(**conninfo(cluster, role, database), autocommit=True)


def refused(cluster: PgCluster, role: str, database: str, sql: str, reason: str) -> None:
    with connect(cluster, role, database) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege) as error:
        conn.execute(sql)  # type: ignore[arg-type]
    assert reason in str(error.value), error.value


def before_this_change(settings: DatabaseSettings) -> DatabaseSettings:
    """The layout the environments had: each API's role owned its database, no write grants."""
    databases = tuple(replace(d, owner=API_ROLES.get(d.name, d.owner)) for d in settings.databases)
    grants = tuple(g for g in settings.grants if g.privilege != "write")
    return replace(settings, databases=databases, grants=grants)


@pytest.fixture(scope="module")
def upgraded() -> Iterator[PgCluster]:
    cluster = start_pg_cluster()
    try:
        write_scripts(cluster, before_this_change(SETTINGS))
        init(cluster)
        # The APIs migrated at start, as their databases' owners.
        with connect(cluster, API_ROLES["telemetry"], "telemetry") as conn:
            migrate_telemetry(conn)
            conn.execute(
                "INSERT INTO readings (device_id, ts, domain, metrics, received_at)"
                " VALUES ('old-1', now() - interval '10 days', 'air', '{}', now())"
            )
        with connect(cluster, API_ROLES["devices"], "devices") as conn:
            migrate_devices(conn)
        write_scripts(cluster, SETTINGS)
        init(cluster)
        init(cluster)  # as on every later start of the primary
        yield cluster
    finally:
        stop_pg_cluster(cluster)


def test_what_the_api_roles_made_now_belongs_to_the_owners(upgraded: PgCluster) -> None:
    for db, owner in OWNERS.items():
        owned = upgraded.admin_sql(
            "SELECT string_agg(DISTINCT pg_get_userbyid(relowner), ',') FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            # Tables, sequences and indexes in public, and the hypertables' chunks.
            " WHERE (n.nspname = 'public' OR (n.nspname = '_timescaledb_internal' AND c.relname LIKE '\\_hyper\\_%'))"
            " AND c.relkind IN ('r', 'S', 'i', 'p')",
            db,
        )
        assert owned == owner, db
        assert upgraded.admin_sql(f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{db}'") == owner


@pytest.mark.parametrize("db", sorted(API_ROLES))
def test_the_api_role_cannot_drop_alter_truncate_or_create(upgraded: PgCluster, db: str) -> None:
    role = API_ROLES[db]
    table = "readings" if db == "telemetry" else "devices"
    refused(upgraded, role, db, f"DROP TABLE {table}", "must be owner of table")
    refused(upgraded, role, db, f"ALTER TABLE {table} ADD COLUMN smuggled int", "must be owner of table")
    refused(upgraded, role, db, f"TRUNCATE {table}", "permission denied for table")
    refused(upgraded, role, db, "CREATE TABLE smuggled (id int)", "permission denied for schema public")
    refused(upgraded, role, db, "DROP TABLE schema_migrations", "must be owner of table")


def test_the_ingest_writes_new_chunks_and_open_data_reads_them(upgraded: PgCluster) -> None:
    role = API_ROLES["telemetry"]
    now = datetime.now(UTC)
    # Days no chunk covers yet: the ingest's own write path (COPY into its session's temporary
    # staging table, then INSERT ... ON CONFLICT) makes them, as the hypertable's owner.
    readings = [
        Reading(
            device_id=f"new-{days}", domain="air", ts=now - timedelta(days=days), metrics_json="{}", received_at=now
        )
        for days in (3, 4)
    ]
    with connect(upgraded, role, "telemetry") as conn:
        assert telemetry_schema(conn) >= 1
        chunks_before = conn.execute("SELECT count(*) FROM timescaledb_information.chunks").fetchone()[0]
    pool = ConnectionPool(kwargs=conninfo(upgraded, role, "telemetry"), min_size=1, open=True)
    try:
        assert ReadingStore(pool).write(readings) == (2, 0)
        assert ReadingStore(pool).write(readings) == (0, 2)  # the idempotence key still works
        # The setup runs again (a role added, a password rotated) while the ingest's sessions
        # hold their staging tables: they stay the ingest's, and it goes on writing.
        init(upgraded)
        later = [replace(r, ts=r.ts - timedelta(seconds=1)) for r in readings]
        assert ReadingStore(pool).write(later) == (2, 0)
    finally:
        pool.close()
    with connect(upgraded, role, "telemetry") as conn:
        conn.execute("UPDATE archived_hours SET readings = readings")
        chunks_after = conn.execute("SELECT count(*) FROM timescaledb_information.chunks").fetchone()[0]
        assert chunks_after == chunks_before + 2
        assert conn.execute("SELECT count(*) FROM readings").fetchone()[0] == 5
        chunk = conn.execute(
            "SELECT format('%I.%I', chunk_schema, chunk_name) FROM timescaledb_information.chunks"
            " ORDER BY range_start DESC LIMIT 1"
        ).fetchone()[0]
    owner = upgraded.admin_sql(
        f"SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = '{chunk}'::regclass", "telemetry"
    )
    assert owner == OWNERS["telemetry"]
    refused(upgraded, role, "telemetry", f"DROP TABLE {chunk}", "must be owner of table")
    refused(upgraded, role, "telemetry", "SELECT drop_chunks('readings', older_than => now())", "must be owner")
    with connect(upgraded, READER, "telemetry") as conn:
        assert conn.execute("SELECT count(*) FROM readings WHERE device_id LIKE 'new-%'").fetchone()[0] == 4


def test_the_registry_role_writes_with_identity_columns(upgraded: PgCluster) -> None:
    role = API_ROLES["devices"]
    with connect(upgraded, role, "devices") as conn:
        assert devices_schema(conn) >= 1
        conn.execute("INSERT INTO devices (id, device_class, latitude, longitude) VALUES ('d-1', 'air', 43.7, 7.4)")
        command = conn.execute(
            "INSERT INTO commands (device_id, command, args, topic) VALUES ('d-1', 'reboot', '{}', 't') RETURNING id"
        ).fetchone()[0]
        conn.execute("UPDATE devices SET retired_at = now() WHERE id = 'd-1'")
        conn.execute("DELETE FROM commands WHERE id = %s", (command,))


def test_the_owners_migrations_run_again_and_change_nothing(upgraded: PgCluster) -> None:
    with connect(upgraded, OWNERS["telemetry"], "telemetry") as conn:
        assert migrate_telemetry(conn) >= 1
    with connect(upgraded, OWNERS["devices"], "devices") as conn:
        assert migrate_devices(conn) >= 1


def test_a_service_that_does_not_migrate_waits_for_the_job() -> None:
    cluster = start_pg_cluster()
    try:
        write_scripts(cluster, SETTINGS)
        init(cluster)
        with connect(cluster, API_ROLES["devices"], "devices") as conn, pytest.raises(SchemaBehind):
            devices_schema(conn)
        with connect(cluster, OWNERS["devices"], "devices") as conn:
            migrate_devices(conn)
        with connect(cluster, API_ROLES["devices"], "devices") as conn:
            assert devices_schema(conn) >= 1
    finally:
        stop_pg_cluster(cluster)
