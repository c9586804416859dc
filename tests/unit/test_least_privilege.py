"""The city APIs connect with DML only; their schemas are migrated by a Job as the database's owner
(issue 11, item 8), under Pulumi mocks.

- the init SQL grants each API's role write (or read) and no ownership, and hands what an API's
  role made while it was the owner over to the owner role;
- per API with migrations, one Job runs ``<api>.migrate`` with the owner's Secret; the API's
  Deployment never mounts it, is told not to migrate, and rolls out only after the Job, which
  itself runs after the database's setup Job;
- the owner's password is read by the Job alone: rotating it rolls no API.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from smartnation.program.components import city_apis
from smartnation.settings import SettingsError, load_settings
from smartnation.settings.stack_secrets import database_role_password
from tests.unit.harness import BuiltStack, edit, environments_copy
from tests.unit.test_secret_consumers import CHART, CONFIGMAP, JOB, api_annotations, build_with

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def stack() -> BuiltStack:
    return build_with("production")


def init_sql(stack: BuiltStack) -> str:
    env = stack.settings.environment
    (init,) = [r for r in stack.of_type(CONFIGMAP) if r.plain["metadata"]["name"] == f"{env}-database-init"]
    return init.plain["data"]["init.sql"]


def inside(sql: str, db: str) -> str:
    """The init SQL's part that runs connected to ``db``."""
    return sql.split(f"\\connect {db}\n", 1)[1].split("\\connect ", 1)[0]


def migration_jobs(stack: BuiltStack) -> dict[str, Any]:
    """API app -> its migration Job (inputs)."""
    jobs = {}
    for job in stack.of_type(JOB):
        name = job.plain["metadata"]["name"]
        for api in stack.settings.city_apis.values():
            if re.fullmatch(rf"{stack.settings.environment}-{api.app}-migrate-[0-9a-f]{{6}}", name):
                jobs[api.app] = job
    return jobs


def test_no_api_role_owns_a_database_and_each_has_its_grant(stack: BuiltStack) -> None:
    settings = stack.settings
    owners = {d.name: d.owner for d in settings.database.databases}
    sql = init_sql(stack)
    for api in settings.city_apis.values():
        if api.database is None:
            continue
        role, db = api.database.role, api.database.name
        assert owners[db] != role, api.name
        assert f"CREATE DATABASE %I OWNER %I', '{db}', '{role}'" not in sql
        part = inside(sql, db)
        tables = "SELECT, INSERT, UPDATE, DELETE" if api.database.migrations else "SELECT"
        assert f"GRANT {tables} ON ALL TABLES IN SCHEMA public TO {role};" in part, api.name
        assert (
            f"ALTER DEFAULT PRIVILEGES FOR ROLE {owners[db]} IN SCHEMA public GRANT {tables} ON TABLES TO {role};"
            in part
        )
        # A writer's session may make temporary tables (the ingest's COPY staging table), a reader's not.
        temporary = f"GRANT TEMPORARY ON DATABASE {db} TO {role};"
        assert (temporary in part) == api.database.migrations, api.name
        # Never more than DML: no CREATE on the schema, no ALL anywhere.
        assert not re.search(rf"GRANT (ALL|CREATE)[^;]* TO {role};", part), api.name
        assert f"GRANT USAGE ON SCHEMA public TO {role};" in part


def test_what_an_api_role_made_as_owner_is_handed_to_the_owner(stack: BuiltStack) -> None:
    settings = stack.settings
    sql = init_sql(stack)
    owners = {d.owner for d in settings.database.databases}
    for db in settings.database.databases:
        part = inside(sql, db.name)
        handed = set(re.findall(rf"^SELECT format\('REASSIGN OWNED BY %I TO %I', '(\w+)', '{db.owner}'\)$", part, re.M))
        api_roles = {a.database.role for a in settings.city_apis.values() if a.database is not None}
        assert api_roles <= handed, db.name
        # An owner is never named: REASSIGN would hand over the database it owns, too.
        assert not handed & owners, db.name
        # Only where the role owns a lasting object: its sessions' temporary tables stay its own.
        assert part.count("relpersistence <> 't'") == len(handed), db.name
        # Before the grants converge, so they apply to the handed-over tables.
        assert part.index("REASSIGN OWNED BY") < part.index("GRANT ")


def test_each_migrating_api_has_a_job_that_runs_its_migrate_module_as_the_owner(stack: BuiltStack) -> None:
    settings, env = stack.settings, stack.settings.environment
    jobs = migration_jobs(stack)
    migrating = {a.app: a for a in settings.city_apis.values() if a.database is not None and a.database.migrations}
    assert migrating and set(jobs) == set(migrating)
    owners = {d.name: d.owner for d in settings.database.databases}
    for app, api in migrating.items():
        spec = jobs[app].plain["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        assert container["command"] == [*city_apis.MIGRATE_COMMAND, f"{api.name}.migrate"]
        owner_secret = f"{env}-database-role-{owners[api.database.name].replace('_', '-')}"
        refs = [ref.get("secretRef", ref.get("secret_ref", {})).get("name") for ref in container["envFrom"]]
        assert owner_secret in refs, app
        assert f"{env}-database-role-{api.database.role.replace('_', '-')}" not in refs, app
        # Non-root, read-only, no token, on the API tier's network policy.
        assert spec["automountServiceAccountToken"] is False
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        labels = jobs[app].plain["spec"]["template"]["metadata"]["labels"]
        assert labels["smartnation.mc/tier"] == "city-api"
        # Not the chart's selector, nor the release's instance: no look-up of the API's Pods finds it.
        assert labels["app.kubernetes.io/name"] != "city-api"
        assert labels["app.kubernetes.io/instance"] != f"{env}-{app}"


def test_the_api_deployments_mount_no_owner_secret_and_do_not_migrate(stack: BuiltStack) -> None:
    settings, env = stack.settings, stack.settings.environment
    owner_secrets = {f"{env}-database-role-{d.owner.replace('_', '-')}" for d in settings.database.databases}
    values = {r.plain["name"]: r.plain["values"] for r in stack.of_type(CHART)}
    maps = {r.plain["metadata"]["name"]: r.plain["data"] for r in stack.of_type(CONFIGMAP)}
    for api in settings.city_apis.values():
        name = f"{env}-{api.app}"
        assert not set(values[name]["envFromSecrets"]) & owner_secrets, name
        if api.database is not None and api.database.migrations:
            assert maps[f"{name}-connections"][city_apis.MIGRATE_ON_START] == "false"


def test_the_release_waits_for_its_job_and_the_job_for_the_database_setup(stack: BuiltStack) -> None:
    jobs = migration_jobs(stack)
    (setup,) = [j for j in stack.of_type(JOB) if j.plain["metadata"]["name"].startswith("production-database-init-")]
    charts = {r.plain["name"]: r for r in stack.of_type(CHART)}
    for app, job in jobs.items():
        assert job.urn in charts[f"production-{app}"].dependencies, app
        assert setup.urn in job.dependencies, app


def test_a_rotated_owner_password_rolls_no_api_and_reruns_no_job(stack: BuiltStack) -> None:
    for db in stack.settings.database.databases:
        after = build_with("production", {database_role_password(db.owner): f"rotated-{db.owner}"})
        assert api_annotations(after) == api_annotations(stack), db.owner
        names = {app: job.plain["metadata"]["name"] for app, job in migration_jobs(stack).items()}
        assert {app: job.plain["metadata"]["name"] for app, job in migration_jobs(after).items()} == names


def test_an_api_that_connects_as_its_databases_owner_is_refused(tmp_path) -> None:
    root = environments_copy(tmp_path, "dev", "monaco-onprem")
    edit(root, "defaults.yaml", "city_apis.device_registry.database.role", "devices_owner")
    with pytest.raises(SettingsError) as error:
        load_settings("dev", root)
    assert "city_apis.device_registry.database.role" in str(error.value)
    assert "owns database 'devices'" in str(error.value)


def test_a_new_release_of_the_same_image_gets_a_new_migration_job_name(tmp_path, stack: BuiltStack) -> None:
    """A Job's Pod template cannot change: a release relabelled without a new image (version 0.1.1
    of the same tag) must not replace the Job under its old name (the API server refuses the
    replacement, a field conflict: seen in the delivery test), so the name follows the template."""
    root = environments_copy(tmp_path, "production", stack.settings.cluster.name)
    edit(root, "production.yaml", "releases.components.device_registry.version", "0.1.1")
    after = build_with("production", root=root)
    before_jobs, after_jobs = migration_jobs(stack), migration_jobs(after)
    assert (
        after_jobs["device-registry"].plain["spec"]["template"]["spec"]["containers"][0]["image"]
        == (before_jobs["device-registry"].plain["spec"]["template"]["spec"]["containers"][0]["image"])
    )
    assert (
        after_jobs["device-registry"].plain["metadata"]["name"]
        != before_jobs["device-registry"].plain["metadata"]["name"]
    )
    # The other API's Job is untouched: its release did not change.
    assert (
        after_jobs["telemetry-ingest"].plain["metadata"]["name"]
        == before_jobs["telemetry-ingest"].plain["metadata"]["name"]
    )
