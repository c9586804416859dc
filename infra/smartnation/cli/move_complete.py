"""The complete phase's own steps (docs/move.md, section 9): a final backup of the old site kept in
the new site's object storage and proven to restore, then the old site's resources released.

- ``final-backup``: the old site's backup CronJob run once (its database is fenced since the
  cutover: the dump is its last state); the backup set (``<bucket>/<env>/<stamp>/``) copied into
  the new site's backups bucket under the same key, each file through the two sites' reader Pods
  (the telemetry-ingest's Python, the object storage's root credentials on stdin), its sha256
  checked on the way in and read back there.
- ``verify-backup``: the new site's restore Job (`smartnation restore`'s, cut from its own backup
  CronJob) restores that set into scratch databases ``<database>_final`` on the new site; every
  table and chunk of them is compared with the old site's databases, read live; the scratch
  databases are dropped; on any difference the step fails. Then the record the program's guard
  reads before it deletes the old site: ConfigMap ``<env>-move-final-backup`` on the new site.
- ``unprotect``: the old site's protected resources (production's state) are unprotected in the
  stack's state, so the apply can delete them; nothing else of the state changes.

The set passes through the operator's machine in base64 lines: fine for the local clusters and a
city's dumps of some GiB; a larger one wants a copy Job between the sites (not built).
"""

from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING, Any

from smartnation.cli import compare, restore, restore_pod
from smartnation.cli.compare_data import DATABASE_SQL, Snapshot, differences
from smartnation.program.move_guard import FINAL_BACKUP

if TYPE_CHECKING:
    from smartnation.cli.move_driver import Run

BACKUP_JOB_SECONDS = 1800
RESTORE_JOB_SECONDS = 3600
SCRATCH = "final"
"""The scratch databases' suffix: ``<database>_final`` on the new site, dropped after the comparison."""
FINAL_JOB = "final"
"""The complete phase's Jobs: ``<env>-database-final-<id>``, its backup on the old site, its restore on the new."""
READ_WRITE_SQL = "SET default_transaction_read_only = off;\n"
"""This session's transactions read-write even where the site is fenced (the fence is only the
server's default, cli/move_cutover.py): what the move itself drops or restores there."""
BACKUP, BUCKET = "final_backup", "final_backup_bucket"
"""The marks the final-backup step leaves for verify-backup."""

READ_SET_PY = """
import base64, hashlib, json, os, sys
import boto3
from botocore.config import Config
given = json.loads(sys.stdin.readline())
s3 = boto3.client("s3", endpoint_url=os.environ["S3_ENDPOINT"], region_name="us-east-1",
                  aws_access_key_id=given["user"], aws_secret_access_key=given["password"],
                  config=Config(s3={"addressing_style": "path"}, signature_version="s3v4"))
if "objects" in given:
    named = [name.split("/", 1) for name in given["objects"]]
else:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=given["bucket"], Prefix=given["prefix"])
    named = [[None, item["Key"]] for page in pages for item in page.get("Contents", [])]
for bucket, key in named:
    data = s3.get_object(Bucket=bucket or given["bucket"], Key=key)["Body"].read()
    entry = {"key": key, "sha256": hashlib.sha256(data).hexdigest(), "data": base64.b64encode(data).decode()}
    if bucket is not None:
        entry["bucket"] = bucket
    print(json.dumps(entry), flush=True)
print("SNSET-DONE", flush=True)
"""
"""Every object under ``prefix`` of ``bucket``, or each ``bucket/key`` of ``objects`` (then with its
bucket): one JSON line each (key, sha256, base64 bytes)."""

WRITE_SET_PY = """
import base64, hashlib, json, os, sys
import boto3
from botocore.config import Config
given = json.loads(sys.stdin.readline())
s3 = boto3.client("s3", endpoint_url=os.environ["S3_ENDPOINT"], region_name="us-east-1",
                  aws_access_key_id=given["user"], aws_secret_access_key=given["password"],
                  config=Config(s3={"addressing_style": "path"}, signature_version="s3v4"))
for line in sys.stdin:
    entry = json.loads(line)
    data = base64.b64decode(entry["data"])
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        sys.exit("changed on the way: " + entry["key"])
    bucket = entry.get("bucket", given.get("bucket"))
    s3.put_object(Bucket=bucket, Key=entry["key"], Body=data)
    back = hashlib.sha256(s3.get_object(Bucket=bucket, Key=entry["key"])["Body"].read()).hexdigest()
    name = entry["key"] if "bucket" not in entry else bucket + "/" + entry["key"]
    print("SNSET|" + name + "|" + back, flush=True)
for name in given.get("delete", []):
    bucket, key = name.split("/", 1)
    s3.delete_object(Bucket=bucket, Key=key)
    print("SNDEL|" + name, flush=True)
print("SNSET-DONE", flush=True)
"""
"""Puts each JSON line's object into its ``bucket`` (by default the given one), checking its sha256
before, and prints the sha256 read back after: ``SNSET|<key>|<sha256>`` (``<bucket>/<key>`` for
an object named with its bucket); then deletes each ``bucket/key`` of ``delete``: ``SNDEL|<name>``."""


class StepFailure(Exception):
    """A complete step could not do its job (move_driver turns it into its StepFailed)."""


def _target(run: Run, cluster: str) -> restore.Target:
    """Where `smartnation restore`'s Jobs run on one of the two sites."""
    profile = run.settings.cluster if cluster == run.settings.cluster.name else run.target_profile
    return restore.Target(profile.context, run.namespace, {**os.environ, **run.kubectl_env})


def final_backup(run: Run) -> str:
    source_name = run.settings.cluster.name
    began = time.monotonic()
    # A driver killed in this step leaves its backup Job running on the old site: stopped first,
    # so that two dumps never run at once on a site whose last state is all this phase keeps.
    stopped = stop_earlier_jobs(_target(run, source_name), run.environment, FINAL_JOB)
    stamp, bucket, seconds = run_backup(run, source_name)
    prefix = f"{run.environment}/{stamp}/"
    copied = copy_set(run, bucket, prefix)
    run.marks[BACKUP], run.marks[BUCKET] = stamp, bucket
    return (
        f"backup {stamp} of {source_name} (dumped in {seconds:.0f} s) copied into {run.to}'s bucket "
        f"{bucket} under {prefix}: {len(copied)} files, each read back there with the sha256 it had on "
        f"{source_name} ({time.monotonic() - began:.0f} s){stopped_first('backup', stopped)}"
    )


def stopped_first(what: str, stopped: list[str]) -> str:
    """What a step's result says of the Jobs an earlier, killed run left and this one stopped (stop_earlier_jobs)."""
    return f" (an earlier run's {what} Job stopped first: {', '.join(stopped)})" if stopped else ""


def run_backup(run: Run, cluster: str, what: str = FINAL_JOB) -> tuple[str, str, float]:
    """``cluster``'s backup CronJob run once (a Job cut from it, never retried): the set's name,
    its bucket and the seconds it took. The complete phase backs up the source, a rollback the
    target."""
    site = _target(run, cluster)
    try:
        cronjob = restore.backup_cronjob(site, run.environment)
        job = restore_pod.backup_job(cronjob, restore._job_name(run.environment, what), BACKUP_JOB_SECONDS)
        dumped = restore.run_job(site, job, timeout=BACKUP_JOB_SECONDS + 30)
        if not dumped.succeeded:
            raise StepFailure(f"the backup Job on {cluster} failed ({dumped.reason}): {dumped.logs.strip()[-400:]}")
        stamp, bucket = restore_pod.uploaded_backup(dumped.logs)
    except restore_pod.RestoreError as error:
        raise StepFailure(f"the {what} backup on {cluster}: {error}") from None
    return stamp, bucket, dumped.seconds


def copy_set(
    run: Run, bucket: str, prefix: str, *, source: str | None = None, target: str | None = None
) -> dict[str, str]:
    """Every object under ``prefix`` of ``source``'s ``bucket`` into ``target``'s, by the two sites'
    reader Pods; returns key -> sha256 as read back on ``target`` (each equal to the read one).
    By default from the move's source to its target (the complete phase); a rollback copies back."""
    return _transfer(run, source or run.settings.cluster.name, target or run.to,
                     {"bucket": bucket, "prefix": prefix}, f"{bucket}/{prefix}")  # fmt: skip


def copy_objects(run: Run, source: str, target: str, names: list[str], delete: list[str]) -> dict[str, str]:
    """Each ``bucket/key`` of ``names`` from ``source`` into the same bucket and key on ``target``,
    its sha256 checked before the write and read back after; then each of ``delete`` deleted on
    ``target``. Returns ``bucket/key`` -> sha256 as read back (a rollback's objects, cli/move_rollback.py)."""
    return _transfer(run, source, target, {"objects": sorted(names)}, "the objects", delete=sorted(delete))


def _transfer(
    run: Run, source_name: str, target_name: str, selection: dict[str, Any], what: str, delete: list[str] | None = None
) -> dict[str, str]:
    source = compare.side_of(run.environment, source_name, run.namespace)
    target = compare.side_of(run.environment, target_name, run.namespace)

    def given(side: compare.Side, **more: Any) -> str:
        return json.dumps({**compare._root_credentials(side), **selection, **more}) + "\n"

    entries: list[dict[str, Any]] = []
    if selection.get("objects") != []:
        pod, container = source.running_pod(compare.reader_selector(run.environment))
        out = source.kubectl(
            "exec", "-i", pod, "-c", container, "--", "python3.11", "-c", READ_SET_PY, input=given(source),
            timeout=3600,
        )  # fmt: skip
        lines = out.splitlines()
        if "SNSET-DONE" not in lines:
            raise StepFailure(f"reading {'the backup set' if 'prefix' in selection else what} on {source.where} "
                              f"stopped early: {out.strip()[-300:]}")  # fmt: skip
        entries = [json.loads(line) for line in lines if line.startswith("{")]
        if not entries and "prefix" in selection:
            raise StepFailure(f"no file under {what} on {source.where}")
    pod, container = target.running_pod(compare.reader_selector(run.environment))
    said = target.kubectl(
        "exec", "-i", pod, "-c", container, "--", "python3.11", "-c", WRITE_SET_PY,
        input=given(target, **({"delete": delete} if delete else {}))
        + "".join(json.dumps(entry) + "\n" for entry in entries),
        timeout=3600,
    )  # fmt: skip
    back = dict(line.split("|")[1:3] for line in said.splitlines() if line.startswith("SNSET|"))
    wanted = {(f"{e['bucket']}/" if "bucket" in e else "") + e["key"]: e["sha256"] for e in entries}
    deleted = sorted(line.removeprefix("SNDEL|") for line in said.splitlines() if line.startswith("SNDEL|"))
    if "SNSET-DONE" not in said.splitlines() or back != wanted or deleted != sorted(delete or []):
        differ = sorted(key for key in wanted if back.get(key) != wanted[key])
        kind = "the backup set" if "prefix" in selection else what
        raise StepFailure(f"the copy on {target.where} is not {kind}: {differ or said.strip()[-300:]}")
    return back


def verify_backup(run: Run) -> str:
    stamp = run.marks.get(BACKUP)
    if not isinstance(stamp, str):
        raise StepFailure("no final backup recorded in the progress file: the final-backup step runs first")
    target_site = _target(run, run.to)
    target = compare.side_of(run.environment, run.to, run.namespace)
    databases = [d.name for d in run.settings.database.databases]
    began = time.monotonic()
    # A driver killed in this step leaves its restore Job running: stopped before the scratch
    # databases it writes into are dropped, so that two restores never race over them.
    stopped = stop_earlier_jobs(target_site, run.environment, FINAL_JOB)
    # What a run killed before its own drop left (the restore cannot create a database that exists).
    drop_restored(target, run.environment, databases)
    try:
        cronjob = restore.backup_cronjob(target_site, run.environment)
        job = restore_pod.restore_job(
            cronjob, restore._job_name(run.environment, FINAL_JOB), stamp, SCRATCH, compare=False, cleanup=False,
            deadline=RESTORE_JOB_SECONDS,
        )  # fmt: skip
        restored = restore.run_job(target_site, job, timeout=RESTORE_JOB_SECONDS + 30)
    except restore_pod.RestoreError as error:
        raise StepFailure(f"restoring the final backup on {run.to}: {error}") from None
    if not restored.succeeded:
        raise StepFailure(f"restoring {stamp} on {run.to} failed ({restored.reason}): {restored.logs.strip()[-400:]}")
    source = compare.side_of(run.environment, run.settings.cluster.name, run.namespace)
    try:
        live = compare.read_database(source, run.settings)
        kept = read_restored(target, run.environment, databases)
    finally:
        drop_restored(target, run.environment, databases)
    found = differences(live, kept, ("tables", "chunks"))
    tables = len(live.sections["tables"])
    if found:
        listed = "; ".join(d.describe() for d in found[:5])
        raise StepFailure(f"the final backup {stamp} restored on {run.to} differs from {source.where}: {listed}")
    record(run, stamp)
    return (
        f"backup {stamp} restored on {run.to} in {restored.seconds:.0f} s equals {source.where}: {tables} tables, "
        f"{len(live.sections['chunks'])} chunks; scratch databases dropped; recorded in ConfigMap "
        f"{run.environment}-{FINAL_BACKUP} ({time.monotonic() - began:.0f} s in all){stopped_first('restore', stopped)}"
    )


def read_restored(side: compare.Side, environment: str, databases: list[str]) -> Snapshot:
    """Every table and chunk of the scratch databases, keyed by the live databases' names."""
    pod, container, password = compare.primary(side)
    snapshot = Snapshot(f"{side.where} (restored)")
    for name in databases:
        snapshot.add_lines(compare._psql(side, pod, container, password, f"{name}_{SCRATCH}", DATABASE_SQL, name))
    return snapshot


def drop_restored(side: compare.Side, environment: str, databases: list[str], suffix: str = SCRATCH) -> None:
    """The scratch databases ``<database>_<suffix>`` dropped (a killed restore's, or after a comparison).
    The session asks for read-write itself: a rollback drops them on a fenced site."""
    pod, container, password = compare.primary(side)
    drops = "".join(f'DROP DATABASE IF EXISTS "{name}_{suffix}" WITH (FORCE);\n' for name in databases)
    compare._psql(side, pod, container, password, "postgres", READ_WRITE_SQL + drops)


def record(run: Run, stamp: str) -> None:
    """The record the complete phase's guard reads on the new site (move_guard.check_final_backup)."""
    config_map: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": f"{run.environment}-{FINAL_BACKUP}",
            "namespace": run.namespace,
            "labels": {"app.kubernetes.io/managed-by": "smartnation-move"},
        },
        "data": {
            "source": run.settings.cluster.name,
            "backup": stamp,
            "bucket": str(run.marks.get(BUCKET, "")),
            "verified": "true",
            "verified_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    }
    target = _target(run, run.to)
    try:
        target.kubectl("apply", "-f", "-", input=json.dumps(config_map))
    except restore_pod.RestoreError as error:
        raise StepFailure(f"could not record the verified final backup on {run.to}: {error}") from None


def unprotect(run: Run) -> str:
    """The old site's protected resources unprotected in the stack's state (export, change, import)."""
    deployment = run.stack.export_stack()
    resources = deployment.deployment.get("resources") or []
    prefix = f"{run.settings.cluster.name}-"
    released = []
    for resource in resources:
        name = resource.get("urn", "").split("::")[-1]
        if resource.get("protect") and name.startswith(prefix):
            resource["protect"] = False
            released.append(name)
    if released:
        run.stack.import_stack(deployment)
    return f"{len(released)} protected resource(s) of {run.settings.cluster.name} unprotected in the state" + (
        f": {', '.join(released[:5])}{' ...' if len(released) > 5 else ''}" if released else ""
    )


def stop_earlier_jobs(site: restore.Target, environment: str, what: str) -> list[str]:
    """The move's Jobs named after ``what`` (``<env>-database-<what>-<id>``) still running on
    ``site``, deleted with their Pods (foreground: gone when this returns); their names."""
    prefix = restore._job_name(environment, what).rsplit("-", 1)[0] + "-"
    try:
        jobs = json.loads(site.kubectl("get", "jobs", "-o", "json"))["items"]
        running = [
            job["metadata"]["name"]
            for job in jobs
            if job["metadata"]["name"].startswith(prefix)
            and not any(
                c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
                for c in (job.get("status") or {}).get("conditions") or []
            )
        ]
        for name in running:
            site.kubectl("delete", "job", name, "--cascade=foreground", "--wait=true", timeout=300)
    except restore_pod.RestoreError as error:
        raise StepFailure(f"could not stop an earlier run's {what} Job on {site.context}: {error}") from None
    return running
