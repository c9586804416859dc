"""The reading bound is a setting each environment states (`verify.reading_bound_seconds`), and
the backup check's pure parts: the Job it cuts from the CronJob and the backup name it reads.

The backup check itself runs on real Pods in tests/integration/test_verify.py."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

import pytest

from smartnation.cli import verify
from smartnation.cli.restore_pod import RestoreError, backup_job, uploaded_backup
from smartnation.settings import SettingsError, load_settings
from tests.unit.harness import REPO_ENVIRONMENTS, edit

pytestmark = pytest.mark.unit


@pytest.fixture
def environments(tmp_path: Path) -> Path:
    root = tmp_path / "environments"
    shutil.copytree(REPO_ENVIRONMENTS, root, ignore=shutil.ignore_patterns("stacks"))
    return root


def test_every_environment_states_a_reading_bound_of_ten_seconds_by_default():
    for environment in ("dev", "staging", "production"):
        assert load_settings(environment, REPO_ENVIRONMENTS).verify.reading_bound_seconds == 10


def test_an_environment_file_states_its_own_bound(environments: Path):
    edit(environments, "staging.yaml", "verify.reading_bound_seconds", 4)
    assert load_settings("staging", environments).verify.reading_bound_seconds == 4
    assert load_settings("dev", environments).verify.reading_bound_seconds == 10


@pytest.mark.parametrize(
    ("file", "value", "key"),
    [
        ("staging.yaml", 0, "verify.reading_bound_seconds"),
        ("staging.yaml", 601, "verify.reading_bound_seconds"),
        ("staging.yaml", "ten", "verify.reading_bound_seconds"),
        ("defaults.yaml", -1, "verify.reading_bound_seconds"),
        ("defaults.yaml", True, "verify.reading_bound_seconds"),
        ("staging.yaml", 3, "verify.reading_bound"),
    ],
)
def test_a_bad_bound_names_its_file_and_key(environments: Path, file: str, value: Any, key: str):
    edit(environments, file, key, value)
    with pytest.raises(SettingsError) as raised:
        load_settings("staging", environments)
    assert raised.value.file.endswith(file)
    assert raised.value.key_path == key, str(raised.value)


def test_verify_uses_the_environments_bound_unless_the_option_says_otherwise(monkeypatch, environments: Path):
    edit(environments, "staging.yaml", "verify.reading_bound_seconds", 7)
    settings = load_settings("staging", environments)
    seen: dict[str, float] = {}

    class _Stack:
        def outputs(self) -> dict[str, Any]:
            return {}

    monkeypatch.setattr(verify, "select", lambda _env, create=False: (_Stack(), settings))
    monkeypatch.setattr(
        verify,
        "target_from_outputs",
        lambda _env, _out: argparse.Namespace(cluster=settings.cluster.name, namespace="ns"),
    )
    monkeypatch.setattr(verify, "tool_environment", lambda _env: {})
    monkeypatch.setattr(verify, "mqtt_plan", lambda *_a: argparse.Namespace(device_class="a", subscriber_class="b"))
    monkeypatch.setattr(verify, "class_password", lambda *_a: "pw")
    monkeypatch.setattr(_Stack, "get_all_config", lambda _self: {}, raising=False)
    for option, expected in ((None, 7), (2.5, 2.5)):
        args = argparse.Namespace(environment="staging", reading_bound=option, subscriber_class="b", device_class=None)
        seen[str(option)] = verify.build_context(args).reading_bound
        assert seen[str(option)] == expected


CRONJOB = {
    "metadata": {"name": "staging-database-backup", "namespace": "smartnation-staging"},
    "spec": {
        "jobTemplate": {
            "spec": {
                "backoffLimit": 2,
                "template": {
                    "metadata": {"labels": {"app.kubernetes.io/name": "database-backup"}},
                    "spec": {"containers": [{"name": "upload", "image": "mc@sha256:1"}], "restartPolicy": "Never"},
                },
            }
        }
    },
}


def test_the_backup_run_once_is_the_cronjobs_pod_bounded_and_never_retried():
    job = backup_job(CRONJOB, "staging-database-verify-abc123", deadline=120)
    spec = job["spec"]
    assert spec["template"]["spec"] == CRONJOB["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert spec["template"]["spec"] is not CRONJOB["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    # The backup Pods' labels: the NetworkPolicies admit exactly those to the primary and MinIO.
    assert spec["template"]["metadata"]["labels"]["app.kubernetes.io/name"] == "database-backup"
    assert (spec["backoffLimit"], spec["activeDeadlineSeconds"]) == (0, 120)
    assert job["metadata"]["namespace"] == "smartnation-staging"
    assert job["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"] == "manual"


def test_the_backup_name_and_bucket_come_from_the_upload_log():
    log = "backup 20261129T041500Z uploaded to store/backups/staging/20261129T041500Z\n"
    assert uploaded_backup(log) == ("20261129T041500Z", "backups")
    with pytest.raises(RestoreError, match="names no uploaded backup"):
        uploaded_backup("mc: <ERROR> Unable to upload\n")
