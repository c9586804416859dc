"""Contract: the PostgreSQL init script smartnation renders, run against Debian's PostgreSQL 15."""

from __future__ import annotations

import pytest

from .contract_daemons import PG_DATABASES, PG_GRANTS, PG_PASSWORDS, PG_ROLES, PgCluster

pytestmark = pytest.mark.contract

ROLES = {role.name: role for role in PG_ROLES}


def password_of(role: str) -> str:
    return PG_PASSWORDS[ROLES[role].password_env]


def as_role(cluster: PgCluster, role: str, database: str, sql: str):
    """Run ``sql`` as ``role`` over TCP with its real password."""
    return cluster.tcp_sql(role, password_of(role), database, sql)


def ok(result) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def refused(result, reason: str) -> None:
    assert result.returncode != 0, f"expected {reason!r}, but it succeeded: {result.stdout}"
    assert reason in result.stderr, result.stderr


@pytest.fixture(scope="module")
def readings(pg_initialized: PgCluster) -> PgCluster:
    """A table the database owner creates after the init script, as migrations would."""
    ok(
        as_role(
            pg_initialized,
            "telemetry_owner",
            "telemetry",
            "CREATE TABLE IF NOT EXISTS readings (id bigserial PRIMARY KEY, sensor text NOT NULL, value float8);"
            "INSERT INTO readings (sensor, value) VALUES ('air-1', 12.5);",
        )
    )
    return pg_initialized


# --------------------------------------------------------------------------- script behaviour


def test_rerun_succeeds_and_changes_nothing(pg_initialized: PgCluster) -> None:
    def snapshot() -> str:
        return pg_initialized.admin_sql(
            "SELECT string_agg(format('%s %s %s', rolname, rolcanlogin, rolsuper), ';' ORDER BY rolname) FROM pg_roles;"
            "SELECT string_agg(format('%s %s %s', datname, datdba::regrole, datacl), ';' ORDER BY datname)"
            " FROM pg_database;"
        )

    before = snapshot()
    result = pg_initialized.run_init()
    assert result.returncode == 0, result.stderr
    assert snapshot() == before
    # Quiet on success: the only message is the skipped extension that this server lacks.
    assert result.stdout == ""
    assert [line for line in result.stderr.splitlines() if line.strip()] == [
        line for line in result.stderr.splitlines() if "extension postgis is not available" in line
    ], result.stderr


def test_missing_password_variable_fails_naming_it(pg_cluster: PgCluster) -> None:
    missing = ROLES["telemetry_reader"].password_env
    empty = ROLES["outsider"].password_env
    result = pg_cluster.run_init(env_overrides={empty: ""}, drop=(missing,))
    assert result.returncode != 0
    assert missing in result.stderr and empty in result.stderr, result.stderr
    # Nothing else is named: only the two that are missing or empty.
    others = [role.password_env for role in PG_ROLES if role.password_var and role.password_env not in {missing, empty}]
    assert not any(name in result.stderr for name in others), result.stderr


def test_rerun_converges_after_manual_changes(readings: PgCluster) -> None:
    """A pod restart undoes drift: elevated roles, stray grants, a changed password."""
    readings.admin_sql(
        "ALTER ROLE telemetry_reader SUPERUSER; ALTER ROLE analysts LOGIN;"
        "ALTER ROLE telemetry_writer PASSWORD 'changed-by-hand';"
        "GRANT CONNECT ON DATABASE telemetry TO outsider; GRANT CONNECT ON DATABASE telemetry TO PUBLIC;"
    )
    readings.admin_sql(
        "GRANT INSERT ON readings TO telemetry_reader; GRANT ALL ON SCHEMA public TO PUBLIC;", "telemetry"
    )

    result = readings.run_init()
    assert result.returncode == 0, result.stderr

    flags = readings.admin_sql(
        "SELECT rolsuper, (SELECT rolcanlogin FROM pg_roles WHERE rolname = 'analysts')"
        " FROM pg_roles WHERE rolname = 'telemetry_reader'"
    )
    assert flags == "f|f"
    refused(as_role(readings, "outsider", "telemetry", "SELECT 1"), "permission denied for database")
    refused(
        as_role(readings, "telemetry_reader", "telemetry", "INSERT INTO readings (sensor) VALUES ('x')"),
        "permission denied for table readings",
    )
    assert ok(as_role(readings, "telemetry_writer", "telemetry", "SELECT current_user")) == "telemetry_writer"
    assert readings.admin_sql("SELECT has_schema_privilege('public', 'public', 'CREATE')", "telemetry") == "f"


def test_existing_tables_get_grants_on_the_next_run(pg_initialized: PgCluster) -> None:
    # Made by the superuser, not the owner: the owner's default privileges do not cover it,
    # so only "GRANT ... ON ALL TABLES" in the next run gives the reader access.
    pg_initialized.admin_sql("CREATE TABLE IF NOT EXISTS legacy_import (id int); TRUNCATE legacy_import;", "telemetry")
    refused(
        as_role(pg_initialized, "telemetry_reader", "telemetry", "SELECT count(*) FROM legacy_import"),
        "permission denied for table legacy_import",
    )
    assert pg_initialized.run_init().returncode == 0
    assert ok(as_role(pg_initialized, "telemetry_reader", "telemetry", "SELECT count(*) FROM legacy_import")) == "0"


# --------------------------------------------------------------------------- resulting state


def test_roles_exist_with_their_login_flags(pg_initialized: PgCluster) -> None:
    rows = pg_initialized.admin_sql(
        "SELECT rolname, rolcanlogin, rolsuper, rolcreatedb, rolcreaterole FROM pg_roles ORDER BY rolname"
    )
    state = {row.split("|")[0]: row.split("|")[1:] for row in rows.splitlines()}
    for role in PG_ROLES:
        assert role.name in state, f"role {role.name} was not created"
        assert state[role.name] == ["t" if role.login else "f", "f", "f", "f"], (role.name, state[role.name])


def test_passwords_are_stored_as_scram(pg_initialized: PgCluster) -> None:
    rows = pg_initialized.admin_sql("SELECT rolname, rolpassword FROM pg_authid WHERE rolname !~ '^pg_'")
    stored = dict(row.split("|", 1) for row in rows.splitlines())
    for role in PG_ROLES:
        if role.password_var:
            assert stored[role.name].startswith("SCRAM-SHA-256$"), role.name
        else:
            assert stored[role.name] == "", role.name


def test_databases_exist_with_their_owners(pg_initialized: PgCluster) -> None:
    rows = pg_initialized.admin_sql("SELECT datname, datdba::regrole FROM pg_database")
    owners = dict(row.split("|") for row in rows.splitlines())
    for database in PG_DATABASES:
        assert owners.get(database.name) == database.owner


def test_extensions_are_created_only_where_available(pg_initialized: PgCluster) -> None:
    for database in PG_DATABASES:
        installed = set(pg_initialized.admin_sql("SELECT extname FROM pg_extension", database.name).splitlines())
        available = set(pg_initialized.admin_sql("SELECT name FROM pg_available_extensions").splitlines())
        for extension in database.extensions:
            assert (extension in installed) == (extension in available), (database.name, extension)
    # The fixture data covers both branches: created where available, skipped where not.
    assert "pgcrypto" in pg_initialized.admin_sql("SELECT extname FROM pg_extension", "registry")
    assert "timescaledb" in pg_initialized.admin_sql("SELECT extname FROM pg_extension", "telemetry")
    assert "postgis" not in pg_initialized.admin_sql("SELECT name FROM pg_available_extensions")


def test_public_has_no_connect_and_no_schema_access(pg_initialized: PgCluster) -> None:
    for database in PG_DATABASES:
        assert (
            pg_initialized.admin_sql(
                f"SELECT has_database_privilege('public', '{database.name}', 'CONNECT'),"
                f" has_database_privilege('public', '{database.name}', 'CREATE'),"
                f" has_database_privilege('public', '{database.name}', 'TEMPORARY')"
            )
            == "f|f|f"
        )
        assert (
            pg_initialized.admin_sql(
                "SELECT has_schema_privilege('public', 'public', 'USAGE'),"
                " has_schema_privilege('public', 'public', 'CREATE')",
                database.name,
            )
            == "f|f"
        )


def test_reader_can_select_but_not_write(readings: PgCluster) -> None:
    assert ok(as_role(readings, "telemetry_reader", "telemetry", "SELECT sensor FROM readings WHERE id = 1")) == "air-1"
    refused(
        as_role(readings, "telemetry_reader", "telemetry", "INSERT INTO readings (sensor) VALUES ('x')"),
        "permission denied for table readings",
    )
    refused(as_role(readings, "telemetry_reader", "telemetry", "DELETE FROM readings"), "permission denied")
    refused(as_role(readings, "telemetry_reader", "telemetry", "CREATE TABLE t (id int)"), "permission denied")


def test_writer_can_insert_update_delete_but_not_create_tables(readings: PgCluster) -> None:
    inserted = as_role(
        readings,
        "telemetry_writer",
        "telemetry",
        "INSERT INTO readings (sensor, value) VALUES ('air-2', 3) RETURNING id",  # needs sequence USAGE
    )
    new_id = ok(inserted)
    ok(as_role(readings, "telemetry_writer", "telemetry", f"UPDATE readings SET value = 4 WHERE id = {new_id}"))
    ok(as_role(readings, "telemetry_writer", "telemetry", f"DELETE FROM readings WHERE id = {new_id}"))
    refused(as_role(readings, "telemetry_writer", "telemetry", "CREATE TABLE t (id int)"), "permission denied")
    refused(as_role(readings, "telemetry_writer", "telemetry", "DROP TABLE readings"), "must be owner")


def test_all_role_can_create_tables_in_schema_public(readings: PgCluster) -> None:
    ok(
        as_role(
            readings,
            "telemetry_admin",
            "telemetry",
            "CREATE TABLE admin_scratch (id int); INSERT INTO admin_scratch VALUES (1); DROP TABLE admin_scratch;",
        )
    )
    ok(as_role(readings, "telemetry_admin", "telemetry", "INSERT INTO readings (sensor) VALUES ('admin')"))


def test_roles_without_a_grant_cannot_connect(pg_initialized: PgCluster) -> None:
    granted = {(grant.role, grant.database) for grant in PG_GRANTS}
    owners = {(database.owner, database.name) for database in PG_DATABASES}
    for role in PG_ROLES:
        if not role.login:
            continue
        for database in PG_DATABASES:
            result = as_role(pg_initialized, role.name, database.name, "SELECT 1")
            if (role.name, database.name) in granted | owners:
                assert ok(result) == "1", (role.name, database.name)
            else:
                refused(result, f'permission denied for database "{database.name}"')


def test_connect_only_grant_gives_no_schema_access(pg_initialized: PgCluster) -> None:
    ok(as_role(pg_initialized, "registry_owner", "registry", "CREATE TABLE IF NOT EXISTS devices (id int)"))
    refused(
        as_role(pg_initialized, "telemetry_reader", "registry", "SELECT * FROM public.devices"),
        "permission denied for schema public",
    )


def test_wrong_password_and_nologin_are_refused(pg_initialized: PgCluster) -> None:
    refused(
        pg_initialized.tcp_sql("telemetry_writer", "not-the-password", "telemetry", "SELECT 1"),
        'password authentication failed for user "telemetry_writer"',
    )
    # SCRAM fails before the login flag is checked, so both refusals read the same way.
    refused(pg_initialized.tcp_sql("analysts", "anything", "telemetry", "SELECT 1"), "password authentication failed")
    refused(
        pg_initialized.tcp_sql("telemetry_reader", password_of("telemetry_writer"), "telemetry", "SELECT 1"),
        "password authentication failed",
    )


def test_connections_over_tcp_use_scram(pg_initialized: PgCluster) -> None:
    """The passwords work over TCP, and the server checked them with SCRAM, not trust."""
    row = ok(as_role(pg_initialized, "telemetry_reader", "telemetry", "SELECT current_user, inet_server_addr()"))
    assert row == "telemetry_reader|127.0.0.1"
    rules = pg_initialized.admin_sql("SELECT type, auth_method FROM pg_hba_file_rules ORDER BY line_number")
    assert rules.splitlines() == ["local|trust", "host|scram-sha-256"]


# --------------------------------------------------------------------------- host state (testinfra)


def test_postgres_runs_as_the_unprivileged_user(pg_cluster: PgCluster, testinfra_host) -> None:
    postmaster_pid = int((pg_cluster.datadir / "postmaster.pid").read_text().splitlines()[0])
    process = testinfra_host.process.get(pid=postmaster_pid)
    assert process.comm == "postgres"
    assert process.user == pg_cluster.run_as.user
    assert process.user != "root"
    # Every backend and worker of this cluster too.
    children = [p for p in testinfra_host.process.filter(ppid=postmaster_pid)]
    assert children, "no PostgreSQL worker processes found"
    assert {child.user for child in children} == {pg_cluster.run_as.user}


def test_postgres_listens_only_on_loopback(pg_cluster: PgCluster, testinfra_host) -> None:
    port = pg_cluster.port
    assert testinfra_host.socket(f"tcp://127.0.0.1:{port}").is_listening
    listening = [
        s for s in testinfra_host.socket.get_listening_sockets() if s.startswith("tcp") and s.endswith(f":{port}")
    ]
    assert listening == [f"tcp://127.0.0.1:{port}"]
    socket_dir = testinfra_host.file(str(pg_cluster.socket_dir))
    assert socket_dir.mode == 0o700 and socket_dir.user == pg_cluster.run_as.user
