"""The rollback's own steps (docs/move.md, section 10): back from the cutover to the source, losing
nothing the target took in between.

After the cutover the target is the primary and has taken writes since; the source is fenced
(cli/move_cutover.py), its data a subset of the target's. The driver's apply of ``phase:
rollback`` comes first: the outputs send the devices back to the source and the broker bridge
carries what they still publish on the target to the source, whose ingest holds it,
unacknowledged, while the source is fenced. Then, each step here reusing the cutover's and the
complete phase's functions with the sites the other way round:

- ``fence-target``: the target's primary fenced with the cutover's SQL (move_cutover.fence); the
  time is the start of the rollback's write pause;
- ``backup-target``: the target's backup CronJob run once (move_complete.run_backup): its last state;
- ``copy-back``: that set copied into the source's backups bucket under the same key, each file's
  sha256 checked (move_complete.copy_set, from the target to the source);
- ``restore-source``: the set restored over the source's live databases (restore_pod's
  ``--over-live`` Job: scratch databases, then a rename swap, the replaced ones kept as
  ``<database>_replaced_<time>``), its sessions read-write although the source is fenced;
- ``objects-back``: the target's objects are the truth: every one the source lacks or holds with
  another sha256 is copied there, every one the source holds and the target no longer has is
  deleted there (move_complete.copy_objects);
- the driver's ``verify`` (both sites by data); then ``unfence-source``: the source's fence reset,
  the write pause recorded, and the record the program reads before it lets ``move:`` go
  (ConfigMap ``<env>-move-rollback`` on the source).

The target stays fenced: from the apply on nothing sends writes there, and removing ``move:``
deletes it.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from smartnation.cli import compare, move_complete, move_cutover, move_status, restore, restore_pod
from smartnation.cli.move_complete import stop_earlier_jobs
from smartnation.program import move_records, naming
from smartnation.program.components import broker_bridge

if TYPE_CHECKING:
    from smartnation.cli.move_driver import Run

# The record the program's guard reads before `move:` may be removed after a rollback: ConfigMap
# ``<env>-move-rollback`` on the source, its name and keys shared with the guard.
ROLLBACK_RECORD = move_records.ROLLBACK
RECORD_VERIFIED, RECORD_FROM, RECORD_AT = (
    move_records.ROLLBACK_VERIFIED,
    move_records.ROLLBACK_FROM,
    move_records.ROLLBACK_AT,
)

SCRATCH = "rollback"
"""The restore's scratch databases ``<database>_rollback`` on the source, renamed to the live names."""
BACKUP_JOB, RESTORE_JOB = "rollback-backup", "rollback-restore"
"""What the Jobs are named after: ``<env>-database-rollback-backup-<id>`` on the target,
``<env>-database-rollback-restore-<id>`` on the source (a re-run finds a killed run's by name)."""
RESTORE_JOB_SECONDS = 3600
BACKUP, BUCKET, REPLACED = "rollback_backup", "rollback_backup_bucket", "rollback_replaced"
"""The marks backup-target and restore-source leave (move_progress.Progress.marks)."""
VERIFIED = "rollback_verified_at"
"""The mark the rollback's verify leaves when both sites hold the same data: unfence-source needs it."""
WRITE_PAUSE = "write_pause_s"


class StepFailure(Exception):
    """A rollback step could not do its job (move_driver turns it into its StepFailed)."""


def _source(run: Run) -> str:
    return run.settings.cluster.name


def _read_only(run: Run, role: str) -> bool:
    return move_cutover._sql(run, role, move_cutover.FENCED_SQL).get("read_only") is True


BRIDGE_WAIT_S = 180.0
"""How long fence-target waits for the turned bridge's connections on the target's broker pods."""
SUBSCRIBED_AFTER_S = 2.0
"""After the connection's log line: the bridge sends its SUBSCRIBEs on the CONNACK, at once."""


def bridge_connected(run: Run, clock: Any = None) -> str:
    """Wait until the turned bridge (its Pod as the apply left it) has connected to each of the
    target's broker pods, as each pod's log says (`New client connected ... as <client id>`,
    mosquitto's connection_messages, after the login passed), then the moment its SUBSCRIBE takes.
    Before this, what a device publishes on the target reaches only the target's ingest: fenced,
    that would store nothing, and the bridge, not yet subscribed, would carry nothing (a real-Pod
    rollback lost the 7 readings a device published in the second after the apply, 2026-11-30)."""
    clock = clock or time
    target = move_complete._target(run, run.to)
    try:
        listed = json.loads(target.kubectl("get", "pods", "-l", move_status.bridge_selector(run.environment),
                                           "-o", "json"))["items"]  # fmt: skip
    except (restore_pod.RestoreError, ValueError) as error:
        raise StepFailure(f"could not read the broker bridge's Pod on {run.to}: {error}") from None
    started = [
        status["state"]["running"]["startedAt"]
        for pod in listed
        for status in (pod.get("status") or {}).get("containerStatuses") or []
        if status.get("name") == "mosquitto" and "running" in (status.get("state") or {})
    ]
    if len(started) != 1:
        raise StepFailure(
            f"the broker bridge on {run.to} has {len(started)} running Pod(s), expected one (`smartnation move "
            f"{run.environment} --status` shows it): the apply step deploys it turned"
        )
    broker = naming.names(run.environment, naming.BROKER).name
    waiting = {
        f"{broker}-{index}": broker_bridge.arrived_client_id(run.environment, index)
        for index in range(run.settings.broker.replicas)
    }
    deadline = clock.monotonic() + BRIDGE_WAIT_S
    while True:
        for pod, client in list(waiting.items()):
            said = target.kubectl("logs", pod, "-c", "mosquitto", "--since-time", started[0], check=False, timeout=60)
            if f" as {client} (" in said:
                del waiting[pod]
        if not waiting:
            break
        if clock.monotonic() > deadline:
            raise StepFailure(
                f"the turned broker bridge has not connected to {', '.join(sorted(waiting))} on {run.to} within "
                f"{BRIDGE_WAIT_S:.0f} s (its log: `kubectl -n {run.namespace} logs deploy/{broker}-bridge`); "
                f"nothing was fenced"
            )
        clock.sleep(2)
    clock.sleep(SUBSCRIBED_AFTER_S)
    return f"the turned bridge is connected to {run.settings.broker.replicas} broker pod(s) on {run.to}"


def fence_target(run: Run) -> str:
    # Writes stop on the target only once what its devices publish is carried to the source.
    bridged = bridge_connected(run)
    said = f"{bridged}; " + move_cutover.fence(run, "target")
    stopped = datetime.fromtimestamp(run.marks[move_cutover.FENCED_AT], UTC).strftime("%H:%M:%S")
    return f"{said}; the write pause started at {stopped} UTC ({_source(run)} stays fenced until unfence-source)"


def backup_target(run: Run) -> str:
    # A backup of a target that takes writes again (its fence reset by hand) would miss them.
    if not _read_only(run, "target"):
        raise StepFailure(
            f"{run.to}'s database is not fenced (default_transaction_read_only is off): its last state is not "
            "still; the fence-target step fences it (remove the progress file to run every step again)"
        )
    # A driver killed in this step leaves its backup Job running: stopped, so that its set cannot
    # land in the bucket after objects-back compared the sites.
    stop_earlier_jobs(move_complete._target(run, run.to), run.environment, BACKUP_JOB)
    stamp, bucket, seconds = move_complete.run_backup(run, run.to, BACKUP_JOB)
    run.marks[BACKUP], run.marks[BUCKET] = stamp, bucket
    return f"backup {stamp} of {run.to}, fenced, dumped in {seconds:.0f} s into its bucket {bucket}"


def _backup(run: Run) -> tuple[str, str]:
    stamp, bucket = run.marks.get(BACKUP), run.marks.get(BUCKET)
    if not isinstance(stamp, str) or not isinstance(bucket, str):
        raise StepFailure("no backup of the target recorded in the progress file: the backup-target step runs first")
    return stamp, bucket


def copy_back(run: Run) -> str:
    stamp, bucket = _backup(run)
    prefix = f"{run.environment}/{stamp}/"
    began = time.monotonic()
    copied = move_complete.copy_set(run, bucket, prefix, source=run.to, target=_source(run))
    return (
        f"backup {stamp} copied from {run.to} into {_source(run)}'s bucket {bucket} under {prefix}: {len(copied)} "
        f"files, each read back there with the sha256 it had on {run.to} ({time.monotonic() - began:.0f} s)"
    )


def restore_source(run: Run) -> str:
    stamp, _ = _backup(run)
    source = _source(run)
    # Fenced, its APIs cannot write into a database while it is being replaced (nor between the
    # restore and the verification); the restore's own sessions ask for read-write.
    if not _read_only(run, "source"):
        raise StepFailure(
            f"{source}'s database is not fenced (default_transaction_read_only is off): its APIs could write "
            "while the restore replaces their databases; nothing was restored"
        )
    databases = [d.name for d in run.settings.database.databases]
    side = compare.side_of(run.environment, source, run.namespace)
    site = move_complete._target(run, source)
    # A driver killed in this step leaves its restore Job running in the cluster: stopped first,
    # so that two restores never race over the same scratch databases and the same swap.
    stopped = stop_earlier_jobs(site, run.environment, RESTORE_JOB)
    # What a restore killed before its swap left (the restore cannot create a database that exists).
    move_complete.drop_restored(side, run.environment, databases, SCRATCH)
    replaced = time.strftime("replaced_%Y%m%d%H%M%S", time.gmtime())
    try:
        cronjob = restore.backup_cronjob(site, run.environment)
        job = restore_pod.restore_job(
            cronjob, restore._job_name(run.environment, RESTORE_JOB), stamp, SCRATCH, compare=False, cleanup=False,
            over_live=replaced, deadline=RESTORE_JOB_SECONDS, read_write=True,
        )  # fmt: skip
        restored = restore.run_job(site, job, timeout=RESTORE_JOB_SECONDS + 30)
    except restore_pod.RestoreError as error:
        raise StepFailure(f"restoring {stamp} over {source}'s live databases: {error}") from None
    if not restored.succeeded:
        raise StepFailure(
            f"restoring {stamp} over {source}'s live databases failed ({restored.reason}): "
            f"{restored.logs.strip()[-400:]}"
        )
    run.marks[REPLACED] = replaced
    return (
        f"backup {stamp} of {run.to} restored over {source}'s live databases ({', '.join(databases)}) in "
        f"{restored.seconds:.0f} s; the replaced ones kept as <database>_{replaced}"
        f"{move_complete.stopped_first('restore', stopped)}"
    )


def plan(
    source: dict[str, str], target: dict[str, str], kept_buckets: tuple[str, ...] = ()
) -> tuple[list[str], list[str], list[str]]:
    """What makes the source's objects the target's (``bucket/key`` -> ``size=N sha256=H``): the
    names to copy from the target (missing on the source, or another fingerprint there), the names
    to delete on the source (the target no longer has them), and the names in ``kept_buckets``
    that only the source holds, copied to the target instead of deleted (its backups taken since
    the cutover: a backup is never deleted to make two sites alike)."""
    copy = sorted(name for name, value in target.items() if source.get(name) != value)
    only_source = [name for name in source if name not in target]
    kept = sorted(name for name in only_source if name.split("/", 1)[0] in kept_buckets)
    delete = sorted(name for name in only_source if name not in kept)
    return copy, delete, kept


def objects_back(run: Run) -> str:
    source_name = _source(run)
    source = compare.side_of(run.environment, source_name, run.namespace)
    target = compare.side_of(run.environment, run.to, run.namespace)
    began = time.monotonic()
    # Both sites run the reader API now (the target's bucket mirror went with the cutover).
    left, right = compare.both(lambda: compare.read_objects(source), lambda: compare.read_objects(target))
    backups = run.settings.database.backup.bucket
    copy, delete, kept = plan(left.sections["objects"], right.sections["objects"], (backups,))
    print(f"  objects: {len(right.sections['objects'])} on {run.to}, {len(left.sections['objects'])} on "
          f"{source_name}: {len(copy)} to copy, {len(delete)} to delete, {len(kept)} backup file(s) of "
          f"{source_name}'s own to keep", flush=True)  # fmt: skip
    if copy or delete:
        move_complete.copy_objects(run, run.to, source_name, copy, delete)
    if kept:
        # The source's own backups since the cutover (of its fenced state) stay, and go to the
        # target too, so that the verification finds both sites alike.
        move_complete.copy_objects(run, source_name, run.to, kept, [])
    equal = len(right.sections["objects"]) - len(copy)
    return (
        f"{len(copy)} object(s) copied from {run.to} to {source_name} (missing there or another sha256), "
        f"{len(delete)} deleted on {source_name} (gone from {run.to}), {len(kept)} of {source_name}'s own backup "
        f"files kept and copied to {run.to}, {equal} already equal ({time.monotonic() - began:.0f} s)"
    )


def forget_record(run: Run) -> str:
    """Remove an earlier rollback's record from the source, before this rollback's apply: the
    program lets `move:` go once it finds one, and an old one must not vouch for data this
    rollback has not brought back yet."""
    name = move_records.record_name(run.environment, ROLLBACK_RECORD)
    try:
        said = move_complete._target(run, _source(run)).kubectl(
            "delete", "configmap", name, "--ignore-not-found", "--wait=true"
        )
    except restore_pod.RestoreError as error:
        raise StepFailure(f"could not remove an earlier rollback's record {name} on {_source(run)}: {error}") from None
    return f"an earlier rollback's record {name} removed" if "deleted" in said else f"no earlier record {name}"


def unfence_source(run: Run) -> str:
    source = _source(run)
    if not isinstance(run.marks.get(VERIFIED), str):
        raise StepFailure(f"the verify step has not found both sites equal in this rollback: {source} stays fenced")
    fenced_at = run.marks.get(move_cutover.FENCED_AT)
    if not isinstance(fenced_at, int | float):
        raise StepFailure("no fence of the target recorded in the progress file: the fence-target step runs first")
    move_cutover.unfence(run, "source")
    # The pause ends when the source takes writes again; a re-run (the record failed) keeps it.
    run.marks.setdefault(WRITE_PAUSE, round(time.time() - fenced_at, 1))
    record(run)
    stopped = datetime.fromtimestamp(fenced_at, UTC).strftime("%H:%M:%S")
    return (
        f"{source}'s database takes writes again: the write pause was {run.marks[WRITE_PAUSE]:.1f} s (writes "
        f"stopped on {run.to} at {stopped} UTC); recorded in ConfigMap {run.environment}-{ROLLBACK_RECORD} on "
        f"{source}; {run.to} stays fenced"
    )


def record(run: Run) -> None:
    """The record the program reads on the source before it lets `move:` go (and the target with it)."""
    config_map: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": move_records.record_name(run.environment, ROLLBACK_RECORD),
            "namespace": run.namespace,
            "labels": {"app.kubernetes.io/managed-by": "smartnation-move"},
        },
        "data": {
            RECORD_VERIFIED: move_records.VERIFIED,
            RECORD_FROM: run.to,
            RECORD_AT: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    }
    try:
        move_complete._target(run, _source(run)).kubectl("apply", "-f", "-", input=json.dumps(config_map))
    except restore_pod.RestoreError as error:
        raise StepFailure(f"could not record the verified rollback on {_source(run)}: {error}") from None
