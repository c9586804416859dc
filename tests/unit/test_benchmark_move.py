"""The move benchmark's arithmetic and wording (tests/benchmarks/move.py): its seed spans what it
says, and BENCHMARKS.md says "nothing lost" only when every comparison found nothing."""

from __future__ import annotations

import copy
import re

import pytest

from tests.benchmarks import move
from tests.benchmarks.move import DEVICES, READINGS, CloneWatch, readings_sql, render_move

pytestmark = pytest.mark.unit

FIGURES = {
    "date": "2026-11-30 05:00 UTC",
    "readings": READINGS,
    "devices": DEVICES,
    "burst": 200_000,
    "deploy_s": 120.0,
    "seed": {"devices_s": 0.4, "readings_s": 40.2, "chunks": 8, "database_bytes": {"telemetry": 300 * 2**20,
                                                                                   "devices": 10 * 2**20}},
    "replicate": {
        "driver_s": 150.0,
        "steps_s": {"preview": 8, "apply": 120, "wait": 2, "verify": 20},
        "clone": {"seen": True, "seconds": 6.0, "bytes": 330 * 2**20, "mib_per_s": 55.0, "polls": 24,
                  "interval_s": 0.25},
        "verify_equal": True,
        "verify_differences": 0,
        "readings_compared": "rows=1000000 sum=42",
    },
    "streaming": {"insert_s": 9.0, "wal_bytes": 90 * 2**20, "replayed_after_commit_s": 1.5,
                  "wal_mib_per_s_while_writing": 8.6, "readings_source": "rows=1200000 sum=1",
                  "readings_target": "rows=1200000 sum=1", "differences": 0},
    "rollback_s": 30.0,
    "backup_restore": {"target_deploy_s": 100.0, "dump_s": {"devices": 1.0, "telemetry": 20.0},
                       "restore_s": {"devices": 1.0, "telemetry": 50.0},
                       "dump_bytes": {"devices": 2**20, "telemetry": 60 * 2**20}, "write_pause_s": 72.0,
                       "differences": 0},
}  # fmt: skip


def test_the_seed_gives_each_device_its_share_a_week_long():
    sql = readings_sql(0, READINGS)
    assert f"generate_series(0, {READINGS - 1})" in sql
    per_device = READINGS // DEVICES
    # The (device, time) key: the i-th reading of a device is (i div DEVICES) * 100 minutes in.
    assert "(i / 10000) * interval '100 minutes'" in sql and "'sensor-' || lpad((i % 10000)::text" in sql
    assert (per_device - 1) * 100 / 60 / 24 == pytest.approx(6.875)  # a week of one-day chunks
    assert f"generate_series({READINGS}, {READINGS + 99})" in readings_sql(READINGS, 100)


def test_nothing_lost_is_said_only_when_every_comparison_found_nothing():
    said = "\n".join(render_move(FIGURES))
    assert "Nothing lost by either method" in said
    assert "| its steps | preview 8 s, apply 120 s, wait 2 s, verify 20 s |" in said
    resorted = copy.deepcopy(FIGURES)
    resorted["replicate"]["steps_s"] = dict(sorted(FIGURES["replicate"]["steps_s"].items()))  # as the JSON has it
    assert "| its steps | preview 8 s, apply 120 s, wait 2 s, verify 20 s |" in "\n".join(render_move(resorted))
    assert "**72.0 s**" in said and "**1.5 s**" in said and "**55.0 MiB/s** (at most" in said and "24 reads" in said
    for where, key in (("streaming", "differences"), ("backup_restore", "differences"),
                       ("replicate", "verify_differences")):  # fmt: skip
        broken = copy.deepcopy(FIGURES)
        broken[where][key] = 3
        said = "\n".join(render_move(broken))
        assert "Nothing lost" not in said and "**Differences found**" in said, where
    unequal = copy.deepcopy(FIGURES)
    unequal["replicate"]["verify_equal"] = False
    assert "Nothing lost" not in "\n".join(render_move(unequal))


def test_a_clone_never_seen_is_said_so_and_no_rate_is_made_up():
    unseen = copy.deepcopy(FIGURES)
    unseen["replicate"]["clone"] = {"seen": False}
    said = "\n".join(render_move(unseen))
    assert "MiB/s" not in said and "over between two reads" in said
    assert render_move(None)[-2].startswith("Not measured yet")


def test_the_clone_rate_is_the_largest_total_over_the_seconds_it_was_seen():
    watch = CloneWatch.__new__(CloneWatch)
    watch.seen = [(100.0, 0, 0), (101.0, 10 * 2**20, 40 * 2**20), (104.0, 40 * 2**20, 40 * 2**20)]
    assert watch.figures() == {"seen": True, "seconds": 4.0, "bytes": 40 * 2**20, "mib_per_s": 10.0, "polls": 3,
                               "interval_s": 0.25}  # fmt: skip
    watch.seen = [(100.0, 5 * 2**20, 0)]  # seen once, before pg_basebackup knew its total: one interval
    assert watch.figures()["bytes"] == 5 * 2**20 and watch.figures()["seconds"] == 0.25


def test_the_driver_step_lines_are_read_as_the_driver_prints_them():
    out = "[1/4 preview] started\n[1/4 preview] finished in 8 s: ok (progress x)\n[2/4 apply] finished in 120 s: y\n"
    assert dict(move.STEP_LINE.findall(out)) == {"preview": "8", "apply": "120"}
    assert re.search(move.STEP_LINE, "[3/4 wait] finished at 2026-11-30: not redone") is None


OBJECT_FIGURES = {
    "first_pass_copies": 10_000,
    "first_pass_s": 40.0,
    "objects_compared": {"backups": "objects=3333", "open-data": "objects=3333", "telemetry-archive": "objects=3334"},
    "burst_write_s": 3.2,
    "burst_bytes": 12 * 2**20,
    "burst_mirrored_after_write_s": 6.5,
}


def test_the_mirrors_rows_say_its_pace_from_the_figures_and_none_before_it_existed():
    figures = copy.deepcopy(FIGURES)
    figures["seed"].update({"objects_s": 30.5, "object_bytes": 120 * 2**20})
    figures["objects"] = OBJECT_FIGURES
    said = "\n".join(render_move(figures))
    assert "| the bucket mirror's first pass on Monaco (its log: first copy to last) | 10,000 objects in " in said
    assert "**40.0 s**, 250 objects/s, 3.0 MiB/s |" in said
    assert "| the verification: objects equal by sha256 | 10,000 objects in 3 buckets |" in said
    assert "| ... listed alike on Monaco after the last write | **6.5 s** |" in said
    assert "30.5 s, 120 MiB |" in said
    # A run from before the mirror: no object row at all, not a row of zeros.
    assert "bucket mirror's first pass" not in "\n".join(render_move(FIGURES))


def test_the_mirror_log_lines_are_read_with_their_times(monkeypatch):
    logged = (
        "2026-11-30T08:00:00.123456789Z mirroring every bucket of https://x:9000 to https://y:9000 every 5 s\n"
        "2026-11-30T08:00:01.500000000Z `source/open-data/a.bin` -> `target/open-data/a.bin`\n"
        "2026-11-30T08:00:41.750000000Z `source/backups/b.bin` -> `target/backups/b.bin`\n"
        "2026-11-30T08:00:42.000000000Z mirror pass failed (exit 1); again in 5 s\n"
    )

    class Tools:
        def run(self, *argv, timeout):
            assert argv == ("kubectl", "--context", "monaco-onprem", "-n", "smartnation-movebench-dev", "logs",
                            "--timestamps", "deployment/dev-object-storage-mirror", "-c", "mirror")  # fmt: skip
            return type("Done", (), {"stdout": logged})()

    times = move.mirror_copies(Tools(), "smartnation-movebench-dev")
    assert len(times) == 2 and times[1] - times[0] == pytest.approx(40.25)


CUTOVER_FIGURES = {
    "driver_s": 140.0,
    "steps_s": {"apply": 60, "promote": 2, "verify": 9, "catch-up": 3, "fence": 1, "hash-objects": 55, "preview": 8},
    "write_pause_s": 14.5,
    "objects_kept": 10_990,
    "objects_rehashed": 10,
    "verify_equal": True,
    "verify_differences": 0,
    "readings_compared": "rows=1200000 sum=1",
    "target_takes_writes": True,
}


def test_the_cutover_rows_give_its_steps_in_order_its_pause_and_how_much_shorter_it_is():
    figures = {**copy.deepcopy(FIGURES), "cutover": CUTOVER_FIGURES}
    del figures["rollback_s"]
    text = "\n".join(render_move(figures))
    assert "| cutover, the driver's run (`phase: cutover`) | 140 s |" in text
    assert (
        "| its steps | preview 8 s, hash-objects 55 s, fence 1 s, catch-up 3 s, verify 9 s, promote 2 s, apply 60 s |"
    ) in text
    assert "| its write pause (the fence to Monaco promoted: catch-up, verify, promote) | **14.5 s** |" in text
    assert "objects: 10,990 as hashed before the fence, 10 hashed again) |" in text
    said = "**Write pause: ours 14.5 s, backup and restore's 72.0 s for the databases: ours is 5.0 times shorter.**"
    assert said in text
    # With objects, backup and restore also stops writes for one whole copy of them.
    figures["objects"] = {**OBJECT_FIGURES, "first_pass_s": 90.0}
    figures["seed"] = {**figures["seed"], "objects_s": 30.0, "object_bytes": 133 * 2**20}
    text = "\n".join(render_move(figures))
    assert (
        "**Write pause: ours 14.5 s, backup and restore's 72.0 s for the databases and 90.0 s for one whole copy "
        "of the objects (the bucket mirror's first pass above), so at least 90.0 s (side by side) and 162.0 s one "
        "after the other: ours is 6.2 times shorter than the least of it.**"
    ) in text
    assert "rollback" not in text


def test_a_run_from_before_the_cutover_keeps_its_rollback_row_and_says_the_pause_was_not_measured():
    text = "\n".join(render_move(FIGURES))
    assert "| rollback (`move:` removed, one `pulumi up`) | 30 s |" in text
    assert "Not measured in this run: the cutover" in text and "Write pause: ours" not in text


def test_hyphenated_step_names_and_the_pause_are_read_from_the_drivers_output():
    out = (
        "[2/7 hash-objects] finished in 55 s: ok\n[4/7 catch-up] finished in 3 s: ok\n"
        "[6/7 promote] finished in 2 s: bucket mirror stopped; monaco-onprem's database promoted and taking "
        "writes: the write pause was 14.5 s (writes stopped on dusseldorf-test at 11:00:00 UTC)\n"
        "  objects: 10990 objects as hashed before the fence, 10 hashed again at the fence\n"
    )
    assert dict(move.STEP_LINE.findall(out)) == {"hash-objects": "55", "catch-up": "3", "promote": "2"}
    assert move.PAUSE_LINE.search(out).group(1) == "14.5"
    assert move.REHASHED_LINE.search(out).groups() == ("10990", "10")


ROLLBACK_FIGURES = {
    "written_on_target": 10_000,
    "driver_s": 240.0,
    "steps_s": {"unfence-source": 1, "apply": 30, "preview": 12, "restore-source": 90, "backup-target": 40,
                "copy-back": 20, "fence-target": 2, "objects-back": 60, "verify": 15},
    "write_pause_s": 230.5,
    "verify_equal": True,
    "verify_differences": 0,
    "readings_compared": "rows=1210000 sum=7",
    "source_readings": 1_210_000,
}  # fmt: skip


def test_the_rollback_rows_say_its_pause_and_steps_in_the_drivers_order_and_none_before_it_existed():
    figures = copy.deepcopy(FIGURES)
    figures["rollback_from_cutover"] = ROLLBACK_FIGURES
    said = "\n".join(render_move(figures))
    assert "10,000 readings written on Monaco first: the driver's run | 240 s |" in said
    assert ("| its steps | preview 12 s, apply 30 s, fence-target 2 s, backup-target 40 s, copy-back 20 s, "
            "restore-source 90 s, objects-back 60 s, verify 15 s, unfence-source 1 s |") in said  # fmt: skip
    assert "a dump, a copy and a restore of everything) | **230.5 s** |" in said
    assert "| True (rows=1210000); 1,210,000 |" in said
    assert "Nothing lost by either method" in said
    broken = copy.deepcopy(figures)
    broken["rollback_from_cutover"]["verify_differences"] = 2
    said = "\n".join(render_move(broken))
    assert "Nothing lost" not in said and "the rollback 2;" in said
    unequal = copy.deepcopy(figures)
    unequal["rollback_from_cutover"]["verify_equal"] = False
    assert "Nothing lost" not in "\n".join(render_move(unequal))
    assert "rollback from the cutover" not in "\n".join(render_move(FIGURES))
