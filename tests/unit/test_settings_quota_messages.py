"""The quota check's message names every workload as it adds them up: session 10's settings
mutation run left the workloads' names, the volumes and the message's ' + ' alive in
footprint.py. test_settings_rules.py compares the totals with a built stack; here the message a
too-small quota gives, to the letter."""

from __future__ import annotations

import pytest

from smartnation.program.components.broker import RELOADER_RESOURCES
from smartnation.program.components.database import RELOADER_RESOURCES as DATABASE_RELOADER_RESOURCES
from smartnation.program.components.pods import JOB_RESOURCES
from smartnation.settings import SettingsError, load_settings
from smartnation.settings.footprint import CONCURRENT_JOBS
from tests.unit.harness import edit

pytestmark = pytest.mark.unit


def test_a_storage_quota_too_small_names_each_volume_and_the_total(envdir) -> None:
    dev = load_settings("dev", envdir)
    edit(envdir, "dev.yaml", "guardrails.quota.requests_storage", "1Gi")
    with pytest.raises(SettingsError) as refused:
        load_settings("dev", envdir)
    broker, database, storage = dev.broker, dev.database, dev.object_storage
    assert (refused.value.key_path, refused.value.detail) == (
        "guardrails.quota.requests_storage",
        "'1Gi' is below what the workloads need with every API at its HPA ceiling and the jobs running: 32Gi "
        f"(broker {broker.replicas}x{broker.storage_size} + database {1 + database.replicas}x{database.storage_size}"
        f" + object_storage {storage.replicas}x{storage.storage_size})",
    )
    assert (broker.storage_size, database.storage_size, storage.storage_size) == ("2Gi", "10Gi", "20Gi")


def test_a_cpu_quota_too_small_counts_every_workload_by_name(envdir) -> None:
    dev = load_settings("dev", envdir)
    edit(envdir, "dev.yaml", "guardrails.quota.requests_cpu", "100m")
    with pytest.raises(SettingsError) as refused:
        load_settings("dev", envdir)
    detail = refused.value.detail
    assert refused.value.key_path == "guardrails.quota.requests_cpu"
    assert detail.startswith("'100m' is below what the workloads need with every API at its HPA ceiling and the ")
    parts = detail.split(" (", 1)[1].removesuffix(")").split(" + ")
    brokers, databases = dev.broker.replicas, 1 + dev.database.replicas
    assert parts[:5] == [
        f"broker {brokers}x{dev.broker.resources.requests.cpu}",
        f"broker tls-reloader {brokers}x{RELOADER_RESOURCES.requests.cpu}",
        f"database {databases}x{dev.database.resources.requests.cpu}",
        f"database tls-reloader {databases}x{DATABASE_RELOADER_RESOURCES.requests.cpu}",
        f"object_storage {dev.object_storage.replicas}x{dev.object_storage.resources.requests.cpu}",
    ]
    apis = []
    for name, api in dev.city_apis.items():
        apis.append(f"{name} {api.max_replicas}x{api.resources.requests.cpu}")
        if api.database is not None and api.database.migrations:
            apis.append(f"{name} migration 1x{JOB_RESOURCES.requests.cpu}")
    assert parts[5:] == [*apis, *(f"{job} 1x{JOB_RESOURCES.requests.cpu}" for job in CONCURRENT_JOBS)]
