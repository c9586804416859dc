"""Unit: the database component alone (smartnation/program/components/database.py).

Its shell scripts run here by sh with stand-in tools that record every call (the setup Job's
pg_hba reload, the backup's dump and upload, a move's standby clone, the tls-reloader sidecar);
then the component is built alone under the Pulumi mocks (tests/unit/component_build.py) and read
for what the rest of the platform relies on: which Service selects which pods and the names the
certificate carries, the primary and replica StatefulSets (server arguments, streaming from the
primary over verify-full TLS, probes, mounts, what rolls them), who gets which password and where
it lands, the setup Job (its scripts, its wait for the primary and what renames it), the nightly
backup, a move's published primary and hot standby, and the parentage, provider and protection.
The replica's clone script has its own module (test_components_database_clone.py); the contract
and integration tests run the same objects on a real server and the local clusters.
"""

from __future__ import annotations

import dataclasses
import hashlib
import signal
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pulumi
import pytest

from smartnation.cli import mock_program
from smartnation.program import naming
from smartnation.program.components import database, object_storage, pods, stateful
from smartnation.program.daemon_config import postgres
from smartnation.program.daemon_config.superuser_password import set_password_script
from smartnation.program.placement import Placement
from smartnation.settings import load_settings, stack_secrets
from smartnation.settings.models import DatabaseSettings, DatabaseSpec, GrantSettings, RoleSettings, Settings
from tests.unit.component_build import BuiltComponent, build_component
from tests.unit.harness import REPO_ENVIRONMENTS, fake_secret

pytestmark = pytest.mark.unit

SERVICE = "kubernetes:core/v1:Service"
SECRET = "kubernetes:core/v1:Secret"
CONFIGMAP = "kubernetes:core/v1:ConfigMap"
STATEFULSET = "kubernetes:apps/v1:StatefulSet"
JOB = "kubernetes:batch/v1:Job"
CRONJOB = "kubernetes:batch/v1:CronJob"
PDB = "kubernetes:policy/v1:PodDisruptionBudget"
CERTIFICATE = "kubernetes:cert-manager.io/v1:Certificate"

BACKUP_ENDPOINT = "https://s3.example:9000"
BACKUP_KEYS = "backup-keys"
SOURCE = database.StandbySource(
    host="dev-database-primary.smartnation-dev.svc.cluster.local", address="10.213.0.9", ca_pem="-----BEGIN X-----"
)
STAMP = "20261129T021500Z"
SH = "/bin/sh"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# --- stand-in tools ---------------------------------------------------------------------------

# Each records its name and arguments (one call a line, fields split by \037), counts its calls in
# $CALLS/<name>.n, then runs its body (the test's), which may read $n.
TOOL = """#!/bin/sh
name=$(basename "$0")
{ printf '%s' "$name"; for arg in "$@"; do printf '\\037%s' "$arg"; done; printf '\\n'; } >> "$CALLS/log"
n=$(( $(cat "$CALLS/$name.n" 2>/dev/null || echo 0) + 1 )); echo "$n" > "$CALLS/$name.n"
"""


def tools(tmp_path: Path, **bodies: str) -> dict[str, str]:
    """A PATH holding a stand-in per ``bodies`` (name -> sh body) and the env the stand-ins read."""
    folder, calls = tmp_path / "bin", tmp_path / "calls"
    folder.mkdir(parents=True, exist_ok=True)
    calls.mkdir(exist_ok=True)
    for name, body in bodies.items():
        (folder / name).write_text(TOOL + body + "\n")
        (folder / name).chmod(0o755)
    return {"PATH": f"{folder}:/usr/bin:/bin", "CALLS": str(calls)}


def run_sh(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SH, "-c", script], env=env, capture_output=True, text=True, timeout=60, check=False)


def calls(env: dict[str, str], *only: str) -> list[list[str]]:
    log = Path(env["CALLS"]) / "log"
    found = [line.split("\037") for line in log.read_text().splitlines()] if log.exists() else []
    return [c for c in found if not only or c[0] in only]


# --- pg_hba: the served file and the move's replication lines ---------------------------------

HBA = (
    "# header\n"
    "  local    all   all                  scram-sha-256\n"
    "  host     all   postgres  127.0.0.1/32  scram-sha-256\n"
    "  hostssl  all   postgres  10.0.0.0/8    scram-sha-256\n"
    "  host     all   all       0.0.0.0/0     reject\n"
    "  host     all   all       ::/0          reject\n"
)


def test_a_moves_sources_are_admitted_for_replication_only_before_the_closing_rejects() -> None:
    assert database.admit_replication_from(HBA, ()) == HBA
    served = database.admit_replication_from(HBA, ("10.213.0.253", "192.168.100.0/24"))
    lines = HBA.splitlines()
    assert (
        served
        == "\n".join(
            [
                *lines[:4],
                "# A move's standby on another site (docs/move.md):",
                # Each source as a network (a bare address is a /32), padded to the longest source given.
                "  hostssl  replication  replicator  10.213.0.253/32   scram-sha-256",
                "  hostssl  replication  replicator  192.168.100.0/24  scram-sha-256",
                *lines[4:],
            ]
        )
        + "\n"
    )


def _declared(settings: DatabaseSettings) -> tuple[list[Any], list[Any], list[Any]]:
    """The settings' roles, databases and grants as daemon_config.postgres renders them: a login
    role's password in psql variable ``<role>_password`` (init.sh reads ``<ROLE>_PASSWORD``)."""
    roles = [postgres.Role(r.name, r.login, f"{r.name}_password" if r.login else "") for r in settings.roles]
    databases = [postgres.Database(d.name, d.owner, d.extensions) for d in settings.databases]
    grants = [postgres.Grant(g.role, g.database, g.privilege) for g in settings.grants]
    return roles, databases, grants


def test_the_served_pg_hba_is_the_settings_roles_from_the_pod_network_only(dev: Settings) -> None:
    settings = dataclasses.replace(
        dev.database,
        roles=(*dev.database.roles, RoleSettings(name="readers", login=False)),
        grants=(*dev.database.grants, GrantSettings(role="readers", database="devices", privilege="read")),
    )
    roles, databases, grants = _declared(settings)
    assert roles[-1] == postgres.Role("readers", False, "")
    for tls in (True, False):
        expected = postgres.render_pg_hba(
            databases,
            roles,
            grants,
            superuser="postgres",
            replication_user="replicator",
            pod_networks=("10.9.0.0/16",),
            tls=tls,
        )
        assert database.pg_hba(settings, ("10.9.0.0/16",), tls=tls) == expected
    assert database.pg_hba(settings, ("10.9.0.0/16",)) == database.pg_hba(settings, ("10.9.0.0/16",), tls=True)
    assert "hostssl" in database.pg_hba(settings, ("10.9.0.0/16",))


def test_the_replicas_stream_over_verify_full_tls_without_a_password_on_disk() -> None:
    assert database.replica_conninfo("p.example") == (
        "host=p.example port=5432 user=replicator sslmode=verify-full "
        "sslrootcert=/etc/smartnation/tls/ca.crt application_name=replica"
    )
    assert database.tls_secret_name("dev") == "dev-database-tls"


@pytest.mark.parametrize(
    ("status", "address"),
    [
        (None, "pending"),
        (SimpleNamespace(load_balancer=None), "pending"),
        (SimpleNamespace(load_balancer=SimpleNamespace(ingress=None)), "pending"),
        (SimpleNamespace(load_balancer=SimpleNamespace(ingress=[])), "pending"),
        (
            SimpleNamespace(
                load_balancer=SimpleNamespace(
                    ingress=[SimpleNamespace(ip=None, hostname=None), SimpleNamespace(ip="10.1.0.7", hostname="x")]
                )
            ),
            "10.1.0.7",
        ),
        (
            SimpleNamespace(load_balancer=SimpleNamespace(ingress=[SimpleNamespace(ip="", hostname="lb.example")])),
            "lb.example",
        ),
        (
            SimpleNamespace(load_balancer=SimpleNamespace(ingress=[SimpleNamespace(hostname="lb.example")])),
            "lb.example",
        ),
        # An entry without either field (neither is required) is skipped, never an AttributeError.
        (SimpleNamespace(load_balancer=SimpleNamespace(ingress=[SimpleNamespace(ip=None)])), "pending"),
    ],
)
def test_the_published_address_is_the_first_ip_or_hostname_or_pending(status: Any, address: str) -> None:
    assert stateful.load_balancer_address(status) == address


# --- the setup Job's pg_hba reload --------------------------------------------------------------

# psql answers the digest query with $DIGEST from the $DIGEST_AFTER-th call on (an older file
# before), the reload with $RELOAD_EXIT and the error count with $ERRORS.
RELOAD_PSQL = """case "$*" in
  *pg_read_file*)
    if [ "$n" -ge "${DIGEST_AFTER:-1}" ]; then echo "$DIGEST"; else echo 0123abcd; fi ;;
  *pg_reload_conf*) exit "${RELOAD_EXIT:-0}" ;;
  *pg_hba_file_rules*) echo "${ERRORS:-0}" ;;
esac"""


def _reload(tmp_path: Path, hba: str = HBA, **extra: str) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    env = {**tools(tmp_path, psql=RELOAD_PSQL, sleep=""), "DIGEST": sha(hba), **extra}
    return run_sh(database.reload_hba_script(hba), env), env


def _psql(sql: str) -> list[str]:
    return ["psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql]


def test_the_setup_waits_for_its_pg_hba_to_reach_the_primary_then_reloads_it(tmp_path: Path) -> None:
    done, env = _reload(tmp_path, DIGEST_AFTER="3")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines() == ["waiting for the new pg_hba.conf to reach the primary"] * 2 + [
        "pg_hba.conf reloaded"
    ]
    digest = _psql(database.HBA_DIGEST_SQL)
    assert calls(env) == [
        digest,
        ["sleep", "5"],
        digest,
        ["sleep", "5"],
        digest,
        _psql("SELECT pg_reload_conf()"),
        _psql(database.HBA_ERRORS_SQL),
    ]


def test_the_setup_fails_when_its_pg_hba_never_arrives_and_reloads_nothing(tmp_path: Path) -> None:
    # A variable named like the count in the environment does not shorten the wait.
    done, env = _reload(tmp_path, DIGEST_AFTER="1000", tries="55")
    assert done.returncode == 1
    assert done.stderr == "pg_hba.conf on the primary is not the program's after 300 s\n"
    assert len(calls(env, "psql")) == database.HBA_WAIT_TRIES == 60
    assert len(calls(env, "sleep")) == 59
    assert all(c == _psql(database.HBA_DIGEST_SQL) for c in calls(env, "psql"))


def test_a_line_the_server_rejects_or_a_failed_reload_fails_the_setup(tmp_path: Path) -> None:
    done, env = _reload(tmp_path / "errors", ERRORS="2")
    assert done.returncode == 1
    assert done.stderr == "pg_hba.conf: 2 line(s) the server rejects\n"
    assert "pg_hba.conf reloaded" not in done.stdout
    done, env = _reload(tmp_path / "reload", RELOAD_EXIT="1")
    assert done.returncode != 0
    assert calls(env)[-1] == _psql("SELECT pg_reload_conf()")


# --- the backup's dump and upload ---------------------------------------------------------------

DUMP_TOOLS = {
    # Not up for its first $DOWN calls.
    "pg_isready": '[ "$n" -gt "${DOWN:-0}" ]',
    "sleep": "",
    "date": f"echo {STAMP}",
    "pg_dumpall": 'while [ $# -gt 0 ]; do [ "$1" = -f ] && echo roles > "$2"; shift; done',
    "psql": 'case "$*" in *telemetry*) echo 2.17.2 ;; *) echo - ;; esac',
    "pg_dump": 'while [ $# -gt 0 ]; do [ "$1" = -f ] && echo dump > "$2"; shift; done; exit "${DUMP_EXIT:-0}"',
    "pg_restore": "",
    "ls": "",
}


def _dump(tmp_path: Path, **extra: str) -> tuple[subprocess.CompletedProcess[str], dict[str, str], Path]:
    env = {**tools(tmp_path, **DUMP_TOOLS), "PGHOST": "db.example", **extra}
    backup = tmp_path / "backup"
    return run_sh(database.dump_script(["devices", "telemetry"], str(backup)), env), env, backup


def test_the_backup_dumps_the_roles_and_each_database_reads_each_back_and_writes_the_manifest_last(
    tmp_path: Path,
) -> None:
    done, env, backup = _dump(tmp_path, DOWN="2")
    assert (done.returncode, done.stderr) == (0, "")
    files = backup / "set"
    per_database = [
        [
            ["psql", "-X", "-A", "-t", "--no-password", "-v", "ON_ERROR_STOP=1", "-d", db]
            + ["-c", database.TIMESCALEDB_VERSION_SQL],
            ["pg_dump", "--no-password", "--format=custom", "-f", f"{files}/{db}.dump", db],
            ["pg_restore", "--list", f"{files}/{db}.dump"],
            ["ls", "-l", f"{files}/{db}.dump"],
        ]
        for db in ("devices", "telemetry")
    ]
    assert calls(env) == [
        # A new Pod's first packets may be refused: pg_isready, 2 s apart, before anything else.
        ["pg_isready", "-q"],
        ["sleep", "2"],
        ["pg_isready", "-q"],
        ["sleep", "2"],
        ["pg_isready", "-q"],
        ["date", "-u", "+%Y%m%dT%H%M%SZ"],
        ["pg_dumpall", "--no-password", "--globals-only", "-f", f"{files}/globals.sql"],
        *per_database[0],
        *per_database[1],
    ]
    assert sorted(p.name for p in files.iterdir()) == ["devices.dump", "globals.sql", "telemetry.dump"]
    assert (backup / "manifest").read_text() == "devices -\ntelemetry 2.17.2\n"
    assert (backup / "stamp").read_text() == f"{STAMP}\n"
    assert done.stdout.splitlines() == [
        f"backup {STAMP} of db.example: roles",
        f"backup {STAMP} of db.example: devices",
        f"backup {STAMP} of db.example: telemetry",
        f"backup {STAMP} dumped",
    ]


def test_a_primary_that_never_answers_or_a_failed_dump_leaves_no_manifest(tmp_path: Path) -> None:
    # A variable named like the count in the environment does not shorten the wait.
    done, env, backup = _dump(tmp_path / "down", DOWN="1000", tries="55")
    assert done.returncode == 1
    assert done.stderr == "the primary db.example did not answer within 120 s\n"
    assert len(calls(env, "pg_isready")) == 60
    assert calls(env, "pg_dumpall", "pg_dump") == []
    done, env, backup = _dump(tmp_path / "failed", DUMP_EXIT="1")
    assert done.returncode == 1
    assert len(calls(env, "pg_dump")) == 1
    assert not (backup / "manifest").exists()
    assert not (backup / "stamp").exists()


def test_the_upload_sends_the_set_then_the_manifest_last_and_stops_at_a_failed_copy(tmp_path: Path) -> None:
    backup = tmp_path / "backup"
    (backup / "set").mkdir(parents=True)
    for name in ("devices.dump", "globals.sql"):
        (backup / "set" / name).write_text("x")
    (backup / "manifest").write_text("devices -\n")
    (backup / "stamp").write_text(f"{STAMP}\n")
    env = {
        "S3_ENDPOINT": "https://s3.example",
        "AWS_ACCESS_KEY_ID": "key",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "BUCKET": "backups",
        "ENVIRONMENT": "dev",
    }
    mc = '[ "$1" = cp ] && [ "$n" -ge "${FAIL_FROM:-1000}" ] && exit 1; :'
    done = run_sh(database.upload_script(str(backup)), {**env, **tools(tmp_path / "ok", mc=mc)})
    assert (done.returncode, done.stderr) == (0, "")
    target = f"store/backups/dev/{STAMP}"
    assert calls({"CALLS": str(tmp_path / "ok" / "calls")}) == [
        ["mc", "alias", "set", "store", "https://s3.example", "key", "secret"],
        ["mc", "cp", "--quiet", f"{backup}/set/devices.dump", f"{target}/"],
        ["mc", "cp", "--quiet", f"{backup}/set/globals.sql", f"{target}/"],
        ["mc", "cp", "--quiet", f"{backup}/manifest", f"{target}/manifest"],
    ]
    assert done.stdout == f"backup {STAMP} uploaded to {target}\n"
    # The second file's copy fails: nothing after it, above all not the manifest.
    failed = {**env, **tools(tmp_path / "failed", mc=mc), "FAIL_FROM": "3"}
    done = run_sh(database.upload_script(str(backup)), failed)
    assert done.returncode == 1
    assert [c[:2] for c in calls(failed)] == [["mc", "alias"], ["mc", "cp"], ["mc", "cp"]]
    assert calls(failed)[-1][3] == f"{backup}/set/globals.sql"


# --- a move's standby clone ---------------------------------------------------------------------

# pg_basebackup leaves a partial copy and fails until its $OK_FROM-th call, then writes PG_VERSION.
BASEBACKUP = """while [ $# -gt 0 ]; do [ "$1" = -D ] && dir=$2; shift; done
mkdir -p "$dir"
if [ "$n" -lt "${OK_FROM:-1}" ]; then echo partial > "$dir/partial"; exit 1; fi
echo 15 > "$dir/PG_VERSION"
"""


def _standby_clone(tmp_path: Path, **extra: str) -> tuple[subprocess.CompletedProcess[str], dict[str, str], Path]:
    pgdata = tmp_path / "data"
    env = {
        **tools(tmp_path, pg_basebackup=BASEBACKUP, sleep=""),
        "PGDATA": str(pgdata),
        "PRIMARY_HOST": "source.example",
        **extra,
    }
    return run_sh(database.standby_clone_script(), env), env, pgdata


def _basebackup(pgdata: Path) -> list[str]:
    return ["pg_basebackup", "-h", "source.example", "-p", "5432", "-U", "replicator", "-D", str(pgdata)] + [
        "-X",
        "stream",
        "-c",
        "fast",
        "--no-password",
    ]


def test_the_standby_clones_once_retrying_from_scratch_while_the_source_refuses(tmp_path: Path) -> None:
    done, env, pgdata = _standby_clone(tmp_path, OK_FROM="3")
    assert (done.returncode, done.stderr) == (0, "")
    assert calls(env) == [_basebackup(pgdata), ["sleep", "5"], _basebackup(pgdata), ["sleep", "5"], _basebackup(pgdata)]
    assert not (pgdata / "partial").exists(), "a failed try's partial copy is removed"
    assert (pgdata / "standby.signal").exists()
    assert done.stdout.splitlines() == ["source not admitting the clone yet; again in 5 s"] * 2 + [
        "cloned from source.example"
    ]


def test_the_standby_never_clones_over_a_cluster_and_gives_up_after_its_tries(tmp_path: Path) -> None:
    pgdata = tmp_path / "present" / "data"
    pgdata.mkdir(parents=True)
    (pgdata / "PG_VERSION").write_text("15\n")
    done, env, _ = _standby_clone(tmp_path / "present")
    assert (done.returncode, done.stdout, done.stderr) == (0, "data present, not cloning\n", "")
    assert calls(env) == []
    assert not (pgdata / "standby.signal").exists()
    # The count starts at 0 in the script itself: a variable of that name in the container's
    # environment (Kubernetes adds some, an image may set others) does not shorten the tries.
    done, env, pgdata = _standby_clone(tmp_path / "refused", OK_FROM="1000", tries="55")
    assert done.returncode == 1
    assert done.stderr == "no clone of source.example after 60 tries\n"
    assert len(calls(env, "pg_basebackup")) == database.STANDBY_CLONE_TRIES == 60
    assert not (pgdata / "standby.signal").exists()


# --- the tls-reloader sidecar -------------------------------------------------------------------

# sleep ends the loop after $ROUNDS calls; before returning from its n-th call it runs
# $CALLS/at-<n> when the test wrote one (a renewed certificate, a new pg_hba.conf).
RELOADER_SLEEP = """[ "$n" -gt "$ROUNDS" ] && exit 1
[ -f "$CALLS/at-$n" ] && sh "$CALLS/at-$n"
exit 0"""


def _reloader(tmp_path: Path, rounds: int, at: dict[int, str], psql: str = "") -> tuple[str, dict[str, str]]:
    env = tools(tmp_path, sleep=RELOADER_SLEEP, psql=psql)
    cert, hba = tmp_path / "tls.crt", tmp_path / "pg_hba.conf"
    cert.write_text("cert 1\n")
    hba.write_text("hba 1\n")
    for n, script in at.items():
        (tmp_path / "calls" / f"at-{n}").write_text(script.format(cert=cert, hba=hba))
    env.update(WATCHED_FILES=f"{cert} {hba}", RELOAD_INTERVAL="30", ROUNDS=str(rounds))
    done = run_sh(database.tls_reloader_script(), env)
    assert (done.returncode, done.stderr) == (0, "")
    return done.stdout, env


RELOAD = ["psql", "-X", "-At", "-w", "-c", "SELECT pg_reload_conf()"]


def test_the_reloader_reloads_the_server_once_per_change_of_a_watched_file(tmp_path: Path) -> None:
    stdout, env = _reloader(tmp_path, 5, {2: "echo 'cert 2' > {cert}", 4: "echo 'hba 2' > {hba}"})
    assert calls(env) == [
        ["sleep", "30"],
        ["sleep", "30"],
        RELOAD,
        ["sleep", "30"],
        ["sleep", "30"],
        RELOAD,
        ["sleep", "30"],
        ["sleep", "30"],
    ]
    assert stdout.splitlines() == ["tls-reloader: watched files changed, server reloaded"] * 2


def test_a_failed_reload_is_tried_again_and_a_missing_file_waits(tmp_path: Path) -> None:
    # The first reload fails (the server restarting): tried again next round, then not again.
    stdout, env = _reloader(tmp_path / "failed", 4, {1: "echo 'cert 2' > {cert}"}, psql='[ "$n" -ge 2 ]')
    assert calls(env, "psql") == [RELOAD, RELOAD]
    assert stdout.splitlines() == ["tls-reloader: watched files changed, server reloaded"]
    # A file being swapped (gone for a round) is no change; back with new content, it is.
    stdout, env = _reloader(tmp_path / "gone", 4, {1: "rm {cert}", 2: "echo 'cert 2' > {cert}"})
    assert [c[0] for c in calls(env)] == ["sleep", "sleep", "psql", "sleep", "sleep", "sleep"]


def test_the_reloader_stops_at_once_on_sigterm_with_status_0(tmp_path: Path) -> None:
    """PID 1 of its container ignores a signal it has no handler for: without the trap the kubelet
    waited the grace period for its SIGKILL (30 s a database Pod). With it, SIGTERM in the middle
    of a long sleep (the real one) ends the script at once, with status 0."""
    cert = tmp_path / "tls.crt"
    cert.write_text("cert 1\n")
    env = {"PATH": "/usr/bin:/bin", "WATCHED_FILES": str(cert), "RELOAD_INTERVAL": "300"}
    proc = subprocess.Popen([SH, "-c", database.tls_reloader_script()], env=env, stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(1)  # in its first sleep
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0  # not -15 (no trap), not a timeout (the trap behind the sleep)
    finally:
        proc.kill()
        proc.wait()


def test_the_servers_pre_stop_hook_is_a_fast_shutdown_within_the_grace_period(dev: Settings) -> None:
    hook = database.fast_shutdown_hook()["pre_stop"]["exec"]["command"]
    assert hook == ["pg_ctl", "stop", "-D", "/var/lib/postgresql/data/pgdata", "-m", "fast", "-w", "-t", "20"]
    assert database.SHUTDOWN_TIMEOUT_S < 30  # the default grace period: SIGTERM still comes after it


# --- the component, built alone -----------------------------------------------------------------


@pytest.fixture(scope="module")
def dev() -> Settings:
    return load_settings("dev", REPO_ENVIRONMENTS)


@pytest.fixture(scope="module", params=["dev", "production"])
def settings(request: pytest.FixtureRequest) -> Settings:
    return load_settings(request.param, REPO_ENVIRONMENTS)


def _build(
    settings: Settings,
    secrets: dict[str, str] | None = None,
    published: tuple[str, ...] = (),
    standby: database.StandbySource | None = None,
    database_settings: DatabaseSettings | None = None,
    backup_endpoint: str = BACKUP_ENDPOINT,
) -> BuiltComponent:
    releases = settings.releases.components

    def make(placement: Placement, opts: pulumi.ResourceOptions) -> dict[str, Any]:
        component = database.Database(
            "d",
            database.DatabaseArgs(
                placement,
                database_settings or settings.database,
                release=releases["database"],
                backup_client_release=releases["object_storage_client"],
                backup_endpoint=backup_endpoint,
                backup_credentials_secret=BACKUP_KEYS if backup_endpoint else "",
                published_for_replication=published,
                standby_of=standby,
            ),
            opts,
        )
        return {
            "primary_host": component.primary_host,
            "replicas_host": component.replicas_host,
            "role_secret_names": component.role_secret_names,
            "tls_secret_name": component.tls_secret_name,
            "published_address": component.published_address,
        }

    return build_component(settings, make, secrets=secrets)


# Built for each test (in well under a second): a build shared by the module would credit its code
# to the first test alone when mutmut records which tests reach which function.
@pytest.fixture
def built(settings: Settings) -> BuiltComponent:
    return _build(settings)


def _names(settings: Settings) -> naming.Names:
    return naming.names(settings.environment, naming.DATABASE)


def _image(settings: Settings, component: str = "database") -> str:
    return pods.image(settings.cluster, settings.releases.components[component])


def _version(settings: Settings) -> str:
    return settings.releases.components["database"].version


def _secret_env(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def _resources(spec: Any) -> dict[str, Any]:
    return {
        "requests": {"cpu": spec.requests.cpu, "memory": spec.requests.memory},
        "limits": {"cpu": spec.limits.cpu, "memory": spec.limits.memory},
    }


def _stateful_pool(settings: Settings) -> dict[str, str]:
    return Placement.of(settings.environment, settings.cluster, protect_state=False).node_selector("stateful")


def _by_name(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in items}


def _hba(settings: Settings) -> str:
    return database.pg_hba(settings.database, settings.cluster.pod_network)


def _logins(settings: Settings) -> list[str]:
    return [r.name for r in settings.database.roles if r.login]


def test_the_primary_and_the_replicas_each_have_their_service_and_the_certificate_names_both(settings, built) -> None:
    names = _names(settings)
    namespace = naming.namespace(settings.environment)
    port = [{"name": "postgres", "port": 5432, "targetPort": "postgres"}]
    headless, primary, replicas = (built.one(SERVICE, f"-{role}") for role in ("headless", "primary", "replicas"))
    assert len(built.of_type(SERVICE)) == 3, "nothing published outside the cluster without a move"
    # The StatefulSets' pod names: every pod of the database.
    assert headless.plain["metadata"]["name"] == names.child("headless")
    assert headless.plain["spec"] == {"clusterIP": "None", "selector": names.selector(), "ports": port}
    assert primary.plain["metadata"]["name"] == names.child("primary")
    assert primary.plain["spec"] == {"type": "ClusterIP", "selector": names.selector(naming.PRIMARY), "ports": port}
    assert replicas.plain["metadata"]["name"] == names.child("replicas")
    assert replicas.plain["spec"] == {"type": "ClusterIP", "selector": names.selector(naming.REPLICA), "ports": port}
    hosts = [f"{names.child(role)}.{namespace}.svc.cluster.local" for role in ("primary", "replicas")]
    assert [built.outputs["primary_host"], built.outputs["replicas_host"]] == hosts
    certificate = built.one(CERTIFICATE, "-tls").plain
    assert certificate["metadata"] == {
        "name": names.child("tls"),
        "namespace": namespace,
        "labels": names.labels(None, _version(settings)),
    }
    assert certificate["spec"]["secretName"] == names.child("tls") == built.outputs["tls_secret_name"]
    assert certificate["spec"]["dnsNames"] == hosts
    assert certificate["spec"]["issuerRef"]["name"] == settings.cluster.ingress.tls_issuer
    assert built.outputs["published_address"] == ""
    # The same five, under the same names, are what the component registers (the stack's state).
    (component,) = built.of_type("smartnation:database:Database")
    assert built.registered_outputs[component.urn] == built.outputs


def test_each_password_lands_in_the_secrets_of_those_who_use_it_and_nowhere_else(settings, built) -> None:
    names = _names(settings)
    superuser = fake_secret(stack_secrets.DATABASE_SUPERUSER_PASSWORD)
    replication = fake_secret(stack_secrets.DATABASE_REPLICATION_PASSWORD)
    roles = {role: fake_secret(stack_secrets.database_role_password(role)) for role in _logins(settings)}
    credentials = built.one(SECRET, "-credentials").plain
    assert credentials["metadata"]["name"] == names.child("credentials")
    # The setup Job's: every password, under the names init.sh reads.
    assert credentials["stringData"] == {
        "POSTGRES_PASSWORD": superuser,
        "REPLICATION_PASSWORD": replication,
        **{f"{role.upper()}_PASSWORD": password for role, password in roles.items()},
    }
    assert built.one(SECRET, "-superuser").plain["stringData"] == {"POSTGRES_PASSWORD": superuser}
    assert built.one(SECRET, "-superuser").plain["metadata"]["name"] == names.child("superuser")
    assert built.one(SECRET, "-replication").plain["stringData"] == {"REPLICATION_PASSWORD": replication}
    assert built.one(SECRET, "-replication").plain["metadata"]["name"] == names.child("replication")
    # Each API mounts only its own role's.
    expected = {role: names.child(f"role-{role.replace('_', '-')}") for role in roles}
    assert built.outputs["role_secret_names"] == expected
    for role, password in roles.items():
        secret = built.one(SECRET, f"-role-{role.replace('_', '-')}").plain
        assert secret["metadata"]["name"] == expected[role]
        assert secret["stringData"] == {"PGUSER": role, "PGPASSWORD": password}
        assert secret["type"] == "Opaque"
    assert len(built.of_type(SECRET)) == 3 + len(roles)


def test_a_role_without_login_has_no_password_and_no_secret(dev) -> None:
    settings = dataclasses.replace(dev.database, roles=(*dev.database.roles, RoleSettings(name="readers", login=False)))
    built = _build(dev, database_settings=settings)
    assert "readers" not in built.outputs["role_secret_names"]
    assert not [r for r in built.of_type(SECRET) if "readers" in r.name]
    assert "READERS_PASSWORD" not in built.one(SECRET, "-credentials").plain["stringData"]
    init_sh = built.one(CONFIGMAP, "-init").plain["data"]["init.sh"]
    assert "READERS_PASSWORD" not in init_sh and "readers" in built.one(CONFIGMAP, "-init").plain["data"]["init.sql"]


def _server_volumes(settings: Settings) -> list[dict[str, Any]]:
    names = _names(settings)
    return [
        {"name": "config", "configMap": {"name": names.child("config")}},
        {"name": "tls", "secret": {"secretName": names.child("tls"), "defaultMode": 0o440}},
        {"name": "run", "emptyDir": {"sizeLimit": "16Mi"}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
    ]


SERVER_MOUNTS = [
    {"name": "data", "mountPath": "/var/lib/postgresql/data"},
    {"name": "config", "mountPath": "/etc/smartnation", "readOnly": True},
    {"name": "tls", "mountPath": "/etc/smartnation/tls", "readOnly": True},
    {"name": "run", "mountPath": "/var/run/postgresql"},
    {"name": "tmp", "mountPath": "/tmp"},
]
PG_ISREADY = {"exec": {"command": ["pg_isready", "-h", "127.0.0.1", "-p", "5432", "-U", "postgres"]}}


def _check_server(container: dict[str, Any], settings: Settings) -> None:
    """What every server container has, primary, replica or standby."""
    assert container["name"] == "postgres"
    assert container["image"] == _image(settings)
    assert container["args"][: len(database.SERVER_ARGS)] == database.SERVER_ARGS
    assert container["ports"] == [{"name": "postgres", "containerPort": 5432}]
    assert container["resources"] == _resources(settings.database.resources)
    assert container["readinessProbe"] == {
        **PG_ISREADY,
        "periodSeconds": 10,
        "timeoutSeconds": 5,
        "initialDelaySeconds": 5,
    }
    assert container["livenessProbe"] == {
        **PG_ISREADY,
        "periodSeconds": 10,
        "timeoutSeconds": 5,
        "initialDelaySeconds": 60,
        "failureThreshold": 6,
    }
    assert container["volumeMounts"] == SERVER_MOUNTS
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    # A fast shutdown before SIGTERM (smart shutdown would wait for the APIs' pools until SIGKILL).
    assert container["lifecycle"] == {"preStop": {"exec": {"command": [
        "pg_ctl", "stop", "-D", "/var/lib/postgresql/data/pgdata", "-m", "fast", "-w", "-t", "20"]}}}  # fmt: skip


def _check_reloader(container: dict[str, Any], settings: Settings) -> None:
    probe = {"exec": {"command": ["sh", "-c", "test -r /etc/smartnation/tls/tls.crt"]}, "periodSeconds": 30}
    assert container == {
        "name": "tls-reloader",
        "image": _image(settings),
        "command": ["sh", "-c", database.tls_reloader_script()],
        "resources": {"requests": {"cpu": "5m", "memory": "8Mi"}, "limits": {"cpu": "50m", "memory": "32Mi"}},
        "livenessProbe": probe,
        "readinessProbe": probe,
        "env": [
            {"name": "WATCHED_FILES", "value": "/etc/smartnation/tls/tls.crt /etc/smartnation/pg_hba.conf"},
            {"name": "RELOAD_INTERVAL", "value": "30"},
            {"name": "PGHOST", "value": "/var/run/postgresql"},
            {"name": "PGPORT", "value": "5432"},
            {"name": "PGUSER", "value": "postgres"},
            {"name": "PGDATABASE", "value": "postgres"},
            _secret_env("PGPASSWORD", _names(settings).child("superuser"), "POSTGRES_PASSWORD"),
        ],
        "volumeMounts": [
            {"name": "config", "mountPath": "/etc/smartnation", "readOnly": True},
            {"name": "tls", "mountPath": "/etc/smartnation/tls", "readOnly": True},
            {"name": "run", "mountPath": "/var/run/postgresql"},
        ],
        "securityContext": container["securityContext"],
    }


def _check_clone(clone: dict[str, Any], settings: Settings, host: str) -> None:
    """The clone before a replica's or a standby's first start: over verify-full TLS from ``host``
    as the replication role, into the data volume."""
    assert {k: v for k, v in clone.items() if k not in ("command", "securityContext")} == {
        "name": "clone-primary",
        "image": _image(settings),
        "resources": _resources(settings.database.resources),
        "env": [
            {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"},
            {"name": "PRIMARY_HOST", "value": host},
            {"name": "PGSSLMODE", "value": "verify-full"},
            {"name": "PGSSLROOTCERT", "value": "/etc/smartnation/tls/ca.crt"},
            _secret_env("PGPASSWORD", _names(settings).child("replication"), "REPLICATION_PASSWORD"),
        ],
        "volumeMounts": [
            {"name": "data", "mountPath": "/var/lib/postgresql/data"},
            {"name": "tls", "mountPath": "/etc/smartnation/tls", "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    assert clone["command"][:2] == ["sh", "-c"]


def _claim(settings: Settings) -> list[dict[str, Any]]:
    return [
        {
            "metadata": {"name": "data", "labels": _names(settings).labels()},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": settings.cluster.storage.default_class,
                "resources": {"requests": {"storage": settings.database.storage_size}},
            },
        }
    ]


def test_the_primary_sets_its_password_then_serves_tls_with_its_pg_hba(settings, built) -> None:
    names = _names(settings)
    server = built.one(STATEFULSET, "-primary-server")
    spec = server.plain["spec"]
    assert server.plain["metadata"]["name"] == names.child("primary")
    assert server.plain["metadata"]["labels"] == names.labels(naming.PRIMARY, _version(settings))
    assert spec["replicas"] == 1
    assert spec["serviceName"] == names.child("headless")
    assert spec["selector"] == {"matchLabels": names.selector(naming.PRIMARY)}
    assert "podManagementPolicy" not in spec
    assert spec["volumeClaimTemplates"] == _claim(settings)
    # A new superuser password restarts it: the script sets the Secret's value before the server starts.
    assert spec["template"]["metadata"]["annotations"] == {
        database.SUPERUSER_PASSWORD_HASH: sha(fake_secret(stack_secrets.DATABASE_SUPERUSER_PASSWORD))
    }
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == database.POSTGRES_UID == 70
    assert pod["nodeSelector"] == _stateful_pool(settings)
    assert pod["volumes"] == _server_volumes(settings)
    assert "initContainers" not in pod
    postgres_container, reloader = pod["containers"]
    _check_server(postgres_container, settings)
    assert postgres_container["command"] == [
        "sh",
        "-c",
        set_password_script("/usr/local/bin/docker-entrypoint.sh", "postgres"),
        "postgres-primary",
    ]
    assert postgres_container["args"] == database.SERVER_ARGS
    assert postgres_container["env"] == [
        {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"},
        _secret_env("POSTGRES_PASSWORD", names.child("superuser"), "POSTGRES_PASSWORD"),
    ]
    _check_reloader(reloader, settings)
    # It does not start before its key pair is issued, nor restart for a password before its Secret holds it.
    assert set(server.dependencies) == {
        built.one(CERTIFICATE, "-tls").urn,
        built.one(SECRET, "-superuser").urn,
        built.one(SECRET, "-replication").urn,
    }
    assert server.protect is settings.guardrails.protect_state
    config = built.one(CONFIGMAP, "-config").plain
    assert config["metadata"]["name"] == names.child("config")
    assert config["data"] == {"pg_hba.conf": _hba(settings)}


def test_replicas_clone_the_primary_and_stream_from_it_over_tls_when_asked(settings) -> None:
    database_settings = dataclasses.replace(settings.database, replicas=3)
    built = _build(settings, database_settings=database_settings)
    names = _names(settings)
    primary_host = built.outputs["primary_host"]
    replica = built.one(STATEFULSET, "-replica-server")
    spec = replica.plain["spec"]
    assert replica.plain["metadata"]["name"] == names.child("replica")
    assert replica.plain["metadata"]["labels"] == names.labels(naming.REPLICA, _version(settings))
    assert spec["replicas"] == 3
    assert spec["serviceName"] == names.child("headless")
    assert spec["selector"] == {"matchLabels": names.selector(naming.REPLICA)}
    # Replicas clone from the primary, never from each other: they may start together.
    assert spec["podManagementPolicy"] == "Parallel"
    assert spec["volumeClaimTemplates"] == _claim(settings)
    pod = spec["template"]["spec"]
    assert pod["volumes"] == _server_volumes(settings)
    assert pod["securityContext"]["runAsUser"] == 70
    assert pod["nodeSelector"] == _stateful_pool(settings)
    (clone,) = pod["initContainers"]
    # Its script runs in test_components_database_clone.py.
    _check_clone(clone, settings, primary_host)
    server, reloader = pod["containers"]
    _check_server(server, settings)
    # The image's own entrypoint (no password to set: it comes with the primary's WAL).
    assert "command" not in server
    assert server["args"] == [
        *database.SERVER_ARGS,
        "-c",
        f"primary_conninfo={database.replica_conninfo(primary_host)}",
    ]
    assert server["env"] == [
        {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"},
        _secret_env("POSTGRES_PASSWORD", names.child("superuser"), "POSTGRES_PASSWORD"),
        _secret_env("PGPASSWORD", names.child("replication"), "REPLICATION_PASSWORD"),
    ]
    _check_reloader(reloader, settings)
    assert spec["template"]["metadata"]["annotations"] == {
        database.REPLICATION_PASSWORD_HASH: sha(fake_secret(stack_secrets.DATABASE_REPLICATION_PASSWORD)),
        database.SUPERUSER_PASSWORD_HASH: sha(fake_secret(stack_secrets.DATABASE_SUPERUSER_PASSWORD)),
        database.PG_HBA_HASH: sha(_hba(settings)),
    }
    assert set(replica.dependencies) == {
        built.one(STATEFULSET, "-primary-server").urn,
        built.one(SECRET, "-superuser").urn,
        built.one(SECRET, "-replication").urn,
    }
    assert replica.protect is settings.guardrails.protect_state
    budget = built.one(PDB, "-replica-pdb").plain
    assert budget["metadata"]["name"] == names.child("replica")
    assert budget["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": names.selector(naming.REPLICA)}}


def test_no_replicas_asked_none_made_and_one_asked_one_made(dev) -> None:
    built = _build(dev, database_settings=dataclasses.replace(dev.database, replicas=0))
    assert [r.name for r in built.of_type(STATEFULSET)] == ["d-primary-server"]
    assert built.of_type(PDB) == []
    built = _build(dev, database_settings=dataclasses.replace(dev.database, replicas=1))
    assert sorted(r.name for r in built.of_type(STATEFULSET)) == ["d-primary-server", "d-replica-server"]
    assert built.one(STATEFULSET, "-replica-server").plain["spec"]["replicas"] == 1
    assert len(built.of_type(PDB)) == 1


def _annotations(built: BuiltComponent, role: str) -> dict[str, str]:
    return built.one(STATEFULSET, f"-{role}-server").plain["spec"]["template"]["metadata"]["annotations"]


def test_a_new_password_rolls_the_servers_that_log_in_with_it_and_a_new_pg_hba_the_replicas(dev) -> None:
    replicated = dataclasses.replace(dev.database, replicas=2)
    before = _build(dev, database_settings=replicated)
    superuser = _build(
        dev, secrets={stack_secrets.DATABASE_SUPERUSER_PASSWORD: "another"}, database_settings=replicated
    )
    replication = _build(
        dev, secrets={stack_secrets.DATABASE_REPLICATION_PASSWORD: "another"}, database_settings=replicated
    )
    assert _annotations(superuser, "primary") != _annotations(before, "primary")
    assert _annotations(replication, "primary") == _annotations(before, "primary")
    for after, key in (
        (superuser, database.SUPERUSER_PASSWORD_HASH),
        (replication, database.REPLICATION_PASSWORD_HASH),
    ):
        changed = {k for k, v in _annotations(after, "replica").items() if _annotations(before, "replica")[k] != v}
        assert changed == {key}
    # A database added changes pg_hba.conf: the replicas roll, the primary reloads it (the setup Job).
    archive = DatabaseSpec(name="archive", owner="devices_owner")
    more = _build(dev, database_settings=dataclasses.replace(_with_database(dev, archive), replicas=2))
    assert _annotations(more, "primary") == _annotations(before, "primary")
    assert _annotations(more, "replica")[database.PG_HBA_HASH] != _annotations(before, "replica")[database.PG_HBA_HASH]


def _job_name(built: BuiltComponent) -> str:
    return built.one(JOB, "-setup").plain["metadata"]["name"]


def test_the_setup_job_waits_for_the_primary_converges_the_roles_and_reloads_pg_hba(
    settings, built, tmp_path: Path
) -> None:
    names = _names(settings)
    roles, databases, grants = _declared(settings.database)
    init = built.one(CONFIGMAP, "-init").plain
    assert init["metadata"]["name"] == names.child("init")
    assert init["metadata"]["labels"] == names.labels(naming.SETUP, _version(settings))
    assert init["data"] == {
        "init.sql": postgres.render_init_sql(databases, roles, grants),
        "init.sh": postgres.render_init_script(databases, roles, grants, sql_path="/init/init.sql"),
        "replication.sql": database.REPLICATION_SQL,
        "reload-hba.sh": database.reload_hba_script(_hba(settings)),
    }
    job = built.one(JOB, "-setup")
    assert job.plain["metadata"]["name"].startswith(names.child("init-"))
    assert len(job.plain["metadata"]["name"]) == len(names.child("init-")) + 10
    assert built.one(STATEFULSET, "-primary-server").urn in job.dependencies
    # The old Job goes after the new one is made (a failed run keeps the last good one's record).
    assert job.delete_before_replace is False
    # Set, not left to the provider (which deletes first when a replacement keeps the name).
    assert built.delete_before_replace[job.urn] is False
    pod = job.plain["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == 70
    (container,) = pod["containers"]
    assert container["image"] == _image(settings)
    assert container["env"] == [
        {"name": "PGHOST", "value": built.outputs["primary_host"]},
        {"name": "PGUSER", "value": "postgres"},
        {"name": "PGSSLMODE", "value": "verify-full"},
        {"name": "PGSSLROOTCERT", "value": "/etc/smartnation/database-ca/ca.crt"},
        _secret_env("PGPASSWORD", names.child("credentials"), "POSTGRES_PASSWORD"),
    ]
    # init.sh reads every role's password from the environment.
    assert container["envFrom"] == [{"secretRef": {"name": names.child("credentials")}}]
    assert _by_name(container["volumeMounts"])["init"] == {"name": "init", "mountPath": "/init", "readOnly": True}
    assert _by_name(container["volumeMounts"])["database-ca"] == {
        "name": "database-ca",
        "mountPath": "/etc/smartnation/database-ca",
        "readOnly": True,
    }
    volumes = _by_name(pod["volumes"])
    assert volumes["init"] == {"name": "init", "configMap": {"name": names.child("init")}}
    # The issuer's CA alone, never the server's key.
    assert volumes["database-ca"] == {
        "name": "database-ca",
        "secret": {"secretName": names.child("tls"), "items": [{"key": "ca.crt", "path": "ca.crt"}]},
    }
    # Run, the command: waits for the primary, then init.sh, the replication role, the reload, each after the last.
    command = container["command"]
    assert command[:2] == ["sh", "-c"]
    host = built.outputs["primary_host"]
    steps = [
        ["sh", "/init/init.sh"],
        ["psql", "-X", "-v", "ON_ERROR_STOP=1", "-v", "replication_password=pw 'x", "-f", "/init/replication.sql"],
        ["sh", "/init/reload-hba.sh"],
    ]
    ready = ["pg_isready", "-q", "-h", host, "-p", "5432"]
    # The inner `sh` and psql are stand-ins too; a failing step stops the ones after it.
    for failing, ran in ((None, 3), ("sh", 1), ("psql", 2)):
        bodies = {"pg_isready": '[ "$n" -ge 2 ]', "sleep": "", "sh": "", "psql": ""}
        if failing:
            bodies[failing] = "exit 1"
        env = {**tools(tmp_path / str(failing), **bodies), "PGHOST": host, "REPLICATION_PASSWORD": "pw 'x"}
        done = run_sh(command[2], env)
        assert done.returncode == (0 if failing is None else 1), done.stderr
        assert done.stderr == ""
        assert calls(env) == [ready, ["sleep", "2"], ready, *steps[:ran]]
        assert done.stdout == "waiting for postgres\n"


def test_what_renames_the_setup_job_and_what_does_not(dev) -> None:
    first = _job_name(_build(dev))
    assert _job_name(_build(dev)) == first
    assert first.startswith("dev-database-init-")
    assert all(c in "0123456789abcdef" for c in first.removeprefix("dev-database-init-"))
    renamed = [
        # Any password the Job sets, the superuser's it logs in with, the replication role's.
        _build(dev, secrets={stack_secrets.DATABASE_SUPERUSER_PASSWORD: "another"}),
        _build(dev, secrets={stack_secrets.DATABASE_REPLICATION_PASSWORD: "another"}),
        _build(dev, secrets={stack_secrets.database_role_password(_logins(dev)[-1]): "another"}),
        # The scripts (a role more) and the image (a Job's pod template is immutable).
        _build(dev, database_settings=_with_database(dev, DatabaseSpec(name="archive", owner="devices_owner"))),
        _build(_with_release(dev, digest="sha256:" + "1" * 64)),
    ]
    names = [_job_name(b) for b in renamed]
    assert first not in names and len(set(names)) == len(names)
    # A move's replication lines reach the served file (updated in place), never the Job's name:
    # starting or ending a move re-runs nothing on the source.
    published = _build(dev, published=("10.213.0.253/32",))
    assert _job_name(published) == first
    served = database.admit_replication_from(_hba(dev), ("10.213.0.253/32",))
    assert published.one(CONFIGMAP, "-config").plain["data"] == {"pg_hba.conf": served}
    assert published.one(CONFIGMAP, "-init").plain["data"]["reload-hba.sh"] == database.reload_hba_script(served)
    assert _annotations(published, "primary") == _annotations(_build(dev), "primary")


def _with_database(settings: Settings, spec: DatabaseSpec) -> DatabaseSettings:
    return dataclasses.replace(settings.database, databases=(*settings.database.databases, spec))


def _with_release(settings: Settings, **changes: Any) -> Settings:
    components = dict(settings.releases.components)
    components["database"] = dataclasses.replace(components["database"], **changes)
    return dataclasses.replace(settings, releases=dataclasses.replace(settings.releases, components=components))


def test_the_backup_dumps_from_the_primary_over_tls_and_uploads_with_the_backup_users_keys(settings, built) -> None:
    names = _names(settings)
    cron = built.one(CRONJOB, "-backup").plain
    labels = names.labels(naming.BACKUP, _version(settings))
    assert cron["metadata"]["name"] == names.child("backup")
    assert cron["metadata"]["labels"] == labels
    spec = cron["spec"]
    assert {k: v for k, v in spec.items() if k != "jobTemplate"} == {
        "schedule": settings.database.backup.schedule,
        "timeZone": "Etc/UTC",
        # One dump at a time; a slow one is never overtaken by the next night's.
        "concurrencyPolicy": "Forbid",
        "successfulJobsHistoryLimit": 3,
        "failedJobsHistoryLimit": 3,
    }
    job = spec["jobTemplate"]
    assert job["metadata"] == {"labels": labels}
    assert {k: v for k, v in job["spec"].items() if k != "template"} == {
        "backoffLimit": 2,
        "activeDeadlineSeconds": 14400,
    }
    assert job["spec"]["template"]["metadata"] == {"labels": labels}
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["runAsUser"] == 70
    assert pod["nodeSelector"] == _stateful_pool(settings)
    assert pod["automountServiceAccountToken"] is False
    assert pod["volumes"] == [
        {"name": "backup", "emptyDir": {}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
        {
            "name": "database-ca",
            "secret": {"secretName": names.child("tls"), "items": [{"key": "ca.crt", "path": "ca.crt"}]},
        },
        {
            "name": "object-storage-ca",
            "secret": {
                "secretName": object_storage.tls_secret_name(settings.environment),
                "items": [{"key": "ca.crt", "path": "ca.crt"}],
            },
        },
    ]
    (dump,) = pod["initContainers"]
    (upload,) = pod["containers"]
    job_resources = _resources(pods.JOB_RESOURCES)
    assert {k: v for k, v in dump.items() if k != "securityContext"} == {
        "name": "dump",
        "image": _image(settings),
        "resources": job_resources,
        "command": ["sh", "-c", database.dump_script([d.name for d in settings.database.databases])],
        "env": [
            {"name": "PGHOST", "value": built.outputs["primary_host"]},
            {"name": "PGPORT", "value": "5432"},
            {"name": "PGUSER", "value": "postgres"},
            {"name": "PGSSLMODE", "value": "verify-full"},
            {"name": "PGSSLROOTCERT", "value": "/etc/smartnation/database-ca/ca.crt"},
            _secret_env("PGPASSWORD", names.child("superuser"), "POSTGRES_PASSWORD"),
        ],
        "volumeMounts": [
            {"name": "backup", "mountPath": "/backup"},
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "database-ca", "mountPath": "/etc/smartnation/database-ca", "readOnly": True},
        ],
    }
    ca_file = object_storage.CA_FILE
    assert {k: v for k, v in upload.items() if k != "securityContext"} == {
        "name": "upload",
        "image": _image(settings, "object_storage_client"),
        "resources": job_resources,
        "command": ["sh", "-c", database.upload_script()],
        "env": [
            {"name": "S3_ENDPOINT", "value": BACKUP_ENDPOINT},
            {"name": "BUCKET", "value": settings.database.backup.bucket},
            {"name": "ENVIRONMENT", "value": settings.environment},
            {"name": "MC_CONFIG_DIR", "value": "/tmp/mc"},
            {"name": "SSL_CERT_FILE", "value": ca_file},
            {"name": "AWS_CA_BUNDLE", "value": ca_file},
        ],
        "envFrom": [{"secretRef": {"name": BACKUP_KEYS}}],
        "volumeMounts": [
            {"name": "backup", "mountPath": "/backup", "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "object-storage-ca", "mountPath": object_storage.CA_DIR, "readOnly": True},
        ],
    }


def test_during_a_move_the_primary_is_published_to_the_standbys_address_alone(dev, monkeypatch) -> None:
    # The engine fills a LoadBalancer's status; the mocks answer with what they were given, plus this.
    answer = mock_program.Recorder.new_resource

    def with_status(self: Any, args: Any) -> tuple[str, dict]:
        resource_id, state = answer(self, args)
        if args.typ == SERVICE and args.inputs.get("spec", {}).get("type") == "LoadBalancer":
            state = {**state, "status": {"loadBalancer": {"ingress": [{"ip": "10.213.0.40"}]}}}
        return resource_id, state

    monkeypatch.setattr(mock_program.Recorder, "new_resource", with_status)
    names = _names(dev)
    built = _build(dev, published=("10.213.0.253/32",))
    service = built.one(SERVICE, "-published").plain
    assert service["metadata"]["name"] == names.child("published")
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["spec"]["selector"] == names.selector(naming.PRIMARY)
    assert service["spec"]["ports"] == [{"name": "postgres", "port": 5432, "targetPort": "postgres", "protocol": "TCP"}]
    assert service["spec"]["loadBalancerSourceRanges"] == ["10.213.0.253/32"]
    assert service["spec"]["externalTrafficPolicy"] == "Local"
    assert built.outputs["published_address"] == "10.213.0.40"


def test_a_serving_standby_is_backed_up_as_a_primary_is_and_still_runs_no_setup(dev) -> None:
    """From a move's cutover on the new site's database is promoted in place and serves: given a
    backup endpoint, the same backup CronJob as a primary's; still no setup Job."""
    standby = _build(dev, standby=SOURCE)
    primary = _build(dev)
    assert standby.of_type(JOB) == [], "roles come from the source until the move completes"
    (backup,) = standby.of_type(CRONJOB)
    assert backup.plain == primary.one(CRONJOB, "-backup").plain
    assert [r.name for r in standby.of_type(STATEFULSET)] == ["d-primary-server"], "no in-site replicas"


def test_the_standby_clones_the_source_once_and_streams_from_it_and_writes_nothing(dev) -> None:
    address = pulumi.Output.from_input("10.213.0.9")
    source = dataclasses.replace(SOURCE, address=address)
    names = _names(dev)
    built = _build(
        dev, standby=source, database_settings=dataclasses.replace(dev.database, replicas=2), backup_endpoint=""
    )
    assert built.of_type(JOB) == built.of_type(CRONJOB) == [], "roles and data come from the source"
    assert [r.name for r in built.of_type(STATEFULSET)] == ["d-primary-server"]
    ca = built.one(SECRET, "-source-ca")
    assert ca.plain["metadata"]["name"] == names.child("source-ca")
    assert ca.plain["stringData"] == {"ca.crt": SOURCE.ca_pem}
    server = built.one(STATEFULSET, "-primary-server")
    spec = server.plain["spec"]
    # The same StatefulSet as a primary's: the cutover promotes it in place.
    assert server.plain["metadata"]["name"] == names.child("primary")
    assert server.plain["metadata"]["labels"] == names.labels(naming.PRIMARY, _version(dev))
    assert spec["replicas"] == 1
    assert spec["serviceName"] == names.child("headless")
    assert spec["selector"] == {"matchLabels": names.selector(naming.PRIMARY)}
    assert spec["volumeClaimTemplates"] == _claim(dev)
    assert server.protect is dev.guardrails.protect_state
    assert set(server.dependencies) == {
        built.one(CERTIFICATE, "-tls").urn,
        ca.urn,
        built.one(SECRET, "-superuser").urn,
        built.one(SECRET, "-replication").urn,
    }
    assert spec["template"]["metadata"]["annotations"] == {
        database.REPLICATION_PASSWORD_HASH: sha(fake_secret(stack_secrets.DATABASE_REPLICATION_PASSWORD)),
        database.SUPERUSER_PASSWORD_HASH: sha(fake_secret(stack_secrets.DATABASE_SUPERUSER_PASSWORD)),
    }
    pod = spec["template"]["spec"]
    assert pod["hostAliases"] == [{"ip": "10.213.0.9", "hostnames": [SOURCE.host]}]
    assert pod["securityContext"]["runAsUser"] == 70
    assert pod["nodeSelector"] == _stateful_pool(dev)
    # This site's key pair, the source's CA: it presents its own certificate and checks the source's.
    assert pod["volumes"] == [
        {"name": "config", "configMap": {"name": names.child("config")}},
        {
            "name": "tls",
            "projected": {
                "defaultMode": 0o440,
                "sources": [
                    {
                        "secret": {
                            "name": names.child("tls"),
                            "items": [{"key": "tls.crt", "path": "tls.crt"}, {"key": "tls.key", "path": "tls.key"}],
                        }
                    },
                    {"secret": {"name": names.child("source-ca"), "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                ],
            },
        },
        {"name": "run", "emptyDir": {"sizeLimit": "16Mi"}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
    ]
    (clone,) = pod["initContainers"]
    _check_clone(clone, dev, SOURCE.host)
    assert clone["command"] == ["sh", "-c", database.standby_clone_script()]
    server_container, reloader = pod["containers"]
    _check_server(server_container, dev)
    # A hot standby of the source, under the name the source's certificate carries.
    assert "command" not in server_container
    assert server_container["args"] == [
        *database.SERVER_ARGS,
        "-c",
        f"primary_conninfo={database.replica_conninfo(SOURCE.host)}",
    ]
    assert server_container["env"] == [
        {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"},
        _secret_env("POSTGRES_PASSWORD", names.child("superuser"), "POSTGRES_PASSWORD"),
        _secret_env("PGPASSWORD", names.child("replication"), "REPLICATION_PASSWORD"),
    ]
    _check_reloader(reloader, dev)


def test_the_database_takes_its_options_and_owns_names_and_labels_everything_it_makes(settings) -> None:
    releases = settings.releases.components

    def make(placement: Placement, opts: pulumi.ResourceOptions) -> dict[str, Any]:
        before = pulumi.CustomResource("test:index:Before", "before", {}, opts=opts)
        args = database.DatabaseArgs(
            placement,
            settings.database,
            release=releases["database"],
            backup_client_release=releases["object_storage_client"],
            backup_endpoint=BACKUP_ENDPOINT,
            backup_credentials_secret=BACKUP_KEYS,
        )
        database.Database("d", args, pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[before])))
        return {}

    built = build_component(settings, make)
    (before,) = built.of_type("test:index:Before")
    (component,) = built.of_type("smartnation:database:Database")
    assert before.urn in component.dependencies
    children = [r for r in built.resources if r.type.startswith("kubernetes:")]
    assert {r.parent for r in children} == {component.urn}
    assert {r.provider.split("::")[-1] for r in children} == {"test-provider-id"}
    namespace = naming.namespace(settings.environment)
    for child in children:
        assert child.name.startswith("d-"), child.name
        assert child.plain["metadata"]["namespace"] == namespace, child.name
        assert child.plain["metadata"]["labels"]["app.kubernetes.io/version"] == _version(settings), child.name
        # Only the servers hold data: only they are protected.
        assert child.protect is (settings.guardrails.protect_state if child.type == STATEFULSET else None), child.name
