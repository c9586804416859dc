"""`smartnation move ENV --to CLUSTER`: the operator's driver of the phase the environment file declares.

The environment file stays the reviewed declaration (`move: {to: CLUSTER, phase: PHASE}`); the
driver never edits it. It runs the declared phase's steps (PHASE_STEPS) in order, each one
written to the audit log (started, then finished or failed) and, once finished, to a small
progress file (move_progress.py), so that a re-run after a crash resumes after the last finished
step when the declared move and the stack are as they were.

The steps of ``replicate`` (the only phase the program runs today):

1. ``preview``: the update, previewed with diff and the policy pack, shown as it comes;
2. ``apply``: `smartnation up ENV` itself (up.cmd_up: its recovery checks, its confirmation,
   skipped by --yes, its exit codes);
3. ``wait``: until the target's standby streams and the source's walsender to it (from the
   stack's `move.replication_sources`) shows 0 bytes of lag, read as `move --status` reads
   (the same reader), then until the target's buckets list the source's objects (names and
   sizes: the bucket mirror caught up), with a progress line a poll; bounded by --timeout
   (exit 9, TIMED_OUT);
4. ``verify``: compare's database reading (tables, chunks, devices) and object reading (each
   object's sha256, each bucket's count; on the target through the bucket mirror's reader) of
   both namespaces, a JSON report with each side's fingerprints, exit 1 on any difference. The
   source takes writes: an item it changed while read (read again after both) is live, reported
   and left to the cutover's exact comparison at its fence; any other difference is compared
   again, up to VERIFY_ROUNDS rounds (the target may only be behind), and counts in the last.

The cutover's steps are in cli/move_cutover.py, the complete phase's in cli/move_complete.py, the
rollback's (back from the cutover) in cli/move_rollback.py; PHASE_STEPS lists each phase's.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import logging
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from pulumi import automation as auto

from smartnation.cli import (
    compare,
    exit_codes,
    move_complete,
    move_cutover,
    move_objects,
    move_progress,
    move_rollback,
    restore_pod,
    up,
    workspace,
)
from smartnation.cli.audit_log import FAILED, REFUSED, AuditEntry, append_audit, operator, utc_now
from smartnation.cli.compare import both
from smartnation.cli.compare_data import Difference, Snapshot, differences, dump, report
from smartnation.cli.console import stream_to
from smartnation.cli.move_progress import Progress, TornProgress
from smartnation.cli.move_status import MoveStatus
from smartnation.cli.policy import mandatory_rules, policy_args
from smartnation.cli.restore import project_name
from smartnation.paths import environments_dir, project_dir
from smartnation.program import naming
from smartnation.program.components import object_mirror
from smartnation.settings import SettingsError, load_cluster_profile, load_settings
from smartnation.settings.models import ClusterProfile, Settings

log = logging.getLogger("smartnation")

STARTED, FINISHED = "started", "finished"
"""Audit results of a step, besides audit_log's FAILED (and REFUSED for a run refused before any step)."""
OPERATION = "move"


def next_step(environment: str, file: str) -> dict[str, str]:
    """What the operator does once a phase's steps are done (a phase change is a reviewed file change)."""
    return {
        "replicate": f"declare `phase: cutover` in {file}, open a pull request, and once merged run this "
        "again: it stops the writes here, waits for the target to replay them, verifies, promotes the target "
        "and applies",
        "cutover": f"the target serves the environment (`smartnation move {environment} --status`); once it "
        f"has run well, declare `phase: complete` in {file} in a pull request and run this again: a final "
        "backup of the source kept and proven on the target, then the source's resources removed",
        "complete": f"set `cluster: <the target>` and remove `move:` in {file} (a pull request whose preview "
        f"shows no change), then move the state (`smartnation state move {environment}`, docs/move.md section "
        "5) and record `move_complete: true`",
        "rollback": f"the source serves the environment again with everything the target took; remove `move:` "
        f"in {file} (keeping `cluster:`) in a pull request: its update deletes the target's side, which the "
        f"program allows now that ConfigMap {environment}-{move_rollback.ROLLBACK_RECORD} records the verified "
        "rollback on the source",
    }


@dataclass
class Run:
    """One run of the driver: what every step reads."""

    args: argparse.Namespace
    settings: Settings
    namespace: str
    read_status: Callable[[], MoveStatus]
    """`move --status`'s reader of both clusters (cli/move.py)."""
    stack: auto.Stack
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    kubectl_env: Mapping[str, str] = field(default_factory=dict)
    """kubectl on PATH and the clusters' kubeconfig (cli/move.py's kubectl_env)."""
    marks: dict[str, Any] = field(default_factory=dict)
    """What a step leaves for a later one, kept in the progress file (move_progress.Progress.marks)."""

    @property
    def environment(self) -> str:
        return self.settings.environment

    @property
    def to(self) -> str:
        assert self.settings.move is not None
        return self.settings.move.to

    @property
    def phase(self) -> str:
        assert self.settings.move is not None
        return self.settings.move.phase

    @property
    def target_profile(self) -> ClusterProfile:
        return load_cluster_profile(self.to, environments_dir())


class StepFailed(Exception):
    """A step ended without doing its job; ``code`` is the exit code, the message says why."""

    def __init__(self, message: str, code: int = exit_codes.FAILED) -> None:
        super().__init__(message)
        self.code = code


def preview(run: Run) -> str:
    shown = stream_to(sys.stdout)
    said: list[str] = []

    def show(line: str) -> None:
        shown(line)
        said.append(line)

    with policy_args(run.settings) as policy:
        try:
            result = run.stack.preview(diff=True, color="never", on_output=show, **policy)
        except auto.CommandError:
            # The engine's error says only "preview failed"; the violations were in its output.
            rules = mandatory_rules("\n".join(said))
            if rules:
                raise StepFailed(
                    f"a mandatory policy failed in the preview ({', '.join(rules)}; the violations are above)",
                    exit_codes.POLICY_VIOLATION,
                ) from None
            raise
    changes = {getattr(op, "value", op): count for op, count in (result.change_summary or {}).items()}
    return f"previewed: {json.dumps(changes, sort_keys=True)}"


def apply(run: Run) -> str:
    # `smartnation up ENV` itself, not a copy: its checks for an interrupted update, its
    # confirmation (--yes), its policy pack and its exit codes.
    code = up.cmd_up(
        argparse.Namespace(environment=run.environment, yes=run.args.yes, init_secrets=False, recover=False)
    )
    if code != exit_codes.OK:
        raise StepFailed(f"`smartnation up {run.environment}` exited {code}", code)
    return f"applied phase {run.phase} (`smartnation up {run.environment}`)"


def rollback_apply(run: Run) -> str:
    """The rollback's apply, once an earlier rollback's record is gone from the source (its update
    is what lets an operator remove `move:` next, which deletes the target)."""
    forgot = _cutover_step(move_rollback.forget_record)(run)
    return f"{forgot}; {apply(run)}"


def replication_sources(stack: auto.Stack) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Where the target's standby connects from, as the stack's `move` output records it."""
    output = stack.outputs().get("move")
    sources = output.value.get("replication_sources") if output is not None and isinstance(output.value, dict) else None
    if not sources:
        raise StepFailed("the stack's `move` output has no replication_sources: was the replicate phase applied?")
    return [ipaddress.ip_network(source, strict=False) for source in sources]


@dataclass(frozen=True)
class Sample:
    """One poll of the lag: the walsender to the target (None if none streams yet) and the standby."""

    at: float
    lag_bytes: float | None
    seconds_since_replay: float | None
    caught_up: bool
    problems: tuple[str, ...] = ()
    state: str = "no walsender to the target"


def sample(status: MoveStatus, sources: list[Any], at: float) -> Sample:
    target = status.target
    since = target.database["seconds_since_last_replay"] if target is not None else None
    rows = [
        row
        for row in status.source.database["replication"] or []
        if row.get("client_address") and any(ipaddress.ip_address(row["client_address"]) in net for net in sources)
    ]
    streaming = [row for row in rows if row.get("state") == "streaming"]
    row = (streaming or rows or [None])[0]
    lag = row.get("lag_bytes") if row else None
    standby_streams = (
        target is not None
        and target.database["in_recovery"] is True
        and (target.database["receiver_status"] == "streaming")
    )
    caught_up = not status.problems and bool(streaming) and standby_streams and lag == 0
    state = f"walsender {row['state']}" if row else "no walsender to the target"
    if target is not None and target.database["receiver_status"] is not None:
        state += f", standby receiver {target.database['receiver_status']}"
    return Sample(at, lag, since, caught_up, tuple(status.problems), state)


def progress_line(now: Sample, before: Sample | None, elapsed: float, timeout: float) -> str:
    lag = "unknown" if now.lag_bytes is None else f"{now.lag_bytes:.0f} bytes"
    since = (
        "no replayed transaction yet"
        if now.seconds_since_replay is None
        else (f"last replay {now.seconds_since_replay:.1f} s ago")
    )
    left = "time left unknown"
    if before is not None and before.lag_bytes is not None and now.lag_bytes is not None and now.at > before.at:
        rate = (before.lag_bytes - now.lag_bytes) / (now.at - before.at)
        if rate > 0:
            left = f"about {now.lag_bytes / rate:.0f} s left at {rate:.0f} bytes/s"
        else:
            left = "time left unknown (the lag is not shrinking)"
    line = f"  lag {lag}, {since}, {left}; {now.state} ({elapsed:.0f} of {timeout:.0f} s)"
    if now.problems:
        line += "; not read: " + "; ".join(now.problems)
    return line


def wait(run: Run) -> str:
    sources = replication_sources(run.stack)
    timeout, interval = run.args.timeout, run.args.interval
    began = time.monotonic()
    before: Sample | None = None
    while True:
        now = sample(run.read_status(), sources, time.monotonic())
        elapsed = now.at - began
        print(progress_line(now, before, elapsed, timeout), flush=True)
        if now.caught_up:
            streamed = f"{run.to} streams with lag 0 bytes after {elapsed:.0f} s"
            return f"{streamed}; {wait_for_mirror(run, began)}"
        if elapsed + interval > timeout:
            raise StepFailed(
                f"{run.to} did not catch up within --timeout {timeout:g} s (last: lag "
                f"{'unknown' if now.lag_bytes is None else f'{now.lag_bytes:.0f} bytes'}, {now.state}); "
                f"run `smartnation move {run.environment} --to {run.to}` again to keep waiting (the finished "
                "steps are not redone)",
                exit_codes.TIMED_OUT,
            )
        before = now if now.lag_bytes is not None else before
        time.sleep(interval)


def _object_sides(run: Run) -> tuple[compare.Side, compare.Side, tuple[str, str] | None]:
    """Both sides and the target's object reader: its bucket mirror's until the cutover removed
    it, then (a rollback) its reader API's, as on the source (None)."""
    source = compare.side_of(run.environment, run.settings.cluster.name, run.namespace)
    target = compare.side_of(run.environment, run.to, run.namespace)
    return source, target, None if run.phase == "rollback" else compare.mirror_reader(run.environment)


def wait_for_mirror(run: Run, began: float) -> str:
    """Until the target's buckets list the same objects (names and sizes) as the source's: the
    bucket mirror has copied, overwritten and removed what it had to. One line a poll; bounded
    by the same --timeout as the lag."""
    timeout, interval = run.args.timeout, run.args.interval
    while True:
        caught_up = False
        try:
            source, target, reader = _object_sides(run)
            left, right = both(
                partial(compare.read_objects, source, listing_only=True),
                partial(compare.read_objects, target, reader, listing_only=True),
            )
            found = differences(left, right, compare.OBJECT_SECTIONS)
            caught_up = not found
            state = (
                f"objects: source {len(left.sections['objects'])}, target {len(right.sections['objects'])}, "
                f"{sum(1 for d in found if d.section == 'objects')} to copy or remove"
            )
        except compare.CompareError as error:
            state = f"objects not read: {error}"
        elapsed = time.monotonic() - began
        print(f"  {state} ({elapsed:.0f} of {timeout:.0f} s)", flush=True)
        if caught_up:
            return f"the bucket mirror holds the source's {len(left.sections['objects'])} objects after {elapsed:.0f} s"
        if elapsed + interval > timeout:
            raise StepFailed(
                f"the bucket mirror on {run.to} did not catch up within --timeout {timeout:g} s (last: {state}); "
                f"its log: `kubectl --context {run.to} -n {run.namespace} logs deployment/"
                f"{run.environment}-{naming.OBJECT_STORAGE}-{object_mirror.MIRROR} -c {object_mirror.MIRROR}`; "
                f"run `smartnation move {run.environment} --to {run.to}` again to keep waiting",
                exit_codes.TIMED_OUT,
            )
        time.sleep(interval)


VERIFIED_SECTIONS = (*compare.DATABASE_SECTIONS, *compare.OBJECT_SECTIONS, *compare.RETAINED_SECTIONS)
"""What a move carries and verify compares: the database, the objects, the retained messages."""
RETAINED_READS = 3
"""Reads of both brokers' retained messages before a difference counts: devices keep publishing
on the old site (a retained reading replaces the last), and the bridge carries each to the new
site in well under a second, so a reading can fall between the two sides' reads; the same
difference three reads in a row, a second apart, is one the bridge did not carry."""
RETAINED_SETTLE_S = 2.0
"""Seconds a reader waits for the retained messages after subscribing (each arrives at once)."""


def read_retained_alike(run: Run, source: compare.Side, target: compare.Side) -> tuple[Snapshot, Snapshot, int]:
    """Both brokers' retained messages, read at once, up to RETAINED_READS times while they differ;
    the last reads and how many it took."""
    for attempt in range(1, RETAINED_READS + 1):
        left, right = both(
            partial(compare.read_retained, source, run.settings, RETAINED_SETTLE_S),
            partial(compare.read_retained, target, run.settings, RETAINED_SETTLE_S),
        )
        if attempt == RETAINED_READS or not differences(left, right, compare.RETAINED_SECTIONS):
            return left, right, attempt
        time.sleep(1)
    raise AssertionError("unreachable")


VERIFY_ROUNDS = 3
"""Comparisons in the replicate phase before a difference counts: the source takes writes while
it is read, and its standby replays them a moment later, so a difference the source did not make
while it was read may only be the target behind; compared again, VERIFY_ROUND_WAIT_S apart, it is
one only if it is still there in the last round."""
VERIFY_ROUND_WAIT_S = 2.0
"""Seconds between two rounds of the replicate phase's comparison."""
LIVE_SHOWN = 20
"""Live items printed (all of them are in the report)."""


@dataclass(frozen=True)
class LiveItem:
    """A difference whose source changed between two reads of it: written while it was read."""

    section: str
    key: str
    source: tuple[str | None, str | None]
    """The source's fingerprint in the first read and in the second (None: not there)."""
    target: str | None

    def describe(self) -> str:
        return f"{self.section} {self.key}: changed on the source while it was read; compared at the cutover's fence"


def live_differences(
    first: Snapshot, second: Snapshot, target: Snapshot, sections: tuple[str, ...]
) -> tuple[list[LiveItem], list[Difference]]:
    """The differences of ``first`` (the source) and ``target``, split: live, where the source's
    fingerprint in ``second`` (read again after both) is not the one in ``first``; real, the rest."""
    live, real = [], []
    for difference in differences(first, target, sections):
        again = second.sections[difference.section].get(difference.key)
        if again != difference.source:
            live.append(LiveItem(difference.section, difference.key, (difference.source, again), difference.target))
        else:
            real.append(difference)
    return live, real


def _read_sides(run: Run, source: compare.Side, target: compare.Side, reader: Any) -> tuple[Snapshot, Snapshot]:
    """Both sides' database, objects and retained messages, each side's in one snapshot."""
    # The brokers beside the databases, not after them (in the cutover this is write pause).
    with ThreadPoolExecutor(1) as pool:
        retained = pool.submit(read_retained_alike, run, source, target)
        # Both sides at once: each is its own cluster's kubectl and psql. A rollback's restore
        # keeps the source's replaced databases beside the restored ones: not the move's data.
        kept = restore_pod.REPLACED_NAME if run.phase == "rollback" else None
        left, right = both(lambda: compare.read_database(source, run.settings, kept),
                           lambda: compare.read_database(target, run.settings, kept))  # fmt: skip
        retained_left, retained_right, reads = retained.result()
    if run.phase == "cutover":
        # In the write pause: only what changed since the hash-objects step is hashed again.
        objects_left, objects_right, hashed = move_objects.read_at_fence(run, source, target, reader)
        print(f"  objects: {hashed}", flush=True)
    else:
        objects_left, objects_right = both(
            lambda: compare.read_objects(source), lambda: compare.read_objects(target, reader)
        )
    for snapshot, objects, brokers in ((left, objects_left, retained_left), (right, objects_right, retained_right)):
        for section in compare.OBJECT_SECTIONS:
            snapshot.sections[section] = objects.sections[section]
        snapshot.sections["retained"] = brokers.sections["retained"]
    print(f"  retained: read {reads} time(s)", flush=True)
    return left, right


def _read_source_again(run: Run, source: compare.Side, first: Snapshot, found: list[Difference]) -> Snapshot:
    """The source read again where it differs: its database when a database section differs, its
    objects when an object section does; every other section as in ``first`` (the retained
    messages were read again while they differed: read_retained_alike)."""
    second = Snapshot(first.where, {section: dict(items) for section, items in first.sections.items()})
    differing = {difference.section for difference in found}
    again = []
    if differing & set(compare.DATABASE_SECTIONS):
        again.append((compare.DATABASE_SECTIONS, compare.read_database(source, run.settings, None)))
    if differing & set(compare.OBJECT_SECTIONS):
        again.append((compare.OBJECT_SECTIONS, compare.read_objects(source)))
    for sections, snapshot in again:
        for section in sections:
            second.sections[section] = snapshot.sections[section]
    return second


def _compared(run: Run) -> tuple[compare.Side, compare.Side, Snapshot, Snapshot, list[LiveItem], list[Difference]]:
    """Both sides read and compared. In the replicate phase, whose source takes writes, a
    difference is live when the source changed it while read (read again after both), and the
    comparison is made again, up to VERIFY_ROUNDS times, while a difference is not live but may be
    the target behind (the retained messages were read again already); the last round counts."""
    source, target, reader = _object_sides(run)
    rounds = VERIFY_ROUNDS if run.phase == "replicate" else 1
    for round_ in range(1, rounds + 1):
        left, right = _read_sides(run, source, target, reader)
        live: list[LiveItem] = []
        found = differences(left, right, VERIFIED_SECTIONS)
        if found and run.phase == "replicate":
            live, found = live_differences(left, _read_source_again(run, source, left, found), right, VERIFIED_SECTIONS)
        behind = [d for d in found if d.section not in compare.RETAINED_SECTIONS]
        if not behind or round_ == rounds:
            return source, target, left, right, live, found
        print(f"  round {round_} of {rounds}: {len(behind)} item(s) differ and did not change on the source; "
              f"compared again in {VERIFY_ROUND_WAIT_S:g} s", flush=True)  # fmt: skip
        time.sleep(VERIFY_ROUND_WAIT_S)
    raise AssertionError("unreachable")


def _show(left: Snapshot, right: Snapshot, live: list[LiveItem], found: list[Difference], path: Path) -> None:
    """One line a section, each difference (at most 50), each live item (at most LIVE_SHOWN)."""
    for section in VERIFIED_SECTIONS:
        count = sum(1 for d in found if d.section == section)
        changing = sum(1 for item in live if item.section == section)
        said = "equal" if not count else f"{count} DIFFERENT"
        print(f"  {section:8} source {len(left.sections[section]):5}  target {len(right.sections[section]):5}  "
              f"{said}{f', {changing} live' if changing else ''}")  # fmt: skip
    for difference in found[:50]:
        print(f"  {difference.describe()}")
    for item in live[:LIVE_SHOWN]:
        print(f"  live     {item.describe()}")
    if live:
        more = f" ({len(live) - LIVE_SHOWN} more in the report)" if len(live) > LIVE_SHOWN else ""
        print(f"  live: {len(live)} item(s) written on the source while it was read, not compared here{more}")
    print(f"  report {path}", flush=True)


def verify(run: Run) -> str:
    began = time.monotonic()
    try:
        source, target, left, right, live, found = _compared(run)
    except compare.CompareError as error:
        raise StepFailed(f"verification could not read a side: {error}") from None
    took = time.monotonic() - began
    path = Path(run.args.report) if run.args.report else default_report(run)
    content = {
        **report(left, right, found),
        "environment": run.environment,
        "phase": run.phase,
        "sections": list(VERIFIED_SECTIONS),
        "fingerprints": {
            "source": {s: left.sections[s] for s in VERIFIED_SECTIONS},
            "target": {s: right.sections[s] for s in VERIFIED_SECTIONS},
        },
        "seconds": round(took, 1),
    }
    if run.phase == "replicate":
        content["live"] = [
            {"section": i.section, "key": i.key, "source": list(i.source), "target": i.target, "what": i.describe()}
            for i in live
        ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dump(content))
    _show(left, right, live, found, path)
    if found:
        raise StepFailed(f"{source.where} and {target.where} differ in {len(found)} item(s); report {path}")
    sections = ", ".join(VERIFIED_SECTIONS)
    note = f", but for {len(live)} live item(s) the cutover compares at its fence" if live else ""
    return f"{source.where} and {target.where} hold the same data ({sections}) in {took:.0f} s{note}; report {path}"


def default_report(run: Run) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return project_dir() / move_progress.STATE_DIR / f"{run.environment}-{run.phase}-verify-{stamp}.json"


def _cutover_step(action: Callable[[Run], str]) -> Callable[[Run], str]:
    """A step of cli/move_cutover.py or cli/move_complete.py, its failures the driver's."""

    def step(run: Run) -> str:
        try:
            return action(run)
        except move_cutover.StepFailure as failure:
            raise StepFailed(str(failure), exit_codes.TIMED_OUT if failure.timed_out else exit_codes.FAILED) from None
        except (move_complete.StepFailure, move_rollback.StepFailure) as failure:
            raise StepFailed(str(failure)) from None
        except restore_pod.RestoreError as error:
            raise StepFailed(str(error)) from None
        except compare.CompareError as error:
            raise StepFailed(f"a site could not be read: {error}") from None

    return step


def hash_objects(run: Run) -> str:
    """Every object of both sides hashed before the fence, so the pause hashes only what changes."""
    try:
        return move_objects.hash_objects(run, *_object_sides(run))
    except compare.CompareError as error:
        raise StepFailed(f"the objects could not be read: {error}") from None


def catch_up(run: Run) -> str:
    """The target's standby up to the fence, then its buckets (the mirror's passes after the fence)."""
    replayed = _cutover_step(move_cutover.catch_up)(run)
    return f"{replayed}; {wait_for_mirror(run, time.monotonic())}"


def verify_rollback(run: Run) -> str:
    """The verification, its success marked for the rollback's unfence (which needs it)."""
    said = verify(run)
    run.marks[move_rollback.VERIFIED] = utc_now()
    return said


Step = tuple[str, Callable[[Run], str]]
PHASE_STEPS: Mapping[str, tuple[Step, ...]] = {
    "replicate": (("preview", preview), ("apply", apply), ("wait", wait), ("verify", verify)),
    # Writes stop on the source at the fence and resume on the target at its promotion: the
    # steps in between (catch-up, verify) are the write pause; the apply (the endpoints, the
    # mirror removed) comes after, while the target already takes writes.
    "cutover": (
        ("preview", preview),
        ("hash-objects", hash_objects),
        ("fence", _cutover_step(move_cutover.fence)),
        ("catch-up", catch_up),
        ("verify", verify),
        ("promote", _cutover_step(move_cutover.promote)),
        ("apply", apply),
    ),
    # The source's resources go only after its last state is kept, and proven, on the target.
    "complete": (
        ("preview", preview),
        ("final-backup", _cutover_step(move_complete.final_backup)),
        ("verify-backup", _cutover_step(move_complete.verify_backup)),
        ("unprotect", _cutover_step(move_complete.unprotect)),
        ("apply", apply),
    ),
    # The apply first: the devices are sent back and the bridge carries to the source what they
    # still publish on the target (held there, unacknowledged, while the source is fenced). Writes
    # stop on the target at its fence and resume on the source at its unfence: the steps in
    # between are the write pause, and the source takes writes only once verified equal.
    "rollback": (
        ("preview", preview),
        ("apply", rollback_apply),
        ("fence-target", _cutover_step(move_rollback.fence_target)),
        ("backup-target", _cutover_step(move_rollback.backup_target)),
        ("copy-back", _cutover_step(move_rollback.copy_back)),
        ("restore-source", _cutover_step(move_rollback.restore_source)),
        ("objects-back", _cutover_step(move_rollback.objects_back)),
        ("verify", verify_rollback),
        ("unfence-source", _cutover_step(move_rollback.unfence_source)),
    ),
}
"""The steps of each phase, in order."""


def stack_update(stack: auto.Stack) -> int | None:
    """How many entries the stack's history holds: what "the same stack state" means for a resume.
    Not the last entry's ``version``: a self-managed backend (file://, s3://) records 0 for every
    update, so an update in between would go unnoticed."""
    history = stack.history(show_secrets=False)
    return len(history) if history else None


def audit(run_or_settings: Run | Settings, to: str, result: str, reason: str, step: str | None, run_id: str) -> None:
    settings = run_or_settings.settings if isinstance(run_or_settings, Run) else run_or_settings
    phase = settings.move.phase if settings.move else None
    entry = AuditEntry(
        when=utc_now(),
        who=operator(project_dir()),
        source=f"{settings.environment} on {settings.cluster.name}",
        target=f"{settings.environment} on {to}",
        result=result,
        reason=reason,
        extra={"operation": OPERATION, "phase": phase, "step": step, "run": run_id},
    )
    append_audit(environments_dir(), entry)


def declared(environment: str, to: str) -> Settings:
    """The settings, when the file declares a move to ``to``; else SettingsError."""
    settings = load_settings(environment, environments_dir())
    if settings.move is None:
        raise SettingsError(
            settings.source,
            "move",
            f"no move declared; the environment file is the reviewed declaration: add `move: {{to: {to}, "
            f"phase: replicate}}` to {settings.source} (keeping `cluster: {settings.cluster.name}`), have it "
            "reviewed, then run this again (docs/move.md)",
        )
    if settings.move.to != to:
        raise SettingsError(
            settings.source,
            "move.to",
            f"--to {to} is not the declared move ({settings.move.to}); the file is the declaration: pass "
            f"--to {settings.move.to}, or change `move.to` in a reviewed change",
        )
    return settings


def drive(
    args: argparse.Namespace, read_status: Callable[[], MoveStatus], kubectl_env: Mapping[str, str] | None = None
) -> int:
    run_id = uuid.uuid4().hex[:12]
    try:
        settings = declared(args.environment, args.to)
    except SettingsError as error:
        # An unknown or malformed environment: nothing to attribute the line to.
        with contextlib.suppress(SettingsError):
            audit(load_settings(args.environment, environments_dir()), args.to, REFUSED, str(error), None, run_id)
        raise
    namespace = args.namespace or f"{project_name()}-{settings.environment}"
    stack, _ = workspace.select(settings.environment, create=False)
    run = Run(args, settings, namespace, read_status, stack, run_id, dict(kubectl_env or {}))
    try:
        saved = move_progress.load(run.environment)
    except TornProgress as error:
        reason = (
            f"the progress file is torn: {error}; nothing was run. Remove it to run every step again "
            "(each is safe to redo)"
        )
        log.error("%s", reason)
        audit(run, run.to, REFUSED, reason, None, run.id)
        return exit_codes.BAD_INPUT
    current = stack_update(stack)
    progress = saved if saved is not None and saved.keeps(run.to, run.phase, current) else None
    if saved is not None and progress is None:
        print(f"{move_progress.progress_file(run.environment)}: recorded for move to {saved.to}, phase "
              f"{saved.phase}, stack update #{saved.stack_update}; now {run.to}, {run.phase}, #{current}: "
              "every step runs again")  # fmt: skip
    progress = progress or Progress(run.environment, run.to, run.phase, current)
    run.marks = progress.marks  # the same dict: a step's marks are saved with the progress
    steps = PHASE_STEPS[run.phase]
    print(f"{run.environment} ({settings.source}): move from {settings.cluster.name} to {run.to}, phase {run.phase}")
    for number, (name, step) in enumerate(steps, start=1):
        head = f"[{number}/{len(steps)} {name}]"
        if name in progress.finished:
            print(f"{head} finished at {progress.finished[name]} for this phase and stack update "
                  f"#{progress.stack_update}: not redone")  # fmt: skip
            continue
        print(f"{head} started", flush=True)
        audit(run, run.to, STARTED, f"{name} started", name, run.id)
        began = time.monotonic()
        try:
            said = step(run)
        except StepFailed as failure:
            log.error("%s %s", head, failure)
            audit(run, run.to, FAILED, f"{name}: {failure}", name, run.id)
            if progress.marks:
                move_progress.save(progress)  # the marks it left (when the fence stopped the writes)
            return failure.code
        except BaseException as error:
            # The exit code is main.run's (stack locked, policy, engine); the audit says it failed.
            audit(run, run.to, FAILED, f"{name}: {type(error).__name__}: {str(error).strip()[-500:]}", name, run.id)
            if progress.marks:
                move_progress.save(progress)
            raise
        took = time.monotonic() - began
        audit(run, run.to, FINISHED, f"{name}: {said}", name, run.id)
        progress.finished[name] = utc_now()
        if name == "apply":
            progress.stack_update = stack_update(stack)
        path = move_progress.save(progress)
        print(f"{head} finished in {took:.0f} s: {said} (progress {path})", flush=True)
    print(f"next: {next_step(run.environment, settings.source)[run.phase]}")
    return exit_codes.OK
