"""The settings models' cross-field rules at both sides of each boundary and with the whole
message: an API's replicas and extra_env, an API named after a platform component, the quota and
the LimitRange against the workloads, the LimitRange's own order, the object storage's mode and
replicas, names used twice or unknown. Session 10's settings run, resumed this session, left these alive in
models.py: tests checked a part of the message, or only one side."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from smartnation.settings import SettingsError, load_settings
from smartnation.settings.models import API_PROVIDED_ENV, PLATFORM_COMPONENTS
from tests.unit.harness import edit

pytestmark = pytest.mark.unit

DEFAULTS = "environments/defaults.yaml"
DEV = "environments/dev.yaml"
API = "city_apis.open_data_api"


def refused(envdir: Path, file: str, path: str, value: Any) -> tuple[str, str, str]:
    edit(envdir, file, path, value)
    with pytest.raises(SettingsError) as caught:
        load_settings("dev", envdir)
    return caught.value.file, caught.value.key_path, caught.value.detail


def loads(envdir: Path, file: str, path: str, value: Any) -> None:
    edit(envdir, file, path, value)
    load_settings("dev", envdir)


def test_an_api_max_replicas_may_equal_its_replicas_and_not_be_below(envdir) -> None:
    edit(envdir, "defaults.yaml", f"{API}.replicas", 2)
    loads(envdir, "defaults.yaml", f"{API}.max_replicas", 2)
    assert refused(envdir, "defaults.yaml", f"{API}.max_replicas", 1) == (
        DEFAULTS,
        f"{API}.max_replicas",
        "must be at least replicas (2), got 1",
    )


def test_extra_env_may_not_override_the_program_or_hold_a_credential(envdir) -> None:
    provided = sorted(API_PROVIDED_ENV)[0]
    assert refused(envdir, "defaults.yaml", f"{API}.extra_env", {provided: "x"}) == (
        DEFAULTS,
        f"{API}.extra_env.{provided}",
        "the program sets this variable (from a ConfigMap or a Secret); it cannot be overridden",
    )
    assert refused(envdir, "defaults.yaml", f"{API}.extra_env", {"FEED_PASSWORD": "x"}) == (
        DEFAULTS,
        f"{API}.extra_env.FEED_PASSWORD",
        "looks like a credential; extra_env is plain text: put secrets in the stack file, never here",
    )


@pytest.mark.parametrize("name", ["broker", "database_reports"])
def test_an_api_may_not_be_named_after_a_platform_component_or_start_with_one(envdir, name: str) -> None:
    open_data = yaml.safe_load((envdir / "defaults.yaml").read_text())["city_apis"]["open_data_api"]
    edit(envdir, "defaults.yaml", f"city_apis.{name}", open_data)  # a valid API, under that name
    with pytest.raises(SettingsError) as caught:
        load_settings("dev", envdir)
    assert (caught.value.file, caught.value.key_path, caught.value.detail) == (
        DEFAULTS,
        f"city_apis.{name}",
        f"an API may not be named after a platform component ({', '.join(PLATFORM_COMPONENTS)}) or start with "
        "one and '_': its release and its Kubernetes names would be that component's",
    )


def test_a_quota_of_exactly_what_the_workloads_need_is_enough(envdir) -> None:
    # dev needs 0.635 CPU (a float sum a hair above 635m) and 14 pods: both taken at exactly that.
    edit(envdir, "dev.yaml", "guardrails.quota.requests_cpu", "635m")
    loads(envdir, "dev.yaml", "guardrails.quota.pods", 14)
    file, key, detail = refused(envdir, "dev.yaml", "guardrails.quota.pods", 13)
    assert (file, key) == (DEV, "guardrails.quota.pods")
    head, parts = detail.removesuffix(")").split(" (", 1)
    assert head == "13 is below what the workloads need with every API at its HPA ceiling and the jobs running: 14"
    assert parts.startswith("broker 1x1 + database 1x1 + object_storage 1x1 + device_registry 2x1 + ")


def test_the_limit_range_max_may_equal_the_largest_container_and_not_be_below(envdir) -> None:
    # dev's largest container: 1 CPU and 1Gi (the database's limits among others).
    edit(envdir, "dev.yaml", "guardrails.limit_range", {"max": {"cpu": "1", "memory": "1Gi"}})
    load_settings("dev", envdir)
    assert refused(envdir, "dev.yaml", "guardrails.limit_range.max", {"cpu": "900m", "memory": "1Gi"}) == (
        DEV,
        "guardrails.limit_range.max.cpu",
        "'900m' is below database's limits.cpu ('1'); the LimitRange would refuse its pods",
    )


def test_the_limit_range_defaults_and_max_are_in_order_equal_allowed(envdir) -> None:
    limits = "guardrails.limit_range"
    edit(envdir, "dev.yaml", limits, {"default_request": {"cpu": "1", "memory": "128Mi"}})
    loads(envdir, "dev.yaml", f"{limits}.default_limit", {"cpu": "1", "memory": "512Mi"})
    assert refused(envdir, "dev.yaml", f"{limits}.default_limit", {"cpu": "999m", "memory": "512Mi"}) == (
        DEV,
        f"{limits}.default_limit.cpu",
        "must be at least default_request.cpu",
    )
    edit(envdir, "dev.yaml", f"{limits}.default_limit", {"cpu": "1", "memory": "8Gi"})
    loads(envdir, "dev.yaml", f"{limits}.max", {"cpu": "4", "memory": "8Gi"})
    assert refused(envdir, "dev.yaml", f"{limits}.max", {"cpu": "4", "memory": "7Gi"}) == (
        DEV,
        f"{limits}.max.memory",
        "must be at least default_limit.memory",
    )


@pytest.mark.parametrize(
    ("mode", "replicas", "message"),
    [
        ("standalone", 2, "mode standalone needs replicas 1, got 2"),
        ("distributed", 2, "mode distributed needs an even number of replicas from 4 to 16, got 2"),
        ("distributed", 5, "mode distributed needs an even number of replicas from 4 to 16, got 5"),
    ],
)
def test_the_object_storage_mode_fixes_its_replicas(envdir, mode: str, replicas: int, message: str) -> None:
    edit(envdir, "dev.yaml", "object_storage.mode", mode)
    file, key, detail = refused(envdir, "dev.yaml", "object_storage.replicas", replicas)
    assert (file, key, detail) == (DEV, "object_storage", message)


@pytest.mark.parametrize(
    ("path", "value", "key", "message"),
    [
        (
            "database.roles.1.name",
            "device_registry",
            "database.roles.1.name",
            "'device_registry' is already used in roles",
        ),
        ("database.databases.1.name", "devices", "database.databases.1.name", "'devices' is already used in databases"),
        (
            "object_storage.buckets.1.name",
            "backups",
            "object_storage.buckets.1.name",
            "'backups' is already used in buckets",
        ),
        (
            "database.grants.2.database",
            "nowhere",
            "database.grants.2.database",
            "'nowhere' is not one of the databases",
        ),
        (
            "object_storage.users.1.name",
            "database-backup",
            "object_storage.users.1.name",
            "'database-backup' is already used in users",
        ),
        (
            "object_storage.users.0.buckets",
            ["nowhere", "elsewhere"],
            "object_storage.users.0.buckets",
            "unknown bucket(s) elsewhere, nowhere",
        ),
    ],
)
def test_a_name_used_twice_or_unknown_is_named_where_it_is(
    envdir, path: str, value: Any, key: str, message: str
) -> None:
    assert refused(envdir, "defaults.yaml", path, value) == (DEFAULTS, key, message)
