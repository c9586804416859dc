"""Contract: the pg_hba.conf the program renders and the retirement of roles it no longer declares,
on Debian's PostgreSQL 15 (one throwaway cluster of this module's own: the tests change its
pg_hba, its TLS and its roles).

The cluster listens on 127.0.0.1 only, so "the pod network" is played by the loopback network
(``127.0.0.0/8``) or by a network the client is not in (``10.214.0.0/16``).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from smartnation.program.components.database import reload_hba_script, tls_reloader_script
from smartnation.program.daemon_config.postgres import (
    MANAGED_COMMENT,
    Grant,
    Role,
    render_init_script,
    render_init_sql,
    render_pg_hba,
)

from .contract_daemons import (
    PG_DATABASES,
    PG_GRANTS,
    PG_PASSWORDS,
    PG_ROLES,
    PSQL,
    PgCluster,
    make_tls_material,
    start_pg_cluster,
    stop_pg_cluster,
)

pytestmark = pytest.mark.contract

SUPERUSER_PASSWORD = "superuser-'secret'"
REPLICATION_PASSWORD = "replication-secret"
ROLES = {role.name: role for role in PG_ROLES}


def password_of(role: str) -> str:
    return PG_PASSWORDS[ROLES[role].password_env]


class Server:
    """The module's cluster with the superuser's password set (the program's pg_hba wants one
    even on the socket) and a key pair made like the issuer's (root's, group-readable)."""

    def __init__(self, cluster: PgCluster) -> None:
        self.cluster = cluster
        self.ca: Path | None = None

    def _env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        return env | {"PGCONNECT_TIMEOUT": "5"} | extra

    def admin(self, sql: str, database: str = "postgres") -> str:
        """As the superuser over the Unix socket."""
        env = self.cluster.admin_env() | {"PGPASSWORD": SUPERUSER_PASSWORD}
        result = subprocess.run(
            [PSQL, "-X", "-qAt", "-v", "ON_ERROR_STOP=1", "-d", database, "-c", sql],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    def tcp(
        self, user: str, password: str, database: str, sql: str = "SELECT current_user", *, sslmode: str = "require"
    ) -> subprocess.CompletedProcess:
        """As ``user`` over TCP from 127.0.0.1."""
        dsn = f"host=127.0.0.1 port={self.cluster.port} user={user} dbname={database} sslmode={sslmode}"
        if sslmode == "verify-ca":
            dsn += f" sslrootcert={self.ca}"
        return subprocess.run(
            [PSQL, "-X", "-qAt", "-v", "ON_ERROR_STOP=1", "-w", "-d", dsn, "-c", sql],
            env=self._env(PGPASSWORD=password),
            capture_output=True,
            text=True,
            timeout=30,
        )

    def replication(self, user: str, password: str) -> subprocess.CompletedProcess:
        """A physical replication connection, as a replica's walreceiver opens one."""
        dsn = f"host=127.0.0.1 port={self.cluster.port} user={user} replication=true sslmode=require"
        return subprocess.run(
            [PSQL, "-X", "-qAt", "-w", "-d", dsn, "-c", "IDENTIFY_SYSTEM"],
            env=self._env(PGPASSWORD=password),
            capture_output=True,
            text=True,
            timeout=30,
        )

    def use_hba(self, pod_networks: list[str], *, tls: bool = True, grants: tuple[Grant, ...] = PG_GRANTS) -> str:
        hba = render_pg_hba(
            PG_DATABASES,
            PG_ROLES,
            grants,
            superuser="postgres",
            replication_user="replicator",
            pod_networks=pod_networks,
            tls=tls,
        )
        path = self.cluster.datadir / "pg_hba.conf"
        path.write_text(hba)
        self.cluster.run_as.chown(path)
        self.admin("SELECT pg_reload_conf()")
        # The reload is asynchronous: wait until the server reads the file just written.
        errors = self.admin("SELECT count(*) FROM pg_hba_file_rules WHERE error IS NOT NULL")
        assert errors == "0", self.admin("SELECT line_number, error FROM pg_hba_file_rules WHERE error IS NOT NULL")
        return hba

    def run_init(
        self, roles=PG_ROLES, databases=PG_DATABASES, grants=PG_GRANTS, extra_passwords: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess:
        workdir = self.cluster.workdir
        sql, script = workdir / "access-init.sql", workdir / "access-init.sh"
        sql.write_text(render_init_sql(databases, roles, grants))
        script.write_text(render_init_script(databases, roles, grants, sql_path=str(sql)))
        env = self.cluster.admin_env() | {"PGPASSWORD": SUPERUSER_PASSWORD}
        passwords = PG_PASSWORDS | (extra_passwords or {})
        env |= {role.password_env: passwords[role.password_env] for role in roles if role.password_var}
        return subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    cluster = start_pg_cluster()
    try:
        served = Server(cluster)
        # Still on the fixture's own pg_hba (socket: trust): give the superuser its password.
        cluster.admin_sql(f"ALTER ROLE postgres PASSWORD '{SUPERUSER_PASSWORD.replace(chr(39), chr(39) * 2)}'")
        cluster.admin_sql(f"CREATE ROLE replicator LOGIN REPLICATION PASSWORD '{REPLICATION_PASSWORD}'")
        ca, crt, key = make_tls_material(cluster.workdir, os.stat(cluster.datadir).st_gid)
        served.ca = ca
        for statement in (
            "ALTER SYSTEM SET ssl = on",
            f"ALTER SYSTEM SET ssl_cert_file = '{crt}'",
            f"ALTER SYSTEM SET ssl_key_file = '{key}'",
        ):
            cluster.admin_sql(statement)
        cluster.admin_sql("SELECT pg_reload_conf()")
        result = cluster.run_init()
        assert result.returncode == 0, result.stderr
        served.use_hba(["127.0.0.0/8"])
        assert served.admin("SHOW ssl") == "on"
        yield served
    finally:
        stop_pg_cluster(cluster)


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def refused(result: subprocess.CompletedProcess, reason: str) -> None:
    assert result.returncode != 0, f"expected {reason!r}, but it succeeded: {result.stdout}"
    assert reason in result.stderr, result.stderr


# --------------------------------------------------------------------------- pg_hba


def test_declared_roles_reach_their_databases_over_tls_only(server: Server) -> None:
    server.use_hba(["127.0.0.0/8"])
    assert ok(server.tcp("telemetry_writer", password_of("telemetry_writer"), "telemetry")) == "telemetry_writer"
    # The server's certificate checks out against the issuer's CA, as the APIs' verify-full does.
    assert ok(server.tcp("telemetry_reader", password_of("telemetry_reader"), "telemetry", sslmode="verify-ca"))
    refused(
        server.tcp("telemetry_writer", password_of("telemetry_writer"), "telemetry", sslmode="disable"),
        "pg_hba.conf rejects connection",
    )


def test_roles_reach_only_databases_they_own_or_are_granted(server: Server) -> None:
    server.use_hba(["127.0.0.0/8"])
    # telemetry_writer has a grant on telemetry only; outsider has no grant anywhere.
    refused(server.tcp("telemetry_writer", password_of("telemetry_writer"), "registry"), "pg_hba.conf rejects")
    refused(server.tcp("telemetry_writer", password_of("telemetry_writer"), "postgres"), "pg_hba.conf rejects")
    refused(server.tcp("outsider", password_of("outsider"), "telemetry"), "pg_hba.conf rejects")
    # A role made by hand, with a password and CONNECT, is not among the declared roles.
    server.admin("DROP ROLE IF EXISTS handmade; CREATE ROLE handmade LOGIN PASSWORD 'handmade-pw'")
    server.admin("GRANT CONNECT ON DATABASE telemetry TO handmade")
    refused(server.tcp("handmade", "handmade-pw", "telemetry"), "pg_hba.conf rejects")


def test_nothing_but_the_superuser_on_loopback_from_outside_the_pod_network(server: Server) -> None:
    server.use_hba(["10.214.0.0/16"])
    try:
        refused(server.tcp("telemetry_writer", password_of("telemetry_writer"), "telemetry"), "pg_hba.conf rejects")
        refused(server.replication("replicator", REPLICATION_PASSWORD), "pg_hba.conf rejects")
        # Loopback is the Pod's own (probe, kubectl port-forward): the superuser only, with its
        # password, with or without TLS (several connections through one tunnel go without).
        ssl = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
        assert ok(server.tcp("postgres", SUPERUSER_PASSWORD, "postgres", ssl, sslmode="disable")) == "f"
        assert ok(server.tcp("postgres", SUPERUSER_PASSWORD, "postgres", ssl, sslmode="require")) == "t"
        refused(server.tcp("postgres", "wrong", "postgres", sslmode="disable"), "password authentication failed")
    finally:
        server.use_hba(["127.0.0.0/8"])


def test_a_role_added_later_is_admitted_with_pg_hba_unchanged(server: Server) -> None:
    hba = server.use_hba(["127.0.0.0/8"])
    late = Role(name="late_reader", login=True, password_var="late_reader_password")
    roles, grants = (*PG_ROLES, late), (*PG_GRANTS, Grant(role="late_reader", database="telemetry", privilege="read"))
    # The file names groups, not roles: the same with the new role as without.
    rendered = render_pg_hba(
        PG_DATABASES,
        roles,
        grants,
        superuser="postgres",
        replication_user="replicator",
        pod_networks=["127.0.0.0/8"],
        tls=True,
    )
    assert rendered == hba
    result = server.run_init(roles=roles, grants=grants, extra_passwords={"LATE_READER_PASSWORD": "late-secret"})
    assert result.returncode == 0, result.stderr
    try:
        assert ok(server.tcp("late_reader", "late-secret", "telemetry")) == "late_reader"
        refused(server.tcp("late_reader", "late-secret", "registry"), "pg_hba.conf rejects")
    finally:
        assert server.run_init().returncode == 0
    refused(server.tcp("late_reader", "late-secret", "telemetry"), "late_reader")


def test_replication_only_for_the_replication_role(server: Server) -> None:
    server.use_hba(["127.0.0.0/8"])
    assert "|" in ok(server.replication("replicator", REPLICATION_PASSWORD))
    refused(server.replication("telemetry_admin", password_of("telemetry_admin")), "pg_hba.conf rejects replication")
    # The replication role reaches no database.
    refused(server.tcp("replicator", REPLICATION_PASSWORD, "telemetry"), "pg_hba.conf rejects")


def test_the_setup_jobs_reload_step_makes_the_server_read_a_changed_file(server: Server) -> None:
    server.use_hba(["127.0.0.0/8"])
    writer = ("telemetry_writer", password_of("telemetry_writer"), "telemetry")
    assert ok(server.tcp(*writer)) == "telemetry_writer"
    # The kubelet swaps the mounted file; the server keeps its rules until told.
    closed = render_pg_hba(
        PG_DATABASES,
        PG_ROLES,
        PG_GRANTS,
        superuser="postgres",
        replication_user="replicator",
        pod_networks=["10.214.0.0/16"],
        tls=True,
    )
    try:
        path = server.cluster.datadir / "pg_hba.conf"
        path.write_text(closed)
        assert ok(server.tcp(*writer)) == "telemetry_writer"
        script = server.cluster.workdir / "reload-hba.sh"
        script.write_text(reload_hba_script(closed))
        env = server.cluster.admin_env() | {"PGPASSWORD": SUPERUSER_PASSWORD}
        reload = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True, timeout=120)
        assert reload.returncode == 0, reload.stderr
        assert "pg_hba.conf reloaded" in reload.stdout
        refused(server.tcp(*writer), "pg_hba.conf rejects")
    finally:
        server.use_hba(["127.0.0.0/8"])


# --------------------------------------------------------------------------- retiring roles


def test_a_role_removed_from_the_program_loses_its_login_grants_and_is_dropped(server: Server) -> None:
    server.use_hba(["127.0.0.0/8"])
    # telemetry_admin (grant "all") makes a table, as a migration would, and holds privileges.
    ok(
        server.tcp(
            "telemetry_admin",
            password_of("telemetry_admin"),
            "telemetry",
            "CREATE TABLE admin_notes (id int); INSERT INTO admin_notes VALUES (7)",
        )
    )
    assert server.admin(
        "SELECT shobj_description(oid, 'pg_authid') FROM pg_authid WHERE rolname = 'telemetry_admin'"
    ) == (MANAGED_COMMENT)
    server.admin("CREATE ROLE by_hand LOGIN PASSWORD 'by-hand-pw'")

    kept_roles = tuple(role for role in PG_ROLES if role.name != "telemetry_admin")
    kept_grants = tuple(grant for grant in PG_GRANTS if grant.role != "telemetry_admin")
    result = server.run_init(roles=kept_roles, grants=kept_grants)
    assert result.returncode == 0, result.stderr

    assert server.admin("SELECT count(*) FROM pg_roles WHERE rolname = 'telemetry_admin'") == "0"
    refused(server.tcp("telemetry_admin", password_of("telemetry_admin"), "telemetry"), "telemetry_admin")
    # Its table and data stay, now the database owner's.
    assert server.admin("SELECT tableowner FROM pg_tables WHERE tablename = 'admin_notes'", "telemetry") == (
        "telemetry_owner"
    )
    assert server.admin("SELECT id FROM admin_notes", "telemetry") == "7"
    # A role made by hand is never touched.
    assert server.admin("SELECT rolcanlogin FROM pg_roles WHERE rolname = 'by_hand'") == "t"
    # The others keep working; a rerun with the same roles changes nothing and drops nothing more.
    assert ok(server.tcp("telemetry_writer", password_of("telemetry_writer"), "telemetry")) == "telemetry_writer"
    again = server.run_init(roles=kept_roles, grants=kept_grants)
    assert again.returncode == 0, again.stderr
    assert server.admin("SELECT count(*) FROM pg_roles WHERE rolname IN ('by_hand', 'handmade')") == "2"


def test_a_removed_role_still_depended_on_elsewhere_is_kept_without_login(server: Server) -> None:
    # Declared again (the previous test retired it): back with its login.
    assert server.run_init().returncode == 0
    assert ok(server.tcp("telemetry_admin", password_of("telemetry_admin"), "telemetry")) == "telemetry_admin"
    # A grant in a database the program does not manage: the script cannot take it back there.
    server.admin("CREATE DATABASE unmanaged")
    server.admin("CREATE TABLE kept (id int); GRANT SELECT ON kept TO telemetry_admin", "unmanaged")

    kept_roles = tuple(role for role in PG_ROLES if role.name != "telemetry_admin")
    kept_grants = tuple(grant for grant in PG_GRANTS if grant.role != "telemetry_admin")
    result = server.run_init(roles=kept_roles, grants=kept_grants)
    assert result.returncode == 0, result.stderr
    assert "role telemetry_admin is no longer declared" in result.stderr
    assert (
        server.admin("SELECT rolcanlogin, rolpassword IS NULL FROM pg_authid WHERE rolname = 'telemetry_admin'")
        == "f|t"
    )
    # Out of the connect group (pg_hba) and without a password: refused either way.
    refused(server.tcp("telemetry_admin", password_of("telemetry_admin"), "telemetry"), '"telemetry_admin"')
    assert server.admin("SELECT pg_has_role('telemetry_admin', 'smartnation_connect_telemetry', 'MEMBER')") == "f"
    # No privilege left in the managed databases.
    assert server.admin("SELECT has_database_privilege('telemetry_admin', 'telemetry', 'CONNECT')") == "f"


# --------------------------------------------------------------------------- renewed certificates


def test_the_reloader_has_the_server_present_a_renewed_certificate(server: Server) -> None:
    """cert-manager renews the key pair in place; the reloader sidecar's script sees the new
    certificate and reloads the server, which then presents it (the old CA no longer verifies)."""
    server.use_hba(["127.0.0.0/8"])
    reader = ("telemetry_reader", password_of("telemetry_reader"), "telemetry")
    assert server.ca is not None
    old_ca = server.ca
    assert ok(server.tcp(*reader, sslmode="verify-ca"))
    tls_dir = Path(server.admin("SHOW ssl_cert_file")).parent
    renewed = server.cluster.workdir / "renewed"
    renewed.mkdir()
    new_ca, new_crt, new_key = make_tls_material(renewed, os.stat(server.cluster.datadir).st_gid)
    script = server.cluster.workdir / "reload-tls.sh"
    script.write_text(tls_reloader_script())
    env = server.cluster.admin_env() | {
        "PGPASSWORD": SUPERUSER_PASSWORD,
        "WATCHED_FILES": str(tls_dir / "server.crt"),
        "RELOAD_INTERVAL": "1",
    }
    reloader = subprocess.Popen(
        ["sh", str(script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        time.sleep(2)
        # Unchanged files: nothing reloaded, the old certificate still served.
        assert ok(server.tcp(*reader, sslmode="verify-ca"))
        # The renewal, as the kubelet writes it: key and certificate replaced.
        (tls_dir / "server.key").write_bytes(new_key.read_bytes())
        (tls_dir / "server.crt").write_bytes(new_crt.read_bytes())
        server.ca = new_ca
        deadline = time.monotonic() + 20
        while server.tcp(*reader, sslmode="verify-ca").returncode != 0 and time.monotonic() < deadline:
            time.sleep(1)
        assert ok(server.tcp(*reader, sslmode="verify-ca")) == "telemetry_reader"
        server.ca = old_ca
        refused(server.tcp(*reader, sslmode="verify-ca"), "certificate verify failed")
    finally:
        server.ca = new_ca
        reloader.terminate()
        output = reloader.communicate(timeout=10)[0]
    assert output.count("server reloaded") == 1, output
