"""`smartnation move ENV --to CLUSTER` in the cutover phase (cli/move_cutover.py and the driver),
with the engine, kubectl and psql stood in at the process boundary (test_cli_move_driver.py's fake
of two clusters, here with each side's database state: fenced or not, in recovery or promoted,
how far it replayed) and a fake clock: the order of the steps (the writes stop before anything
waits, the mirror stops before the promotion, the apply last), the fence's SQL, the catch-up's
lines and its refusals, the measured pause, and a resume after a failure that keeps the first
fence's time.

The real thing on the local clusters: tests/integration/test_move_cutover.py.
"""

from __future__ import annotations

import json
import logging
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from smartnation.cli import exit_codes, move_cutover, move_driver, move_objects
from smartnation.cli.main import main
from smartnation.cli.move_status import STATUS_SQL
from tests.unit import test_cli_move_driver as driver_tests
from tests.unit.test_cli_move_driver import (
    APPLIED,
    OBJECTS,
    PRIMARY_STATUS,
    STANDBY_STATUS,
    Clock,
    Clusters,
    Site,
    audit_lines,
    drive,
    lagging,
    progress,
)
from tests.unit.test_cli_move_status import MIRROR_SELECTOR, NAMESPACE, SOURCE, TARGET

pytestmark = pytest.mark.unit
project, stack = driver_tests.project, driver_tests.stack  # the driver tests' fixtures

CUTOVER = "move: {to: monaco-onprem, phase: cutover}\n"
FENCE = "0/5000200"
STEPS = ("preview", "hash-objects", "fence", "catch-up", "verify", "promote", "apply")
MIRROR = "dev-object-storage-mirror"


@dataclass
class Database(Site):
    """A fake cluster whose database is fenced, replays and is promoted as the driver's SQL says."""

    fenced_after: int = 1
    """How many FENCED_SQL reads after the fence's reload still see the old default (the reload lags)."""
    fenced_reads: int = 0
    fenced: bool = False
    promoted: bool = False
    promote_answer: dict[str, Any] | None = None
    mirror_scaled: bool = False
    said: list[str] = field(default_factory=list)
    """Each statement the driver ran here, in order (the SQL's first word or the kubectl verb)."""


class Cutover(Clusters):
    def __call__(self, argv, env=None, input=None, capture_output=False, text=False, timeout=None, **_):
        site = self.clusters.get(argv[2]) if len(argv) > 2 else None
        rest = list(argv[5:]) if argv[3:4] == ["-n"] else []
        if site is not None and rest[:1] == ["exec"] and "python3.11" in rest:
            self.calls.append(SimpleNamespace(argv=list(argv), input=input))
            given = json.loads(input)
            if given.get("topics"):  # the retained messages (test_cli_move_driver's reader)
                return self._done(0, site.read_retained(rest[2]))
            return self._done(0, self._objects(site, rest[2], given))
        if site is not None and rest[:3] == ["get", "deployment", MIRROR]:
            self.calls.append(SimpleNamespace(argv=list(argv), input=input))
            return self._done(0, "" if site.mirror_scaled else f"deployment.apps/{MIRROR}\n")
        if site is not None and rest[:2] in (["scale", "deployment"], ["wait", "--for=delete"]):
            self.calls.append(SimpleNamespace(argv=list(argv), input=input))
            site.said.append(" ".join(rest[:3]))
            site.mirror_scaled = site.mirror_scaled or rest[:4] == ["scale", "deployment", MIRROR, "--replicas=0"]
            return self._done(0, "")
        if site is not None and rest[:2] == ["get", "pods"] and rest[3] == MIRROR_SELECTOR and site.mirror_scaled:
            self.calls.append(SimpleNamespace(argv=list(argv), input=input))
            return self._done(0, json.dumps({"items": []}))
        sql = input.split("\n", 1)[1] if input and "\n" in input else ""
        answer = self._database(site, sql) if site is not None and "exec" in argv else None
        if answer is not None:
            self.calls.append(SimpleNamespace(argv=list(argv), input=input))
            return self._done(0, f"t\n{json.dumps(answer)}\n")
        if site is not None and "exec" in argv and sql == STATUS_SQL and site.promoted:
            site.statuses = [{**PRIMARY_STATUS, "replication": [], "wal_lsn": FENCE}]
        return super().__call__(argv, env=env, input=input, capture_output=capture_output, text=text, timeout=timeout)

    @staticmethod
    def _objects(site: Database, pod: str, given: dict[str, Any]) -> str:
        """The object reader: full (sha256 each), a listing, or a listing hashing ``hash_only``;
        ETags (here the digest's first half: a new content, a new ETag) when asked."""
        found = site.objects[min(len(site.object_reads), len(site.objects) - 1)]
        mode = "hash_only" if "hash_only" in given else "listing" if given["listing_only"] else "full"
        site.object_reads.append((pod, mode + (" etags" if given["etags"] else "")))
        lines = []
        for key, (size, digest) in sorted(found.items()):
            value = f"size={size}" + (f" etag={digest[:32]}" if given["etags"] else "")
            if mode == "full" or (mode == "hash_only" and key in given["hash_only"]):
                value += f" sha256={digest}"
            lines.append(f"SNCMP|objects|{key}|{value}")
        for bucket in sorted({key.split("/")[0] for key in found}):
            lines.append(f"SNCMP|buckets|{bucket}|objects={sum(k.startswith(bucket + '/') for k in found)}")
        return "\n".join([*lines, "SNCMP-DONE"]) + "\n"

    def _database(self, site: Database, sql: str) -> dict[str, Any] | None:
        if sql.startswith(move_cutover.FENCE_SQL):
            site.said.append("fence")
            site.fenced = True
            return self._fenced(site)
        if sql == move_cutover.FENCED_SQL:
            return self._fenced(site)
        if sql == move_cutover.END_SESSIONS_SQL:
            site.said.append("end sessions")
            return {"ended": 3}
        if sql == move_cutover.FENCE_LSN_SQL:
            site.said.append("fence lsn")
            return {"fence_lsn": FENCE}
        if sql == move_cutover.PROMOTE_SQL:
            site.said.append("promote")
            if site.promote_answer is not None:
                return site.promote_answer
            site.promoted = True
            return {"promoted": True, "in_recovery": False}
        return None

    @staticmethod
    def _fenced(site: Database) -> dict[str, Any]:
        site.fenced_reads += 1 if site.fenced else 0
        return {"read_only": site.fenced and site.fenced_reads > site.fenced_after, "in_recovery": False}


def replaying(*positions: str) -> list[dict[str, Any]]:
    """The target's status per poll: a standby replayed up to each position in turn."""
    return [{**STANDBY_STATUS, "wal_lsn": position} for position in positions]


def sites(target: list[dict[str, Any]] | None = None, **target_changes: Any) -> Cutover:
    statuses = target or replaying("0/5000000", "0/5000100", FENCE)
    return Cutover(
        {
            SOURCE: Database(None, statuses=lagging(0)),
            TARGET: Database(STANDBY_STATUS, statuses=statuses, **target_changes),
        }
    )


class WallClock(Clock):
    """The fake clock, with the wall time the pause is measured in."""

    def time(self) -> float:
        return 1_790_000_000.0 + self.now


@pytest.fixture
def cutover(project: Path, stack, monkeypatch) -> Path:
    """dev declared in cutover, the stack's last phase replicate, one clock for the driver and the steps."""
    with (project / "environments" / "dev.yaml").open("a") as file:
        file.write(CUTOVER)
    stack.move = APPLIED
    clock = WallClock()
    monkeypatch.setattr(move_driver, "time", clock)
    monkeypatch.setattr(move_cutover, "time", clock)
    return project


def test_cutover_fences_catches_up_verifies_promotes_and_applies_in_that_order(
    cutover, stack, monkeypatch, caplog, capsys
):
    fake = sites()
    code, out, errors = drive(monkeypatch, caplog, capsys, fake, "--yes")
    assert code == exit_codes.OK, errors
    lines = out.splitlines()
    assert lines[0] == f"dev (environments/dev.yaml): move from {SOURCE} to {TARGET}, phase cutover"
    assert [line.split("]")[0] + "]" for line in lines if line.startswith("[") and " finished " in line] == [
        f"[{n}/7 {step}]" for n, step in enumerate(STEPS, start=1)
    ]
    source, target = fake.clusters[SOURCE], fake.clusters[TARGET]
    # The fence: the default turned read-only (the fence's own read still sees the old one, the
    # next session the new), every other client session ended, then the WAL position; nothing
    # else is run on the source.
    assert source.said == ["fence", "end sessions", "fence lsn"]
    assert source.fenced_reads == 2
    (fenced,) = [line for line in lines if line.startswith("[3/7 fence] finished")]
    assert (
        f"writes stopped on {SOURCE}: its database is read-only, 3 client session(s) ended, fence at WAL {FENCE}"
    ) in fenced
    # The catch-up: one line a poll, bytes to the fence, then the objects' listing.
    assert [line for line in lines if line.startswith("  replayed ")] == [
        f"  replayed 0/5000000 of the fence {FENCE}: 512 bytes to go (0 of 1800 s)",
        f"  replayed 0/5000100 of the fence {FENCE}: 256 bytes to go (2 of 1800 s)",
        f"  replayed {FENCE} of the fence {FENCE}: 0 bytes to go (4 of 1800 s)",
    ]
    assert any(line.startswith("  objects: source 2, target 2, 0 to copy or remove") for line in lines)
    # The mirror stops before the promotion; the apply (the endpoints) comes after it.
    assert target.said == [f"scale deployment {MIRROR}", "wait --for=delete pod", "promote"]
    (promoted,) = [line for line in lines if line.startswith("[6/7 promote] finished")]
    assert f"bucket mirror stopped; {TARGET}'s database promoted and taking writes: the write pause was" in promoted
    saved = progress(cutover)
    assert saved["phase"] == "cutover" and sorted(saved["finished"]) == sorted(STEPS)
    assert saved["marks"]["fence_lsn"] == FENCE
    pause = saved["marks"]["write_pause_s"]
    assert f"the write pause was {pause:.1f} s" in promoted and pause > 0
    assert (stack.previews, stack.updates) == (1, 1)
    assert audit_lines(cutover) == [(step, result) for step in STEPS for result in ("started", "finished")]
    assert lines[-1].startswith("next: the target serves the environment (`smartnation move dev --status`)")
    report = json.loads(Path(next(line for line in lines if line.startswith("  report "))[9:]).read_text())
    assert report["phase"] == "cutover" and report["equal"] is True
    # Every object hashed before the fence; at the fence only listed, nothing changed: nothing hashed again.
    reads = [("dev-telemetry-ingest-5d8f", "full etags"), ("dev-telemetry-ingest-5d8f", "listing"),
             ("dev-telemetry-ingest-5d8f", "listing etags")]  # fmt: skip
    assert source.object_reads == reads
    assert "  objects: 2 objects as hashed before the fence, 0 hashed again at the fence" in lines
    assert (
        report["fingerprints"]["source"]["objects"]
        == report["fingerprints"]["target"]["objects"]
        == {
            "backups/2026-11-29.dump.gz": f"size=3000 sha256={'ab' * 32}",
            "open-data/readme.txt": f"size=12 sha256={'cd' * 32}",
        }
    )


def test_what_changed_after_the_objects_were_hashed_is_hashed_again_at_the_fence(
    cutover, stack, monkeypatch, caplog, capsys
):
    """An object overwritten on both sides after the hash-objects step (a new ETag) and one new
    since: those two hashed again in the pause, the third kept; a change the mirror missed (the
    target still has the old content, the old ETag) is a difference."""
    before = dict(OBJECTS)
    after = {**before, "open-data/readme.txt": (13, "ef" * 32), "open-data/new.csv": (5, "12" * 32)}
    fake = sites()
    for site in fake.clusters.values():
        site.objects = [before, after]
    code, out, errors = drive(monkeypatch, caplog, capsys, fake, "--yes")
    assert code == exit_codes.OK, errors
    assert "  objects: 1 objects as hashed before the fence, 2 hashed again at the fence" in out.splitlines()
    assert fake.clusters[SOURCE].object_reads[-1] == ("dev-telemetry-ingest-5d8f", "hash_only etags")
    assert fake.clusters[TARGET].object_reads[-1] == ("dev-object-storage-mirror-7c9b", "hash_only etags")

    stale = sites()
    # Overwritten on the source with as many bytes (the mirror's listing of names and sizes is alike)
    # and not copied: the target keeps the old content and ETag.
    stale.clusters[SOURCE].objects = [before, {**before, "open-data/readme.txt": (12, "ef" * 32)}]
    stale.clusters[TARGET].objects = [before]
    (cutover / ".smartnation" / "move" / "dev.json").unlink()
    code, out, errors = drive(monkeypatch, caplog, capsys, stale, "--yes")
    assert code == exit_codes.FAILED
    assert "differ in 1 item(s)" in errors
    assert stack.updates == 1, "no promotion, no apply this time"


def test_a_promotion_that_fails_resumes_there_and_the_pause_counts_from_the_first_fence(
    cutover, stack, monkeypatch, caplog, capsys
):
    fake = sites(promote_answer={"promoted": False, "in_recovery": True})
    code, _, errors = drive(monkeypatch, caplog, capsys, fake, "--yes")
    assert code == exit_codes.FAILED
    assert f"{TARGET}'s database was not promoted within 60 s" in errors
    first = progress(cutover)
    assert sorted(first["finished"]) == ["catch-up", "fence", "hash-objects", "preview", "verify"]
    fenced_at = first["marks"]["fenced_at"]
    assert stack.updates == 0, "no apply: the endpoints stay on the source"

    move_driver.time.sleep(100)  # a while later, the operator runs it again
    again = sites()
    code, out, errors = drive(monkeypatch, caplog, capsys, again, "--yes")
    assert code == exit_codes.OK, errors
    assert again.clusters[SOURCE].said == [], "the fence is not redone"
    assert [line for line in out.splitlines() if "not redone" in line][-1].startswith("[5/7 verify] finished at")
    saved = progress(cutover)
    assert saved["marks"]["fenced_at"] == fenced_at
    assert saved["marks"]["write_pause_s"] >= 100, "measured from when the writes stopped"
    assert stack.updates == 1


def test_the_catch_up_times_out_with_its_own_exit_and_the_fence_is_kept(cutover, stack, monkeypatch, caplog, capsys):
    code, out, errors = drive(monkeypatch, caplog, capsys, sites(replaying("0/5000100")), "--yes", "--timeout", "4")
    assert code == exit_codes.TIMED_OUT
    assert f"{TARGET} did not replay up to the fence {FENCE} within --timeout 4 s (last: 256 bytes to go)" in errors
    assert audit_lines(cutover)[-1] == ("catch-up", "failed")
    assert progress(cutover)["marks"]["fence_lsn"] == FENCE


def test_a_target_out_of_recovery_before_the_promotion_stops_the_catch_up(cutover, stack, monkeypatch, caplog, capsys):
    promoted = [{**PRIMARY_STATUS, "replication": [], "wal_lsn": FENCE}]
    code, _, errors = drive(monkeypatch, caplog, capsys, sites(promoted), "--yes")
    assert code == exit_codes.FAILED
    assert f"{TARGET}'s database is out of recovery before this driver promoted it: promoted by hand?" in errors
    assert stack.updates == 0


def test_a_fence_the_server_does_not_take_fails_before_any_wait(cutover, stack, monkeypatch, caplog, capsys):
    fake = sites()
    fake.clusters[SOURCE].fenced_after = 10_000
    code, _, errors = drive(monkeypatch, caplog, capsys, fake, "--yes")
    assert code == exit_codes.FAILED
    assert f"{SOURCE}'s database did not turn read-only within 10 s of the reload" in errors
    assert fake.clusters[SOURCE].said == ["fence"], "no session ended, no position taken"
    assert fake.clusters[TARGET].said == [] and stack.updates == 0


def test_the_fence_sql_ends_client_sessions_only_and_promote_leaves_a_primary_alone() -> None:
    assert move_cutover.FENCE_SQL.startswith("ALTER SYSTEM SET default_transaction_read_only = on;")
    assert "pg_reload_conf()" in move_cutover.FENCE_SQL
    assert "backend_type = 'client backend' AND pid <> pg_backend_pid() OFFSET 0" in move_cutover.END_SESSIONS_SQL
    assert "pg_terminate_backend(pid, 5000)" in move_cutover.END_SESSIONS_SQL
    assert "CASE WHEN pg_is_in_recovery() THEN pg_promote(true, 60) ELSE true END" in move_cutover.PROMOTE_SQL


@pytest.mark.parametrize(
    ("text", "number"), [("0/0", 0), ("0/5000200", 0x5000200), ("16/B374D848", (0x16 << 32) + 0xB374D848), ("", None)]
)
def test_wal_positions_compare_as_numbers(text: str, number: int | None) -> None:
    assert move_cutover.lsn(text) == number


def test_the_status_names_a_fenced_source(monkeypatch) -> None:
    from smartnation.cli.move_status import Site as StatusSite
    from smartnation.cli.move_status import _site_lines

    site = StatusSite("source", SOURCE, SOURCE, NAMESPACE, True, "dev-database-primary-0")
    site.database.update({**PRIMARY_STATUS, "read_only": True, "replication": []})
    assert _site_lines(site)[1] == (
        "  database dev-database-primary-0: primary (not in recovery), read-only (fenced: writes stopped), "
        "WAL at 0/5000148"
    )
    site.database["read_only"] = False
    assert _site_lines(site)[1] == "  database dev-database-primary-0: primary (not in recovery), WAL at 0/5000148"


def test_without_what_was_hashed_before_the_fence_every_object_is_hashed_at_it(monkeypatch, tmp_path) -> None:
    """A hash-objects file gone (or torn) is no reason to trust a listing: all is hashed again."""
    from smartnation.cli import compare
    from smartnation.cli.compare_data import Snapshot

    calls: list[dict[str, Any]] = []

    def read(side: str, reader: Any = None, **kwargs: Any) -> Snapshot:
        calls.append(kwargs)
        snapshot = Snapshot(side)
        snapshot.sections["objects"] = {"b/k": "size=1 sha256=" + "a" * 64}
        return snapshot

    monkeypatch.setattr(compare, "read_objects", read)
    torn = tmp_path / "objects.json"
    torn.write_text('{"source": {')
    for marks in ({}, {"objects_hashed": str(torn)}, {"objects_hashed": str(tmp_path / "gone.json")}):
        calls.clear()
        run = SimpleNamespace(marks=marks)
        left, right, said = move_objects.read_at_fence(run, "source", "target", ("selector", "reader"))
        assert said == "every object hashed now (nothing kept from before the fence)"
        assert calls == [{}, {}], "full reads: sha256 of every object"
        assert left.sections["objects"] == right.sections["objects"] == {"b/k": "size=1 sha256=" + "a" * 64}


@pytest.mark.parametrize(
    ("value", "listed", "digest"),
    [
        ("size=3 etag=abc sha256=ff", "size=3 etag=abc", "ff"),
        ("size=3 etag=abc", "size=3 etag=abc", None),
        ("size=0", "size=0", None),
    ],
)
def test_a_fingerprint_splits_into_its_listing_and_its_digest(value: str, listed: str, digest: str | None) -> None:
    assert move_objects.listing(value) == listed
    assert move_objects.digest(value) == digest


def test_the_status_says_where_the_driver_stands_and_when_writes_stopped(cutover, stack, monkeypatch, caplog, capsys):
    """After a run that stopped at the promotion: --status names the finished steps in order, the
    next one and when writes stopped (UTC, from the progress file); --json the same."""
    fake = sites(promote_answer={"promoted": False, "in_recovery": True})
    assert drive(monkeypatch, caplog, capsys, fake, "--yes")[0] == exit_codes.FAILED
    fenced_at = progress(cutover)["marks"]["fenced_at"]
    monkeypatch.setattr(subprocess, "run", sites())
    code = main(["move", "dev", "--status"])
    out = capsys.readouterr().out
    stopped = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(fenced_at))
    assert code == exit_codes.OK, out
    assert (
        f"driver ({cutover / '.smartnation' / 'move' / 'dev.json'}): phase cutover to {TARGET}, steps finished: "
        f"preview, hash-objects, fence, catch-up, verify; next: promote; writes stopped on the source at {stopped} "
        f"(fence {FENCE})"
    ) in out.splitlines()
    # In the cutover the broker bridge still runs on the target (its commands cross back); the mirror does not.
    assert "  broker bridge dev-broker-bridge-5f6d: Running, ready, 0 restarts" in out.splitlines()
    assert main(["move", "dev", "--status", "--json"]) == exit_codes.OK
    status = json.loads(capsys.readouterr().out)
    driver = status["driver"]
    assert (driver["next"], driver["fence_lsn"], driver["write_pause_s"]) == ("promote", FENCE, None)
    assert status["target"]["bridge"]["pod"] == "dev-broker-bridge-5f6d" and status["target"]["mirror"] is None


def test_a_torn_progress_file_is_a_problem_of_the_status(cutover, stack, monkeypatch, caplog, capsys):
    path = cutover / ".smartnation" / "move" / "dev.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"version": 1, "environment": "dev", "to": ')
    monkeypatch.setattr(subprocess, "run", sites())
    with caplog.at_level(logging.ERROR, logger="smartnation"):
        code = main(["move", "dev", "--status"])
    assert code == exit_codes.UNREADABLE
    assert f"not read: the driver's progress file: {path}: not whole JSON" in capsys.readouterr().out
