"""Helpers that start the real daemons from Debian packages on throwaway loopback ports.

Nothing here skips: a missing binary or system user fails the test and says to run
`make contract-deps` (which runs .ci/contract-deps.sh). The daemons run as the
unprivileged users the Debian packages create (``mosquitto``, ``postgres``), the way
Kubernetes runs them as a non-root UID; when the tests themselves are not root, the
daemons run as the current user instead.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from smartnation.program.daemon_config.mosquitto import (
    DeviceClass,
    render_acl_file,
    render_device_acl_file,
    render_mosquitto_conf,
    render_password_file,
)
from smartnation.program.daemon_config.postgres import (
    Database,
    Grant,
    Role,
    render_init_script,
    render_init_sql,
)

DEPS_HINT = "run `make contract-deps` (sh .ci/contract-deps.sh as root) to install the Debian packages"

MOSQUITTO = "/usr/sbin/mosquitto"
MOSQUITTO_PUB = "/usr/bin/mosquitto_pub"
MOSQUITTO_SUB = "/usr/bin/mosquitto_sub"
OPENSSL = "/usr/bin/openssl"
PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_LIB = Path("/usr/lib/postgresql/15/lib")
PSQL = "/usr/bin/psql"

STARTUP_TIMEOUT = 20.0


def require_binaries(*paths: str | Path) -> None:
    """Fail (not skip) when a daemon or client from the Debian packages is missing."""
    missing = [str(path) for path in paths if not os.access(path, os.X_OK)]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: {DEPS_HINT}", pytrace=False)


@dataclass(frozen=True)
class RunAs:
    """The OS identity a daemon is started with."""

    user: str
    uid: int
    gid: int

    def popen_kwargs(self) -> dict:
        if os.geteuid() != 0:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def chown(self, path: Path) -> None:
        if os.geteuid() == 0:
            os.chown(path, self.uid, self.gid)


def daemon_user(name: str) -> RunAs:
    """``name`` when we are root (and it must exist), else the current user."""
    if os.geteuid() != 0:
        entry = pwd.getpwuid(os.geteuid())
        return RunAs(entry.pw_name, entry.pw_uid, entry.pw_gid)
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        pytest.fail(f"system user {name!r} does not exist: {DEPS_HINT}", pytrace=False)
    return RunAs(entry.pw_name, entry.pw_uid, entry.pw_gid)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_ports(proc: subprocess.Popen, ports: list[int], log: Path, what: str) -> None:
    """Wait until every port accepts a TCP connection; fail with the daemon's log if it dies."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    pending = list(ports)
    while pending:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited with {proc.returncode} during startup:\n{log.read_text()}", pytrace=False)
        try:
            with socket.create_connection(("127.0.0.1", pending[0]), timeout=0.5):
                pending.pop(0)
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail(f"{what} did not listen on {pending} in {STARTUP_TIMEOUT}s:\n{log.read_text()}")
            time.sleep(0.1)


def wait_accepting(proc: subprocess.Popen, port: int, log: Path) -> None:
    """Wait until PostgreSQL on ``port`` accepts logins, not only TCP: a server listens before its
    startup ends and until then refuses every login ("the database system is starting up"), a
    window a loaded CI host stretches (seen: a login in it failed a test). pg_isready exits 0
    once logins are accepted, 1 while they are refused, 2 while nothing answers."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        if proc.poll() is not None:
            pytest.fail(f"postgres exited with {proc.returncode} during startup:\n{log.read_text()}", pytrace=False)
        ready = subprocess.run(
            [str(PG_BIN / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port), "-t", "5"],
            capture_output=True,
            timeout=30,
        )
        if ready.returncode == 0:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"postgres did not accept logins on {port} in {STARTUP_TIMEOUT}s:\n{log.read_text()}")
        time.sleep(0.1)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def make_workdir(prefix: str) -> Path:
    # Not pytest's tmp_path: it lives under a 0700 directory of the test user, which the
    # daemon's user could not enter.
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


# --------------------------------------------------------------------------- mosquitto

# What a deployment would configure: devices publish telemetry on their own subtree and
# receive commands, each with its own client certificate on the TLS listener; the internal
# clients (ingest reads all telemetry, registry sends commands) log in with passwords on the
# plain listener. Passwords are throwaway.
MQTT_DEVICE_CLASSES = (
    DeviceClass(
        name="parking-sensor",
        username="parking",
        publish=("city/parking/+/telemetry",),
        subscribe=("city/parking/+/commands",),
    ),
    DeviceClass(
        name="air-quality",
        username="airq",
        publish=("city/air/+/telemetry",),
        subscribe=(),
    ),
)
MQTT_INTERNAL_CLASSES = (
    DeviceClass(name="telemetry-ingest", username="ingest", publish=(), subscribe=("city/+/+/telemetry",)),
    DeviceClass(name="device-registry", username="registry", publish=("city/+/+/commands",), subscribe=()),
)
MQTT_PASSWORDS = {"ingest": "ingest-pw-3", "registry": "registry:pw 4"}


@dataclass(frozen=True)
class Broker:
    """A running mosquitto and everything a test needs to talk to it."""

    proc: subprocess.Popen
    workdir: Path
    plain_port: int
    tls_port: int
    cafile: Path
    password_file: Path
    log: Path
    run_as: RunAs
    internal_tls: bool = True
    """The internal listener (``plain_port``) serves TLS, as in the cluster: clients verify ``cafile``."""

    def device_certificate(self, device_id: str) -> tuple[Path, Path]:
        """(certificate, key) of a device: signed by the broker's CA, common name its id."""
        return make_client_certificate(
            self.workdir / "devices", device_id, self.cafile, self.cafile.with_suffix(".key")
        )


def make_tls_material(directory: Path, group_gid: int | None) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for localhost/127.0.0.1, made with the openssl CLI."""
    ca_key, ca_crt = directory / "ca.key", directory / "ca.crt"
    key, csr, crt = directory / "server.key", directory / "server.csr", directory / "server.crt"
    ext = directory / "server.ext"
    ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")

    def openssl(*args: str) -> None:
        subprocess.run([OPENSSL, *args], check=True, capture_output=True, cwd=directory)

    openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
        "-subj", "/CN=smartnation contract test CA", "-keyout", str(ca_key), "-out", str(ca_crt),
    )  # fmt: skip
    openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(csr),
    )  # fmt: skip
    openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key), "-CAcreateserial",
        "-days", "1", "-extfile", str(ext), "-out", str(crt),
    )  # fmt: skip
    # The broker's key: readable by its group only, like a Secret mounted with fsGroup.
    key.chmod(0o640)
    if group_gid is not None:
        os.chown(key, 0, group_gid)
    return ca_crt, crt, key


def make_client_certificate(directory: Path, common_name: str, ca_crt: Path, ca_key: Path) -> tuple[Path, Path]:
    """A client certificate (clientAuth) for ``common_name`` signed by the CA, and its key."""
    directory.mkdir(mode=0o755, exist_ok=True)
    key, csr, crt = directory / f"{common_name}.key", directory / f"{common_name}.csr", directory / f"{common_name}.crt"
    ext = directory / f"{common_name}.ext"
    ext.write_text("extendedKeyUsage=clientAuth\n")

    def openssl(*args: str) -> None:
        subprocess.run([OPENSSL, *args], check=True, capture_output=True, cwd=directory)

    openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-subj", f"/CN={common_name}", "-keyout", str(key), "-out", str(csr),
    )  # fmt: skip
    openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key), "-CAcreateserial",
        "-days", "1", "-extfile", str(ext), "-out", str(crt),
    )  # fmt: skip
    return crt, key


def start_broker(
    run_as_root: bool = False,
    *,
    passwords: Mapping[str, str] = MQTT_PASSWORDS,
    internal_classes: Sequence[DeviceClass] = MQTT_INTERNAL_CLASSES,
) -> Broker:
    """Render the config into a fresh directory and start mosquitto on free loopback ports.

    By default the broker starts directly as the ``mosquitto`` user (as in Kubernetes);
    with ``run_as_root`` it starts as root and must drop to ``mosquitto`` by itself.
    ``passwords`` and ``internal_classes`` are its password file's and ACL file's users (a move
    adds its bridge's user to both, test_mosquitto_bridge.py).
    """
    require_binaries(MOSQUITTO, MOSQUITTO_PUB, MOSQUITTO_SUB, OPENSSL)
    run_as = daemon_user("mosquitto")
    if run_as_root and os.geteuid() != 0:
        pytest.fail("starting mosquitto as root needs the tests to run as root (CI does)", pytrace=False)
    group = run_as.gid if os.geteuid() == 0 else None

    workdir = make_workdir("smartnation-mosquitto-")
    data = workdir / "data"
    data.mkdir(mode=0o700)
    run_as.chown(data)
    cafile, certfile, keyfile = make_tls_material(workdir, group)
    plain_port, tls_port = free_port(), free_port()
    while tls_port == plain_port:
        tls_port = free_port()

    password_file, acl_file, conf = workdir / "passwd", workdir / "acl", workdir / "mosquitto.conf"
    device_acl_file = workdir / "device-acl"
    password_file.write_text(render_password_file(passwords))
    acl_file.write_text(render_acl_file(internal_classes))
    device_acl_file.write_text(render_device_acl_file(MQTT_DEVICE_CLASSES))
    conf.write_text(
        render_mosquitto_conf(
            plain_port=plain_port,
            tls_port=tls_port,
            certfile=str(certfile),
            keyfile=str(keyfile),
            cafile=str(cafile),
            password_file=str(password_file),
            acl_file=str(acl_file),
            device_acl_file=str(device_acl_file),
            persistence_dir=str(data),
            internal_tls=True,
            bind_address="127.0.0.1",
        )
    )
    # The hashes are as secret as they get: owner root, group of the broker, nobody else.
    for path in (password_file, acl_file, device_acl_file):
        path.chmod(0o640)
        if group is not None:
            os.chown(path, 0, group)

    log = workdir / "mosquitto.log"
    with log.open("wb") as log_handle:
        proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(conf)],
            stdout=log_handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            **({} if run_as_root else run_as.popen_kwargs()),
        )
    broker = Broker(proc, workdir, plain_port, tls_port, cafile, password_file, log, run_as)
    try:
        wait_for_ports(proc, [plain_port, tls_port], log, "mosquitto")
    except BaseException:
        stop_broker(broker)
        raise
    return broker


def stop_broker(broker: Broker) -> None:
    stop(broker.proc)
    shutil.rmtree(broker.workdir, ignore_errors=True)


# --------------------------------------------------------------------------- postgres

PG_ROLES = (
    Role(name="telemetry_owner", login=True, password_var="telemetry_owner_password"),
    Role(name="telemetry_writer", login=True, password_var="telemetry_writer_password"),
    Role(name="telemetry_reader", login=True, password_var="telemetry_reader_password"),
    Role(name="telemetry_admin", login=True, password_var="telemetry_admin_password"),
    Role(name="registry_owner", login=True, password_var="registry_owner_password"),
    Role(name="outsider", login=True, password_var="outsider_password"),
    Role(name="analysts", login=False, password_var=""),
)
PG_DATABASES = (
    # timescaledb is built for the host (and is in the database image): the script creates it.
    Database(name="telemetry", owner="telemetry_owner", extensions=("timescaledb",)),
    # pgcrypto ships with Debian's postgresql-15 (contrib): the script must create it; postgis is
    # not installed anywhere here: the script must skip it, not fail.
    Database(name="registry", owner="registry_owner", extensions=("pgcrypto", "postgis")),
)
PG_GRANTS = (
    Grant(role="telemetry_writer", database="telemetry", privilege="write"),
    Grant(role="telemetry_reader", database="telemetry", privilege="read"),
    Grant(role="telemetry_admin", database="telemetry", privilege="all"),
    Grant(role="telemetry_reader", database="registry", privilege="connect"),
    Grant(role="analysts", database="telemetry", privilege="read"),
)
# Passwords with quotes, a backslash, '$' and spaces: proves the psql variable quoting.
PG_PASSWORDS = {role.password_env: f"pw-{role.name}-'quote' \\back $dollar" for role in PG_ROLES if role.password_var}


@dataclass(frozen=True)
class PgCluster:
    """A running throwaway PostgreSQL 15 cluster."""

    workdir: Path
    datadir: Path
    socket_dir: Path
    port: int
    run_as: RunAs
    script: Path
    log: Path

    def admin_env(self) -> dict[str, str]:
        """libpq environment for the superuser over the Unix socket (trust, socket dir is 0700)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(PGHOST=str(self.socket_dir), PGPORT=str(self.port), PGUSER="postgres")
        return env

    def run_init(self, env_overrides: dict[str, str] | None = None, drop: tuple[str, ...] = ()):
        env = self.admin_env() | PG_PASSWORDS | (env_overrides or {})
        for name in drop:
            env.pop(name, None)
        return subprocess.run(["sh", str(self.script)], env=env, capture_output=True, text=True, timeout=60)

    def admin_sql(self, sql: str, database: str = "postgres") -> str:
        result = subprocess.run(
            [PSQL, "-X", "-qAt", "-v", "ON_ERROR_STOP=1", "-d", database, "-c", sql],
            env=self.admin_env(),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    def tcp_sql(self, user: str, password: str, database: str, sql: str) -> subprocess.CompletedProcess:
        """Run ``sql`` as ``user`` over TCP on 127.0.0.1, where pg_hba demands scram-sha-256."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(PGPASSWORD=password, PGCONNECT_TIMEOUT="5")
        dsn = f"host=127.0.0.1 port={self.port} user={user} dbname={database} sslmode=disable"
        return subprocess.run(
            [PSQL, "-X", "-qAt", "-v", "ON_ERROR_STOP=1", "-w", "-d", dsn, "-c", sql],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )


def _pg_ctl(cluster_dir: Path, run_as: RunAs, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(PG_BIN / "pg_ctl"), "-D", str(cluster_dir), *args],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        **run_as.popen_kwargs(),
    )


def start_pg_cluster() -> PgCluster:
    """initdb + pg_ctl start as the ``postgres`` user, listening on 127.0.0.1 only."""
    require_binaries(PG_BIN / "initdb", PG_BIN / "pg_ctl", PG_BIN / "postgres", PSQL)
    run_as = daemon_user("postgres")
    workdir = make_workdir("smartnation-postgres-")
    datadir, socket_dir = workdir / "data", workdir / "socket"
    for path in (datadir, socket_dir):
        path.mkdir(mode=0o700)
        run_as.chown(path)

    initdb = subprocess.run(
        [str(PG_BIN / "initdb"), "-D", str(datadir), "-U", "postgres", "--encoding=UTF8", "--locale=C.UTF-8",
         "--auth-local=trust", "--auth-host=scram-sha-256"],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, **run_as.popen_kwargs(),
    )  # fmt: skip
    if initdb.returncode != 0:
        shutil.rmtree(workdir, ignore_errors=True)
        pytest.fail(f"initdb failed:\n{initdb.stdout}\n{initdb.stderr}", pytrace=False)
    # Only two ways in: the superuser over the Unix socket in a 0700 directory (the test's
    # admin connection), and password logins over TCP on 127.0.0.1 with SCRAM.
    hba = datadir / "pg_hba.conf"
    hba.write_text("local all postgres trust\nhost all all 127.0.0.1/32 scram-sha-256\n")
    run_as.chown(hba)

    port = free_port()
    log = workdir / "postgres.log"
    # TimescaleDB preloaded as in the database image (tooling/images): the environments create the
    # extension, which refuses to load otherwise. `make contract-deps` installs it for the host.
    if not (PG_LIB / "timescaledb.so").is_file():
        missing = PG_LIB / "timescaledb.so"
        pytest.fail(f"missing {missing}: run `make contract-deps` (.ci/timescaledb-host.sh)", pytrace=False)
    options = (
        f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={socket_dir}"
        " -c shared_preload_libraries=timescaledb -c timescaledb.telemetry_level=off"
    )
    with log.open("wb"):
        pass
    run_as.chown(log)
    started = _pg_ctl(datadir, run_as, "-o", options, "-l", str(log), "-w", "-t", "60", "start")
    if started.returncode != 0:
        shutil.rmtree(workdir, ignore_errors=True)
        pytest.fail(f"pg_ctl start failed:\n{started.stderr}\n{log.read_text()}", pytrace=False)

    sql_path, script = workdir / "init.sql", workdir / "init.sh"
    sql_path.write_text(render_init_sql(PG_DATABASES, PG_ROLES, PG_GRANTS))
    script.write_text(render_init_script(PG_DATABASES, PG_ROLES, PG_GRANTS, sql_path=str(sql_path)))
    return PgCluster(workdir, datadir, socket_dir, port, run_as, script, log)


def stop_pg_cluster(cluster: PgCluster) -> None:
    with contextlib.suppress(Exception):
        _pg_ctl(cluster.datadir, cluster.run_as, "-m", "fast", "-w", "stop")
    shutil.rmtree(cluster.workdir, ignore_errors=True)


def group_name(gid: int) -> str:
    return grp.getgrgid(gid).gr_name
