"""The city APIs run with DML only on the dev the session deployed on Monaco's real node
(conftest.dev_on_monaco; issue 11, item 8).

From inside each API's running Pod, with the credentials that Pod has (its environment: the
connections ConfigMap and its own role's Secret), over the same verified TLS: selects and the
API's inserts work (the ingest's into a TimescaleDB chunk that does not exist yet), while DROP,
ALTER, TRUNCATE and CREATE TABLE are refused; every statement runs in a transaction that is rolled
back, so a failure of this test changes nothing. The tables belong to the owner roles, which only
the migration Jobs log in as: those Jobs ran to completion, and no API Pod mounts an owner's
Secret. The APIs answer /readyz.
"""

from __future__ import annotations

import json

import pytest

from smartnation.program.components.city_apis import API_PORT
from smartnation.settings import load_settings
from tests.integration.platform_project import PROJECT

pytestmark = pytest.mark.integration

ENVIRONMENT = "dev"
CLUSTER = "monaco-onprem"
NAMESPACE = f"{PROJECT}-{ENVIRONMENT}"
REFUSED = "42501"  # insufficient_privilege

# Run by the image's interpreter in the API container: argv[1] is {name: sql}.
PROBE = f"""
import json, sys, urllib.request
import psycopg
out = {{"results": {{}}}}
with psycopg.connect("", autocommit=True, connect_timeout=10, application_name="least-privilege-probe") as conn:
    out["user"] = conn.execute("SELECT current_user").fetchone()[0]
    out["owners"] = dict(conn.execute("SELECT tablename, tableowner FROM pg_tables WHERE schemaname = 'public'"))
    for name, sql in json.loads(sys.argv[1]).items():
        try:
            with conn.transaction(force_rollback=True):
                conn.execute(sql)
            out["results"][name] = "ok"
        except psycopg.Error as error:
            out["results"][name] = f"{{error.sqlstate}} {{str(error).splitlines()[0]}}"
with urllib.request.urlopen("http://127.0.0.1:{API_PORT}/readyz", timeout=10) as ready:
    out["readyz"] = ready.status
print(json.dumps(out))
"""

READING = (
    "INSERT INTO readings (device_id, ts, domain, metrics, received_at)"
    " VALUES ('least-privilege-probe', now() - interval '400 days', 'air', '{}', now())"
)
DEVICE = (
    "WITH d AS (INSERT INTO devices (id, device_class, latitude, longitude)"
    " VALUES ('least-privilege-probe', 'air-quality', 43.73, 7.42) RETURNING id)"
    " INSERT INTO commands (device_id, command, args, topic) SELECT id, 'probe', '{}', 't' FROM d"
)
# API -> (a table it uses, what it may write: name -> SQL).
USES = {
    "telemetry_ingest": ("readings", {"insert-new-chunk": READING, "update": "UPDATE archived_hours SET readings = 0"}),
    "device_registry": ("devices", {"insert": DEVICE, "update": "UPDATE devices SET retired_at = retired_at"}),
    "open_data_api": ("readings", {}),
}


def refused_statements(table: str) -> dict[str, str]:
    return {
        "drop": f"DROP TABLE {table}",
        "alter": f"ALTER TABLE {table} ADD COLUMN least_privilege_probe int",
        "truncate": f"TRUNCATE {table}",
        "create": "CREATE TABLE least_privilege_probe (id int)",
        "drop-migrations": "DROP TABLE schema_migrations",
    }


@pytest.fixture(scope="module")
def settings():
    return load_settings(ENVIRONMENT)


def api_pod(tools, app: str) -> dict:
    pods = tools.kubectl_json(
        CLUSTER, "-n", NAMESPACE, "get", "pods", "-l", f"app.kubernetes.io/instance={ENVIRONMENT}-{app}"
    )["items"]
    ready = [
        p
        for p in pods
        if p["status"].get("phase") == "Running"
        and all(c.get("ready") for c in p["status"].get("containerStatuses", []))
        and p["metadata"]["labels"].get("app.kubernetes.io/name") == "city-api"
    ]
    assert ready, f"no ready Pod of {ENVIRONMENT}-{app} in {NAMESPACE}: {[p['metadata']['name'] for p in pods]}"
    return ready[0]


def probe(tools, pod: dict, statements: dict[str, str]) -> dict:
    proc = tools.run(
        "kubectl", "--context", CLUSTER, "-n", NAMESPACE, "exec", pod["metadata"]["name"], "-c", "api", "--",
        "/usr/bin/python3.11", "-c", PROBE, json.dumps(statements), timeout=120,
    )  # fmt: skip
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("api", sorted(USES))
def test_the_api_role_has_dml_only(dev_on_monaco, tools, settings, api: str) -> None:
    spec = settings.city_apis[api]
    assert spec.database is not None
    owner = {d.name: d.owner for d in settings.database.databases}[spec.database.name]
    table, writes = USES[api]
    reads = {"select": f"SELECT count(*) FROM {table}"}
    out = probe(tools, api_pod(tools, spec.app), {**reads, **writes, **refused_statements(table)})
    print(json.dumps(out, indent=1))
    assert out["user"] == spec.database.role
    assert out["readyz"] == 200
    assert out["owners"][table] == owner and set(out["owners"].values()) == {owner}
    for name in (*reads, *writes):
        assert out["results"][name] == "ok", (name, out["results"][name])
    for name in refused_statements(table):
        assert out["results"][name].startswith(REFUSED), (name, out["results"][name])
    if api == "open_data_api":
        assert probe(tools, api_pod(tools, spec.app), {"insert": READING})["results"]["insert"].startswith(REFUSED)


def test_the_migration_jobs_ran_as_the_owners_and_no_api_mounts_an_owner_secret(dev_on_monaco, tools, settings):
    owners = {d.name: d.owner for d in settings.database.databases}
    owner_secrets = {f"{ENVIRONMENT}-database-role-{owner.replace('_', '-')}" for owner in owners.values()}
    jobs = tools.kubectl_json(CLUSTER, "-n", NAMESPACE, "get", "jobs", "-l", "app.kubernetes.io/component=migrate")
    by_instance = {j["metadata"]["labels"]["app.kubernetes.io/instance"]: j for j in jobs["items"]}
    for api in settings.city_apis.values():
        pod = api_pod(tools, api.app)
        mounted = {
            ref["secretRef"]["name"]
            for c in pod["spec"]["containers"]
            for ref in c.get("envFrom", [])
            if "secretRef" in ref
        }
        assert not mounted & owner_secrets, (api.app, mounted)
        migrating = api.database is not None and api.database.migrations
        job = by_instance.get(f"{ENVIRONMENT}-{api.app}-migrate")
        assert (job is not None) == migrating, api.app
        if job is not None:
            assert job["status"].get("succeeded") == 1, job["status"]
            (container,) = job["spec"]["template"]["spec"]["containers"]
            refs = {ref["secretRef"]["name"] for ref in container["envFrom"] if "secretRef" in ref}
            assert refs == {f"{ENVIRONMENT}-database-role-{owners[api.database.name].replace('_', '-')}"}
