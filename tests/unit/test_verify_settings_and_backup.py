"""The reading bound is a setting each environment states (`verify.reading_bound_seconds`), and
the backup check's pure parts: the Job it cuts from the CronJob and the backup name it reads.

The backup check itself runs on real Pods in tests/integration/test_verify.py."""

from __future__ import annotations

import argparse
import json
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
        ("staging.yaml", -1, "verify.settle_seconds"),
        ("defaults.yaml", 1801, "verify.settle_seconds"),
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
    monkeypatch.setattr(verify, "operator_token", lambda *_a: "token")
    monkeypatch.setattr(_Stack, "get_all_config", lambda _self: {}, raising=False)
    for option, expected, settle, settled in ((None, 7, None, 180), (2.5, 2.5, 0.0, 0.0)):
        args = argparse.Namespace(
            environment="staging", reading_bound=option, settle=settle, subscriber_class="b", device_class=None
        )
        ctx = verify.build_context(args)
        seen[str(option)] = ctx.reading_bound
        assert seen[str(option)] == expected
        assert ctx.settle == settled


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


# --- the backup check's verdicts, with the Jobs faked ------------------------------------------

UPLOADED = "backup 20261129T041824Z uploaded to store/backups/staging/20261129T041824Z\n"
LISTED = "\n".join(
    json.dumps({"status": "success", "type": "file", "key": f"20261129T041824Z/{f}", "size": 100})
    for f in ("globals.sql", "telemetry.dump", "manifest")
)
RESTORED_SHORT = "restored|telemetry|public.readings|9|120"
ROWS = "ROW|source|telemetry|public.readings|10|123\nROW|restored|telemetry|public.readings|10|123\n"


def _backup_check(monkeypatch, *, dumped=(True, UPLOADED), listed=(True, LISTED), restored=(True, ROWS)):
    from smartnation.cli import restore, verify_checks
    from smartnation.cli.restore import JobResult
    from smartnation.cli.verify_checks import check_backup_restores

    jobs: list[dict[str, Any]] = []
    outcome = {"verify": dumped, "backups": listed, "restore": restored}

    def run_job(_target, job, timeout):  # noqa: ANN001
        jobs.append(job)
        role = job["metadata"]["name"].split("-")[-2]
        succeeded, logs = outcome[role]
        return JobResult(succeeded, 1.0, logs, "" if succeeded else "DeadlineExceeded: active past its deadline")

    monkeypatch.setattr(restore, "run_job", run_job)
    monkeypatch.setattr(restore, "backup_cronjob", lambda _target, _env: CRONJOB)
    monkeypatch.setattr(verify_checks.restore_pod, "restore_job", lambda *a, **k: {"metadata": {"name": a[1]}, **k})
    monkeypatch.setattr(verify_checks.restore_pod, "list_job", lambda _c, name: {"metadata": {"name": name}})
    ctx = argparse.Namespace(
        target=argparse.Namespace(environment="staging"),
        kubectl=argparse.Namespace(context="dusseldorf-test", namespace="smartnation-staging", process_env=dict),
    )
    return check_backup_restores, ctx, jobs


def test_the_backup_check_passes_when_the_set_is_listed_and_restores_equal(monkeypatch):
    check, ctx, jobs = _backup_check(monkeypatch)
    line = check(ctx)
    assert line.startswith("backup 20261129T041824Z in bucket backups") and "counts and checksums equal" in line
    restore_job = jobs[-1]
    assert restore_job["cleanup"] is True and restore_job["metadata"]["name"].startswith("staging-database-restore-")


@pytest.mark.parametrize(
    ("outcome", "message"),
    [
        (
            {"dumped": (False, "--- dump ---\npg_dump: error")},
            r"(?s)backup Job .* failed \(DeadlineExceeded: active past its deadline\): .*pg_dump: error",
        ),
        ({"dumped": (True, "nothing uploaded\n")}, "names no uploaded backup"),
        ({"listed": (True, LISTED.replace("manifest", "other"))}, "not complete in bucket backups"),
        ({"restored": (False, "pg_restore: error")}, r"restoring backup 20261129T041824Z failed \(DeadlineExceeded"),
        ({"restored": (True, "")}, "compared no table"),
        (
            {"restored": (True, ROWS.replace("restored|telemetry|public.readings|10|123", RESTORED_SHORT))},
            r"1 different tables: telemetry.public.readings \(10, 123\) -> \(9, 120\)",
        ),
    ],
)
def test_the_backup_check_fails_saying_what_went_wrong(monkeypatch, outcome, message):
    from smartnation.cli.verify_checks import CheckFailed

    check, ctx, _jobs = _backup_check(monkeypatch, **outcome)
    with pytest.raises(CheckFailed, match=message):
        check(ctx)


def test_a_failed_job_says_why_from_its_failed_condition(monkeypatch):
    from smartnation.cli import restore

    failed = {
        "status": {
            "failed": 1,
            "conditions": [
                {"type": "Failed", "status": "True", "reason": "DeadlineExceeded", "message": "Job was active longer"},
            ],
        }
    }
    calls: list[tuple[str, ...]] = []

    def kubectl(*args: str, **_kw: Any) -> str:
        calls.append(args)
        return json.dumps(failed) if args[:2] == ("get", "job") else "restore: done"

    target = argparse.Namespace(kubectl=kubectl, namespace="ns")
    job = {"metadata": {"name": "j"}, "spec": {"template": {"spec": {"containers": [{"name": "restore"}]}}}}
    result = restore.run_job(target, job, timeout=5)
    assert not result.succeeded
    assert result.reason == "DeadlineExceeded: Job was active longer"
    assert "--- restore ---\nrestore: done" in result.logs
