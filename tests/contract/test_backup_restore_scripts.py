"""Contract: the backup CronJob's dump and upload scripts and `smartnation restore`'s download and
restore scripts, as rendered, run under dash against a real PostgreSQL 15 with TimescaleDB (the
object storage played by a directory behind a stand-in `mc`).

A hypertable with several chunks, a compressed chunk and an ordinary table go through a whole
round trip: dump (custom format, per database, roles apart), upload, download, restore into scratch
databases with TimescaleDB's pre/post steps, and the per-table comparison finds no difference,
while a changed source row is found.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from smartnation.cli import restore_pod
from smartnation.program.components import database

from .contract_daemons import PG_BIN, PgCluster

pytestmark = pytest.mark.contract

DATABASES = ["telemetry", "registry"]
SUFFIX = "rst"

# `mc` for the scripts: store/<bucket>/... is a folder; only what the scripts call.
FAKE_MC = """#!/usr/bin/env python3
import json, os, shutil, sys
store = os.environ["FAKE_STORE"]
def local(path):
    return os.path.join(store, path[len("store/"):]) if path.startswith("store/") else path
args = [a for a in sys.argv[1:] if a != "--quiet"]
if args[:2] == ["alias", "set"]:
    sys.exit(0)
if args[0] == "cp":
    source, target = local(args[1]), local(args[2])
    if target.endswith("/"):
        target = os.path.join(target, os.path.basename(source))
    os.makedirs(os.path.dirname(target), exist_ok=True)
    shutil.copyfile(source, target)
    sys.exit(0)
if args[0] == "ls":
    root = local(args[-1])
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            key = os.path.relpath(path, root)
            print(json.dumps({"status": "success", "type": "file", "key": key, "size": os.path.getsize(path)}))
    sys.exit(0)
sys.exit(f"fake mc: {args} not played")
"""


@pytest.fixture(scope="module")
def data(pg_initialized: PgCluster) -> PgCluster:
    """Rows the round trip must keep, owned by each database's owner as the services' would be."""
    pg_initialized.admin_sql(
        "SET ROLE telemetry_owner;"
        "DROP TABLE IF EXISTS rt_readings; DROP TABLE IF EXISTS rt_stations;"
        "CREATE TABLE rt_stations (id int PRIMARY KEY, name text);"
        "INSERT INTO rt_stations SELECT i, 'station ' || i FROM generate_series(1, 50) i;"
        "CREATE TABLE rt_readings (at timestamptz NOT NULL, device text NOT NULL, value float8);"
        "SELECT create_hypertable('rt_readings', 'at', chunk_time_interval => interval '1 day');"
        "INSERT INTO rt_readings SELECT timestamptz '2026-11-01' + i * interval '1 minute', 'dev-' || (i % 7), i / 3.0"
        " FROM generate_series(1, 20000) i;"
        "ALTER TABLE rt_readings SET (timescaledb.compress);"
        "SELECT compress_chunk(c) FROM show_chunks('rt_readings') c ORDER BY c LIMIT 2;",
        database="telemetry",
    )
    pg_initialized.admin_sql(
        "SET ROLE registry_owner; DROP TABLE IF EXISTS rt_devices;"
        "CREATE TABLE rt_devices (id text PRIMARY KEY, class text, location point);"
        "INSERT INTO rt_devices SELECT 'dev-' || i, 'air-quality-sensor', point(i, i) FROM generate_series(1, 300) i;",
        database="registry",
    )
    return pg_initialized


def _bin(tmp_path: Path, fakes: dict[str, str]) -> dict[str, str]:
    """PATH with PostgreSQL's programs and the given stand-ins first."""
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    for name, text in fakes.items():
        (folder / name).write_text(text)
        (folder / name).chmod(0o755)
    return {"PATH": f"{folder}:{PG_BIN}:{os.environ['PATH']}"}


def _sh(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["dash", "-c", script], env=env, capture_output=True, text=True, timeout=300)


def _round_trip(data: PgCluster, tmp_path: Path, cleanup: bool) -> tuple[subprocess.CompletedProcess[str], Path]:
    store, dumped, fetched = tmp_path / "store", tmp_path / "dumped", tmp_path / "fetched"
    for folder in (store, dumped, fetched):
        folder.mkdir()
    env = {**data.admin_env(), **_bin(tmp_path, {"mc": FAKE_MC}), "FAKE_STORE": str(store)}
    s3 = {"BUCKET": "backups", "ENVIRONMENT": "dev", "S3_ENDPOINT": "http://x", "AWS_ACCESS_KEY_ID": "k"}
    s3["AWS_SECRET_ACCESS_KEY"] = "s"
    dump = _sh(database.dump_script(DATABASES, str(dumped)), env)
    assert dump.returncode == 0, dump.stderr
    upload = _sh(database.upload_script(str(dumped)), {**env, **s3})
    assert upload.returncode == 0, upload.stderr
    listing = _sh(restore_pod.LIST_SCRIPT, {**env, **s3})
    (backup,) = restore_pod.parse_listing(listing.stdout)
    assert backup.complete and set(backup.files) == {"globals.sql", "manifest", "telemetry.dump", "registry.dump"}
    download = _sh(restore_pod.download_script(str(fetched)), {**env, **s3, "BACKUP": backup.name})
    assert download.returncode == 0, download.stderr
    flags = {"SUFFIX": SUFFIX, "COMPARE": "1", "CLEANUP": "1" if cleanup else "0"}
    return _sh(restore_pod.restore_script(str(fetched)), {**env, **flags}), dumped


def test_a_backup_restores_into_scratch_databases_with_every_row(data: PgCluster, tmp_path: Path) -> None:
    restored, dumped = _round_trip(data, tmp_path, cleanup=False)
    assert restored.returncode == 0, restored.stderr + restored.stdout
    manifest = (dumped / database.BACKUP_MANIFEST).read_text().split("\n")
    assert manifest[0].startswith("telemetry 2.") and manifest[1] == "registry -"
    assert "CREATE ROLE telemetry_owner" in (dumped / "set" / database.GLOBALS_FILE).read_text()
    checks = restore_pod.compare(restore_pod.parse_rows(restored.stdout))
    by_table = {(c.database, c.table): c for c in checks}
    assert by_table[("telemetry", "public.rt_readings")].restored[0] == 20000
    assert by_table[("telemetry", "public.rt_stations")].restored[0] == 50
    assert by_table[("registry", "public.rt_devices")].restored[0] == 300
    assert all(c.same for c in checks), [c for c in checks if not c.same]
    # Restored as TimescaleDB knows it: still a hypertable, chunks compressed as before, owners kept.
    scratch = f"telemetry_{SUFFIX}"
    assert data.admin_sql("SELECT count(*) FROM timescaledb_information.hypertables", database=scratch) == "1"
    assert data.admin_sql(
        "SELECT count(*) FROM timescaledb_information.chunks WHERE is_compressed", database=scratch
    ) == data.admin_sql("SELECT count(*) FROM timescaledb_information.chunks WHERE is_compressed", database="telemetry")
    assert data.admin_sql(f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{scratch}'") == (
        "telemetry_owner"
    )
    assert data.admin_sql("SHOW timescaledb.restoring", database=scratch) == "off"
    # The database's own privileges (not in a pg_dump archive) are the live one's.
    acl = "SELECT string_agg(format('%s %s', grantee::regrole, privilege_type), ',' ORDER BY 1)"
    acl += " FROM pg_database, aclexplode(datacl) WHERE datname = '{}'"
    assert data.admin_sql(acl.format(scratch)) == data.admin_sql(acl.format("telemetry"))
    assert "telemetry_reader CONNECT" in data.admin_sql(acl.format(scratch))

    # A source row changed after the backup is a difference, in that table only.
    data.admin_sql("UPDATE rt_stations SET name = 'renamed' WHERE id = 7", database="telemetry")
    rows = subprocess.run(
        ["dash", "-c", restore_pod.restore_script(str(tmp_path / "fetched"))],
        env={**data.admin_env(), **_bin(tmp_path, {}), "SUFFIX": "rst2", "COMPARE": "1", "CLEANUP": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert rows.returncode == 0, rows.stderr
    differing = [c for c in restore_pod.compare(restore_pod.parse_rows(rows.stdout)) if not c.same]
    assert [(c.database, c.table) for c in differing] == [("telemetry", "public.rt_stations")]
    assert differing[0].source[0] == differing[0].restored[0] == 50
    for db in DATABASES:
        data.admin_sql(f"DROP DATABASE {db}_{SUFFIX} WITH (FORCE)")
    assert data.admin_sql(f"SELECT count(*) FROM pg_database WHERE datname LIKE '%\\_{SUFFIX}%'") == "0"


def test_a_restore_into_an_existing_scratch_database_fails(data: PgCluster, tmp_path: Path) -> None:
    data.admin_sql(f"CREATE DATABASE registry_{SUFFIX}")
    try:
        restored, _ = _round_trip(data, tmp_path, cleanup=True)
        assert restored.returncode != 0
        assert f'"registry_{SUFFIX}" already exists' in restored.stderr
    finally:
        for db in DATABASES:
            data.admin_sql(f"DROP DATABASE IF EXISTS {db}_{SUFFIX} WITH (FORCE)")


def test_over_live_puts_the_restore_in_place_and_keeps_the_live_database(data: PgCluster, tmp_path: Path) -> None:
    for db in ("rt_swap", "rt_swap_replaced_1", "rt_swap_rst"):
        data.admin_sql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    data.admin_sql("CREATE DATABASE rt_swap OWNER telemetry_owner")
    data.admin_sql("REVOKE ALL ON DATABASE rt_swap FROM PUBLIC; GRANT CONNECT ON DATABASE rt_swap TO telemetry_reader")
    data.admin_sql(
        "CREATE EXTENSION timescaledb; SET ROLE telemetry_owner; CREATE TABLE t (at timestamptz NOT NULL, v int);"
        "SELECT create_hypertable('t', 'at'); INSERT INTO t SELECT now() - i * interval '1 hour', i"
        " FROM generate_series(1, 500) i;",
        database="rt_swap",
    )
    dumped = tmp_path / "dumped"
    env = {**data.admin_env(), **_bin(tmp_path, {})}
    assert _sh(database.dump_script(["rt_swap"], str(dumped)), env).returncode == 0
    fetched = dumped / database.BACKUP_SET  # laid out as the download leaves it
    (fetched / database.BACKUP_MANIFEST).write_text((dumped / database.BACKUP_MANIFEST).read_text())
    # The live database breaks after the backup, and a session (as an API's would) stays open on it.
    data.admin_sql("DELETE FROM t WHERE v > 100", database="rt_swap")
    holder = subprocess.Popen(
        ["psql", "-X", "-d", "rt_swap", "-c", "SELECT pg_sleep(600)"], env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        flags = {"SUFFIX": "rst", "COMPARE": "0", "CLEANUP": "0", "OVER_LIVE": "1", "REPLACED": "replaced_1"}
        swapped = _sh(restore_pod.restore_script(str(fetched)), {**env, **flags})
        assert swapped.returncode == 0, swapped.stderr + swapped.stdout
    finally:
        holder.kill()
    assert data.admin_sql("SELECT count(*) FROM t", database="rt_swap") == "500"
    assert data.admin_sql("SELECT count(*) FROM t", database="rt_swap_replaced_1") == "100"
    names = data.admin_sql(
        "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database WHERE datname LIKE 'rt_swap%'"
    )
    assert names == "rt_swap,rt_swap_replaced_1"
    assert data.admin_sql("SELECT bool_and(datallowconn) FROM pg_database WHERE datname LIKE 'rt_swap%'") == "t"
    assert as_reader_can_connect(data, "rt_swap")
    for db in ("rt_swap", "rt_swap_replaced_1"):
        data.admin_sql(f"DROP DATABASE {db} WITH (FORCE)")


def as_reader_can_connect(data: PgCluster, dbname: str) -> bool:
    from .contract_daemons import PG_PASSWORDS, PG_ROLES

    role = next(r for r in PG_ROLES if r.name == "telemetry_reader")
    return data.tcp_sql(role.name, PG_PASSWORDS[role.password_env], dbname, "SELECT 1").returncode == 0
