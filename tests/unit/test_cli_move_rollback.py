"""`smartnation move ENV --to CLUSTER` in the rollback phase (cli/move_rollback.py and the driver):
back from the cutover, with the engine, kubectl and psql stood in at the process boundary (the
cutover tests' fake of two databases, here Düsseldorf fenced by the cutover and Monaco a promoted
primary) and the Jobs and the copies between the sites stood in at move_complete's functions
(their own tests: test_cli_move_complete.py). The order of the steps (the apply first, the
source unfenced last and only once verified), the SQL per site, the restore's read-write sessions
under the fence, the objects' copy and delete plan, the refusals, a resume after a kill between
steps, and the write pause.

The settings are stood in with `phase: rollback` (the file says cutover): the program side adds
that phase to the settings in its own change.
"""

from __future__ import annotations

import calendar
import dataclasses
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from smartnation.cli import (
    compare,
    exit_codes,
    move,
    move_complete,
    move_cutover,
    move_driver,
    move_rollback,
    restore,
    restore_pod,
)
from smartnation.cli.compare_data import DATABASE_SQL
from smartnation.cli.move_status import _driver_line
from smartnation.settings import load_settings
from tests.unit import test_cli_move_driver as driver_tests
from tests.unit.test_cli_move_complete import CRONJOB
from tests.unit.test_cli_move_cutover import CUTOVER, FENCE, Cutover, Database, WallClock
from tests.unit.test_cli_move_driver import OBJECTS, PRIMARY_STATUS, audit_lines, drive, progress
from tests.unit.test_cli_move_status import NAMESPACE, SOURCE, TARGET

pytestmark = pytest.mark.unit
project, stack = driver_tests.project, driver_tests.stack  # the driver tests' fixtures

STEPS = ("preview", "apply", "fence-target", "backup-target", "copy-back", "restore-source", "objects-back",
         "verify", "unfence-source")  # fmt: skip
STAMP = "20261201T100000Z"
REPLACED_DB = "telemetry_replaced_20261201095000"
"""A database an --over-live restore kept on the source: not the move's data."""
SOURCE_OBJECTS = {
    **OBJECTS,
    "open-data/readme.txt": (12, "00" * 32),  # another content on Düsseldorf: Monaco's overwrote it
    "open-data/gone.csv": (3, "11" * 32),  # deleted on Monaco since the cutover
    "backups/dev/20261201T021500Z/telemetry.dump": (7, "33" * 32),  # Düsseldorf's own nightly since the cutover
}
TARGET_OBJECTS = {**OBJECTS, "open-data/new.csv": (5, "22" * 32)}  # written on Monaco since the cutover


BRIDGE_SELECTOR = "app.kubernetes.io/instance=dev-broker,app.kubernetes.io/component=bridge"


class Rollback(Cutover):
    """Both sites as the cutover left them, answering the unfence, the record and the databases'
    listing (the source with a replaced database beside the live ones)."""

    def __init__(self, clusters: dict[str, Any], events: list[str]) -> None:
        super().__init__(clusters)
        self.events = events
        self.applied: list[tuple[str, dict[str, Any]]] = []
        self.databases_read: list[tuple[str, str]] = []
        self.refuse_record = False
        self.jobs: list[dict[str, Any]] = []
        """The source's Jobs, as `kubectl get jobs` lists them (a killed driver's restore among them)."""
        self.bridge_pods = 1
        """The turned bridge's running Pods on the target (the apply leaves one)."""
        self.bridge_state: dict[str, Any] = {"running": {"startedAt": "2026-12-01T09:59:58Z"}}
        """Its mosquitto container's state."""
        self.bridge_listing: tuple[int, str, str] | None = None
        """What `kubectl get pods` answers for the bridge instead of its Pods (exit code, stdout, stderr)."""
        self.bridge_connects_after = 0
        """How many reads of a broker pod's log come before the bridge's connection line appears there."""
        self.log_fails_first = 0
        """How many of those reads kubectl fails (the log not readable for a moment)."""
        self.log_reads: list[tuple[str, str, str]] = []
        self.log_timeouts: list[float | None] = []
        self.namespaces: set[Any] = set()
        """Every namespace kubectl was given (the environment's only)."""

    def __call__(self, argv, env=None, input=None, capture_output=False, text=False, timeout=None, **_):
        site = self.clusters.get(argv[2]) if len(argv) > 2 else None
        rest = list(argv[5:]) if argv[3:4] == ["-n"] else []
        if argv[3:4] == ["-n"]:
            self.namespaces.add(argv[4])
        if site is not None and rest[:3] == ["get", "pods", "-l"] and rest[3] == BRIDGE_SELECTOR:
            assert argv[2] == TARGET, "the bridge runs on the target"
            if rest[4:] != ["-o", "json"]:  # the listing is read as JSON, nothing else
                return self._done(1, "", f"error: unexpected arguments {rest[4:]}")
            if self.bridge_listing is not None:
                return self._done(*self.bridge_listing)
            container = {"name": "mosquitto", "state": self.bridge_state}
            pods = [{"status": {"containerStatuses": [container]}} for _ in range(self.bridge_pods)]
            return self._done(0, json.dumps({"items": pods}))
        if site is not None and rest[:1] == ["logs"]:
            self.log_reads.append((argv[2], rest[1], rest[rest.index("--since-time") + 1]))
            self.log_timeouts.append(timeout)
            if rest[2:5] != ["-c", "mosquitto", "--since-time"] or len(rest) != 6:  # the broker's own container
                return self._done(1, "", f"error: unexpected arguments {rest[2:]}")
            if len(self.log_reads) <= self.log_fails_first:
                return self._done(1, "", "Error from server: the server is currently unable to handle the request")
            if len(self.log_reads) <= self.bridge_connects_after:
                return self._done(0, "2026-12-01T10:00:00: New connection from 10.1.2.3:40000 on port 1883.\n")
            self.events.append(f"bridge connected to {rest[1]}")
            return self._done(0, "2026-12-01T10:00:01: New client connected from 10.1.2.3:40000 as "
                                 "dev-move-bridge-arrived-0 (p2, c0, k60, u'move-bridge').\n")  # fmt: skip
        if site is not None and rest[:2] == ["get", "jobs"]:
            if rest != ["get", "jobs", "-o", "json"]:  # the listing is read as JSON, nothing else
                return self._done(1, "", f"error: unexpected arguments {rest[2:]}")
            return self._done(0, json.dumps({"items": [j for j in self.jobs if j.get("on", SOURCE) == argv[2]]}))
        if site is not None and rest[:2] == ["delete", "job"]:
            self.calls.append(SimpleNamespace(argv=list(argv), input=input, timeout=timeout))
            self.events.append(f"stop job {rest[2]} on {argv[2]}")
            self.jobs = [job for job in self.jobs if job["metadata"]["name"] != rest[2]]
            return self._done(0, f'job.batch "{rest[2]}" deleted\n')
        if site is not None and rest[:2] == ["delete", "configmap"]:
            self.calls.append(SimpleNamespace(argv=list(argv), input=input))
            self.events.append(f"forget {rest[2]} on {argv[2]}")
            return self._done(0, "")
        if site is not None and rest[:3] == ["apply", "-f", "-"]:
            self.calls.append(SimpleNamespace(argv=list(argv), input=input))
            if self.refuse_record:
                return self._done(1, "", "error: the server is currently unable to handle the request")
            self.applied.append((argv[2], json.loads(input)))
            self.events.append(f"record on {argv[2]}")
            return self._done(0, "configmap/dev-move-rollback configured\n")
        sql = input.split("\n", 1)[1] if input and "\n" in input else ""
        if site is not None and "exec" in argv and sql.startswith("SELECT datname FROM pg_database"):
            self.calls.append(SimpleNamespace(argv=list(argv), input=input))
            extra = f"{REPLACED_DB}\n" if argv[2] == SOURCE else ""
            return self._done(0, f"telemetry\ndevice_registry\n{extra}")
        if site is not None and "exec" in argv and sql == DATABASE_SQL:
            self.databases_read.append((argv[2], argv[-1]))
            if argv[-1] == REPLACED_DB:
                self.calls.append(SimpleNamespace(argv=list(argv), input=input))
                return self._done(0, f"SNCMP|tables|{REPLACED_DB}.public.readings|rows=250 sum=1\n")
        return super().__call__(argv, env=env, input=input, capture_output=capture_output, text=text, timeout=timeout)

    def _database(self, site: Database, sql: str) -> dict[str, Any] | None:
        name = next(name for name, known in self.clusters.items() if known is site)
        if sql.startswith(move_cutover.UNFENCE_SQL):
            site.said.append("unfence")
            self.events.append(f"unfence {name}")
            site.fenced = False
            return self._fenced(site)
        if sql.startswith(move_cutover.FENCE_SQL):
            self.events.append(f"fence {name}")
        return super()._database(site, sql)


def sites(events: list[str], *, source_fenced: bool = True, target: dict[str, Any] | None = None) -> Rollback:
    source = Database(None, fenced=source_fenced, fenced_reads=10, objects=[dict(SOURCE_OBJECTS)])
    monaco = Database(PRIMARY_STATUS, objects=[dict(TARGET_OBJECTS)], **(target or {}))
    return Rollback({SOURCE: source, TARGET: monaco}, events)


@dataclasses.dataclass
class Moves:
    """move_complete's Jobs and copies between the sites, stood in: what ran, in order; the object
    copy applied to the fake sites so the verification reads what it would."""

    events: list[str]
    fake: Rollback | None = None
    jobs: list[tuple[str, dict[str, Any]]] = dataclasses.field(default_factory=list)
    copies: list[tuple[str, str, list[str], list[str]]] = dataclasses.field(default_factory=list)
    restore_result: restore.JobResult = restore.JobResult(True, 6.0, "restore: done\n")
    kill_at_restore: bool = False
    restore_error: str = ""
    """run_job raises restore_pod.RestoreError with this (kubectl could not create or read the Job)."""
    runs: list[Any] = dataclasses.field(default_factory=list)
    """The run each stood-in function was handed (the driver's Run, which the real ones read)."""
    dropped: list[tuple[Any, ...]] = dataclasses.field(default_factory=list)
    cronjobs_read: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)
    job_timeouts: list[float] = dataclasses.field(default_factory=list)

    def run_backup(self, run: Any, cluster: str, what: str = "final") -> tuple[str, str, float]:
        self.runs.append(run)
        self.events.append(f"backup {cluster} ({what})")
        move_driver.time.sleep(4.0)  # the Job's time, in the write pause
        return STAMP, "backups", 4.0

    def copy_set(self, run: Any, bucket: str, prefix: str, *, source: str | None = None,
                 target: str | None = None) -> dict[str, str]:  # fmt: skip
        self.runs.append(run)
        self.events.append(f"copy set {bucket}/{prefix} {source} -> {target}")
        return {f"dev/{STAMP}/manifest": "ab", f"dev/{STAMP}/telemetry.dump": "cd"}

    def drop_restored(self, side: Any, environment: str, databases: list[str], suffix: str = "final") -> None:
        self.dropped.append((side.cluster, side.namespace, side.environment, environment, list(databases), suffix))
        self.events.append(f"drop {side.cluster} *_{suffix}")

    def backup_cronjob(self, target: restore.Target, environment: str) -> dict[str, Any]:
        self.cronjobs_read.append((target.context, target.namespace, environment))
        return CRONJOB

    def run_job(self, target: restore.Target, job: dict[str, Any], timeout: float) -> restore.JobResult:
        self.jobs.append((target.context, job))
        self.job_timeouts.append(timeout)
        self.events.append(f"restore job on {target.context}")
        if self.kill_at_restore:
            raise Killed
        if self.restore_error:
            raise restore_pod.RestoreError(self.restore_error)
        move_driver.time.sleep(self.restore_result.seconds)
        return self.restore_result

    def copy_objects(self, run: Any, source: str, target: str, names: list[str], delete: list[str]) -> dict[str, str]:
        self.runs.append(run)
        self.copies.append((source, target, names, delete))
        self.events.append(f"copy objects {source} -> {target}")
        assert self.fake is not None
        to, came = self.fake.clusters[target], self.fake.clusters[source]
        objects = {key: value for key, value in to.objects[-1].items() if key not in delete}
        objects.update({key: came.objects[-1][key] for key in names})
        to.objects = [objects]
        return {name: came.objects[-1][name][1] for name in names}


class Killed(BaseException):
    """A kill -9 in the middle of a step (the test puts back the progress file the kill would leave)."""


@pytest.fixture
def rollback(project: Path, stack, monkeypatch) -> Path:
    """dev declared in rollback (stood in), the stack's last phase cutover, one clock for all."""
    with (project / "environments" / "dev.yaml").open("a") as file:
        file.write(CUTOVER)

    def in_rollback(environment: str, environments: Path | None = None) -> Any:
        settings = load_settings(environment, environments)
        assert settings.move is not None
        return dataclasses.replace(settings, move=dataclasses.replace(settings.move, phase="rollback"))

    monkeypatch.setattr(move_driver, "load_settings", in_rollback)
    monkeypatch.setattr(move, "load_settings", in_rollback)
    stack.move = {**driver_tests.APPLIED, "phase": "cutover", "serving": TARGET}
    clock = WallClock()
    for module in (move_driver, move_cutover, move_rollback):
        monkeypatch.setattr(module, "time", clock)
    return project


@pytest.fixture
def moves(monkeypatch, stack) -> Moves:
    events: list[str] = []
    stood = Moves(events)
    for name in ("run_backup", "copy_set", "drop_restored", "copy_objects"):
        monkeypatch.setattr(move_complete, name, getattr(stood, name))
    monkeypatch.setattr(restore, "backup_cronjob", stood.backup_cronjob)
    monkeypatch.setattr(restore, "run_job", stood.run_job)
    up = stack.up
    stack.up = lambda **kwargs: (events.append("apply"), up(**kwargs))[1]
    return stood


@pytest.fixture
def not_utc() -> Iterator[None]:
    """The machine's zone 9 hours east of UTC: a time said or stored as UTC must be UTC."""
    had = os.environ.get("TZ")
    os.environ["TZ"] = "JST-9"
    time.tzset()
    yield
    if had is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = had
    time.tzset()


FINISHED = re.compile(r"\[\d+/9 (?P<step>[a-z-]+)\] finished in \d+ s: (?P<said>.*) \(progress [^)]*\)")


def said_by_step(out: str) -> dict[str, str]:
    """What each step's finished line says (without its progress file)."""
    return {m["step"]: m["said"] for m in map(FINISHED.fullmatch, out.splitlines()) if m}


def run_rollback(monkeypatch, caplog, capsys, moves: Moves, fake: Rollback, *args: str) -> tuple[int, str, str]:
    moves.fake = fake
    return drive(monkeypatch, caplog, capsys, fake, "--yes", *args)


def test_rollback_applies_first_then_carries_everything_back_and_unfences_the_source_last(
    rollback, stack, moves, not_utc, monkeypatch, caplog, capsys
):
    fake = sites(moves.events)
    began = int(time.time())
    code, out, errors = run_rollback(monkeypatch, caplog, capsys, moves, fake)
    ended = time.time()
    assert code == exit_codes.OK, errors
    lines = out.splitlines()
    assert lines[0] == f"dev (environments/dev.yaml): move from {SOURCE} to {TARGET}, phase rollback"
    assert [line.split("]")[0] + "]" for line in lines if line.startswith("[") and " finished " in line] == [
        f"[{n}/9 {step}]" for n, step in enumerate(STEPS, start=1)
    ]
    # The apply first (devices sent back, the bridge reversed), the source unfenced last, after the record's check.
    assert moves.events == [
        f"forget dev-move-rollback on {SOURCE}",
        "apply",
        "bridge connected to dev-broker-0",
        f"fence {TARGET}",
        f"backup {TARGET} (rollback-backup)",
        f"copy set backups/dev/{STAMP}/ {TARGET} -> {SOURCE}",
        f"drop {SOURCE} *_rollback",
        f"restore job on {SOURCE}",
        f"copy objects {TARGET} -> {SOURCE}",
        f"copy objects {SOURCE} -> {TARGET}",
        f"unfence {SOURCE}",
        f"record on {SOURCE}",
    ]
    source, target = fake.clusters[SOURCE], fake.clusters[TARGET]
    # The cutover's fence on Monaco (the same SQL), its reset on Düsseldorf, nothing else of either.
    assert target.said == ["fence", "end sessions", "fence lsn"]
    assert source.said == ["unfence"] and not source.fenced and target.fenced
    # The restore: over the live databases on Düsseldorf, read-write in its sessions, the live ones kept.
    ((context, job),) = moves.jobs
    assert context == SOURCE
    env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["PGOPTIONS"] == "-c default_transaction_read_only=off"
    assert (env["OVER_LIVE"], env["SUFFIX"], env["COMPARE"], env["CLEANUP"]) == ("1", "rollback", "0", "0")
    assert env["REPLACED"].startswith("replaced_") and len(env["REPLACED"]) == len("replaced_20261201100000")
    assert job["spec"]["template"]["spec"]["initContainers"][0]["env"][-1] == {"name": "BACKUP", "value": STAMP}
    # Monaco's objects are the truth: the new and the overwritten copied, the one gone deleted.
    # Düsseldorf's own backup since the cutover is never deleted: it goes to Monaco too, so both compare alike.
    kept = "backups/dev/20261201T021500Z/telemetry.dump"
    assert moves.copies == [
        (TARGET, SOURCE, ["open-data/new.csv", "open-data/readme.txt"], ["open-data/gone.csv"]),
        (SOURCE, TARGET, [kept], []),
    ]
    assert (
        "  objects: 3 on monaco-onprem, 4 on dusseldorf-test: 2 to copy, 1 to delete, 1 backup file(s) of "
        "dusseldorf-test's own to keep"
    ) in lines
    assert kept in fake.clusters[SOURCE].objects[-1] and kept in fake.clusters[TARGET].objects[-1]
    # The verification: both sites through their reader API, the replaced database not read.
    report = json.loads(Path(next(line for line in lines if line.startswith("  report "))[9:]).read_text())
    assert report["phase"] == "rollback" and report["equal"] is True
    assert (SOURCE, REPLACED_DB) not in fake.databases_read and (SOURCE, "telemetry") in fake.databases_read
    assert {pod for pod, _ in target.object_reads} == {"dev-telemetry-ingest-5d8f"}, "no bucket mirror any more"
    # The record on the source, and the write pause from Monaco's fence to Düsseldorf's unfence.
    ((where, config_map),) = fake.applied
    assert where == SOURCE and config_map["metadata"] == {
        "name": "dev-move-rollback", "namespace": NAMESPACE,
        "labels": {"app.kubernetes.io/managed-by": "smartnation-move"},
    }  # fmt: skip
    assert config_map["data"]["verified"] == "true" and config_map["data"]["from"] == TARGET
    assert time.strptime(config_map["data"]["at"], "%Y-%m-%dT%H:%M:%SZ")
    saved = progress(rollback)
    pause = saved["marks"]["write_pause_s"]
    assert pause == 10.0, "the backup's 4 s and the restore's 6 s, from Monaco's fence to Düsseldorf's unfence"
    assert saved["marks"]["fence_lsn"] == FENCE
    (unfenced,) = [line for line in lines if line.startswith("[9/9 unfence-source] finished")]
    assert f"{SOURCE}'s database takes writes again: the write pause was {pause:.1f} s (writes stopped on {TARGET}" in (
        unfenced
    )
    assert (stack.previews, stack.updates) == (1, 1)
    assert audit_lines(rollback) == [(step, result) for step in STEPS for result in ("started", "finished")]
    assert lines[-1].startswith("next: the source serves the environment again with everything the target took")
    # The record is a whole ConfigMap; its time and the replaced databases' stamp are UTC (the zone here is not).
    assert (config_map["apiVersion"], config_map["kind"]) == ("v1", "ConfigMap")
    assert began <= calendar.timegm(time.strptime(config_map["data"]["at"], "%Y-%m-%dT%H:%M:%SZ")) <= ended
    replaced = env["REPLACED"]
    assert began <= calendar.timegm(time.strptime(replaced, "replaced_%Y%m%d%H%M%S")) <= ended
    assert saved["marks"]["rollback_replaced"] == replaced
    # What the steps handed on: the driver's run, the source's side and databases, the Job's name and bounds.
    assert len(moves.runs) == 4 and all(isinstance(r, move_driver.Run) and r.environment == "dev" for r in moves.runs)
    databases = [d.name for d in load_settings("dev", rollback / "environments").database.databases]
    assert moves.dropped == [(SOURCE, NAMESPACE, "dev", "dev", databases, "rollback")]
    assert moves.cronjobs_read == [(SOURCE, NAMESPACE, "dev")]
    assert re.fullmatch(r"dev-database-rollback-restore-[0-9a-f]{6}", job["metadata"]["name"])
    assert job["spec"]["activeDeadlineSeconds"] == 3600 and moves.job_timeouts == [3630]
    assert fake.namespaces == {NAMESPACE}
    # What each step says, the write pause's start in UTC (fenced_at is 14:30:02 UTC, 23:30:02 here:
    # the clock starts at 14:30:00 and the bridge wait takes 2 s).
    assert time.strftime("%H:%M:%S", time.gmtime(saved["marks"]["fenced_at"])) == "14:30:02"
    said = said_by_step(out)
    assert said["fence-target"].endswith(
        f"; the write pause started at 14:30:02 UTC ({SOURCE} stays fenced until unfence-source)"
    )
    assert said["backup-target"] == f"backup {STAMP} of {TARGET}, fenced, dumped in 4 s into its bucket backups"
    assert said["copy-back"] == (
        f"backup {STAMP} copied from {TARGET} into {SOURCE}'s bucket backups under dev/{STAMP}/: 2 files, each "
        f"read back there with the sha256 it had on {TARGET} (0 s)"
    )
    assert said["restore-source"] == (
        f"backup {STAMP} of {TARGET} restored over {SOURCE}'s live databases ({', '.join(databases)}) in 6 s; "
        f"the replaced ones kept as <database>_{replaced}"
    )
    assert said["objects-back"] == (
        f"2 object(s) copied from {TARGET} to {SOURCE} (missing there or another sha256), 1 deleted on {SOURCE} "
        f"(gone from {TARGET}), 1 of {SOURCE}'s own backup files kept and copied to {TARGET}, 1 already equal (0 s)"
    )
    assert said["unfence-source"] == (
        f"{SOURCE}'s database takes writes again: the write pause was 10.0 s (writes stopped on {TARGET} at "
        f"14:30:02 UTC); recorded in ConfigMap dev-move-rollback on {SOURCE}; {TARGET} stays fenced"
    )


def test_the_status_says_the_rollback_stopped_writes_on_the_target_and_resumed_them_on_the_source(
    rollback, stack, moves, monkeypatch, caplog, capsys
):
    fake = sites(moves.events)
    moves.restore_result = restore.JobResult(False, 3.0, "--- restore ---\npg_restore: error", "BackoffLimitExceeded")
    assert run_rollback(monkeypatch, caplog, capsys, moves, fake)[0] == exit_codes.FAILED
    driver, problem = move.driver_progress("dev")
    assert problem is None and driver is not None
    stopped = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(progress(rollback)["marks"]["fenced_at"]))
    assert _driver_line(driver).endswith(
        "steps finished: preview, apply, fence-target, backup-target, copy-back; next: restore-source; writes "
        f"stopped on the target at {stopped} (fence {FENCE})"
    )
    moves.restore_result = restore.JobResult(True, 6.0, "restore: done\n")
    assert run_rollback(monkeypatch, caplog, capsys, moves, fake)[0] == exit_codes.OK
    driver, _ = move.driver_progress("dev")
    assert driver is not None and driver["fenced_site"] == "target"
    assert _driver_line(driver).endswith(f", resumed on the source after {driver['write_pause_s']} s")
    # The cutover's line is unchanged: writes stopped on the source, resumed on the target.
    cutover = {**driver, "phase": "cutover", "fenced_site": "source"}
    assert "writes stopped on the source at" in _driver_line(cutover)
    assert _driver_line(cutover).endswith(f", resumed on the target after {driver['write_pause_s']} s")


def test_a_difference_stops_the_rollback_and_the_source_stays_fenced(
    rollback, stack, moves, monkeypatch, caplog, capsys
):
    fake = sites(moves.events)
    fake.clusters[SOURCE].tables = [fake.clusters[SOURCE].tables[0].replace("rows=300", "rows=299")]
    code, _, errors = run_rollback(monkeypatch, caplog, capsys, moves, fake)
    assert code == exit_codes.FAILED
    assert "differ in" in errors and "[8/9 verify]" in errors
    assert fake.clusters[SOURCE].said == [] and fake.clusters[SOURCE].fenced, "not unfenced"
    assert fake.applied == [], "no record"
    assert audit_lines(rollback)[-1] == ("verify", "failed")
    assert "write_pause_s" not in progress(rollback)["marks"]
    # Run again with the difference still there: verify again, still no unfence.
    assert run_rollback(monkeypatch, caplog, capsys, moves, fake)[0] == exit_codes.FAILED
    assert fake.clusters[SOURCE].said == []


def test_a_source_that_is_not_fenced_is_not_restored_over(rollback, stack, moves, monkeypatch, caplog, capsys):
    fake = sites(moves.events, source_fenced=False)
    code, _, errors = run_rollback(monkeypatch, caplog, capsys, moves, fake)
    assert code == exit_codes.FAILED
    assert (
        f"{SOURCE}'s database is not fenced (default_transaction_read_only is off): its APIs could write while the "
        "restore replaces their databases; nothing was restored"
    ) in errors
    assert moves.jobs == [] and moves.copies == [] and fake.applied == []
    assert audit_lines(rollback)[-1] == ("restore-source", "failed")


def test_a_target_in_recovery_is_not_fenced_and_nothing_is_backed_up(
    rollback, stack, moves, monkeypatch, caplog, capsys
):
    fake = sites(moves.events)
    fake.clusters[TARGET].__class__ = InRecovery
    code, _, errors = run_rollback(monkeypatch, caplog, capsys, moves, fake)
    assert code == exit_codes.FAILED
    assert f"{TARGET}'s database is in recovery: it is not the primary the rollback fences" in errors
    assert moves.events == [f"forget dev-move-rollback on {SOURCE}", "apply", "bridge connected to dev-broker-0",
                            f"fence {TARGET}"]  # fmt: skip
    assert "fenced_at" not in progress(rollback)["marks"], "no writes were seen stopped"


class InRecovery(Database):
    """A site whose database answers the fence's check from recovery (a standby)."""


@pytest.fixture(autouse=True)
def _in_recovery(monkeypatch) -> None:
    fenced = Cutover._fenced

    def answer(site: Database) -> dict[str, Any]:
        said = fenced(site)
        return {**said, "in_recovery": True} if isinstance(site, InRecovery) else said

    monkeypatch.setattr(Cutover, "_fenced", staticmethod(answer))


def test_a_kill_between_steps_resumes_there_and_the_pause_counts_from_the_first_fence(
    rollback, stack, moves, monkeypatch, caplog, capsys
):
    fake = sites(moves.events)
    moves.kill_at_restore = True
    path = rollback / ".smartnation" / "move" / "dev.json"
    left: list[str] = []
    save = driver_tests.move_progress.save

    def saving(progress_now: Any) -> Path:
        written = save(progress_now)
        left.append(written.read_text())
        return written

    monkeypatch.setattr(move_driver.move_progress, "save", saving)
    with pytest.raises(Killed):
        run_rollback(monkeypatch, caplog, capsys, moves, fake)
    # What a kill -9 leaves: the file as of the last finished step (not the failure's save).
    path.write_text(left[-2])
    first = progress(rollback)
    assert sorted(first["finished"]) == sorted(STEPS[:5])
    fenced_at = first["marks"]["fenced_at"]

    move_driver.time.sleep(100)  # a while later, the operator runs it again
    moves.kill_at_restore = False
    # The killed driver's restore Job still runs in the cluster (and one of an earlier kill, a condition
    # listed but not true); old finished ones, complete or failed, and another Job beside them.
    done = {"conditions": [{"type": "Complete", "status": "True"}]}
    failed = {"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}
    not_yet = {"active": 1, "conditions": [{"type": "Complete", "status": "False"}]}
    fake.jobs = [
        {"metadata": {"name": "dev-database-rollback-restore-4fbb9d"}, "status": {"active": 1}},
        {"metadata": {"name": "dev-database-rollback-restore-f9fbd9"}, "status": done},
        {"metadata": {"name": "dev-database-rollback-restore-0f0f0f"}, "status": failed},
        {"metadata": {"name": "dev-database-rollback-restore-c0ffee"}, "status": not_yet},
        {"metadata": {"name": "dev-database-backups-123abc"}, "status": {"active": 1}},
        # On Monaco: a backup Job of the same name's shape, not the source's to stop.
        {"metadata": {"name": "dev-database-rollback-restore-77aa00"}, "status": {"active": 1}, "on": TARGET},
    ]
    events_before = len(moves.events)
    code, out, errors = run_rollback(monkeypatch, caplog, capsys, moves, fake)
    assert code == exit_codes.OK, errors
    assert moves.events[events_before:] == [
        f"stop job dev-database-rollback-restore-4fbb9d on {SOURCE}",  # never two restores at once
        f"stop job dev-database-rollback-restore-c0ffee on {SOURCE}",
        f"drop {SOURCE} *_rollback",  # the killed restore's scratch databases first
        f"restore job on {SOURCE}",
        f"copy objects {TARGET} -> {SOURCE}",
        f"copy objects {SOURCE} -> {TARGET}",
        f"unfence {SOURCE}",
        f"record on {SOURCE}",
    ]
    assert [line for line in out.splitlines() if "not redone" in line][-1].startswith("[5/9 copy-back] finished at")
    assert said_by_step(out)["restore-source"].endswith(
        "(an earlier run's restore Job stopped first: dev-database-rollback-restore-4fbb9d, "
        "dev-database-rollback-restore-c0ffee)"
    )
    stops = [c for c in fake.calls if "job" in c.argv and "delete" in c.argv]
    assert [c.argv[c.argv.index("delete") :] for c in stops] == [
        ["delete", "job", f"dev-database-rollback-restore-{id_}", "--cascade=foreground", "--wait=true"]
        for id_ in ("4fbb9d", "c0ffee")
    ]
    assert [c.timeout for c in stops] == [300, 300], "a foreground delete waits for the Pods, 5 minutes at most"
    saved = progress(rollback)
    assert saved["marks"]["fenced_at"] == fenced_at
    assert saved["marks"]["write_pause_s"] >= 100, "measured from when the writes stopped on the target"
    assert (stack.updates, fake.clusters[TARGET].said.count("fence")) == (1, 1)


def test_the_unfence_needs_the_verification_and_the_fence_in_this_rollback() -> None:
    run = SimpleNamespace(marks={"fenced_at": 1.0}, settings=SimpleNamespace(cluster=SimpleNamespace(name=SOURCE)))
    with pytest.raises(move_rollback.StepFailure) as failed:
        move_rollback.unfence_source(run)
    assert (
        str(failed.value) == f"the verify step has not found both sites equal in this rollback: {SOURCE} stays fenced"
    )
    run.marks = {move_rollback.VERIFIED: "2026-12-01T10:00:00Z"}
    with pytest.raises(move_rollback.StepFailure) as failed:
        move_rollback.unfence_source(run)
    assert str(failed.value) == "no fence of the target recorded in the progress file: the fence-target step runs first"
    # A backup recorded by halves (a hand-edited progress file) is no backup either.
    for marks in ({}, {move_rollback.BACKUP: STAMP}, {move_rollback.BUCKET: "backups"}):
        for step in (move_rollback.copy_back, move_rollback.restore_source):
            with pytest.raises(move_rollback.StepFailure) as failed:
                step(SimpleNamespace(marks=marks, settings=run.settings))
            assert str(failed.value) == (
                "no backup of the target recorded in the progress file: the backup-target step runs first"
            )


def test_a_target_whose_fence_was_reset_is_not_backed_up(monkeypatch) -> None:
    monkeypatch.setattr(move_cutover, "_sql", lambda run, role, sql: {"read_only": False, "in_recovery": False})
    monkeypatch.setattr(move_complete, "run_backup", lambda *a: pytest.fail("backed up an unfenced target"))
    with pytest.raises(move_rollback.StepFailure) as failed:
        move_rollback.backup_target(SimpleNamespace(to=TARGET, marks={}))
    assert str(failed.value) == (
        f"{TARGET}'s database is not fenced (default_transaction_read_only is off): its last state is not still; "
        "the fence-target step fences it (remove the progress file to run every step again)"
    )


def test_unfence_measures_the_pause_to_a_tenth_of_a_second_and_says_its_start_in_utc(monkeypatch, not_utc) -> None:
    unfenced: list[str] = []
    recorded: list[Any] = []
    monkeypatch.setattr(move_cutover, "unfence", lambda run, role: unfenced.append(role))
    monkeypatch.setattr(move_rollback, "record", recorded.append)
    monkeypatch.setattr(move_rollback, "time", SimpleNamespace(time=lambda: 1_790_001_010.34))
    marks = {move_rollback.VERIFIED: "2026-12-01T10:00:00Z", "fenced_at": 1_790_001_000.0}  # 14:30:00 UTC
    run = SimpleNamespace(
        to=TARGET, environment="dev", marks=marks, settings=SimpleNamespace(cluster=SimpleNamespace(name=SOURCE))
    )
    said = move_rollback.unfence_source(run)
    assert (unfenced, recorded, run.marks["write_pause_s"]) == (["source"], [run], 10.3)
    assert said == (
        f"{SOURCE}'s database takes writes again: the write pause was 10.3 s (writes stopped on {TARGET} at "
        f"14:30:00 UTC); recorded in ConfigMap dev-move-rollback on {SOURCE}; {TARGET} stays fenced"
    )


@pytest.mark.parametrize(
    ("source", "target", "copies", "equal"),
    [
        ({"b/k": "size=1 sha256=aa"}, {"b/k": "size=1 sha256=aa", "b/new": "size=2 sha256=bb"},
         [(TARGET, SOURCE, ["b/new"], [])], 1),
        ({"b/k": "size=1 sha256=aa", "b/old": "size=2 sha256=bb"}, {"b/k": "size=1 sha256=aa"},
         [(TARGET, SOURCE, [], ["b/old"])], 1),
        ({"b/k": "size=1 sha256=aa", "backups/dev/x": "size=3 sha256=cc"}, {"b/k": "size=1 sha256=aa"},
         [(SOURCE, TARGET, ["backups/dev/x"], [])], 1),
        ({"b/k": "size=1 sha256=aa"}, {"b/k": "size=1 sha256=aa"}, [], 1),
    ],
    ids=["only-copies", "only-deletes", "only-kept", "alike"],
)  # fmt: skip
def test_objects_back_copies_or_deletes_whatever_alone_is_to_do(monkeypatch, source, target, copies, equal) -> None:
    handed: list[tuple[Any, ...]] = []
    objects = {SOURCE: source, TARGET: target}
    monkeypatch.setattr(compare, "side_of", lambda env, cluster, ns: SimpleNamespace(cluster=cluster, namespace=ns))
    monkeypatch.setattr(compare, "both", lambda left, right: (left(), right()))
    monkeypatch.setattr(
        compare, "read_objects", lambda side: SimpleNamespace(sections={"objects": objects[side.cluster]}, side=side)
    )
    monkeypatch.setattr(move_complete, "copy_objects", lambda run, *given: (handed.append((run, *given)), {})[1])
    settings = SimpleNamespace(
        cluster=SimpleNamespace(name=SOURCE), database=SimpleNamespace(backup=SimpleNamespace(bucket="backups"))
    )
    run = SimpleNamespace(environment="dev", namespace=NAMESPACE, to=TARGET, settings=settings)
    said = move_rollback.objects_back(run)
    assert handed == [(run, *copy) for copy in copies]
    assert f", {equal} already equal (" in said


def test_forget_record_says_whether_there_was_one_and_fails_when_kubectl_does(monkeypatch) -> None:
    given: list[tuple[str, tuple[str, ...]]] = []

    class Site:
        def __init__(self, cluster: str, answer: str | Exception) -> None:
            self.cluster, self.answer = cluster, answer

        def kubectl(self, *args: str, **_: Any) -> str:
            given.append((self.cluster, args))
            if isinstance(self.answer, Exception):
                raise self.answer
            return self.answer

    run = SimpleNamespace(environment="dev", settings=SimpleNamespace(cluster=SimpleNamespace(name=SOURCE)))
    for answer, said in (
        ('configmap "dev-move-rollback" deleted\n', "an earlier rollback's record dev-move-rollback removed"),
        ("", "no earlier record dev-move-rollback"),
    ):
        monkeypatch.setattr(move_complete, "_target", lambda run, cluster, a=answer: Site(cluster, a))
        assert move_rollback.forget_record(run) == said
    assert given[-1] == (SOURCE, ("delete", "configmap", "dev-move-rollback", "--ignore-not-found", "--wait=true"))
    refused = restore_pod.RestoreError("`kubectl delete configmap dev-move-rollback` failed: forbidden")
    monkeypatch.setattr(move_complete, "_target", lambda run, cluster: Site(cluster, refused))
    with pytest.raises(move_rollback.StepFailure) as failed:
        move_rollback.forget_record(run)
    assert str(failed.value) == (
        f"could not remove an earlier rollback's record dev-move-rollback on {SOURCE}: `kubectl delete configmap "
        "dev-move-rollback` failed: forbidden"
    )


def test_an_earlier_job_that_cannot_be_listed_fails_the_step() -> None:
    class Site:
        context = TARGET

        def kubectl(self, *args: str, **_: Any) -> str:
            raise restore_pod.RestoreError("`kubectl get jobs -o json` failed: forbidden")

    with pytest.raises(move_complete.StepFailure) as failed:
        move_rollback.stop_earlier_jobs(Site(), "dev", move_rollback.BACKUP_JOB)  # type: ignore[arg-type]
    assert str(failed.value) == (
        f"could not stop an earlier run's rollback-backup Job on {TARGET}: `kubectl get jobs -o json` failed: forbidden"
    )


def test_a_restore_that_fails_or_cannot_run_says_why_and_the_source_stays_fenced(
    rollback, stack, moves, monkeypatch, caplog, capsys
):
    fake = sites(moves.events)
    logs = "--- restore ---\n" + "".join(f"pg_restore: error at item {n}\n" for n in range(40))
    moves.restore_result = restore.JobResult(False, 3.0, logs, "BackoffLimitExceeded")
    code, _, errors = run_rollback(monkeypatch, caplog, capsys, moves, fake)
    assert code == exit_codes.FAILED
    # The log's last 400 characters, no more: the Job's whole log is in the cluster.
    assert (
        f"restoring {STAMP} over {SOURCE}'s live databases failed (BackoffLimitExceeded): {logs.strip()[-400:]}"
        in errors
    )
    moves.restore_result = restore.JobResult(True, 6.0, "restore: done\n")
    moves.restore_error = "`kubectl create -f -` failed: error: the server is currently unable to handle the request"
    code, _, errors = run_rollback(monkeypatch, caplog, capsys, moves, fake)
    assert code == exit_codes.FAILED
    assert f"restoring {STAMP} over {SOURCE}'s live databases: {moves.restore_error}" in errors
    assert (
        fake.clusters[SOURCE].fenced and fake.applied == [] and "rollback_replaced" not in progress(rollback)["marks"]
    )


@pytest.mark.parametrize(
    ("source", "target", "copy", "delete"),
    [
        ({}, {}, [], []),
        ({"b/k": "size=1 sha256=aa"}, {"b/k": "size=1 sha256=aa"}, [], []),
        ({}, {"b/new": "size=1 sha256=aa"}, ["b/new"], []),
        ({"b/k": "size=1 sha256=aa"}, {"b/k": "size=1 sha256=bb"}, ["b/k"], []),
        ({"b/k": "size=1 sha256=aa"}, {"b/k": "size=2 sha256=aa"}, ["b/k"], []),
        ({"b/old": "size=1 sha256=aa", "c/k": "size=1 sha256=cc"}, {"c/k": "size=1 sha256=cc"}, [], ["b/old"]),
        ({"b/z": "size=1 sha256=aa", "b/x": "size=1"}, {"b/y": "size=1 sha256=aa", "b/x": "size=1 sha256=ff"},
         ["b/x", "b/y"], ["b/z"]),
    ],
)  # fmt: skip
def test_the_objects_plan_makes_the_source_the_target(source, target, copy, delete) -> None:
    assert move_rollback.plan(source, target) == (copy, delete, [])


def test_the_objects_plan_keeps_the_sources_own_backups() -> None:
    source = {"backups/dev/a.dump": "size=1 sha256=aa", "open-data/old": "size=1 sha256=bb",
              "backups/dev/b.dump": "size=1 sha256=cc"}  # fmt: skip
    target = {"backups/dev/b.dump": "size=1 sha256=dd", "backups/dev/c.dump": "size=1 sha256=ee"}
    # Another content of the same backup name: the target's (a restore of the truth); only-source ones kept.
    assert move_rollback.plan(source, target, ("backups",)) == (
        ["backups/dev/b.dump", "backups/dev/c.dump"], ["open-data/old"], ["backups/dev/a.dump"]
    )  # fmt: skip
    assert move_rollback.plan(source, target) == (
        ["backups/dev/b.dump", "backups/dev/c.dump"], ["backups/dev/a.dump", "open-data/old"], []
    )  # fmt: skip


def test_a_record_of_an_earlier_rollback_is_removed_before_the_apply(
    rollback, stack, moves, monkeypatch, caplog, capsys
):
    fake = sites(moves.events)
    code, out, errors = run_rollback(monkeypatch, caplog, capsys, moves, fake)
    assert code == exit_codes.OK, errors
    (forget,) = [c.argv for c in fake.calls if "delete" in c.argv]
    assert forget[forget.index("delete") :] == ["delete", "configmap", "dev-move-rollback", "--ignore-not-found",
                                                "--wait=true"]  # fmt: skip
    assert forget[2] == SOURCE
    assert moves.events.index(f"forget dev-move-rollback on {SOURCE}") < moves.events.index("apply")
    assert "no earlier record dev-move-rollback; applied phase rollback" in out


def test_the_restore_asks_for_read_write_sessions_only_when_told() -> None:
    def env(job: dict[str, Any], which: str) -> dict[str, str]:
        spec = job["spec"]["template"]["spec"]
        container = (spec["containers"] if which == "restore" else spec["initContainers"])[0]
        return {e["name"]: e.get("value") for e in container["env"]}

    normal = restore_pod.restore_job(CRONJOB, "j", STAMP, "restore")
    assert "PGOPTIONS" not in env(normal, "restore"), "a normal restore is refused by a fenced primary"
    fenced = restore_pod.restore_job(CRONJOB, "j", STAMP, "rollback", over_live="replaced_1", read_write=True)
    assert env(fenced, "restore")["PGOPTIONS"] == "-c default_transaction_read_only=off"
    assert "PGOPTIONS" not in env(fenced, "download"), "only the database sessions"
    had = json.loads(json.dumps(CRONJOB))
    dump = had["spec"]["jobTemplate"]["spec"]["template"]["spec"]["initContainers"][0]
    dump["env"] = [{"name": "PGOPTIONS", "value": "-c statement_timeout=0"}]
    kept = restore_pod.restore_job(had, "j", STAMP, "rollback", read_write=True)
    assert env(kept, "restore")["PGOPTIONS"] == "-c statement_timeout=0 -c default_transaction_read_only=off"
    # psql and pg_restore both read PGOPTIONS (libpq): the script connects with no option of its own
    # that would set the default back.
    assert "default_transaction_read_only" not in restore_pod.restore_script()


def test_the_verification_leaves_out_only_replaced_databases() -> None:
    assert restore_pod.REPLACED_NAME.fullmatch(REPLACED_DB)
    assert restore_pod.REPLACED_NAME.fullmatch(time.strftime("telemetry_replaced_%Y%m%d%H%M%S", time.gmtime()))
    for name in ("telemetry", "telemetry_rollback", "telemetry_replaced_1", "device_registry_final"):
        assert not restore_pod.REPLACED_NAME.fullmatch(name)


def test_the_drop_of_scratch_databases_runs_read_write(monkeypatch) -> None:
    said: list[str] = []
    monkeypatch.setattr(compare, "primary", lambda side: ("pod", "c", "pw"))
    monkeypatch.setattr(compare, "_psql", lambda side, pod, container, password, database, sql: said.append(sql))
    move_complete.drop_restored(SimpleNamespace(), "dev", ["telemetry", "device_registry"], "rollback")
    assert said == [
        "SET default_transaction_read_only = off;\n"
        'DROP DATABASE IF EXISTS "telemetry_rollback" WITH (FORCE);\n'
        'DROP DATABASE IF EXISTS "device_registry_rollback" WITH (FORCE);\n'
    ]


FAKE_BOTO3 = """
STORE = {"open-data": {"readme.txt": b"new text", "new.csv": b"a,b"}, "archive": {"x/1.bin": b"one"}}
DELETED = []
class _Body:
    def __init__(self, data): self.data = data
    def read(self): return self.data
class _S3:
    def get_object(self, Bucket, Key): return {"Body": _Body(STORE[Bucket][Key])}
    def put_object(self, Bucket, Key, Body): STORE.setdefault(Bucket, {})[Key] = Body
    def delete_object(self, Bucket, Key): STORE[Bucket].pop(Key, None); DELETED.append(Bucket + "/" + Key)
def client(*a, **k): return _S3()
"""


def _script(tmp_path: Path, script: str, stdin: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "boto3.py").write_text(FAKE_BOTO3)
    (tmp_path / "botocore").mkdir(exist_ok=True)
    (tmp_path / "botocore" / "__init__.py").write_text("")
    (tmp_path / "botocore" / "config.py").write_text("class Config:\n    def __init__(self, **kw): pass\n")
    return subprocess.run([sys.executable, "-c", script], input=stdin, capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": str(tmp_path), "S3_ENDPOINT": "https://minio:9000"})  # fmt: skip


def test_the_in_pod_scripts_copy_named_objects_of_several_buckets_and_delete(tmp_path: Path) -> None:
    names = ["archive/x/1.bin", "open-data/readme.txt"]
    given = {"user": "u", "password": "p", "objects": names}
    read = _script(tmp_path, move_complete.READ_SET_PY, json.dumps(given) + "\n")
    assert read.returncode == 0, read.stderr
    entries = [json.loads(line) for line in read.stdout.splitlines() if line.startswith("{")]
    assert [(e["bucket"], e["key"]) for e in entries] == [("archive", "x/1.bin"), ("open-data", "readme.txt")]
    assert entries[1]["sha256"] == hashlib.sha256(b"new text").hexdigest()
    stdin = (
        json.dumps({**given, "delete": ["open-data/gone.csv"]}) + "\n" + "".join(json.dumps(e) + "\n" for e in entries)
    )
    wrote = _script(tmp_path, move_complete.WRITE_SET_PY, stdin)
    assert wrote.returncode == 0, wrote.stderr
    assert wrote.stdout.splitlines() == [
        f"SNSET|archive/x/1.bin|{hashlib.sha256(b'one').hexdigest()}",
        f"SNSET|open-data/readme.txt|{entries[1]['sha256']}",
        "SNDEL|open-data/gone.csv",
        "SNSET-DONE",
    ]


def test_copy_objects_checks_each_copy_and_each_delete(monkeypatch) -> None:
    class Side:
        def __init__(self, where: str, answer: str) -> None:
            self.where, self.answer, self.given = where, answer, []

        def running_pod(self, selector: str) -> tuple[str, str]:
            return ("dev-telemetry-ingest-0", "telemetry-ingest")

        def kubectl(self, *args: str, input: str = "", timeout: float = 0) -> str:
            self.given.append(input)
            return self.answer

    entry = {"bucket": "open-data", "key": "new.csv", "sha256": "ab", "data": "YSxi"}
    run = SimpleNamespace(environment="dev", namespace=NAMESPACE)
    monkeypatch.setattr(compare, "_root_credentials", lambda side: {"user": "root", "password": "pw"})
    for written, ok in (
        ("SNSET|open-data/new.csv|ab\nSNDEL|open-data/gone.csv\nSNSET-DONE\n", True),
        ("SNSET|open-data/new.csv|ab\nSNSET-DONE\n", False),  # the delete not done
        ("SNSET|open-data/new.csv|ff\nSNDEL|open-data/gone.csv\nSNSET-DONE\n", False),  # another sha256 back
    ):
        target_side, source_side = Side(TARGET, json.dumps(entry) + "\nSNSET-DONE\n"), Side(SOURCE, written)
        monkeypatch.setattr(
            compare, "side_of", lambda env, cluster, ns, t=target_side, s=source_side: t if cluster == TARGET else s
        )
        if ok:
            back = move_complete.copy_objects(run, TARGET, SOURCE, ["open-data/new.csv"], ["open-data/gone.csv"])
            assert back == {"open-data/new.csv": "ab"}
            head = json.loads(source_side.given[0].splitlines()[0])
            assert head["delete"] == ["open-data/gone.csv"] and json.loads(target_side.given[0])["objects"] == [
                "open-data/new.csv"
            ]
        else:
            with pytest.raises(move_complete.StepFailure) as failed:
                move_complete.copy_objects(run, TARGET, SOURCE, ["open-data/new.csv"], ["open-data/gone.csv"])
            assert f"the copy on {SOURCE} is not the objects" in str(failed.value)
    # Only deletes: nothing is read on the target.
    target_side, source_side = Side(TARGET, "unused"), Side(SOURCE, "SNDEL|b/k\nSNSET-DONE\n")
    monkeypatch.setattr(compare, "side_of", lambda env, cluster, ns: target_side if cluster == TARGET else source_side)
    assert move_complete.copy_objects(run, TARGET, SOURCE, [], ["b/k"]) == {}
    assert target_side.given == []


def test_the_unfence_sql_resets_the_fence_and_reloads() -> None:
    assert move_cutover.UNFENCE_SQL == "ALTER SYSTEM RESET default_transaction_read_only;\nSELECT pg_reload_conf();\n"


def test_a_record_that_fails_is_written_again_and_the_pause_stays_the_first_measured(
    rollback, stack, moves, monkeypatch, caplog, capsys
):
    fake = sites(moves.events)
    fake.refuse_record = True
    code, _, errors = run_rollback(monkeypatch, caplog, capsys, moves, fake)
    assert code == exit_codes.FAILED
    assert (
        f"could not record the verified rollback on {SOURCE}: `kubectl apply -f -` failed: error: the server" in errors
    )
    first = progress(rollback)["marks"]["write_pause_s"]
    assert first == 10.0 and not fake.clusters[SOURCE].fenced, "unfenced, the pause kept for the run again"
    move_driver.time.sleep(50)
    fake.refuse_record = False
    assert run_rollback(monkeypatch, caplog, capsys, moves, fake)[0] == exit_codes.OK
    assert progress(rollback)["marks"]["write_pause_s"] == first
    assert fake.clusters[SOURCE].said == ["unfence", "unfence"] and len(fake.applied) == 1


def test_a_backup_job_a_killed_run_left_on_the_target_is_stopped_before_the_next(
    rollback, stack, moves, monkeypatch, caplog, capsys
):
    fake = sites(moves.events)
    fake.jobs = [
        {"metadata": {"name": "dev-database-rollback-backup-1a2b3c"}, "status": {"active": 1}, "on": TARGET},
        {"metadata": {"name": "dev-database-rollback-backup-9f8e7d"}, "status": {"active": 1}},  # Düsseldorf's
    ]
    code, _, errors = run_rollback(monkeypatch, caplog, capsys, moves, fake)
    assert code == exit_codes.OK, errors
    stop = moves.events.index(f"stop job dev-database-rollback-backup-1a2b3c on {TARGET}")
    assert stop == moves.events.index(f"backup {TARGET} (rollback-backup)") - 1
    assert not [e for e in moves.events if e.startswith("stop job") and e.endswith(SOURCE)]


def test_the_target_is_fenced_only_once_the_turned_bridge_is_connected_to_its_broker_pods(
    rollback, stack, moves, monkeypatch, caplog, capsys
):
    fake = sites(moves.events)
    fake.bridge_connects_after = 3  # its log shows the connection on the fourth read
    code, out, errors = run_rollback(monkeypatch, caplog, capsys, moves, fake)
    assert code == exit_codes.OK, errors
    assert moves.events.index("bridge connected to dev-broker-0") == moves.events.index(f"fence {TARGET}") - 1
    # The broker pod's log since the bridge's container started, read until the connection shows, a minute
    # at most each.
    assert fake.log_reads == [(TARGET, "dev-broker-0", "2026-12-01T09:59:58Z")] * 4
    assert fake.log_timeouts == [60] * 4
    assert f"the turned bridge is connected to 1 broker pod(s) on {TARGET}; writes stopped on {TARGET}" in out


def test_a_bridge_that_does_not_connect_stops_the_rollback_before_the_fence(
    rollback, stack, moves, monkeypatch, caplog, capsys
):
    fake = sites(moves.events)
    fake.bridge_connects_after = 10_000
    code, _, errors = run_rollback(monkeypatch, caplog, capsys, moves, fake)
    assert code == exit_codes.FAILED
    assert f"the turned broker bridge has not connected to dev-broker-0 on {TARGET} within 180 s" in errors
    assert "nothing was fenced" in errors and f"fence {TARGET}" not in moves.events
    assert not fake.clusters[TARGET].fenced
    # Read every 2 s until more than 180 s have passed: at 0, 2, ..., 180 and 182 s.
    assert len(fake.log_reads) == 92


def test_a_broker_log_that_cannot_be_read_for_a_while_is_read_again(
    rollback, stack, moves, monkeypatch, caplog, capsys
):
    fake = sites(moves.events)
    fake.log_fails_first = fake.bridge_connects_after = 2
    code, _, errors = run_rollback(monkeypatch, caplog, capsys, moves, fake)
    assert code == exit_codes.OK, errors
    assert len(fake.log_reads) == 3 and fake.clusters[TARGET].fenced


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        ((1, "", "error: You must be logged in to the server (Unauthorized)"),
         "`kubectl get pods -l app.kubernetes.io/instance=dev-broker,app.kubernetes.io/component=bridge -o json` "
         "failed: error: You must be logged in to the server (Unauthorized)"),
        ((0, "No resources found\n", ""), "Expecting value: line 1 column 1 (char 0)"),
    ],
    ids=["kubectl-fails", "not-json"],
)  # fmt: skip
def test_a_bridge_pod_that_cannot_be_read_stops_the_rollback_before_the_fence(
    rollback, stack, moves, monkeypatch, caplog, capsys, answer, said
):
    fake = sites(moves.events)
    fake.bridge_listing = answer
    code, _, errors = run_rollback(monkeypatch, caplog, capsys, moves, fake)
    assert code == exit_codes.FAILED
    assert f"could not read the broker bridge's Pod on {TARGET}: {said}" in errors
    assert f"fence {TARGET}" not in moves.events and fake.log_reads == []


def test_a_bridge_whose_mosquitto_is_not_running_stops_the_rollback_before_the_fence(
    rollback, stack, moves, monkeypatch, caplog, capsys
):
    fake = sites(moves.events)
    fake.bridge_state = {"waiting": {"reason": "CrashLoopBackOff"}}
    code, _, errors = run_rollback(monkeypatch, caplog, capsys, moves, fake)
    assert code == exit_codes.FAILED
    assert f"the broker bridge on {TARGET} has 0 running Pod(s), expected one" in errors
    assert f"fence {TARGET}" not in moves.events and fake.log_reads == []


def test_the_bridge_wait_reads_each_broker_pod_until_connected_and_names_those_it_is_not(monkeypatch) -> None:
    reads: list[str] = []
    running = {"name": "mosquitto", "state": {"running": {"startedAt": "2026-12-01T09:59:58Z"}}}

    class Site:
        def kubectl(self, *args: str, **_: Any) -> str:
            if args[:2] == ("get", "pods"):
                return json.dumps({"items": [{"status": {"containerStatuses": [running]}}]})
            reads.append(args[1])
            return "New client connected from 10.1.2.3:40000 as dev-move-bridge-arrived-1 (p2" * (
                args[1] == "dev-broker-1"
            )

    monkeypatch.setattr(move_complete, "_target", lambda run, cluster: Site())
    run = SimpleNamespace(
        environment="dev", to=TARGET, namespace=NAMESPACE, settings=SimpleNamespace(broker=SimpleNamespace(replicas=3))
    )
    with pytest.raises(move_rollback.StepFailure) as failed:
        move_rollback.bridge_connected(run, driver_tests.Clock())
    assert str(failed.value) == (
        f"the turned broker bridge has not connected to dev-broker-0, dev-broker-2 on {TARGET} within 180 s (its "
        f"log: `kubectl -n {NAMESPACE} logs deploy/dev-broker-bridge`); nothing was fenced"
    )
    assert reads.count("dev-broker-1") == 1, "a pod the bridge is connected to is not read again"


@pytest.mark.parametrize("pods", [0, 2])
def test_no_single_bridge_pod_stops_the_rollback_before_the_fence(
    rollback, stack, moves, monkeypatch, caplog, capsys, pods
):
    fake = sites(moves.events)
    fake.bridge_pods = pods
    code, _, errors = run_rollback(monkeypatch, caplog, capsys, moves, fake)
    assert code == exit_codes.FAILED
    assert f"the broker bridge on {TARGET} has {pods} running Pod(s), expected one" in errors
    assert f"fence {TARGET}" not in moves.events
