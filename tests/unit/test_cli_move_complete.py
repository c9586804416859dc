"""The complete phase's steps (cli/move_complete.py) with the Jobs, the sites and the stack stood
in: the final backup run on the old site and copied to the new one file by file, each sha256
read back; the restore on the new site compared with the old site's databases, the scratch
databases dropped whatever the outcome, the record written only when equal; the old site's
protected resources, and only those, unprotected. And the two in-Pod scripts run by this Python
against a stand-in boto3. The real thing: tests/integration/test_move_cutover.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from smartnation.cli import compare, move_complete, restore
from smartnation.cli.compare_data import Snapshot
from smartnation.settings import load_settings
from tests.unit.harness import REPO_ENVIRONMENTS

pytestmark = pytest.mark.unit

HOME, OTHER = "dusseldorf-test", "monaco-onprem"
STAMP = "20261130T120000Z"
CRONJOB = {
    "metadata": {"name": "dev-database-backup", "namespace": "smartnation-dev"},
    "spec": {
        "jobTemplate": {
            "spec": {
                "template": {
                    "metadata": {"labels": {"app.kubernetes.io/name": "database"}},
                    "spec": {
                        "initContainers": [{"name": "dump", "image": "timescaledb", "env": []}],
                        "containers": [{"name": "upload", "image": "mc", "env": [], "volumeMounts": []}],
                        "volumes": [],
                    },
                }
            }
        }
    },
}


def _run(marks: dict[str, Any] | None = None) -> SimpleNamespace:
    settings = load_settings("dev", REPO_ENVIRONMENTS)
    profile = SimpleNamespace(name=OTHER, context=OTHER)
    return SimpleNamespace(
        settings=settings, to=OTHER, environment="dev", namespace="smartnation-dev", marks=marks or {},
        kubectl_env={"KUBECONFIG": "/k"}, target_profile=profile,
    )  # fmt: skip


class Jobs:
    """restore.run_job and restore.backup_cronjob stood in: which Job ran where, with what outcome."""

    def __init__(self, *results: restore.JobResult) -> None:
        self.results = list(results)
        self.ran: list[tuple[str, str, dict]] = []

    def cronjob(self, target: restore.Target, environment: str) -> dict:
        return CRONJOB

    def run(self, target: restore.Target, job: dict, timeout: float) -> restore.JobResult:
        self.ran.append((target.context, job["metadata"]["annotations"]["smartnation.mc/purpose"], job))
        return self.results.pop(0)


UPLOADED = restore.JobResult(True, 4.0, f"backup {STAMP} uploaded to store/backups/dev/{STAMP}\n")


def _no_earlier_jobs(monkeypatch) -> list[tuple[str, str, str]]:
    """stop_earlier_jobs stood in: none left by an earlier run; each call recorded (site, env, what)."""
    asked: list[tuple[str, str, str]] = []
    monkeypatch.setattr(move_complete, "stop_earlier_jobs",
                        lambda site, env, what: asked.append((site.context, env, what)) or [])  # fmt: skip
    return asked


def test_the_final_backup_runs_on_the_old_site_and_its_set_is_copied_to_the_new_one(monkeypatch) -> None:
    jobs = Jobs(UPLOADED)
    monkeypatch.setattr(restore, "backup_cronjob", jobs.cronjob)
    monkeypatch.setattr(restore, "run_job", jobs.run)
    asked = _no_earlier_jobs(monkeypatch)
    copied: list[tuple[str, str]] = []
    monkeypatch.setattr(move_complete, "copy_set", lambda run, bucket, prefix: copied.append((bucket, prefix)) or
                        {f"dev/{STAMP}/manifest": "ab", f"dev/{STAMP}/telemetry.dump": "cd"})  # fmt: skip
    run = _run()
    said = move_complete.final_backup(run)
    assert [(context, purpose) for context, purpose, _ in jobs.ran] == [(HOME, "backup run once")]
    assert copied == [("backups", f"dev/{STAMP}/")]
    assert run.marks == {"final_backup": STAMP, "final_backup_bucket": "backups"}
    assert said.startswith(f"backup {STAMP} of {HOME} (dumped in 4 s) copied into {OTHER}'s bucket backups under ")
    assert f"dev/{STAMP}/: 2 files, each read back there with the sha256 it had on {HOME}" in said
    assert said.endswith(f"{HOME} (0 s)"), "no earlier Job named when none was stopped"
    assert asked == [(HOME, "dev", "final")]


def test_a_killed_runs_backup_job_is_stopped_on_the_old_site_before_the_new_one_runs(monkeypatch) -> None:
    order: list[str] = []
    jobs = Jobs(UPLOADED)
    monkeypatch.setattr(restore, "backup_cronjob", jobs.cronjob)
    monkeypatch.setattr(
        restore, "run_job", lambda site, job, timeout: order.append("run") or jobs.run(site, job, timeout)
    )
    stopped = ["dev-database-final-1a2b3c"]
    monkeypatch.setattr(move_complete, "stop_earlier_jobs",
                        lambda site, env, wh: order.append(f"stop {site.context} {env} {wh}") or stopped)  # fmt: skip
    monkeypatch.setattr(move_complete, "copy_set", lambda run, bucket, prefix: {f"dev/{STAMP}/manifest": "ab"})
    said = move_complete.final_backup(_run())
    assert order == [f"stop {HOME} dev final", "run"]
    assert said.endswith(" (an earlier run's backup Job stopped first: dev-database-final-1a2b3c)"), said
    assert jobs.ran[0][2]["metadata"]["name"].startswith("dev-database-final-")


def test_a_failed_backup_job_fails_the_step_and_copies_nothing(monkeypatch) -> None:
    jobs = Jobs(
        restore.JobResult(False, 9.0, "--- dump ---\npg_dump: error: connection refused", "BackoffLimitExceeded")
    )
    monkeypatch.setattr(restore, "backup_cronjob", jobs.cronjob)
    monkeypatch.setattr(restore, "run_job", jobs.run)
    monkeypatch.setattr(move_complete, "copy_set", lambda *a: pytest.fail("copied after a failed backup"))
    _no_earlier_jobs(monkeypatch)
    run = _run()
    with pytest.raises(move_complete.StepFailure) as failed:
        move_complete.final_backup(run)
    assert f"the backup Job on {HOME} failed (BackoffLimitExceeded): --- dump ---" in str(failed.value)
    assert run.marks == {}


class Side:
    """A compare.Side stood in: the reader Pod's answers to the two scripts."""

    def __init__(self, where: str, answer: str) -> None:
        self.where, self.answer, self.given = where, answer, []

    def running_pod(self, selector: str) -> tuple[str, str]:
        return ("dev-telemetry-ingest-0", "telemetry-ingest")

    def kubectl(self, *args: str, input: str = "", timeout: float = 0) -> str:
        self.given.append(input)
        return self.answer


ENTRIES = [{"key": f"dev/{STAMP}/manifest", "sha256": "ab", "data": "bWFuaWZlc3Q="},
           {"key": f"dev/{STAMP}/telemetry.dump", "sha256": "cd", "data": "ZHVtcA=="}]  # fmt: skip
READ = "".join(json.dumps(entry) + "\n" for entry in ENTRIES) + "SNSET-DONE\n"


def _sides(monkeypatch, source: Side, target: Side) -> None:
    monkeypatch.setattr(compare, "side_of", lambda env, cluster, ns: source if cluster == HOME else target)
    monkeypatch.setattr(compare, "_root_credentials", lambda side: {"user": "root", "password": "pw"})


def test_the_set_is_copied_file_by_file_and_read_back_with_the_same_sha256(monkeypatch) -> None:
    source = Side(HOME, READ)
    target = Side(OTHER, f"SNSET|dev/{STAMP}/manifest|ab\nSNSET|dev/{STAMP}/telemetry.dump|cd\nSNSET-DONE\n")
    _sides(monkeypatch, source, target)
    back = move_complete.copy_set(_run(), "backups", f"dev/{STAMP}/")
    assert back == {f"dev/{STAMP}/manifest": "ab", f"dev/{STAMP}/telemetry.dump": "cd"}
    assert json.loads(source.given[0]) == {"user": "root", "password": "pw", "bucket": "backups",
                                           "prefix": f"dev/{STAMP}/"}  # fmt: skip
    head, *lines = target.given[0].splitlines()
    assert json.loads(head)["bucket"] == "backups" and [json.loads(line) for line in lines] == ENTRIES


@pytest.mark.parametrize(
    ("read", "written", "said"),
    [
        (READ, f"SNSET|dev/{STAMP}/manifest|ab\nSNSET|dev/{STAMP}/telemetry.dump|ff\nSNSET-DONE\n",
         f"is not the backup set: ['dev/{STAMP}/telemetry.dump']"),
        (READ, f"SNSET|dev/{STAMP}/manifest|ab\n", "is not the backup set"),
        ("".join(json.dumps(e) + "\n" for e in ENTRIES), "", "reading the backup set on dusseldorf-test stopped early"),
        ("SNSET-DONE\n", "", f"no file under backups/dev/{STAMP}/ on dusseldorf-test"),
    ],
)  # fmt: skip
def test_a_copy_that_is_not_the_set_fails(monkeypatch, read: str, written: str, said: str) -> None:
    _sides(monkeypatch, Side(HOME, read), Side(OTHER, written))
    with pytest.raises(move_complete.StepFailure) as failed:
        move_complete.copy_set(_run(), "backups", f"dev/{STAMP}/")
    assert said in str(failed.value)


def _snapshot(where: str, readings: str = "rows=300 sum=7") -> Snapshot:
    snapshot = Snapshot(where)
    snapshot.sections["tables"] = {"telemetry.public.readings": readings}
    snapshot.sections["chunks"] = {"telemetry.public.readings [a, b)": readings}
    return snapshot


@pytest.mark.parametrize("equal", [True, False])
def test_the_restore_on_the_new_site_is_compared_dropped_and_recorded_only_when_equal(monkeypatch, equal) -> None:
    jobs = Jobs(restore.JobResult(True, 12.0, "restored\n"))
    monkeypatch.setattr(restore, "backup_cronjob", jobs.cronjob)
    monkeypatch.setattr(restore, "run_job", jobs.run)
    monkeypatch.setattr(compare, "side_of", lambda env, cluster, ns: SimpleNamespace(where=f"{cluster}/{ns}"))
    monkeypatch.setattr(compare, "read_database", lambda side, settings: _snapshot(side.where))
    restored = _snapshot("restored", "rows=300 sum=7" if equal else "rows=299 sum=6")
    monkeypatch.setattr(move_complete, "read_restored", lambda side, env, dbs: restored)
    dropped, recorded = [], []
    monkeypatch.setattr(move_complete, "drop_restored", lambda side, env, dbs: dropped.append(dbs))
    monkeypatch.setattr(move_complete, "record", lambda run, stamp: recorded.append(stamp))
    asked = _no_earlier_jobs(monkeypatch)
    run = _run({"final_backup": STAMP, "final_backup_bucket": "backups"})
    if equal:
        said = move_complete.verify_backup(run)
        assert said.startswith(f"backup {STAMP} restored on {OTHER} in 12 s equals {HOME}/smartnation-dev: 1 tables")
        assert recorded == [STAMP]
    else:
        with pytest.raises(move_complete.StepFailure) as failed:
            move_complete.verify_backup(run)
        assert f"the final backup {STAMP} restored on {OTHER} differs from {HOME}/smartnation-dev" in str(failed.value)
        assert recorded == []
    ((context, purpose, job),) = jobs.ran
    assert (context, purpose) == (OTHER, f"restore backup {STAMP} into *_final")
    names = [d.name for d in run.settings.database.databases]
    assert dropped == [names, names], "a killed run's leftovers dropped first, the scratch databases after"
    assert asked == [(OTHER, "dev", "final")]
    assert job["metadata"]["name"].startswith("dev-database-final-")
    if equal:
        assert "stopped first" not in said


def test_a_killed_runs_restore_job_is_stopped_on_the_new_site_before_its_scratch_databases_are_dropped(
    monkeypatch,
) -> None:
    order: list[str] = []
    jobs = Jobs(restore.JobResult(True, 12.0, "restored\n"))
    monkeypatch.setattr(restore, "backup_cronjob", jobs.cronjob)
    monkeypatch.setattr(
        restore, "run_job", lambda site, job, timeout: order.append("run") or jobs.run(site, job, timeout)
    )
    monkeypatch.setattr(compare, "side_of", lambda env, cluster, ns: SimpleNamespace(where=f"{cluster}/{ns}"))
    monkeypatch.setattr(compare, "read_database", lambda side, settings: _snapshot(side.where))
    monkeypatch.setattr(move_complete, "read_restored", lambda side, env, dbs: _snapshot("restored"))
    monkeypatch.setattr(move_complete, "drop_restored", lambda side, env, dbs: order.append(f"drop {side.where}"))
    monkeypatch.setattr(move_complete, "record", lambda run, stamp: None)
    stopped = ["dev-database-final-9z"]
    monkeypatch.setattr(move_complete, "stop_earlier_jobs",
                        lambda site, env, wh: order.append(f"stop {site.context} {env} {wh}") or stopped)  # fmt: skip
    said = move_complete.verify_backup(_run({"final_backup": STAMP, "final_backup_bucket": "backups"}))
    where = f"{OTHER}/smartnation-dev"
    assert order == [f"stop {OTHER} dev final", f"drop {where}", "run", f"drop {where}"]
    assert said.endswith(" (an earlier run's restore Job stopped first: dev-database-final-9z)"), said


def test_verify_backup_needs_the_final_backup_first() -> None:
    with pytest.raises(move_complete.StepFailure) as failed:
        move_complete.verify_backup(_run())
    assert "the final-backup step runs first" in str(failed.value)


def test_only_the_old_sites_protected_resources_are_unprotected() -> None:
    resources = [
        {"urn": "urn:pulumi:dev::p::kubernetes:core/v1:Namespace::dusseldorf-test-guardrails-namespace",
         "protect": True},
        {"urn": "urn:pulumi:dev::p::kubernetes:apps/v1:StatefulSet::dusseldorf-test-database-primary-server",
         "protect": True},
        {"urn": "urn:pulumi:dev::p::kubernetes:core/v1:Service::dusseldorf-test-broker-public"},
        {"urn": "urn:pulumi:dev::p::kubernetes:core/v1:Namespace::monaco-onprem-guardrails-namespace", "protect": True},
    ]  # fmt: skip
    imported = []
    stack = SimpleNamespace(export_stack=lambda: SimpleNamespace(deployment={"resources": resources}),
                            import_stack=imported.append)  # fmt: skip
    run = _run()
    run.stack = stack
    said = move_complete.unprotect(run)
    assert [r.get("protect") for r in resources] == [False, False, None, True]
    assert len(imported) == 1
    assert said == (
        f"2 protected resource(s) of {HOME} unprotected in the state: dusseldorf-test-guardrails-namespace, "
        "dusseldorf-test-database-primary-server"
    )
    imported.clear()
    assert move_complete.unprotect(run) == f"0 protected resource(s) of {HOME} unprotected in the state"
    assert imported == [], "nothing to change: the state is not written"


FAKE_BOTO3 = """
import io
STORE = {"backups": {"dev/S/manifest": b"telemetry 1\\n", "dev/S/telemetry.dump": b"PGDMP", "dev/T/x": b"no"}}
PUT = {}
class _Body:
    def __init__(self, data): self.data = data
    def read(self): return self.data
class _Pages:
    def paginate(self, Bucket, Prefix):
        return [{"Contents": [{"Key": k} for k in sorted(STORE[Bucket]) if k.startswith(Prefix)]}]
class _S3:
    def get_paginator(self, name): return _Pages()
    def get_object(self, Bucket, Key): return {"Body": _Body(STORE[Bucket].get(Key, PUT.get(Key)))}
    def put_object(self, Bucket, Key, Body): PUT[Key] = Body
def client(*a, **k): return _S3()
"""


def _script(tmp_path: Path, script: str, stdin: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "boto3.py").write_text(FAKE_BOTO3)
    (tmp_path / "botocore").mkdir(exist_ok=True)
    (tmp_path / "botocore" / "__init__.py").write_text("")
    (tmp_path / "botocore" / "config.py").write_text("class Config:\n    def __init__(self, **kw): pass\n")
    return subprocess.run([sys.executable, "-c", script], input=stdin, capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": str(tmp_path), "S3_ENDPOINT": "https://minio:9000"})  # fmt: skip


def test_the_in_pod_scripts_read_a_set_and_write_it_checking_each_sha256(tmp_path: Path) -> None:
    import hashlib

    given = json.dumps({"user": "u", "password": "p", "bucket": "backups", "prefix": "dev/S/"}) + "\n"
    read = _script(tmp_path, move_complete.READ_SET_PY, given)
    assert read.returncode == 0, read.stderr
    entries = [json.loads(line) for line in read.stdout.splitlines() if line.startswith("{")]
    assert [e["key"] for e in entries] == ["dev/S/manifest", "dev/S/telemetry.dump"], "the prefix only"
    assert entries[1]["sha256"] == hashlib.sha256(b"PGDMP").hexdigest()
    assert read.stdout.splitlines()[-1] == "SNSET-DONE"
    stdin = given + "".join(json.dumps(e) + "\n" for e in entries)
    wrote = _script(tmp_path, move_complete.WRITE_SET_PY, stdin)
    assert wrote.returncode == 0, wrote.stderr
    assert wrote.stdout.splitlines() == [
        f"SNSET|dev/S/manifest|{hashlib.sha256(b'telemetry 1' + bytes([10])).hexdigest()}",
        f"SNSET|dev/S/telemetry.dump|{entries[1]['sha256']}",
        "SNSET-DONE",
    ]
    broken = given + json.dumps({**entries[1], "sha256": "0" * 64}) + "\n"
    refused = _script(tmp_path, move_complete.WRITE_SET_PY, broken)
    assert refused.returncode != 0 and "changed on the way: dev/S/telemetry.dump" in refused.stderr
