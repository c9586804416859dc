"""The primary's start script sets the superuser's password from its Secret (issue 11, item 7), on
Debian's PostgreSQL 15 with TimescaleDB preloaded as in the image: a cluster created with one
password serves the new one after a start through the script, the old one is refused; a password
with quotes, a backslash, '$', spaces and a newline arrives intact; a standby is left alone."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from smartnation.program.daemon_config.superuser_password import set_password_script
from tests.contract.contract_daemons import (
    PG_BIN,
    PG_LIB,
    PSQL,
    RunAs,
    daemon_user,
    free_port,
    make_workdir,
    require_binaries,
    wait_accepting,
    wait_for_ports,
)

pytestmark = pytest.mark.contract

OLD = "created-with-this-one"
NEW = "new 'one' with \\ back $dollar\nand a second line"


@dataclass
class Cluster:
    workdir: Path
    datadir: Path
    socket_dir: Path
    run_as: RunAs

    def start(self, password: str | None, *, lock_names_us: bool = False) -> tuple[subprocess.Popen, int, Path]:
        """The script as the primary's container runs it with ``password`` in the environment, the
        entrypoint replaced by the server itself on the test's port and socket directory; None:
        the server alone. ``lock_names_us``: the stale postmaster.pid names the shell running the
        script, as in a restarted container (both the old server and the script are PID 1)."""
        port = free_port()
        log = self.workdir / f"server-{port}.log"
        log.write_text("")
        self.run_as.chown(log)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(PGDATA=str(self.datadir), PATH=f"{PG_BIN}:{env['PATH']}")
        server_args = [
            "-c", "listen_addresses=127.0.0.1", "-c", f"port={port}",
            "-c", f"unix_socket_directories={self.socket_dir}",
            "-c", "shared_preload_libraries=timescaledb", "-c", "timescaledb.telemetry_level=off",
        ]  # fmt: skip
        if password is None:
            command = [str(PG_BIN / "postgres"), "-D", str(self.datadir), *server_args]
        else:
            env["POSTGRES_PASSWORD"] = password
            command = ["sh", "-c", set_password_script("postgres"), "postgres-primary", *server_args]
            if lock_names_us:
                env["SCRIPT"] = set_password_script("postgres")
                stand_in = 'sed -i "1s/.*/$$/" "$PGDATA/postmaster.pid" && exec sh -c "$SCRIPT" "$0" "$@"'
                command = ["sh", "-c", stand_in, "postgres-primary", *server_args]
        with log.open("ab") as out:
            proc = subprocess.Popen(
                command,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                **self.run_as.popen_kwargs(),
            )
        wait_for_ports(proc, [port], log, "postgres")
        wait_accepting(proc, port, log)
        return proc, port, log

    def login(self, port: int, password: str) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(PGPASSWORD=password, PGCONNECT_TIMEOUT="5")
        dsn = f"host=127.0.0.1 port={port} user=postgres dbname=postgres sslmode=disable"
        return subprocess.run(
            [PSQL, "-X", "-qAt", "-w", "-d", dsn, "-c", "SELECT current_user"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )


def logged_in(cluster: Cluster, port: int, password: str, log: Path) -> bool:
    """True when ``password`` logs in as the superuser; if not, why (psql's error, the server's log)."""
    login = cluster.login(port, password)
    assert login.stdout.strip() == "postgres", f"{login.stderr}\n--- server log ---\n{log.read_text()}"
    return True


def kill(proc: subprocess.Popen) -> None:
    """SIGKILL, as the kubelet after the grace period: postmaster.pid stays behind."""
    proc.kill()
    proc.wait(timeout=10)
    time.sleep(2)  # its children notice the postmaster is gone and exit


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()  # SIGTERM: PostgreSQL's smart shutdown
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    require_binaries(PG_BIN / "initdb", PG_BIN / "postgres", PSQL)
    if not (PG_LIB / "timescaledb.so").is_file():
        pytest.fail(f"missing {PG_LIB / 'timescaledb.so'}: run `make contract-deps`", pytrace=False)
    run_as = daemon_user("postgres")
    workdir = make_workdir("smartnation-superuser-")
    datadir, socket_dir = workdir / "data", workdir / "socket"
    for path in (datadir, socket_dir):
        path.mkdir(mode=0o700)
        run_as.chown(path)
    pwfile = workdir / "pwfile"
    pwfile.write_text(OLD + "\n")
    run_as.chown(pwfile)
    initdb = subprocess.run(
        [str(PG_BIN / "initdb"), "-D", str(datadir), "-U", "postgres", f"--pwfile={pwfile}",
         "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C.UTF-8"],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, **run_as.popen_kwargs(),
    )  # fmt: skip
    pwfile.unlink()
    assert initdb.returncode == 0, initdb.stderr
    try:
        yield Cluster(workdir, datadir, socket_dir, run_as)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def test_a_start_through_the_script_serves_the_secrets_password_and_refuses_the_old(cluster: Cluster) -> None:
    proc, port, log = cluster.start(OLD)
    try:
        assert logged_in(cluster, port, OLD, log)
    finally:
        stop(proc)
    proc, port, log = cluster.start(NEW)
    try:
        assert logged_in(cluster, port, NEW, log)
        refused = cluster.login(port, OLD)
        assert refused.returncode != 0
        assert "password authentication failed" in refused.stderr
        text = log.read_text()
        assert "superuser password set from its Secret" in text
        assert "second line" not in text and "$dollar" not in text, "the password reached the log"
    finally:
        stop(proc)


def test_a_standby_is_left_alone(cluster: Cluster) -> None:
    """standby.signal: the script only hands over (here to echo: a standby without a primary to
    follow would not serve); the server started alone afterwards still has the old password."""
    (cluster.datadir / "standby.signal").write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(PGDATA=str(cluster.datadir), POSTGRES_PASSWORD=NEW, PATH=f"{PG_BIN}:{env['PATH']}")
    ran = subprocess.run(
        ["sh", "-c", set_password_script("echo handed over:"), "postgres-primary", "-c", "x=y"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        **cluster.run_as.popen_kwargs(),
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == "handed over: -c x=y\n"
    (cluster.datadir / "standby.signal").unlink()
    proc, port, _ = cluster.start(None)
    try:
        assert cluster.login(port, OLD).returncode == 0
        assert cluster.login(port, NEW).returncode != 0
    finally:
        stop(proc)


def test_a_server_killed_before_leaves_a_lock_the_script_takes_as_stale(cluster: Cluster) -> None:
    """On real Pods (seen): the old server, SIGKILLed at the end of the grace period, was PID 1 of
    its container and so is the new container's shell, so the lock names a live process there."""
    proc, port, _ = cluster.start(OLD)
    kill(proc)
    assert (cluster.datadir / "postmaster.pid").exists()
    proc, port, log = cluster.start(NEW, lock_names_us=True)
    try:
        assert logged_in(cluster, port, NEW, log)
        assert cluster.login(port, OLD).returncode != 0
    finally:
        stop(proc)
