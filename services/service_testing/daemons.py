"""The platform's real daemons on throwaway loopback ports, configured from the project's own
settings and renderers, so a service under test sees what it sees in a cluster:

- N independent Mosquitto brokers (the broker's N pods) with the password file and ACLs that
  ``smartnation.daemon_config.mosquitto`` renders for environments/defaults.yaml's device classes;
- PostgreSQL 15 with TimescaleDB preloaded, roles, databases and grants from the same settings,
  created by the program's own init script (``smartnation.daemon_config.postgres``);
- MinIO (the binary ``make images`` builds) with buckets, policies and users made by the
  program's own ``mc`` setup script (components/object_storage.py).

Built on tests/contract/contract_daemons.py; like it, nothing skips: a missing binary fails
with what to run (`make contract-deps`, `.ci/timescaledb-host.sh`, `make images`).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from tests.contract import contract_daemons as cd

from smartnation.paths import cache_root
from smartnation.program.components.object_storage import policy_document, setup_script
from smartnation.program.daemon_config.mosquitto import (
    DeviceClass,
    render_acl_file,
    render_device_acl_file,
    render_mosquitto_conf,
    render_password_file,
)
from smartnation.program.daemon_config.postgres import Database, Grant, Role, render_init_script, render_init_sql
from smartnation.settings.loader import load_settings
from smartnation.settings.models import Settings

SETTINGS_ENVIRONMENT = "staging"
TIMESCALEDB_HINT = "run `sh .ci/timescaledb-host.sh` (TimescaleDB for the host's PostgreSQL 15)"
MINIO_HINT = "build MinIO and mc with `make images` (or set MINIO_BINARY and MC_BINARY)"


def project_settings() -> Settings:
    return load_settings(SETTINGS_ENVIRONMENT)


def _password() -> str:
    return "pw-" + secrets.token_urlsafe(12)


# --------------------------------------------------------------------------- brokers


@dataclass
class Brokers:
    """Independent mosquitto processes (one per broker pod) sharing one config and one ACL."""

    procs: list[subprocess.Popen]
    ports: list[int]
    workdir: Path
    passwords: dict[str, str]
    run_as: cd.RunAs
    logs: list[Path]
    tls_ports: list[int] = field(default_factory=list)

    def urls(self) -> list[str]:
        return [f"mqtt://127.0.0.1:{port}" for port in self.ports]

    def stop(self, index: int) -> None:
        """Take one broker pod away (its clients see the connection drop)."""
        cd.stop(self.procs[index])

    def start(self, index: int) -> None:
        """Bring it back on the same ports with the same config, as a restarted pod."""
        self.procs[index] = _run_mosquitto(self.workdir, index, self.run_as)
        cd.wait_for_ports(self.procs[index], [self.ports[index], self.tls_ports[index]], self.logs[index], "mosquitto")


def _run_mosquitto(workdir: Path, index: int, run_as: cd.RunAs) -> subprocess.Popen:
    with (workdir / f"mosquitto-{index}.log").open("ab") as handle:
        return subprocess.Popen(
            [cd.MOSQUITTO, "-c", str(workdir / f"mosquitto-{index}.conf")], stdout=handle, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, **run_as.popen_kwargs(),
        )  # fmt: skip


def start_brokers(count: int = 2) -> Brokers:
    cd.require_binaries(cd.MOSQUITTO, cd.OPENSSL)
    settings = project_settings()
    classes = [
        DeviceClass(name=c.name, username=c.name, publish=c.publish, subscribe=c.subscribe)
        for c in settings.broker.device_classes
    ]
    passwords = {c.username: _password() for c in classes}
    run_as = cd.daemon_user("mosquitto")
    group = run_as.gid if os.geteuid() == 0 else None
    workdir = cd.make_workdir("smartnation-svc-mosquitto-")
    cafile, certfile, keyfile = cd.make_tls_material(workdir, group)
    password_file, acl_file, device_acl_file = workdir / "passwd", workdir / "acl", workdir / "device-acl"
    password_file.write_text(render_password_file(passwords))
    # The services' tests run devices on the plain listener with a password per class (a
    # stand-in: deployed devices have their own certificates on the TLS listener).
    acl_file.write_text(render_acl_file(classes))
    device_acl_file.write_text(
        render_device_acl_file(
            [c for c, s in zip(classes, settings.broker.device_classes, strict=True) if not s.internal]
        )
    )
    for path in (password_file, acl_file, device_acl_file):
        path.chmod(0o640)
        if group is not None:
            os.chown(path, 0, group)
    brokers = Brokers([], [], workdir, passwords, run_as, [])
    try:
        for index in range(count):
            data = workdir / f"data-{index}"
            data.mkdir(mode=0o700)
            run_as.chown(data)
            plain, tls = cd.free_port(), cd.free_port()
            conf = workdir / f"mosquitto-{index}.conf"
            conf.write_text(
                render_mosquitto_conf(
                    plain_port=plain, tls_port=tls, certfile=str(certfile), keyfile=str(keyfile),
                    cafile=str(cafile), password_file=str(password_file), acl_file=str(acl_file),
                    device_acl_file=str(device_acl_file), persistence_dir=str(data), bind_address="127.0.0.1",
                    # The services' clients dial mqtt:// on loopback; the cluster's listener is TLS.
                    internal_tls=False,
                )
            )  # fmt: skip
            log = workdir / f"mosquitto-{index}.log"
            proc = _run_mosquitto(workdir, index, run_as)
            brokers.procs.append(proc)
            brokers.ports.append(plain)
            brokers.tls_ports.append(tls)
            brokers.logs.append(log)
            cd.wait_for_ports(proc, [plain, tls], log, f"mosquitto {index}")
    except BaseException:
        stop_brokers(brokers)
        raise
    return brokers


def stop_brokers(brokers: Brokers) -> None:
    for proc in brokers.procs:
        cd.stop(proc)
    shutil.rmtree(brokers.workdir, ignore_errors=True)


# --------------------------------------------------------------------------- postgres


@dataclass
class Postgres:
    cluster: cd.PgCluster
    options: str
    passwords: dict[str, str]

    @property
    def port(self) -> int:
        return self.cluster.port

    def stop(self) -> None:
        result = cd._pg_ctl(self.cluster.datadir, self.cluster.run_as, "-m", "fast", "-w", "stop")
        assert result.returncode == 0, result.stderr

    def start(self) -> None:
        result = cd._pg_ctl(
            self.cluster.datadir, self.cluster.run_as, "-o", self.options, "-l", str(self.cluster.log), "-w", "start"
        )
        assert result.returncode == 0, result.stderr + self.cluster.log.read_text()[-2000:]

    def sql(self, statement: str, database: str = "postgres") -> str:
        return self.cluster.admin_sql(statement, database)


def _require_timescaledb() -> None:
    libdir = subprocess.run(
        [str(cd.PG_BIN / "pg_config"), "--pkglibdir"], capture_output=True, text=True, check=False
    ).stdout.strip()
    if not libdir or not Path(libdir, "timescaledb.so").exists():
        pytest.fail(f"TimescaleDB is not installed for PostgreSQL 15: {TIMESCALEDB_HINT}", pytrace=False)


def start_postgres() -> Postgres:
    """PostgreSQL 15 + TimescaleDB with the project's roles, databases, extensions and grants."""
    _require_timescaledb()
    cluster = cd.start_pg_cluster()
    try:
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={cluster.port} -c unix_socket_directories={cluster.socket_dir}"
            " -c shared_preload_libraries=timescaledb -c timescaledb.telemetry_level=off"
            " -c max_connections=100 -c synchronous_commit=on"
        )
        postgres = Postgres(cluster, options, {})
        postgres.stop()
        postgres.start()
        settings = project_settings().database
        roles = [
            Role(name=r.name, login=r.login, password_var=f"{r.name}_password" if r.login else "")
            for r in settings.roles
        ]
        databases = [Database(name=d.name, owner=d.owner, extensions=d.extensions) for d in settings.databases]
        grants = [Grant(role=g.role, database=g.database, privilege=g.privilege) for g in settings.grants]
        passwords = {role.name: _password() for role in roles if role.password_var}
        sql_path, script = cluster.workdir / "services-init.sql", cluster.workdir / "services-init.sh"
        sql_path.write_text(render_init_sql(databases, roles, grants))
        script.write_text(render_init_script(databases, roles, grants, sql_path=str(sql_path)))
        env = cluster.admin_env() | {role.password_env: passwords[role.name] for role in roles if role.password_var}
        result = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        postgres.passwords = passwords
        _migrate_as_owners(postgres)
        return postgres
    except BaseException:
        cd.stop_pg_cluster(cluster)
        raise


def _migrate_as_owners(postgres: Postgres) -> None:
    """What each release's migration Job does (components/city_apis.py): ``python -m <api>.migrate``
    as the database's owner; the services then connect with DML only (``MIGRATE_ON_START=false``)."""
    settings = project_settings()
    owners = {d.name: d.owner for d in settings.database.databases}
    for api in settings.city_apis.values():
        if api.database is None or not api.database.migrations:
            continue
        owner = owners[api.database.name]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")} | {
            "PGHOST": "127.0.0.1", "PGPORT": str(postgres.port), "PGDATABASE": api.database.name,
            "PGUSER": owner, "PGPASSWORD": postgres.passwords[owner], "SMARTNATION_ENVIRONMENT": "contract",
        }  # fmt: skip
        result = subprocess.run(
            [sys.executable, "-m", f"{api.name}.migrate"], env=env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, f"{api.name}.migrate as {owner}:\n{result.stdout}{result.stderr}"


def stop_postgres(postgres: Postgres) -> None:
    cd.stop_pg_cluster(postgres.cluster)


# --------------------------------------------------------------------------- minio


def _find_program(env_var: str, name: str) -> str:
    candidates = [os.environ.get(env_var, "")]
    candidates += sorted(glob.glob(str(cache_root() / "images" / "programs" / f"{name}-*" / name)), reverse=True)
    candidates.append(shutil.which(name) or "")
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail(f"no {name} binary: {MINIO_HINT}", pytrace=False)


@dataclass
class Minio:
    proc: subprocess.Popen
    endpoint: str
    workdir: Path
    root_user: str
    root_password: str
    user_keys: dict[str, str] = field(default_factory=dict)
    log: Path | None = None


def start_minio() -> Minio:
    """MinIO on a free loopback port, set up by the program's own mc script (buckets, anonymous
    download of open-data, one policy and one user per storage user)."""
    minio, mc = _find_program("MINIO_BINARY", "minio"), _find_program("MC_BINARY", "mc")
    settings = project_settings().object_storage
    workdir = cd.make_workdir("smartnation-svc-minio-")
    port, console = cd.free_port(), cd.free_port()
    root_user, root_password = "smartnation-root", _password()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MINIO_", "AWS_"))}
    env |= {"MINIO_ROOT_USER": root_user, "MINIO_ROOT_PASSWORD": root_password, "HOME": str(workdir),
            "MINIO_BROWSER": "off", "MINIO_UPDATE": "off"}  # fmt: skip
    log = workdir / "minio.log"
    (workdir / "data").mkdir()
    with log.open("wb") as handle:
        proc = subprocess.Popen(
            [minio, "server", "--address", f"127.0.0.1:{port}", "--console-address", f"127.0.0.1:{console}",
             str(workdir / "data")],
            stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
        )  # fmt: skip
    server = Minio(proc, f"http://127.0.0.1:{port}", workdir, root_user, root_password, log=log)
    try:
        cd.wait_for_ports(proc, [port], log, "minio")
        setup = workdir / "setup"
        setup.mkdir()
        for user in settings.users:
            (setup / f"policy-{user.name}.json").write_text(policy_document(user))
        (setup / "setup.sh").write_text(setup_script(settings).replace("/setup/", f"{setup}/"))
        keys = {user.name: _password() for user in settings.users}
        mc_dir = workdir / "mc-bin"
        mc_dir.mkdir()
        (mc_dir / "mc").symlink_to(mc)
        setup_env = (
            env
            | {
                "PATH": f"{mc_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
                "S3_ENDPOINT": server.endpoint,
                "MC_CONFIG_DIR": str(workdir / "mc"),
            }
            | {"SECRET_KEY_" + name.upper().replace("-", "_"): key for name, key in keys.items()}
        )
        result = subprocess.run(
            ["sh", str(setup / "setup.sh")], env=setup_env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stdout + result.stderr
        server.user_keys = keys
        return server
    except BaseException:
        stop_minio(server)
        raise


def stop_minio(server: Minio) -> None:
    cd.stop(server.proc)
    shutil.rmtree(server.workdir, ignore_errors=True)


# --------------------------------------------------------------------------- the platform


@dataclass
class Platform:
    """Everything a service needs, and the environment the chart would give each service."""

    brokers: Brokers
    postgres: Postgres
    minio: Minio
    operator_tokens: dict[tuple[str, str], str] = field(default_factory=dict)
    """(app, operator client) -> its bearer token, made on first use as `secrets init` would."""

    def operator_token(self, app: str, client: str) -> str:
        return self.operator_tokens.setdefault((app, client), secrets.token_hex(16))

    def env(self, app: str) -> dict[str, str]:
        """What components/city_apis.py puts into ``app``'s ConfigMap and Secrets, for these daemons."""
        api = {a.app: a for a in project_settings().city_apis.values()}[app]  # by Kubernetes name
        env = {"SMARTNATION_ENVIRONMENT": "contract"}
        if api.database is not None:
            env |= {
                "PGHOST": "127.0.0.1",
                "PGHOST_READONLY": "127.0.0.1",
                "PGPORT": str(self.postgres.port),
                "PGDATABASE": api.database.name,
                "PGUSER": api.database.role,
                "PGPASSWORD": self.postgres.passwords[api.database.role],
            }
            if api.database.migrations:
                env["MIGRATE_ON_START"] = "false"  # migrated by _migrate_as_owners, as in the cluster
        if api.broker_client is not None:
            env["MQTT_URL"] = self.brokers.urls()[0]
            if api.broker_all_pods:
                env["MQTT_BROKER_URLS"] = ",".join(self.brokers.urls())
            env |= {"MQTT_USERNAME": api.broker_client, "MQTT_PASSWORD": self.brokers.passwords[api.broker_client]}
        if api.storage_user is not None:
            env |= {
                "S3_ENDPOINT": self.minio.endpoint,
                "AWS_ACCESS_KEY_ID": api.storage_user,
                "AWS_SECRET_ACCESS_KEY": self.minio.user_keys[api.storage_user],
            }
        if api.operator_clients:
            tokens = {client: self.operator_token(app, client) for client in api.operator_clients}
            env["OPERATOR_TOKENS"] = json.dumps(tokens)
        return env

    def device_credentials(self, device_class: str) -> tuple[str, str]:
        return device_class, self.brokers.passwords[device_class]


@contextlib.contextmanager
def platform(brokers: int = 2) -> Iterator[Platform]:
    started: list = []
    try:
        b = start_brokers(brokers)
        started.append(lambda: stop_brokers(b))
        p = start_postgres()
        started.append(lambda: stop_postgres(p))
        m = start_minio()
        started.append(lambda: stop_minio(m))
        yield Platform(b, p, m)
    finally:
        for stop in reversed(started):
            with contextlib.suppress(Exception):
                stop()


# --------------------------------------------------------------------------- services


@dataclass
class RunningService:
    """A service started as its container would start it: ``python -m <package>`` with env."""

    name: str
    proc: subprocess.Popen
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def logs(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: a crash (OOM kill, node lost) that leaves no time to drain."""
        self.proc.kill()
        self.proc.wait()

    def terminate(self, timeout_s: float = 30) -> int:
        """SIGTERM, as the kubelet sends it; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_service(package: str, env: Mapping[str, str], workdir: Path) -> RunningService:
    """Start ``python -m package`` with only ``env`` (plus PATH/HOME), as a pod would, and wait
    for /healthz. The working directory is not writable by intent: the service writes nowhere."""
    import sys

    import httpx

    port = cd.free_port()
    log = workdir / f"{package}.log"
    # HOSTNAME: each instance is its own "pod" (Kubernetes sets the pod name there).
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/nonexistent", "PORT": str(port),
                "HOSTNAME": f"{package.replace('_', '-')}-{secrets.token_hex(4)}",
                "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"} | dict(env)  # fmt: skip
    with log.open("wb") as handle:
        proc = subprocess.Popen(
            [sys.executable, "-m", package], env=full_env, stdout=handle, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, cwd="/",
        )  # fmt: skip
    service = RunningService(package, proc, port, log)
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            pytest.fail(f"{package} exited with {proc.returncode}:\n{service.logs()[-4000:]}", pytrace=False)
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{service.url}/healthz", timeout=1).status_code == 200:
                return service
        if time.monotonic() > deadline:
            service.terminate()
            pytest.fail(f"{package} did not answer /healthz in 30s:\n{service.logs()[-4000:]}", pytrace=False)
        time.sleep(0.2)


def wait_until(predicate, timeout_s: float = 15.0, interval_s: float = 0.2, what: str = "condition"):  # noqa: ANN001, ANN201
    """Poll ``predicate`` until it returns a truthy value; fail with ``what`` after the timeout."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval_s)
    pytest.fail(f"timed out after {timeout_s}s waiting for {what} (last: {last!r})", pytrace=False)
