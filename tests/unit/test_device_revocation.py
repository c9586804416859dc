"""Revoked devices in the settings reach the broker's device ACL (issue 11, revocation), under
Pulumi mocks; the broker's refusal itself is tests/contract/test_device_revocation.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from smartnation.program.components.broker import CONFIG_HASH, DEVICE_ACL
from smartnation.settings import SettingsError, load_settings
from tests.unit.harness import REPO_ENVIRONMENTS, build_settings, edit

pytestmark = pytest.mark.unit


def broker_config(root: Path) -> tuple[str, str]:
    """(device ACL, the broker Pods' config digest) of staging built from ``root``."""
    resources = build_settings(load_settings("staging", root)).resources
    (config,) = [
        r for r in resources if r.type == "kubernetes:core/v1:ConfigMap" and DEVICE_ACL in r.plain.get("data", {})
    ]
    (server,) = [r for r in resources if r.type == "kubernetes:apps/v1:StatefulSet" and "broker" in r.name]
    return config.plain["data"][DEVICE_ACL], server.plain["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH]


def environments(tmp_path: Path) -> Path:
    root = tmp_path / "environments"
    shutil.copytree(REPO_ENVIRONMENTS, root, ignore=shutil.ignore_patterns("stacks"))
    return root


def test_a_revoked_device_gets_a_deny_all_block_and_the_broker_rolls(tmp_path: Path) -> None:
    root = environments(tmp_path)
    before, before_hash = broker_config(root)
    assert "topic deny" not in before
    edit(root, "staging.yaml", "broker.revoked_devices", ["p-stolen-7", "t-12"])
    after, after_hash = broker_config(root)
    assert "user p-stolen-7\ntopic deny #\n" in after and "user t-12\ntopic deny #\n" in after
    assert after_hash != before_hash  # mosquitto re-reads it: the Pods roll with the new file


@pytest.mark.parametrize("bad", ["a/b", "#", "p 1", ""])
def test_a_revocation_that_is_no_device_id_is_refused_naming_the_key(tmp_path: Path, bad: str) -> None:
    root = environments(tmp_path)
    edit(root, "staging.yaml", "broker.revoked_devices", [bad])
    with pytest.raises(SettingsError, match=r"staging\.yaml.*broker\.revoked_devices"):
        load_settings("staging", root)
