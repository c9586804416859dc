"""Rotation and removal on the running platform (issue 11, items 7, 8 and 9), on real Pods.

Its own dev on Monaco's real node (namespace ``<project>-rot-dev``; the shared ``dev_on_monaco``
is never mutated). Then, in this order:

- pg_hba on the running server: a declared role over TLS from the pod network is admitted,
  without TLS or to a database it has no grant on it is refused;
- one more database role and storage user added to the settings and ``pulumi up``: the role
  logs in at once, the primary not restarted (the setup Job had it reload pg_hba);
- rotating a database role's, a broker client's, a storage user's, the replication and the
  superuser password with ``pulumi config set --secret`` and ``pulumi up`` rolls every API that
  reads one, each API answers ``/readyz`` again (it reconnected with the new value), the old value
  is refused and the new one accepted by the real server; the primary restarted and set the new
  superuser password, the setup Job ran again with it, and a backup made with it restores
  (`smartnation verify --check backup-restores`: the backup, list and restore Jobs log in as the
  superuser);
- removing that role and that user from the settings and ``pulumi up`` refuses their logins; the
  role is gone from the server.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import ssl
import subprocess
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import botocore.exceptions
import paho.mqtt.client as mqtt
import psycopg
import pytest
import yaml
from botocore.config import Config

from smartnation.cli import exit_codes
from smartnation.program import naming
from smartnation.program.components import broker, database, object_storage
from smartnation.program.components.city_apis import API_PORT, CREDENTIALS_HASH
from smartnation.settings import load_settings
from smartnation.settings.stack_secrets import (
    CONFIG_NAMESPACE,
    DATABASE_REPLICATION_PASSWORD,
    DATABASE_SUPERUSER_PASSWORD,
    broker_password,
    database_role_password,
    object_storage_secret_key,
)
from tests.integration.platform_project import PROJECT, REPO, PlatformProject
from tests.integration.running_pods import dialled_as, issuer_ca, port_forward, service_host

pytestmark = pytest.mark.integration

ENVIRONMENT = "dev"
CLUSTER = "monaco-onprem"
NAME = f"{PROJECT}-rot"
NAMESPACE = f"{NAME}-{ENVIRONMENT}"
PROBE_ROLE = "retired_probe"
PROBE_USER = "retired-probe"
PRIMARY_POD = f"{ENVIRONMENT}-database-primary-0"
PRIMARY_HOST = f"{ENVIRONMENT}-database-primary.{NAMESPACE}.svc.cluster.local"


def _with_probes(environments: Path) -> None:
    """One more role (read on telemetry) and one more storage user, for the removal."""
    path = environments / "defaults.yaml"
    data = yaml.safe_load(path.read_text())
    data["database"]["roles"].append({"name": PROBE_ROLE})
    data["database"]["grants"].append({"role": PROBE_ROLE, "database": "telemetry", "privilege": "read"})
    bucket = data["object_storage"]["buckets"][0]["name"]
    data["object_storage"]["users"].append({"name": PROBE_USER, "buckets": [bucket], "access": "read"})
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def _without_probes(environments: Path) -> None:
    path = environments / "defaults.yaml"
    data = yaml.safe_load(path.read_text())
    data["database"]["roles"] = [r for r in data["database"]["roles"] if r["name"] != PROBE_ROLE]
    data["database"]["grants"] = [g for g in data["database"]["grants"] if g["role"] != PROBE_ROLE]
    data["object_storage"]["users"] = [u for u in data["object_storage"]["users"] if u["name"] != PROBE_USER]
    path.write_text(yaml.safe_dump(data, sort_keys=False))


@pytest.fixture(scope="module")
def platform(tmp_path_factory, tools, clusters) -> Iterator[PlatformProject]:
    state = tmp_path_factory.mktemp("rotation-state")
    backend = {"PULUMI_BACKEND_URL": f"file://{state}", "PULUMI_CONFIG_PASSPHRASE": "integration-tests"}
    project = PlatformProject.create(tmp_path_factory.mktemp("rotation"), tools, backend, name=NAME)
    project.set_cluster(ENVIRONMENT, CLUSTER)
    project.init_stack(ENVIRONMENT)
    try:
        project.pulumi("up", "--yes", "--skip-preview", "--stack", ENVIRONMENT)
        yield project
    finally:
        project.destroy(ENVIRONMENT)


def stack_secrets(project: PlatformProject) -> dict[str, str]:
    shown = json.loads(project.pulumi("config", "--show-secrets", "--json", "--stack", ENVIRONMENT).stdout)
    prefix = f"{CONFIG_NAMESPACE}:"
    return {k[len(prefix) :]: v["value"] for k, v in shown.items() if k.startswith(prefix)}


def primary_pod(tools) -> dict:
    return tools.kubectl_json(CLUSTER, "-n", NAMESPACE, "get", "pod", PRIMARY_POD)


def psql_in_cluster(tools, user: str, password: str, database_name: str, *, sslmode: str = "verify-full", **extra):
    """psql from inside the primary's Pod to its own Pod address (the node has no hairpin to its
    own Service): the source is a pod-network address, as an API's is (kubectl port-forward would
    arrive on the Pod's loopback). The certificate is checked for the Service's name, as APIs do."""
    options = " ".join(f"{k}={v}" for k, v in extra.items())
    address = primary_pod(tools)["status"]["podIP"]
    dsn = (
        f"host={PRIMARY_HOST} hostaddr={address} port={database.PORT} user={user} dbname={database_name} "
        f"sslmode={sslmode} sslrootcert={database.CA_FILE} connect_timeout=10 {options}"
    )
    command = ["psql", "-X", "-qAt", "-w", "-d", dsn, "-c", "IDENTIFY_SYSTEM" if extra else "SELECT current_user"]
    return tools.run(
        "kubectl", "--context", CLUSTER, "-n", NAMESPACE, "exec", PRIMARY_POD, "-c", "postgres", "--",
        "env", f"PGPASSWORD={password}", *command, check=False, timeout=60,
    )  # fmt: skip


def setup_jobs(tools) -> dict[str, list[str]]:
    """The database setup Jobs: name -> the conditions that hold (Complete, Failed)."""
    found = tools.kubectl_json(
        CLUSTER, "-n", NAMESPACE, "get", "jobs", "-l", f"app.kubernetes.io/component={naming.SETUP}"
    )
    return {
        job["metadata"]["name"]: [c["type"] for c in job["status"].get("conditions") or [] if c["status"] == "True"]
        for job in found["items"]
        if job["metadata"]["name"].startswith(f"{ENVIRONMENT}-database-")
    }


def verify_backup_restores(platform: PlatformProject, tools) -> subprocess.CompletedProcess[str]:
    """`smartnation verify dev --check backup-restores` against this test's project and backend."""
    env = {**os.environ, **tools.env, **platform.env, "SMARTNATION_PROJECT_DIR": str(platform.root)}
    proc = subprocess.run(
        [str(REPO / ".venv" / "bin" / "smartnation"), "verify", ENVIRONMENT,
         "--check", "backup-restores", "--no-record"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    print(f"$ smartnation verify -> {proc.returncode}\n{proc.stdout}\n{proc.stderr[-3000:]}")
    return proc


def refused(result, reason: str) -> None:
    assert result.returncode != 0, f"expected {reason!r}, it succeeded: {result.stdout}"
    assert reason in result.stderr, result.stderr


def superuser_sql(tools, password: str, sql: str) -> list[tuple]:
    with port_forward(tools, CLUSTER, NAMESPACE, PRIMARY_POD, database.PORT) as port:
        # Without TLS: a TLS session's close resets the connection and kubectl drops the tunnel.
        dsn = f"host=127.0.0.1 port={port} user=postgres password={password} dbname=postgres sslmode=disable"
        with psycopg.connect(dsn, connect_timeout=10) as conn:
            return conn.execute(sql).fetchall()


def _ca(tools, secret: str) -> str:
    """The issuer's CA from ``secret`` (the servers serve TLS only; clients verify them)."""
    directory = Path(os.environ.get("TMPDIR", "/tmp")) / f"{NAME}-cas"
    directory.mkdir(exist_ok=True)
    return str(issuer_ca(tools, CLUSTER, NAMESPACE, secret, directory))


def storage_accepts(tools, user: str, key: str) -> bool:
    pod = f"{ENVIRONMENT}-object-storage-0"
    storage = naming.names(ENVIRONMENT, naming.OBJECT_STORAGE)
    host = service_host(NAMESPACE, storage.name)
    ca = _ca(tools, object_storage.tls_secret_name(ENVIRONMENT))
    with port_forward(tools, CLUSTER, NAMESPACE, pod, object_storage.PORT) as port, dialled_as(host):
        client = boto3.client(
            "s3",
            endpoint_url=f"https://{host}:{port}",
            verify=ca,
            aws_access_key_id=user,
            aws_secret_access_key=key,
            region_name="us-east-1",
            config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"}),
        )
        try:
            client.list_buckets()
        except botocore.exceptions.ClientError as error:
            code = error.response["Error"]["Code"]
            assert code in {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied"}, code
            return False
        return True


def broker_accepts(tools, user: str, password: str) -> bool:
    pod = f"{ENVIRONMENT}-broker-0"
    names = naming.names(ENVIRONMENT, naming.BROKER)
    host = service_host(NAMESPACE, f"{pod}.{names.child('headless')}")
    ca = _ca(tools, broker.tls_secret_name(ENVIRONMENT))
    with port_forward(tools, CLUSTER, NAMESPACE, pod, broker.INTERNAL_PORT) as port, dialled_as(host):
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"it-{uuid.uuid4().hex[:8]}")
        client.username_pw_set(user, password)
        # The internal listener serves TLS only: verified as the APIs verify it.
        client.tls_set_context(ssl.create_default_context(cafile=ca))
        answer: dict[str, object] = {}
        connected = threading.Event()

        def on_connect(_c, _u, _flags, reason_code, _props):
            answer["rc"] = reason_code
            connected.set()

        client.on_connect = on_connect
        client.connect(host, port, keepalive=10)
        client.loop_start()
        try:
            assert connected.wait(10), "no CONNACK"
        finally:
            client.loop_stop()
            with contextlib.suppress(Exception):
                client.disconnect()
        return not answer["rc"].is_failure


def api_pods(tools) -> dict[str, list[dict]]:
    """API (Deployment name) -> its Pods."""
    selector = f"{naming.TIER_LABEL}={naming.API_TIER}"
    found = tools.kubectl_json(CLUSTER, "-n", NAMESPACE, "get", "pods", "-l", selector)
    pods: dict[str, list[dict]] = {}
    for pod in found["items"]:
        pods.setdefault(pod["metadata"]["labels"]["app.kubernetes.io/instance"], []).append(pod)
    return pods


def deployment_hashes(tools) -> dict[str, str]:
    found = tools.kubectl_json(CLUSTER, "-n", NAMESPACE, "get", "deployments")
    return {
        d["metadata"]["name"]: d["spec"]["template"]["metadata"].get("annotations", {}).get(CREDENTIALS_HASH, "")
        for d in found["items"]
    }


def every_api_ready(tools) -> None:
    """Each API rolled out and every Pod of it answers /readyz (its database, broker and storage)."""
    for name in deployment_hashes(tools):
        tools.run(
            "kubectl", "--context", CLUSTER, "-n", NAMESPACE, "rollout", "status", f"deployment/{name}",
            "--timeout=300s", timeout=320,
        )  # fmt: skip
    pods_of = api_pods(tools)  # the migration Jobs' Pods carry the tier label too, under their own instance
    for name in deployment_hashes(tools):
        # Every API answers: a selector that finds no Pod must fail here, not pass having looked at none.
        pods = pods_of.get(name, [])
        assert pods, f"no Pod of {name} among {sorted(pods_of)}"
        for pod in pods:
            if pod["metadata"].get("deletionTimestamp"):
                continue
            with port_forward(tools, CLUSTER, NAMESPACE, pod["metadata"]["name"], API_PORT) as port:
                status = urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=15).status
            assert status == 200, pod["metadata"]["name"]


def test_pg_hba_on_the_running_server(platform, tools) -> None:
    values = stack_secrets(platform)
    role = "telemetry_ingest"
    password = values[database_role_password(role)]
    admitted = psql_in_cluster(tools, role, password, "telemetry")
    assert admitted.stdout.strip() == role, admitted.stderr
    refused(psql_in_cluster(tools, role, password, "telemetry", sslmode="disable"), "pg_hba.conf rejects")
    # A declared role, but not to a database it has no grant on.
    refused(psql_in_cluster(tools, role, password, "postgres"), "pg_hba.conf rejects")
    # The superuser from the pod network over TLS (the maintenance Jobs), and on loopback.
    superuser = values[DATABASE_SUPERUSER_PASSWORD]
    assert psql_in_cluster(tools, "postgres", superuser, "postgres").returncode == 0
    assert superuser_sql(tools, superuser, "SELECT current_user") == [("postgres",)]


def test_a_role_added_later_is_admitted_without_restarting_the_primary(platform, tools) -> None:
    before = primary_pod(tools)["metadata"]["uid"]
    _with_probes(platform.root / "environments")
    platform.pulumi("config", "set", "--secret", "--stack", ENVIRONMENT, f"{CONFIG_NAMESPACE}:"
                    f"{database_role_password(PROBE_ROLE)}", f"probe-{secrets.token_hex(8)}")  # fmt: skip
    platform.pulumi("config", "set", "--secret", "--stack", ENVIRONMENT, f"{CONFIG_NAMESPACE}:"
                    f"{object_storage_secret_key(PROBE_USER)}", f"probe-{secrets.token_hex(8)}")  # fmt: skip
    platform.pulumi("up", "--yes", "--skip-preview", "--stack", ENVIRONMENT)
    values = stack_secrets(platform)
    result = psql_in_cluster(tools, PROBE_ROLE, values[database_role_password(PROBE_ROLE)], "telemetry")
    assert result.stdout.strip() == PROBE_ROLE, result.stderr
    assert storage_accepts(tools, PROBE_USER, values[object_storage_secret_key(PROBE_USER)])
    assert primary_pod(tools)["metadata"]["uid"] == before


def test_rotating_each_kind_of_secret_rolls_its_clients_and_refuses_the_old_value(platform, tools) -> None:
    settings = load_settings(ENVIRONMENT, platform.root / "environments")
    api_db = next(api for api in settings.city_apis.values() if api.database is not None)
    api_mqtt = next(api for api in settings.city_apis.values() if api.broker_client is not None)
    api_s3 = next(api for api in settings.city_apis.values() if api.storage_user is not None)
    keys = {
        "database": database_role_password(api_db.database.role),
        "broker": broker_password(api_mqtt.broker_client),
        "storage": object_storage_secret_key(api_s3.storage_user),
        "replication": DATABASE_REPLICATION_PASSWORD,
        "superuser": DATABASE_SUPERUSER_PASSWORD,
    }
    old = stack_secrets(platform)
    before = deployment_hashes(tools)
    primary_before = primary_pod(tools)["metadata"]["uid"]
    jobs_before = setup_jobs(tools)
    new = {kind: f"rotated-{secrets.token_hex(12)}" for kind in keys}
    for kind, key in keys.items():
        platform.pulumi("config", "set", "--secret", "--stack", ENVIRONMENT, f"{CONFIG_NAMESPACE}:{key}", new[kind])
    platform.pulumi("up", "--yes", "--skip-preview", "--stack", ENVIRONMENT)

    after = deployment_hashes(tools)
    for api in (api_db, api_mqtt, api_s3):
        name = f"{ENVIRONMENT}-{api.app}"
        assert after[name] != before[name], f"{name} did not roll"
    every_api_ready(tools)

    role = api_db.database.role
    refused(psql_in_cluster(tools, role, old[keys["database"]], api_db.database.name), "password authentication")
    assert psql_in_cluster(tools, role, new["database"], api_db.database.name).returncode == 0
    refused(
        psql_in_cluster(tools, "replicator", old[keys["replication"]], "postgres", replication="true"),
        "password authentication",
    )
    assert psql_in_cluster(tools, "replicator", new["replication"], "postgres", replication="true").returncode == 0
    assert not storage_accepts(tools, api_s3.storage_user, old[keys["storage"]])
    assert storage_accepts(tools, api_s3.storage_user, new["storage"])
    assert not broker_accepts(tools, api_mqtt.broker_client, old[keys["broker"]])
    assert broker_accepts(tools, api_mqtt.broker_client, new["broker"])

    # The superuser: the primary restarted and set the new password at start; the old one is
    # refused, over TLS from the pod network (the Jobs' way in) and on loopback.
    assert primary_pod(tools)["metadata"]["uid"] != primary_before
    refused(psql_in_cluster(tools, "postgres", old[keys["superuser"]], "postgres"), "password authentication")
    assert psql_in_cluster(tools, "postgres", new["superuser"], "postgres").returncode == 0
    with pytest.raises(psycopg.OperationalError, match="password authentication"):
        superuser_sql(tools, old[keys["superuser"]], "SELECT 1")
    assert superuser_sql(tools, new["superuser"], "SELECT current_user") == [("postgres",)]
    # The setup Job ran again (a new name: the password is in its digest) and completed with it.
    jobs_after = setup_jobs(tools)
    rerun = set(jobs_after) - set(jobs_before)
    assert rerun, f"no new setup Job: {jobs_after}"
    assert all("Complete" in jobs_after[name] and "Failed" not in jobs_after[name] for name in rerun), jobs_after
    # A backup made with the new password, listed and restored by Jobs that log in with it.
    verified = verify_backup_restores(platform, tools)
    assert verified.returncode == exit_codes.OK, verified.stdout + verified.stderr[-2000:]
    assert "PASS  backup-restores" in verified.stdout


def test_removing_a_role_and_a_storage_user_revokes_them(platform, tools) -> None:
    values = stack_secrets(platform)
    role_password = values[database_role_password(PROBE_ROLE)]
    storage_key = values[object_storage_secret_key(PROBE_USER)]
    admitted = psql_in_cluster(tools, PROBE_ROLE, role_password, "telemetry")
    assert admitted.stdout.strip() == PROBE_ROLE, admitted.stderr
    assert storage_accepts(tools, PROBE_USER, storage_key)

    _without_probes(platform.root / "environments")
    platform.pulumi("up", "--yes", "--skip-preview", "--stack", ENVIRONMENT)

    refused(psql_in_cluster(tools, PROBE_ROLE, role_password, "telemetry"), PROBE_ROLE)
    superuser = values[DATABASE_SUPERUSER_PASSWORD]
    assert superuser_sql(tools, superuser, f"SELECT count(*) FROM pg_roles WHERE rolname = '{PROBE_ROLE}'") == [(0,)]
    assert not storage_accepts(tools, PROBE_USER, storage_key)
    every_api_ready(tools)
