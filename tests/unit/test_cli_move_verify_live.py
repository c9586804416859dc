"""The move's verify step while the source takes writes (replicate): a difference the source made
while it was read is live (reported, not compared: the cutover compares it at its fence), one it
did not make is compared again in a later round (the target may only be behind) and fails the step
if it is still there in the last one. The cutover and the rollback compare fenced sites exactly.

Stand-ins: both sides (``move_driver._object_sides``), compare's readers (database, objects,
retained messages: per side, one answer a read, the last repeated), the cutover's object read at
the fence, and the driver's clock.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from smartnation.cli import compare, move_driver, move_objects, restore_pod
from smartnation.cli.compare_data import Difference, Snapshot
from smartnation.cli.move_driver import LiveItem, StepFailed, live_differences
from tests.unit.test_cli_move_driver import Clock

pytestmark = pytest.mark.unit

CHUNK = "telemetry.public.readings [2026-11-27 00:00:00+00, 2026-11-28 00:00:00+00)"
OLD_CHUNK = "telemetry.public.readings [2026-11-26 00:00:00+00, 2026-11-27 00:00:00+00)"
TABLE = "telemetry.public.readings"
WHERE = {"source": "dusseldorf-test/smartnation-unit-dev", "target": "monaco-onprem/smartnation-unit-dev"}


def database(rows: int, old: int = 50, device: str = "0cc1") -> Snapshot:
    """A database reading: the live chunk with ``rows`` rows, an older one with ``old``."""
    snapshot = Snapshot("db")
    snapshot.sections["chunks"] = {OLD_CHUNK: f"rows={old} sum={old * 7}", CHUNK: f"rows={rows} sum={rows * 7}"}
    snapshot.sections["tables"] = {TABLE: f"rows={old + rows} sum={(old + rows) * 7}"}
    snapshot.sections["devices"] = {"traffic-001": device}
    return snapshot


def objects(readme: str = "size=12 sha256=cd") -> Snapshot:
    snapshot = Snapshot("objects")
    snapshot.sections["objects"] = {"backups/a.dump.gz": "size=3000 sha256=ab", "open-data/readme.txt": readme}
    snapshot.sections["buckets"] = {"backups": "objects=1", "open-data": "objects=1"}
    return snapshot


def retained(digest: str = "ef") -> Snapshot:
    snapshot = Snapshot("broker")
    snapshot.sections["retained"] = {"city/traffic/t-1/telemetry": f"sha256={digest}"}
    return snapshot


class Sites:
    """What each side's readers answer, one answer a read (the last repeated), and every read."""

    def __init__(self) -> None:
        self.answers: dict[tuple[str, str], list[Any]] = {
            (side, kind): [reading()]
            for side in WHERE
            for kind, reading in (("database", lambda: database(100)), ("objects", objects), ("retained", retained))
        }
        self.reads: list[tuple[str, str]] = []
        self.kept: list[Any] = []
        """What each database read was told to leave out."""

    def answer(self, side: Any, kind: str) -> Snapshot:
        queue = self.answers[side.name, kind]
        done = sum(1 for read in self.reads if read == (side.name, kind))
        self.reads.append((side.name, kind))
        found = queue[min(done, len(queue) - 1)]
        if isinstance(found, Exception):
            raise found
        copy = Snapshot(side.where)
        copy.sections = {section: dict(items) for section, items in found.sections.items()}
        return copy

    def count(self, side: str, kind: str) -> int:
        return self.reads.count((side, kind))


SETTINGS = object()
"""The run's settings, handed to every database and broker read."""
READER = ("dev-object-storage-mirror-7c9b", "reader")
"""The target's object reader (the bucket mirror's), handed to the target's object reads only."""


@pytest.fixture
def sites(monkeypatch) -> Sites:
    fake = Sites()
    sides = tuple(SimpleNamespace(name=name, where=where) for name, where in WHERE.items())
    monkeypatch.setattr(move_driver, "time", Clock())

    def object_sides(run: Any) -> tuple[Any, Any, tuple[str, str]]:
        assert run.settings is SETTINGS, "the run's own sides"
        return (*sides, READER)

    def read_database(side: Any, settings: Any, kept: Any = "not given") -> Snapshot:
        assert settings is SETTINGS
        fake.kept.append(kept)
        return fake.answer(side, "database")

    def read_objects(side: Any, reader: Any = None) -> Snapshot:
        assert reader == (READER if side.name == "target" else None), (side.name, reader)
        return fake.answer(side, "objects")

    def read_retained(side: Any, settings: Any, settle: float) -> Snapshot:
        assert settings is SETTINGS
        return fake.answer(side, "retained")

    def at_fence(run: Any, source: Any, target: Any, reader: Any) -> tuple[Snapshot, Snapshot, str]:
        assert (run.phase, source.name, target.name, reader) == ("cutover", "source", "target", READER)
        return fake.answer(source, "objects"), fake.answer(target, "objects"), "0 hashed again"

    monkeypatch.setattr(move_driver, "_object_sides", object_sides)
    monkeypatch.setattr(compare, "read_database", read_database)
    monkeypatch.setattr(compare, "read_objects", read_objects)
    monkeypatch.setattr(compare, "read_retained", read_retained)
    monkeypatch.setattr(move_objects, "read_at_fence", at_fence)
    return fake


def _path(tmp_path: Path) -> Path:
    return tmp_path / "reports" / "dev" / "verify.json"  # its folders made by the step


def _run(tmp_path: Path, phase: str = "replicate") -> Any:
    args = argparse.Namespace(report=str(_path(tmp_path)))
    return SimpleNamespace(environment="dev", phase=phase, settings=SETTINGS, args=args)


def _report(tmp_path: Path) -> dict[str, Any]:
    return json.loads(_path(tmp_path).read_text())


def writing(sites: Sites, *rows: int) -> None:
    """The source's live chunk at each read: devices publish while it is read."""
    sites.answers["source", "database"] = [database(count) for count in rows]


# --- The classification ----------------------------------------------------------------------------


def test_a_difference_the_source_changed_between_its_reads_is_live_the_rest_real() -> None:
    first, second, target = database(100), database(103), database(98, device="ffff")
    live, real = live_differences(first, second, target, ("tables", "chunks", "devices"))
    assert live == [
        LiveItem("tables", TABLE, ("rows=150 sum=1050", "rows=153 sum=1071"), "rows=148 sum=1036"),
        LiveItem("chunks", CHUNK, ("rows=100 sum=700", "rows=103 sum=721"), "rows=98 sum=686"),
    ]
    assert real == [Difference("devices", "traffic-001", "0cc1", "ffff")]
    assert live[1].describe() == (
        f"chunks {CHUNK}: changed on the source while it was read; compared at the cutover's fence"
    )


def test_items_on_one_side_only_are_live_only_when_the_source_changed_them() -> None:
    first, second, target = database(100), database(100), database(100)
    del second.sections["chunks"][OLD_CHUNK]  # dropped by retention between the source's reads
    del target.sections["chunks"][OLD_CHUNK]
    target.sections["devices"]["traffic-002"] = "abcd"  # on the target only, in neither source read
    live, real = live_differences(first, second, target, ("chunks", "devices"))
    assert live == [LiveItem("chunks", OLD_CHUNK, ("rows=50 sum=350", None), None)]
    assert real == [Difference("devices", "traffic-002", None, "abcd")]
    # Only the sections asked for; equal sides: nothing.
    assert live_differences(first, second, target, ("tables",)) == ([], [])
    assert live_differences(first, first, first, ("tables", "chunks", "devices")) == ([], [])


# --- The replicate phase's verify ------------------------------------------------------------------


def test_a_chunk_written_while_read_is_live_and_passes_named_in_the_output_message_and_report(
    sites, tmp_path, capsys
) -> None:
    writing(sites, 104, 108)  # the target (100) a few readings behind, the source taking more
    said = move_driver.verify(_run(tmp_path))
    out = capsys.readouterr().out.splitlines()
    assert said == (
        f"{WHERE['source']} and {WHERE['target']} hold the same data (tables, chunks, devices, objects, buckets, "
        f"retained) in 0 s, but for 2 live item(s) the cutover compares at its fence; report {_path(tmp_path)}"
    )
    assert out == [
        "  retained: read 1 time(s)",
        "  tables   source     1  target     1  equal, 1 live",
        "  chunks   source     2  target     2  equal, 1 live",
        "  devices  source     1  target     1  equal",
        "  objects  source     2  target     2  equal",
        "  buckets  source     2  target     2  equal",
        "  retained source     1  target     1  equal",
        f"  live     tables {TABLE}: changed on the source while it was read; compared at the cutover's fence",
        f"  live     chunks {CHUNK}: changed on the source while it was read; compared at the cutover's fence",
        "  live: 2 item(s) written on the source while it was read, not compared here",
        f"  report {_path(tmp_path)}",
    ]
    report = _report(tmp_path)
    assert (report["equal"], report["differences"]) == (True, [])
    assert report["live"] == [
        {
            "section": "tables",
            "key": TABLE,
            "source": ["rows=154 sum=1078", "rows=158 sum=1106"],
            "target": "rows=150 sum=1050",
            "what": f"tables {TABLE}: changed on the source while it was read; compared at the cutover's fence",
        },
        {
            "section": "chunks",
            "key": CHUNK,
            "source": ["rows=104 sum=728", "rows=108 sum=756"],
            "target": "rows=100 sum=700",
            "what": f"chunks {CHUNK}: changed on the source while it was read; compared at the cutover's fence",
        },
    ]
    # One round: the source's database read twice, its objects once (no object differed), the target once.
    assert (sites.count("source", "database"), sites.count("target", "database")) == (2, 1)
    assert (sites.count("source", "objects"), sites.count("target", "objects")) == (1, 1)
    assert report["seconds"] == 0
    assert sites.kept == [None, None, None], "every database of the source and target read"


def test_equal_sides_are_read_once_with_an_empty_live_list(sites, tmp_path, capsys) -> None:
    said = move_driver.verify(_run(tmp_path))
    assert said.endswith(f"in 0 s; report {_path(tmp_path)}") and "live" not in said
    assert "live" not in capsys.readouterr().out
    assert _report(tmp_path)["live"] == [] and _report(tmp_path)["equal"] is True
    assert sites.reads.count(("source", "database")) == 1 and len(sites.reads) == 6


def test_a_stable_difference_fails_after_every_round(sites, tmp_path, capsys) -> None:
    sites.answers["target", "database"] = [database(100, device="ffff")]  # the device's row differs
    with pytest.raises(StepFailed) as failed:
        move_driver.verify(_run(tmp_path))
    assert str(failed.value) == (
        f"{WHERE['source']} and {WHERE['target']} differ in 1 item(s); report {_path(tmp_path)}"
    )
    out = capsys.readouterr().out.splitlines()
    assert [line for line in out if line.startswith("  round ")] == [
        "  round 1 of 3: 1 item(s) differ and did not change on the source; compared again in 2 s",
        "  round 2 of 3: 1 item(s) differ and did not change on the source; compared again in 2 s",
    ]
    assert "  devices  source     1  target     1  1 DIFFERENT" in out
    assert "  devices traffic-001: source 0cc1, target ffff" in out
    report = _report(tmp_path)
    assert report["equal"] is False and report["live"] == []
    assert [(d["section"], d["key"]) for d in report["differences"]] == [("devices", "traffic-001")]
    # Three rounds of both sides and the source again, 2 s apart.
    assert (sites.count("source", "database"), sites.count("target", "database")) == (6, 3)
    assert report["seconds"] == 4


def test_a_target_behind_in_the_first_round_and_caught_up_in_the_second_passes_with_nothing_live(
    sites, tmp_path, capsys
) -> None:
    sites.answers["target", "database"] = [database(97), database(100)]
    sites.answers["target", "objects"] = [objects("size=12 sha256=00"), objects()]  # the mirror copying
    said = move_driver.verify(_run(tmp_path))
    out = capsys.readouterr().out.splitlines()
    assert "live" not in said and said.endswith(f"in 2 s; report {_path(tmp_path)}")
    assert [line for line in out if line.startswith("  round ")] == [
        "  round 1 of 3: 3 item(s) differ and did not change on the source; compared again in 2 s"
    ]
    assert "  chunks   source     2  target     2  equal" in out
    report = _report(tmp_path)
    assert (report["equal"], report["differences"], report["live"]) == (True, [], [])
    # The source read again in the first round, its objects too (one differed); none in the second.
    assert (sites.count("source", "database"), sites.count("target", "database")) == (3, 2)
    assert (sites.count("source", "objects"), sites.count("target", "objects")) == (3, 2)


def test_only_the_last_rounds_outcome_counts(sites, tmp_path, capsys) -> None:
    # Round 1: the target behind (stable source); round 2: the target caught up but the source
    # writing meanwhile; the last round's live item is what is reported.
    sites.answers["source", "database"] = [database(100), database(100), database(103), database(106)]
    sites.answers["target", "database"] = [database(97), database(100)]
    move_driver.verify(_run(tmp_path))
    report = _report(tmp_path)
    assert [(item["key"], item["source"]) for item in report["live"]] == [
        (TABLE, ["rows=153 sum=1071", "rows=156 sum=1092"]),
        (CHUNK, ["rows=103 sum=721", "rows=106 sum=742"]),
    ]
    assert report["fingerprints"]["source"]["chunks"][CHUNK] == "rows=103 sum=721"
    assert (report["equal"], report["seconds"]) == (True, 2)


def test_a_live_item_beside_a_real_one_fails_naming_both(sites, tmp_path, capsys) -> None:
    writing(sites, 100, 101, 102, 103, 104, 105)  # written all the time
    sites.answers["target", "objects"] = [objects("size=12 sha256=00")]
    with pytest.raises(StepFailed, match=r"differ in 1 item\(s\)"):
        move_driver.verify(_run(tmp_path))
    out = capsys.readouterr().out.splitlines()
    assert "  chunks   source     2  target     2  equal, 1 live" in out
    assert "  objects  source     2  target     2  1 DIFFERENT" in out
    report = _report(tmp_path)
    assert [d["key"] for d in report["differences"]] == ["open-data/readme.txt"]
    assert [item["key"] for item in report["live"]] == [TABLE, CHUNK]
    # The source's objects read again each round (an object differed); its database only in the
    # rounds where a database section differed (in the first, the target had caught up with it).
    assert (sites.count("source", "objects"), sites.count("source", "database")) == (6, 5)


def test_only_a_retained_difference_is_not_compared_again_in_rounds(sites, tmp_path, capsys) -> None:
    # read_retained_alike already read the brokers again while they differed.
    sites.answers["target", "retained"] = [retained("01")]
    with pytest.raises(StepFailed, match=r"differ in 1 item\(s\)"):
        move_driver.verify(_run(tmp_path))
    out = capsys.readouterr().out
    assert "  round " not in out and "  retained: read 3 time(s)" in out
    assert (sites.count("source", "database"), sites.count("source", "objects")) == (1, 1)
    assert _report(tmp_path)["live"] == []


def test_many_live_items_are_shown_up_to_twenty_and_all_reported(sites, tmp_path, capsys) -> None:
    first, second = database(100), database(100)
    for number in range(25):
        first.sections["devices"][f"d-{number:02}"] = "a"
        second.sections["devices"][f"d-{number:02}"] = "b"  # re-registered while read
    sites.answers["source", "database"] = [first, second]
    said = move_driver.verify(_run(tmp_path))
    out = capsys.readouterr().out.splitlines()
    assert "but for 25 live item(s)" in said
    shown = [line for line in out if line.startswith("  live     ")]
    assert len(shown) == move_driver.LIVE_SHOWN == 20 and shown[-1].startswith("  live     devices d-19: ")
    assert "  live: 25 item(s) written on the source while it was read, not compared here (5 more in the report)" in out
    assert len(_report(tmp_path)["live"]) == 25


def test_twenty_live_items_are_all_shown_and_fifty_differences_at_most(sites, tmp_path, capsys) -> None:
    first, second = database(100), database(100)
    for number in range(20):
        first.sections["devices"][f"d-{number:02}"] = "a"
        second.sections["devices"][f"d-{number:02}"] = "b"
    for number in range(51):
        for reading in (first, second):
            reading.sections["devices"][f"s-{number:02}"] = "stable"  # on the source only, never copied
    sites.answers["source", "database"] = [first, second] * move_driver.VERIFY_ROUNDS  # re-registered each round
    with pytest.raises(StepFailed, match=r"differ in 51 item\(s\)"):
        move_driver.verify(_run(tmp_path))
    out = capsys.readouterr().out.splitlines()
    assert len([line for line in out if line.startswith("  live     ")]) == 20
    assert "  live: 20 item(s) written on the source while it was read, not compared here" in out
    shown = [line for line in out if line.startswith("  devices s-")]
    assert len(shown) == 50 and shown[-1] == "  devices s-49: only on the source (stable)"
    assert "  devices  source    72  target     1  51 DIFFERENT, 20 live" in out


def test_the_rounds_and_their_wait_are_the_constants(sites, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(move_driver, "VERIFY_ROUNDS", 5)
    monkeypatch.setattr(move_driver, "VERIFY_ROUND_WAIT_S", 7.5)
    sites.answers["target", "database"] = [database(100, device="ffff")]
    with pytest.raises(StepFailed):
        move_driver.verify(_run(tmp_path))
    assert "  round 4 of 5: 1 item(s) differ and did not change on the source; compared again in 7.5 s" in (
        capsys.readouterr().out.splitlines()
    )
    assert sites.count("target", "database") == 5 and _report(tmp_path)["seconds"] == 30
    assert (move_driver.VERIFY_ROUNDS, move_driver.VERIFY_ROUND_WAIT_S) == (5, 7.5)


def test_the_defaults_are_three_rounds_two_seconds_apart() -> None:
    assert (move_driver.VERIFY_ROUNDS, move_driver.VERIFY_ROUND_WAIT_S) == (3, 2.0)


# --- The fenced phases: exact, once ---------------------------------------------------------------


@pytest.mark.parametrize(("phase", "kept"), [("cutover", None), ("rollback", restore_pod.REPLACED_NAME)])
def test_the_fenced_phases_compare_once_and_a_live_looking_difference_fails(
    sites, tmp_path, capsys, phase, kept
) -> None:
    writing(sites, 104, 108)  # were the source written, its second read would differ
    sites.answers["target", "objects"] = [objects("size=12 sha256=00")]
    sites.answers["target", "database"] = [database(100, device="ffff")]
    with pytest.raises(StepFailed, match=r"differ in 4 item\(s\)"):
        move_driver.verify(_run(tmp_path, phase))
    out = capsys.readouterr().out
    assert "live" not in out and "  round " not in out
    assert "  chunks   source     2  target     2  1 DIFFERENT" in out.splitlines()
    report = _report(tmp_path)
    assert "live" not in report
    assert [(d["section"], d["key"]) for d in report["differences"]] == [
        ("tables", TABLE), ("chunks", CHUNK), ("devices", "traffic-001"), ("objects", "open-data/readme.txt"),
    ]  # fmt: skip
    assert report["fingerprints"]["source"]["chunks"][CHUNK] == "rows=104 sum=728"
    # No second read of the source, no second round; a rollback leaves the replaced databases out.
    assert sites.count("source", "database") == sites.count("target", "database") == 1
    assert sites.count("source", "objects") == 1 and report["seconds"] == 0
    assert sites.kept == [kept, kept]
    assert ("  objects: 0 hashed again" in out.splitlines()) is (phase == "cutover")


def test_a_side_not_read_fails_the_step_naming_it(sites, tmp_path, monkeypatch) -> None:
    def unreadable(side: Any, settings: Any, kept: Any = None) -> Snapshot:
        raise compare.CompareError("target monaco-onprem: no primary Pod")

    monkeypatch.setattr(compare, "read_database", unreadable)
    with pytest.raises(StepFailed) as failed:
        move_driver.verify(_run(tmp_path))
    assert str(failed.value) == "verification could not read a side: target monaco-onprem: no primary Pod"
    assert not _path(tmp_path).exists()


def test_a_source_not_read_again_fails_the_step_too(sites, tmp_path) -> None:
    sites.answers["target", "objects"] = [objects("size=12 sha256=00")]
    sites.answers["source", "objects"] = [objects(), compare.CompareError("source: the reader stopped early")]
    with pytest.raises(StepFailed, match="^verification could not read a side: source: the reader stopped early$"):
        move_driver.verify(_run(tmp_path))
