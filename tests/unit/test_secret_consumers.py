"""Every consumer of a secret rolls when its value changes, and the APIs reach the database over
verified TLS (issue 11, items 7 and 9), under Pulumi mocks.

A rotation is a build with one stack secret changed: the pod templates of exactly the workloads
that read it must change (an annotation with a one-way digest), and no others.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from smartnation.program.components import database
from smartnation.program.components.city_apis import CREDENTIALS_HASH, DATABASE_CA_DIR
from smartnation.program.daemon_config.superuser_password import set_password_script
from smartnation.settings import load_settings
from smartnation.settings.stack_secrets import (
    DATABASE_REPLICATION_PASSWORD,
    DATABASE_SUPERUSER_PASSWORD,
    broker_password,
    database_role_password,
    object_storage_secret_key,
)
from tests.unit.harness import REPO_ENVIRONMENTS, BuiltStack, build_settings

pytestmark = pytest.mark.unit

CHART = "kubernetes:helm.sh/v4:Chart"
STATEFULSET = "kubernetes:apps/v1:StatefulSet"
CONFIGMAP = "kubernetes:core/v1:ConfigMap"
SECRET = "kubernetes:core/v1:Secret"
JOB = "kubernetes:batch/v1:Job"


def build_with(environment: str, changed: dict[str, str] | None = None, root: Path | None = None) -> BuiltStack:
    return build_settings(load_settings(environment, root), changed)


def api_annotations(stack: BuiltStack) -> dict[str, dict[str, Any]]:
    return {r.plain["name"]: r.plain["values"]["podAnnotations"] for r in stack.of_type(CHART)}


def replica_annotations(stack: BuiltStack) -> dict[str, Any]:
    (replica,) = [r for r in stack.of_type(STATEFULSET) if "database-replica" in r.name]
    return replica.plain["spec"]["template"]["metadata"].get("annotations", {})


def primary_annotations(stack: BuiltStack) -> dict[str, Any]:
    (primary,) = [r for r in stack.of_type(STATEFULSET) if "database-primary" in r.name]
    return primary.plain["spec"]["template"]["metadata"].get("annotations", {})


def database_jobs(stack: BuiltStack) -> set[str]:
    return {r.plain["metadata"]["name"] for r in stack.of_type(JOB) if "database" in r.name}


@pytest.fixture(scope="module")
def baseline() -> BuiltStack:
    return build_with("production")


def rotated(key: str) -> BuiltStack:
    return build_with("production", {key: f"rotated-{key}"})


def changed_apis(before: BuiltStack, after: BuiltStack) -> set[str]:
    old, new = api_annotations(before), api_annotations(after)
    assert set(old) == set(new)
    for name in old:
        # Only the credentials digest may differ; the connections digest stays.
        assert {k: v for k, v in old[name].items() if k != CREDENTIALS_HASH} == {
            k: v for k, v in new[name].items() if k != CREDENTIALS_HASH
        }
    return {name for name in old if old[name][CREDENTIALS_HASH] != new[name][CREDENTIALS_HASH]}


def readers(stack: BuiltStack, attribute: str, value: str) -> set[str]:
    env = stack.settings.environment
    return {f"{env}-{api.app}" for api in stack.settings.city_apis.values() if _reads(api, attribute) == value}


def _reads(api: Any, attribute: str) -> str | None:
    if attribute == "database":
        return api.database.role if api.database is not None else None
    return getattr(api, attribute)


def test_a_rotated_database_role_password_rolls_exactly_the_apis_that_log_in_as_it(baseline: BuiltStack) -> None:
    roles = {api.database.role for api in baseline.settings.city_apis.values() if api.database is not None}
    assert roles
    for role in sorted(roles):
        after = rotated(database_role_password(role))
        assert changed_apis(baseline, after) == readers(baseline, "database", role), role
        assert replica_annotations(after) == replica_annotations(baseline)


def test_a_rotated_broker_password_rolls_the_apis_of_its_client_class(baseline: BuiltStack) -> None:
    classes = {api.broker_client for api in baseline.settings.city_apis.values() if api.broker_client}
    assert classes
    for device_class in sorted(classes):
        after = rotated(broker_password(device_class))
        assert changed_apis(baseline, after) == readers(baseline, "broker_client", device_class), device_class


def test_a_rotated_storage_key_rolls_the_apis_of_its_user(baseline: BuiltStack) -> None:
    users = {api.storage_user for api in baseline.settings.city_apis.values() if api.storage_user}
    assert users
    for user in sorted(users):
        after = rotated(object_storage_secret_key(user))
        assert changed_apis(baseline, after) == readers(baseline, "storage_user", user), user


def test_a_rotated_replication_password_rolls_the_replicas_and_no_api(baseline: BuiltStack) -> None:
    assert baseline.settings.database.replicas > 0
    after = rotated(DATABASE_REPLICATION_PASSWORD)
    before_digest = replica_annotations(baseline)[database.REPLICATION_PASSWORD_HASH]
    after_digest = replica_annotations(after)[database.REPLICATION_PASSWORD_HASH]
    assert before_digest != after_digest
    # A one-way digest, never the value.
    assert f"rotated-{DATABASE_REPLICATION_PASSWORD}" not in str(replica_annotations(after))
    assert changed_apis(baseline, after) == set()


def test_replicas_log_in_with_the_secret_and_verify_the_primary(baseline: BuiltStack) -> None:
    (replica,) = [r for r in baseline.of_type(STATEFULSET) if "database-replica" in r.name]
    containers = {c["name"]: c for c in replica.plain["spec"]["template"]["spec"]["containers"]}
    server = containers["postgres"]
    env = {e["name"]: e for e in server["env"]}
    assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == "REPLICATION_PASSWORD"
    conninfo = next(a for a in server["args"] if a.startswith("primary_conninfo="))
    assert "sslmode=verify-full" in conninfo and "password" not in conninfo


def test_apis_that_use_the_database_verify_it_over_tls(baseline: BuiltStack) -> None:
    env = baseline.settings.environment
    maps = {r.plain["metadata"]["name"]: r.plain["data"] for r in baseline.of_type(CONFIGMAP)}
    values = {r.plain["name"]: r.plain["values"] for r in baseline.of_type(CHART)}
    for api in baseline.settings.city_apis.values():
        name = f"{env}-{api.app}"
        data = maps[f"{name}-connections"]
        # The broker's and MinIO's CAs beside it: tests/unit/test_in_cluster_tls.py.
        cas = [ca for ca in values[name]["caCertificates"] if ca["name"] == "database"]
        if api.database is None:
            assert "PGSSLMODE" not in data and cas == []
            continue
        assert data["PGSSLMODE"] == "verify-full"
        assert data["PGSSLROOTCERT"] == f"{DATABASE_CA_DIR}/ca.crt"
        assert cas == [{"name": "database", "secretName": f"{env}-database-tls", "mountPath": DATABASE_CA_DIR}]


def test_the_servers_pg_hba_admits_no_role_from_everywhere(baseline: BuiltStack) -> None:
    (config,) = [r for r in baseline.of_type(CONFIGMAP) if r.plain["metadata"]["name"].endswith("database-config")]
    rules = [line.split() for line in config.plain["data"]["pg_hba.conf"].splitlines() if not line.startswith("#")]
    networks = set(baseline.settings.cluster.pod_network)
    for rule in rules:
        kind, method = rule[0], rule[-1]
        if method == "reject" or kind == "local":
            continue
        address = rule[3]
        assert address in networks or address in {"127.0.0.1/32", "::1/128"}, rule
        assert kind == "hostssl" or rule[2] == database.SUPERUSER, rule


def test_the_setup_job_has_the_primary_reload_the_pg_hba_it_mounts(baseline: BuiltStack) -> None:
    """A role added later is admitted without a restart: the setup Job waits for the mounted file
    to be the program's (by digest), then reloads; a new pg_hba renames (so re-runs) the Job and
    rolls the replicas."""
    (config,) = [r for r in baseline.of_type(CONFIGMAP) if r.plain["metadata"]["name"].endswith("database-config")]
    hba = config.plain["data"]["pg_hba.conf"]
    (init,) = [r for r in baseline.of_type(CONFIGMAP) if r.plain["metadata"]["name"].endswith("database-init")]
    script = init.plain["data"]["reload-hba.sh"]
    assert f"expected={hashlib.sha256(hba.encode()).hexdigest()}" in script
    assert "pg_reload_conf()" in script
    (job,) = [r for r in baseline.of_type("kubernetes:batch/v1:Job") if "database" in r.name]
    (container,) = job.plain["spec"]["template"]["spec"]["containers"]
    assert container["command"][-1].endswith("sh /init/reload-hba.sh")
    assert replica_annotations(baseline)[database.PG_HBA_HASH] == hashlib.sha256(hba.encode()).hexdigest()


def test_a_role_added_or_removed_leaves_the_servers_untouched(baseline: BuiltStack, tmp_path: Path) -> None:
    """Roles come and go through the setup Job alone: the servers' StatefulSets, their pg_hba and
    the Secrets they read stay the same (a changed Secret or ConfigMap a StatefulSet took its name
    from would have Pulumi replace the StatefulSet, restarting the primary)."""
    root = tmp_path / "environments"
    shutil.copytree(REPO_ENVIRONMENTS, root, ignore=shutil.ignore_patterns("stacks"))
    defaults = root / "defaults.yaml"
    data = yaml.safe_load(defaults.read_text())
    data["database"]["roles"].append({"name": "late_reader"})
    data["database"]["grants"].append({"role": "late_reader", "database": "telemetry", "privilege": "read"})
    defaults.write_text(yaml.safe_dump(data, sort_keys=False))
    after = build_with("production", root=root)

    def servers(stack: BuiltStack) -> dict[str, Any]:
        kept = [r for r in stack.of_type(STATEFULSET) if "database" in r.name]
        kept += [r for r in stack.of_type(CONFIGMAP) if r.plain["metadata"]["name"].endswith("database-config")]
        kept += [r for r in stack.of_type(SECRET) if r.plain["metadata"]["name"].endswith(("superuser", "replication"))]
        return {r.name: (r.plain, sorted(r.dependencies)) for r in kept}

    before_servers, after_servers = servers(baseline), servers(after)
    assert len(before_servers) == 5
    assert after_servers == before_servers
    # Nor do they take a name from a Secret's or a ConfigMap's outputs (any change of those would
    # replace them with it). They come after their own two Secrets (depends_on: a restart for a new
    # password reads the new value), named by plain strings and updated in place.
    env = after.settings.environment
    own = ("database-superuser", "database-replication")
    for statefulset in (r for r in after.of_type(STATEFULSET) if "database" in r.name):
        assert not [urn for urn in statefulset.dependencies if ":core/v1:ConfigMap::" in urn]
        secrets = [urn for urn in statefulset.dependencies if ":core/v1:Secret::" in urn]
        assert sorted(urn.rsplit("-", 2)[-2] + "-" + urn.rsplit("-", 1)[-1] for urn in secrets) == sorted(own)
        names = {
            e["valueFrom"]["secretKeyRef"]["name"]
            for c in statefulset.plain["spec"]["template"]["spec"]["containers"]
            for e in c["env"]
            if "valueFrom" in e
        }
        assert names <= {f"{env}-{name}" for name in own}, names
    # What does change: the setup Job (renamed, so run again).
    jobs = {r.plain["metadata"]["name"] for r in baseline.of_type(JOB) if "database" in r.name}
    assert jobs != {r.plain["metadata"]["name"] for r in after.of_type(JOB) if "database" in r.name}


def test_every_server_reloads_a_renewed_certificate(baseline: BuiltStack) -> None:
    """cert-manager renews the key pair in place; each database Pod's tls-reloader has its server
    re-read it (and pg_hba.conf), over the Pod's own socket."""
    servers = [r for r in baseline.of_type(STATEFULSET) if "database" in r.name]
    assert len(servers) == 2
    for server in servers:
        spec = server.plain["spec"]["template"]["spec"]
        containers = {c["name"]: c for c in spec["containers"]}
        reloader = containers["tls-reloader"]
        env = {e["name"]: e.get("value", e.get("valueFrom")) for e in reloader["env"]}
        assert env["WATCHED_FILES"].split() == [f"{database.TLS_DIR}/tls.crt", "/etc/smartnation/pg_hba.conf"]
        assert env["PGHOST"] == "/var/run/postgresql"
        mounts = {m["name"]: m["mountPath"] for m in reloader["volumeMounts"]}
        assert mounts == {
            m["name"]: m["mountPath"] for m in containers["postgres"]["volumeMounts"] if m["name"] in mounts
        }
        assert {"tls", "run", "config"} <= set(mounts)
        assert reloader["command"][-1] == database.tls_reloader_script()


def test_a_rotated_superuser_password_restarts_the_primary_rolls_the_replicas_and_reruns_the_setup(
    baseline: BuiltStack,
) -> None:
    """Item 7: the superuser's password is rotatable. The primary sets it at start, so a new one
    restarts it (pod-template digest); the replicas' reloader logs in with it, so they roll; the
    setup Job is renamed (run again, with the new value); no API reads it."""
    after = rotated(DATABASE_SUPERUSER_PASSWORD)
    key = database.SUPERUSER_PASSWORD_HASH
    assert primary_annotations(after)[key] != primary_annotations(baseline)[key]
    assert replica_annotations(after)[key] != replica_annotations(baseline)[key]
    assert replica_annotations(after)[key] == primary_annotations(after)[key]
    others = database.REPLICATION_PASSWORD_HASH, database.PG_HBA_HASH
    assert [replica_annotations(after)[k] for k in others] == [replica_annotations(baseline)[k] for k in others]
    assert f"rotated-{DATABASE_SUPERUSER_PASSWORD}" not in str(primary_annotations(after))
    assert database_jobs(after) != database_jobs(baseline)
    assert changed_apis(baseline, after) == set()


def test_the_primary_sets_the_superuser_password_from_its_secret_before_the_server_starts(
    baseline: BuiltStack,
) -> None:
    servers = {r.name: r for r in baseline.of_type(STATEFULSET) if "database" in r.name}
    (primary,) = [r for name, r in servers.items() if "database-primary" in name]
    (replica,) = [r for name, r in servers.items() if "database-replica" in name]
    env = baseline.settings.environment

    def server(statefulset) -> dict[str, Any]:
        containers = {c["name"]: c for c in statefulset.plain["spec"]["template"]["spec"]["containers"]}
        return containers["postgres"]

    primary_server = server(primary)
    assert primary_server["command"] == [
        "sh", "-c", set_password_script(database.IMAGE_ENTRYPOINT, database.SUPERUSER), "postgres-primary"
    ]  # fmt: skip
    assert primary_server["args"] == database.SERVER_ARGS
    password = {e["name"]: e for e in primary_server["env"]}["POSTGRES_PASSWORD"]
    assert password["valueFrom"]["secretKeyRef"] == {"name": f"{env}-database-superuser", "key": "POSTGRES_PASSWORD"}
    # A standby cannot write: the replicas run the image's entrypoint as they did.
    assert "command" not in server(replica)
    # The primary is updated after the Secret, so its restart reads the new value.
    assert any(":core/v1:Secret::" in urn and urn.endswith("-database-superuser") for urn in primary.dependencies)
    script = primary_server["command"][2]
    assert script.rstrip().endswith(f'exec {database.IMAGE_ENTRYPOINT} "$@"')
    assert '[ ! -e "$PGDATA/standby.signal" ]' in script
    assert "log_min_error_statement=panic" in script
