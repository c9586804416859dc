"""Settings rules from issue 12: each malformed input that used to pass, crash or blame the wrong
file is refused by the loader with the right file, key path and reason; and the lists the rules
keep (variables the program sets, reserved roles, the workloads' footprint, derived names) are
checked against what a built stack really holds, so they cannot drift from the components."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from smartnation.program.city_platform import build
from smartnation.program.components import database as database_component
from smartnation.settings import SettingsError, load_settings
from smartnation.settings.derived_names import PROJECT_NAME_ROOM, project_name
from smartnation.settings.footprint import needs
from smartnation.settings.models import API_PROVIDED_ENV, RESERVED_ROLES
from smartnation.settings.validation import parse_quantity
from tests.unit.harness import (
    ENVIRONMENTS,
    BuiltStack,
    Recorder,
    edit,
    run,
    secrets_for,
    set_secrets,
)

pytestmark = pytest.mark.unit


def refused(root: Path, environment: str) -> SettingsError:
    with pytest.raises(SettingsError) as caught:
        load_settings(environment, root)
    return caught.value


# --- The cases the issue lists ------------------------------------------------------------

CASES = [
    # (id, file edited, dotted path, value, environment loaded, file blamed, key path blamed, words)
    (
        "invalid CIDR",
        "staging.yaml",
        "broker.device_source_ranges",
        ["10.0.0.300/8"],
        "staging",
        "staging.yaml",
        "broker.device_source_ranges.0",
        "CIDR",
    ),
    (
        "CIDR with host bits",
        "staging.yaml",
        "broker.device_source_ranges",
        ["10.1.2.3/8"],
        "staging",
        "staging.yaml",
        "broker.device_source_ranges.0",
        "host bits set",
    ),
    (
        "empty source ranges",
        "staging.yaml",
        "broker.device_source_ranges",
        [],
        "staging",
        "staging.yaml",
        "broker.device_source_ranges",
        "from 1 to 100 items, got 0",
    ),
    (
        "cron out of range",
        "staging.yaml",
        "database.backup",
        {"schedule": "99 99 * * *"},
        "staging",
        "staging.yaml",
        "database.backup.schedule",
        "minute field '99'",
    ),
    (
        "cron hour out of range",
        "defaults.yaml",
        "database.backup.schedule",
        "0 24 * * *",
        "dev",
        "defaults.yaml",
        "database.backup.schedule",
        "hour field '24'",
    ),
    (
        "extra_env invalid name",
        "staging.yaml",
        "city_apis.open_data_api.extra_env",
        {"LOG-LEVEL": "debug"},
        "staging",
        "staging.yaml",
        "city_apis.open_data_api.extra_env.LOG-LEVEL",
        "environment variable name",
    ),
    (
        "extra_env plain-text password",
        "staging.yaml",
        "city_apis.open_data_api.extra_env",
        {"CACHE_PASSWORD": "hunter2"},
        "staging",
        "staging.yaml",
        "city_apis.open_data_api.extra_env.CACHE_PASSWORD",
        "looks like a credential",
    ),
    (
        "extra_env credentials in a URL",
        "staging.yaml",
        "city_apis.open_data_api.extra_env",
        {"CACHE_URL": "redis://app:hunter2@cache:6379"},
        "staging",
        "staging.yaml",
        "city_apis.open_data_api.extra_env.CACHE_URL",
        "looks like a credential",
    ),
    (
        "extra_env overrides the Secret",
        "staging.yaml",
        "city_apis.open_data_api.extra_env",
        {"PGPASSWORD": "x"},
        "staging",
        "staging.yaml",
        "city_apis.open_data_api.extra_env.PGPASSWORD",
        "cannot be overridden",
    ),
    (
        "extra_env overrides a connection",
        "staging.yaml",
        "city_apis.open_data_api.extra_env",
        {"PGHOST": "evil"},
        "staging",
        "staging.yaml",
        "city_apis.open_data_api.extra_env.PGHOST",
        "cannot be overridden",
    ),
    (
        "reserved role postgres",
        "defaults.yaml",
        "database.roles.2.name",
        "postgres",
        "staging",
        "defaults.yaml",
        "database.roles.2.name",
        "reserved",
    ),
    (
        "replication role",
        "defaults.yaml",
        "database.roles.2.name",
        "replicator",
        "dev",
        "defaults.yaml",
        "database.roles.2.name",
        "reserved",
    ),
    (
        "pg_ role",
        "defaults.yaml",
        "database.roles.2.name",
        "pg_monitor",
        "dev",
        "defaults.yaml",
        "database.roles.2.name",
        "reserved",
    ),
    (
        "public role",
        "defaults.yaml",
        "database.roles.2.name",
        "public",
        "dev",
        "defaults.yaml",
        "database.roles.2.name",
        "reserved",
    ),
    (
        "SQL key word as role",
        "defaults.yaml",
        "database.roles.2.name",
        "user",
        "dev",
        "defaults.yaml",
        "database.roles.2.name",
        "reserved SQL key word",
    ),
    (
        "role name too long for its password variable",
        "defaults.yaml",
        "database.roles.2.name",
        "r" * 60,
        "dev",
        "defaults.yaml",
        "database.roles.2.name",
        "at most 54 characters",
    ),
    (
        "role whose Secret name is invalid",
        "defaults.yaml",
        "database.roles",
        [
            {"name": "device_registry"},
            {"name": "telemetry_ingest"},
            {"name": "open_data"},
            {"name": "devices_owner"},
            {"name": "telemetry_owner"},
            {"name": "analyst_"},
        ],
        "dev",
        "defaults.yaml",
        "database.roles.5.name",
        "Secret name 'dev-database-role-analyst-'",
    ),
    (
        "reserved database",
        "defaults.yaml",
        "database.databases.0.name",
        "postgres",
        "dev",
        "defaults.yaml",
        "database.databases.0.name",
        "reserved by PostgreSQL",
    ),
    (
        "template database",
        "defaults.yaml",
        "database.databases.0.name",
        "template1",
        "dev",
        "defaults.yaml",
        "database.databases.0.name",
        "reserved by PostgreSQL",
    ),
    (
        "extension with SQL in it",
        "defaults.yaml",
        "database.databases.1.extensions",
        ["timescaledb; DROP TABLE x"],
        "dev",
        "defaults.yaml",
        "database.databases.1.extensions.0",
        "SQL identifier",
    ),
    (
        "extension listed twice",
        "defaults.yaml",
        "database.databases.1.extensions",
        ["timescaledb", "timescaledb"],
        "dev",
        "defaults.yaml",
        "database.databases.1.extensions.1",
        "already listed",
    ),
    (
        "two grants for one pair",
        "defaults.yaml",
        "database.grants",
        [{"role": "open_data", "database": "telemetry", "privilege": "read"}] * 2,
        "dev",
        "defaults.yaml",
        "database.grants.1",
        "already has a grant",
    ),
    (
        "API connecting as a NOLOGIN role",
        "defaults.yaml",
        "database.roles.2",
        {"name": "open_data", "login": False},
        "dev",
        "defaults.yaml",
        "city_apis.open_data_api.database.role",
        "cannot log in",
    ),
    (
        "quota below the floor",
        "staging.yaml",
        "guardrails.quota.requests_cpu",
        "1",
        "staging",
        "staging.yaml",
        "guardrails.quota.requests_cpu",
        "below what the workloads need",
    ),
    (
        "quota below the HPA ceiling",
        "production.yaml",
        "guardrails.quota.limits_cpu",
        "50",
        "production",
        "production.yaml",
        "guardrails.quota.limits_cpu",
        "HPA ceiling",
    ),
    (
        "too few pods in the quota",
        "staging.yaml",
        "guardrails.quota.pods",
        20,
        "staging",
        "staging.yaml",
        "guardrails.quota.pods",
        "26",
    ),
    (
        "LimitRange max below a workload",
        "production.yaml",
        "guardrails.limit_range.max",
        {"cpu": "3", "memory": "32Gi"},
        "production",
        "production.yaml",
        "guardrails.limit_range.max.cpu",
        "database's limits.cpu",
    ),
    (
        "publish on #",
        "defaults.yaml",
        "broker.device_classes.0.publish",
        ["#"],
        "staging",
        "defaults.yaml",
        "broker.device_classes.0.publish.0",
        "wildcards alone",
    ),
    (
        "subscribe on +/#",
        "defaults.yaml",
        "broker.device_classes.3.subscribe",
        ["+/#"],
        "dev",
        "defaults.yaml",
        "broker.device_classes.3.subscribe.0",
        "wildcards alone",
    ),
    (
        "topic listed twice",
        "defaults.yaml",
        "broker.device_classes.2.publish",
        ["city/a", "city/a"],
        "dev",
        "defaults.yaml",
        "broker.device_classes.2.publish.1",
        "already listed",
    ),
    # A bad entry in defaults.yaml under a block the environment file also sets is the defaults' fault.
    (
        "defaults entry under a block staging overrides",
        "defaults.yaml",
        "database.databases.0.owner",
        "nobody",
        "staging",
        "defaults.yaml",
        "database.databases.0.owner",
        "not one of the roles",
    ),
    (
        "defaults grant under a block staging overrides",
        "defaults.yaml",
        "database.grants.0.role",
        "nobody",
        "staging",
        "defaults.yaml",
        "database.grants.0.role",
        "not one of the roles",
    ),
    (
        "defaults user under a block staging overrides",
        "defaults.yaml",
        "object_storage.users.0.buckets",
        ["nowhere"],
        "staging",
        "defaults.yaml",
        "object_storage.users.0.buckets",
        "unknown bucket",
    ),
    (
        "duplicate class in defaults",
        "defaults.yaml",
        "broker.device_classes.1.name",
        "traffic-sensor",
        "staging",
        "defaults.yaml",
        "broker.device_classes.1.name",
        "already used",
    ),
    (
        "selector of no node pool",
        "clusters/dusseldorf-test.yaml",
        "workload_node_selector.stateful",
        {"cce.cloud.com/cce-nodepool": "gpu"},
        "staging",
        "clusters/dusseldorf-test.yaml",
        "workload_node_selector.stateful",
        "selects none of the node_pools",
    ),
    (
        "bad label key in a profile",
        "clusters/monaco-onprem.yaml",
        "node_pools.0.label",
        {"-bad/key": "x"},
        "production",
        "clusters/monaco-onprem.yaml",
        "node_pools.0.label.-bad/key",
        "label or annotation key",
    ),
    (
        "base domain not a DNS name",
        "clusters/monaco-onprem.yaml",
        "ingress.base_domain",
        "Smart Nation",
        "production",
        "clusters/monaco-onprem.yaml",
        "ingress.base_domain",
        "DNS host name",
    ),
]


@pytest.mark.parametrize(
    ("file", "path", "value", "environment", "blamed", "key_path", "words"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_each_malformed_input_is_refused_with_file_key_and_reason(
    envdir: Path, file: str, path: str, value: Any, environment: str, blamed: str, key_path: str, words: str
) -> None:
    load_settings(environment, envdir)  # valid before the edit
    edit(envdir, file, path, value)
    error = refused(envdir, environment)
    assert (error.file, error.key_path) == (f"environments/{blamed}", key_path), str(error)
    assert words in error.detail, str(error)


def test_an_environment_name_whose_namespace_is_too_long_is_refused(envdir: Path) -> None:
    name = "e" * (63 - PROJECT_NAME_ROOM)  # a valid DNS label; with any project prefix, not a namespace
    shutil.copy(envdir / "dev.yaml", envdir / f"{name}.yaml")
    error = refused(envdir, name)
    assert (error.file, error.key_path) == (f"environments/{name}.yaml", "<environment name>")
    assert "namespace" in error.detail and "at most 63" in error.detail


def test_the_project_name_comes_from_pulumi_yaml() -> None:
    assert project_name() == "smartnation"


def test_the_longest_environment_name_is_bounded_by_the_job_names(envdir: Path) -> None:
    # <env>-object-storage-setup-<10 hex digits> is a Job name, 63 characters at most.
    assert len(_longest_accepted(envdir)) == 63 - len("-object-storage-setup-0123456789")


def test_an_environment_name_starting_with_a_digit_is_refused_for_its_service_names(envdir: Path) -> None:
    shutil.copy(envdir / "dev.yaml", envdir / "1dev.yaml")
    error = refused(envdir, "1dev")
    assert error.key_path == "<environment name>" and "Service" in error.detail, str(error)


# --- The rules' lists against what a built stack holds -------------------------------------


def _build(recorder: Recorder, environment: str, root: Path | None = None) -> BuiltStack:
    settings = load_settings(environment, root)
    set_secrets(secrets_for(settings))
    outputs = run(recorder, lambda: build(settings))
    return BuiltStack(settings, list(recorder.resources), outputs)


def test_reserved_roles_include_the_ones_the_database_component_creates() -> None:
    assert {database_component.SUPERUSER, database_component.REPLICATION_USER} <= RESERVED_ROLES


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_every_variable_the_program_gives_an_api_is_protected_from_extra_env(build_stack, environment: str) -> None:
    stack = build_stack(environment)
    by_name = {r.plain["metadata"]["name"]: r for r in stack.kubernetes() if "metadata" in r.plain}
    given: set[str] = {"PORT"}  # the chart's own (charts/city-api/templates/deployment.yaml)
    for chart in stack.of_type("kubernetes:helm.sh/v4:Chart"):
        values = chart.plain["values"]
        for config_map in values["envFromConfigMaps"]:
            given |= set(by_name[config_map].plain["data"])
        for secret in values["envFromSecrets"]:
            given |= set(by_name[secret].plain["stringData"])
    assert given, "no API got any variable: the test would prove nothing"
    assert given <= API_PROVIDED_ENV, sorted(given - API_PROVIDED_ENV)


def _containers_total(pod_spec: dict[str, Any], section: str, kind: str) -> float:
    """What one pod counts against the quota: its containers' sum, or its largest init container."""
    summed = sum(parse_quantity(str(c["resources"][section][kind])) for c in pod_spec["containers"])
    inits = [parse_quantity(str(c["resources"][section][kind])) for c in pod_spec.get("initContainers", [])]
    return max([summed, *inits])


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_the_quota_check_counts_every_pod_the_stack_can_run(build_stack, environment: str) -> None:
    stack = build_stack(environment)
    counted = dict.fromkeys(needs(stack.settings), 0.0)  # every quota field the check counts

    def add(pods: float, pod_spec: dict[str, Any]) -> None:
        counted["pods"] += pods
        for section in ("requests", "limits"):
            for kind in ("cpu", "memory"):
                counted[f"{section}_{kind}"] += pods * _containers_total(pod_spec, section, kind)

    for statefulset in stack.of_type("kubernetes:apps/v1:StatefulSet"):
        spec = statefulset.plain["spec"]
        add(spec["replicas"], spec["template"]["spec"])
        for claim in spec.get("volumeClaimTemplates", []):
            counted["persistent_volume_claims"] += spec["replicas"]
            counted["requests_storage"] += spec["replicas"] * parse_quantity(
                claim["spec"]["resources"]["requests"]["storage"]
            )
    for job in stack.of_type("kubernetes:batch/v1:Job"):
        add(1, job.plain["spec"]["template"]["spec"])
    for cron_job in stack.of_type("kubernetes:batch/v1:CronJob"):
        add(1, cron_job.plain["spec"]["jobTemplate"]["spec"]["template"]["spec"])
    for chart in stack.of_type("kubernetes:helm.sh/v4:Chart"):
        values = chart.plain["values"]
        add(values["autoscaling"]["maxReplicas"], {"containers": [{"resources": values["resources"]}]})
    assert counted["pods"] > 0
    expected = needs(stack.settings)
    for field, amount in counted.items():
        assert expected[field].amount == pytest.approx(amount), field


_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")
_LIMITS = {"Service": 63, "StatefulSet": 52, "Job": 63, "CronJob": 52, "Namespace": 63}


def _longest_accepted(envdir: Path) -> str:
    for length in range(63, 0, -1):
        name = "e" * length
        shutil.copy(envdir / "staging.yaml", envdir / f"{name}.yaml")
        try:
            load_settings(name, envdir)
        except SettingsError:
            continue
        return name
    raise AssertionError("no environment name accepted")


def test_the_longest_accepted_environment_name_gives_only_valid_kubernetes_names(
    envdir: Path, recorder: Recorder
) -> None:
    name = _longest_accepted(envdir)
    assert 20 <= len(name) < 63, len(name)
    stack = _build(recorder, name, envdir)
    checked = 0
    for resource in stack.kubernetes():
        plain = resource.plain
        metadata = plain.get("metadata") or {}
        object_name = metadata.get("name") or plain.get("name")
        if not isinstance(object_name, str):
            continue
        limit = _LIMITS.get(resource.kind, 253)
        assert len(object_name) <= limit and _NAME.fullmatch(object_name), (resource.kind, object_name)
        for key, value in (metadata.get("labels") or {}).items():
            assert len(value) <= 63, (resource.kind, object_name, key, value)
        checked += 1
    for chart in stack.of_type("kubernetes:helm.sh/v4:Chart"):
        assert len(chart.plain["name"]) <= 53
    assert checked > 40
