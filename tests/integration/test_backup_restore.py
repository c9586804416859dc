"""Restore, proven: dev deployed with `pulumi up` on Düsseldorf's real node (a project of this test's
own, so its own namespace), rows written into a TimescaleDB hypertable in `telemetry` and a table in
`devices`, the backup CronJob triggered once, then `smartnation restore` (the real CLI, as an
operator runs it) restores that backup into scratch databases and finds zero differences. The
scratch databases are checked independently (hypertable, chunks, rows). A dump that cannot log in
fails its Job and uploads nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import psycopg
import pytest

from smartnation.cli import restore_pod
from smartnation.program.components import database
from smartnation.settings.stack_secrets import CONFIG_NAMESPACE, DATABASE_SUPERUSER_PASSWORD
from tests.integration.platform_project import PROJECT as SESSION_PROJECT
from tests.integration.platform_project import REPO, PlatformProject
from tests.integration.running_pods import port_forward

pytestmark = pytest.mark.integration

# Under the session's prefix: a fixed name was shared by two sessions, and each deletes this
# namespace when its fixture starts (a killed run's leftover).
PROJECT = f"{SESSION_PROJECT}-rst"
ENVIRONMENT = "dev"
CLUSTER = "dusseldorf-test"
NAMESPACE = f"{PROJECT}-{ENVIRONMENT}"
CRONJOB = f"{ENVIRONMENT}-database-backup"
READINGS = 60_000
DEVICES = 2_000
SUFFIX = "itrestore"


def _kubectl(tools, *args: str, check: bool = True, timeout: float = 900):
    return tools.run("kubectl", "--context", CLUSTER, "-n", NAMESPACE, *args, check=check, timeout=timeout)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory, tools, clusters):
    # A run killed half-way leaves this test's namespace behind with its state backend gone.
    tools.run("kubectl", "--context", CLUSTER, "delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=true")
    backend_dir = tmp_path_factory.mktemp("state")
    backend = {"PULUMI_BACKEND_URL": f"file://{backend_dir}", "PULUMI_CONFIG_PASSPHRASE": "integration-tests"}
    project = PlatformProject.create(tmp_path_factory.mktemp("platform"), tools, backend, name=PROJECT)
    if f"cluster: {CLUSTER}\n" not in (project.root / "environments" / f"{ENVIRONMENT}.yaml").read_text():
        project.set_cluster(ENVIRONMENT, CLUSTER)
    project.init_stack(ENVIRONMENT)
    try:
        project.pulumi("up", "--yes", "--skip-preview", "--stack", ENVIRONMENT)
        yield project
    finally:
        project.destroy(ENVIRONMENT)


@pytest.fixture(scope="module")
def superuser_password(deployed) -> str:
    shown = json.loads(deployed.pulumi("config", "--show-secrets", "--json", "--stack", ENVIRONMENT).stdout)
    return shown[f"{CONFIG_NAMESPACE}:{DATABASE_SUPERUSER_PASSWORD}"]["value"]


def _primary(tools) -> str:
    pods = tools.kubectl_json(CLUSTER, "-n", NAMESPACE, "get", "pods", "-l", "app.kubernetes.io/component=primary")
    (pod,) = [p for p in pods["items"] if p["status"].get("phase") == "Running"]
    return pod["metadata"]["name"]


def _sql(tools, password: str, dbname: str, *statements: str) -> list[tuple]:
    with port_forward(tools, CLUSTER, NAMESPACE, _primary(tools), database.PORT) as port:
        dsn = f"host=127.0.0.1 port={port} user=postgres password={password} dbname={dbname}"
        with psycopg.connect(dsn, connect_timeout=10, autocommit=True) as conn:
            rows: list[tuple] = []
            for statement in statements:
                cursor = conn.execute(statement)
                rows = cursor.fetchall() if cursor.description else []
            return rows


@pytest.fixture(scope="module")
def written(deployed, tools, superuser_password) -> None:
    """Rows in a hypertable of `telemetry` (many chunks) and a table of `devices`, owned by each
    database's owner as the services' own tables are."""
    _sql(
        tools,
        superuser_password,
        "telemetry",
        "SET ROLE telemetry_owner",
        "CREATE TABLE it_readings (at timestamptz NOT NULL, device text NOT NULL, value double precision)",
        "SELECT create_hypertable('it_readings', 'at', chunk_time_interval => interval '1 day')",
        f"INSERT INTO it_readings SELECT timestamptz '2026-11-01' + i * interval '20 seconds', 'dev-' || (i % 97), "
        f"i / 7.0 FROM generate_series(1, {READINGS}) i",
    )
    _sql(
        tools,
        superuser_password,
        "devices",
        "SET ROLE devices_owner",
        "CREATE TABLE it_devices (id text PRIMARY KEY, class text NOT NULL, location point)",
        f"INSERT INTO it_devices SELECT 'dev-' || i, 'air-quality-sensor', point(i, -i) "
        f"FROM generate_series(1, {DEVICES}) i",
    )


def _finish(tools, job: str, timeout: int = 900) -> tuple[str, float]:
    """Waits until ``job`` is Complete or Failed; returns which and the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        status = tools.kubectl_json(CLUSTER, "-n", NAMESPACE, "get", "job", job)["status"]
        done = [c["type"] for c in status.get("conditions") or [] if c["status"] == "True"]
        for condition in ("Complete", "Failed"):
            if condition in done:
                return condition, time.monotonic() - started
        time.sleep(2)
    raise AssertionError(f"job {job} did not finish in {timeout}s")


def _cli(deployed, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        **deployed.env,
        "SMARTNATION_PROJECT_DIR": str(deployed.root),
    }
    return subprocess.run(
        [sys.executable, "-m", "smartnation.cli.main", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )


@pytest.fixture(scope="module")
def backed_up(deployed, tools, written) -> str:
    """The CronJob triggered once; returns the backup's name."""
    _kubectl(tools, "create", "job", f"--from=cronjob/{CRONJOB}", "it-backup-1")
    condition, seconds = _finish(tools, "it-backup-1")
    dump_log = _kubectl(tools, "logs", "job/it-backup-1", "-c", "dump").stdout
    upload_log = _kubectl(tools, "logs", "job/it-backup-1", "-c", "upload", check=False).stdout
    print(f"backup job took {seconds:.0f}s\n{dump_log}{upload_log}")
    assert condition == "Complete", dump_log
    listed = _cli(deployed, "restore", ENVIRONMENT, "--list")
    assert listed.returncode == 0, listed.stderr
    print(listed.stdout)
    (line,) = [line for line in listed.stdout.splitlines() if line.endswith(" yes")]
    name = line.split()[0]
    assert restore_pod.BACKUP_NAME.fullmatch(name)
    assert f"uploaded to store/backups/{ENVIRONMENT}/{name}" in upload_log
    return name


def test_a_backup_restores_into_scratch_databases_with_zero_differences(deployed, tools, superuser_password, backed_up):
    started = time.monotonic()
    restored = _cli(deployed, "restore", ENVIRONMENT, "--backup", backed_up, "--into", SUFFIX)
    seconds = time.monotonic() - started
    print(f"restore took {seconds:.0f}s\n{restored.stdout}\n{restored.stderr}")
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert "DIFFERENT" not in restored.stdout and ", 0 different;" in restored.stdout
    lines = {tuple(line.split()[:4]) for line in restored.stdout.splitlines()}
    assert ("telemetry", "public.it_readings", str(READINGS), str(READINGS)) in lines
    assert ("devices", "public.it_devices", str(DEVICES), str(DEVICES)) in lines
    # Checked apart from the CLI's own report: still a hypertable with the same chunks, same rows.
    scratch = f"telemetry_{SUFFIX}"
    chunks = "SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_name = 'it_readings'"
    ((source_chunks,),) = _sql(tools, superuser_password, "telemetry", chunks)
    ((scratch_chunks,),) = _sql(tools, superuser_password, scratch, chunks)
    assert scratch_chunks == source_chunks > 1
    owner = "SELECT tableowner FROM pg_tables WHERE tablename = 'it_readings'"
    assert _sql(tools, superuser_password, scratch, owner) == [("telemetry_owner",)]
    assert _sql(tools, superuser_password, scratch, "SELECT count(*) FROM it_readings") == [(READINGS,)]
    assert _sql(tools, superuser_password, scratch, "SHOW timescaledb.restoring") == [("off",)]
    # The live databases were only read.
    assert _sql(tools, superuser_password, "devices", "SELECT count(*) FROM it_devices") == [(DEVICES,)]
    _sql(
        tools,
        superuser_password,
        "postgres",
        *[f"DROP DATABASE {db}_{SUFFIX} WITH (FORCE)" for db in ("telemetry", "devices")],
    )


def test_a_dump_that_fails_fails_its_job_and_uploads_nothing(deployed, tools, backed_up):
    job = json.loads(
        _kubectl(
            tools, "create", "job", f"--from=cronjob/{CRONJOB}", "it-backup-bad", "--dry-run=client", "-o", "json"
        ).stdout
    )
    spec = job["spec"]["template"]["spec"]
    (dump,) = spec["initContainers"]
    dump["env"] = [e for e in dump["env"] if e["name"] != "PGPASSWORD"] + [{"name": "PGPASSWORD", "value": "wrong"}]
    job["spec"]["backoffLimit"] = 0
    tools.run("kubectl", "--context", CLUSTER, "-n", NAMESPACE, "create", "-f", "-", input=json.dumps(job))
    assert _finish(tools, "it-backup-bad", timeout=400)[0] == "Failed"
    pods = tools.kubectl_json(CLUSTER, "-n", NAMESPACE, "get", "pods", "-l", "job-name=it-backup-bad")["items"]
    assert pods
    for pod in pods:
        (dumped,) = pod["status"]["initContainerStatuses"]
        assert dumped["state"]["terminated"]["exitCode"] != 0
        # The upload never started.
        (upload,) = pod["status"]["containerStatuses"]
        assert "running" not in upload["state"] and "terminated" not in upload["state"]
    dump_log = _kubectl(tools, "logs", "job/it-backup-bad", "-c", "dump").stdout
    assert "password authentication failed" in dump_log
    listed = _cli(deployed, "restore", ENVIRONMENT, "--list")
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[0] for line in listed.stdout.splitlines()[1:]] == [backed_up]
