"""The quota check's message names every workload as it adds them up: session 10's settings
mutation run left the workloads' names (broker, its reloader) and the broker's and database's
volumes alive in footprint.py. test_settings_rules.py compares the totals with a built stack;
here the message a too-small quota gives, to the letter."""

from __future__ import annotations

import pytest

from smartnation.program.components.broker import RELOADER_RESOURCES
from smartnation.settings import SettingsError, load_settings
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


def test_a_cpu_quota_too_small_counts_the_broker_and_its_reloader_by_name(envdir) -> None:
    replicas = load_settings("dev", envdir).broker.replicas
    edit(envdir, "dev.yaml", "guardrails.quota.requests_cpu", "100m")
    with pytest.raises(SettingsError) as refused:
        load_settings("dev", envdir)
    detail = refused.value.detail
    assert refused.value.key_path == "guardrails.quota.requests_cpu"
    assert detail.startswith("'100m' is below what the workloads need with every API at its HPA ceiling and the ")
    parts = detail.split(" (", 1)[1].removesuffix(")").split(" + ")
    assert parts[:2] == [
        f"broker {replicas}x{load_settings('dev').broker.resources.requests.cpu}",
        f"broker tls-reloader {replicas}x{RELOADER_RESOURCES.requests.cpu}",
    ]
