"""`smartnation move ENV --to CLUSTER`: the driver of the declared phase, with the engine (a fake
stack behind `smartnation up`'s own code path), kubectl and the psql it runs stood in at the
process boundary (test_cli_move_status.py's fake of two clusters, answering compare's queries
too) and a fake clock. The steps, the audit lines, the progress file and the resume after a
crash, every refusal (nothing touched), the lag wait's progress lines and timeout, the
verification's report and its failure.

The real thing, while replicate streams between the local clusters: tests/integration/test_move_replicate.py.
"""

from __future__ import annotations

import base64
import json
import logging
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pulumi import automation as auto

from smartnation.cli import exit_codes, move_driver, move_progress, releases_copy
from smartnation.cli.compare_data import DATABASE_SQL, DEVICES_SQL
from smartnation.cli.main import main
from smartnation.cli.move_status import STATUS_SQL
from smartnation.settings import load_settings
from tests.unit.harness import REPO_ENVIRONMENTS
from tests.unit.test_cli_move_status import (  # the fake of two clusters `move --status` is tested with
    BRIDGE_SELECTOR,
    LINK,
    MOVE,
    NAMESPACE,
    PASSWORD,
    PRIMARY_STATUS,
    PROJECT,
    SOURCE,
    STANDBY_STATUS,
    TARGET,
    Cluster,
    FakeKubectl,
    Output,
)

pytestmark = pytest.mark.unit

APPLIED = {"to": TARGET, "phase": "replicate", "namespace": NAMESPACE, "replication_sources": [f"{LINK}/32"]}
TABLES = [
    "SNCMP|tables|telemetry.public.readings|rows=300 sum=123456",
    "SNCMP|chunks|telemetry.public.readings [2026-11-27 00:00:00+00, 2026-11-28 00:00:00+00)|rows=100 sum=42",
]
DEVICES = ["SNCMP|devices|traffic-001|0cc175b9c0f1b6a831c399e269772661"]


def lagging(*lags: float | None, address: str = LINK) -> list[dict[str, Any]]:
    """The source's status line per poll: its walsender to ``address`` with each lag in turn."""
    row = PRIMARY_STATUS["replication"][0]
    return [{**PRIMARY_STATUS, "replication": [{**row, "client_address": address, "lag_bytes": lag}]} for lag in lags]


OBJECTS = {"backups/2026-11-29.dump.gz": (3000, "ab" * 32), "open-data/readme.txt": (12, "cd" * 32)}
"""Each object's size and sha256, as the object reader fingerprints them."""
READERS = {
    # The source's reader API's Pod; the target's bucket mirror's `reader` container.
    "app.kubernetes.io/instance=dev-telemetry-ingest,app.kubernetes.io/component=telemetry-ingest": (
        "dev-telemetry-ingest-5d8f",
        "telemetry-ingest",
    ),
    "app.kubernetes.io/instance=dev-object-storage,app.kubernetes.io/component=mirror": (
        "dev-object-storage-mirror-7c9b",
        "reader",
    ),
}
ROOT = {"MINIO_ROOT_USER": "root", "MINIO_ROOT_PASSWORD": "root-secret"}
RETAINED = {"city/traffic/t-1/telemetry": "ef" * 32}
"""Each retained message's sha256, as the reader fingerprints them."""
INGEST_POD = READERS["app.kubernetes.io/instance=dev-telemetry-ingest,app.kubernetes.io/component=telemetry-ingest"]


@dataclass
class Site(Cluster):
    """A fake cluster whose status changes per poll and whose database and objects compare reads."""

    statuses: list[dict[str, Any]] = field(default_factory=list)
    tables: list[str] = field(default_factory=lambda: list(TABLES))
    reads: int = 0
    objects: list[dict[str, tuple[int, str]]] = field(default_factory=lambda: [dict(OBJECTS)])
    """What the object reader finds, one entry a read (the last repeated): a mirror catching up."""
    object_reads: list[tuple[str, bool]] = field(default_factory=list)
    """(pod, listing only) of each object read."""
    retained: list[dict[str, str]] = field(default_factory=lambda: [dict(RETAINED)])
    """What the broker's retained messages are, one entry a read (the last repeated)."""
    retained_reads: list[str] = field(default_factory=list)
    """The pod of each retained read."""

    def read_retained(self, pod: str) -> str:
        found = self.retained[min(len(self.retained_reads), len(self.retained) - 1)]
        self.retained_reads.append(pod)
        lines = [f"SNCMP|retained|{topic}|sha256={digest}" for topic, digest in sorted(found.items())]
        return "\n".join([*lines, "SNCMP-DONE"]) + "\n"

    def read_objects(self, pod: str, listing_only: bool) -> str:
        found = self.objects[min(len(self.object_reads), len(self.objects) - 1)]
        self.object_reads.append((pod, listing_only))
        lines = [
            f"SNCMP|objects|{key}|size={size}" + ("" if listing_only else f" sha256={digest}")
            for key, (size, digest) in sorted(found.items())
        ]
        buckets = sorted({key.split("/")[0] for key in found})
        lines += [f"SNCMP|buckets|{b}|objects={sum(k.startswith(b + '/') for k in found)}" for b in buckets]
        return "\n".join([*lines, "SNCMP-DONE"]) + "\n"


class Clusters(FakeKubectl):
    """Both clusters: `move --status`'s reads (one status a poll, the last repeated) and compare's psql."""

    def __call__(self, argv, env=None, input=None, capture_output=False, text=False, timeout=None, **_):
        site = self.clusters.get(argv[2]) if len(argv) > 2 else None
        rest = list(argv[5:]) if argv[3:4] == ["-n"] else []
        if site is not None and rest[:2] == ["get", "pods"] and rest[rest.index("-l") + 1] in READERS:
            self.calls.append(SimpleNamespace(argv=list(argv), input=input))
            pod, container = READERS[rest[rest.index("-l") + 1]]
            item = {"metadata": {"name": pod}, "spec": {"containers": [{"name": container}]}}
            return self._done(0, json.dumps({"items": [{**item, "status": {"phase": "Running"}}]}))
        if site is not None and rest[:3] == ["get", "secret", "dev-object-storage-root"]:
            self.calls.append(SimpleNamespace(argv=list(argv), input=input))
            data = {key: base64.b64encode(value.encode()).decode() for key, value in ROOT.items()}
            return self._done(0, json.dumps({"data": data}))
        if site is not None and rest[:1] == ["exec"] and "python3.11" in rest:
            self.calls.append(SimpleNamespace(argv=list(argv), input=input))
            given = json.loads(input)
            pod, container = rest[2], rest[4]
            if given.get("topics"):
                # The retained messages: through each site's reader API (its broker login), no storage.
                assert "storage" not in given and given["topics"] == ["city/+/+/telemetry"], given
                # The reader waits for them after subscribing (each arrives at once).
                assert isinstance(given["settle"], float) and given["settle"] > 0, given
                assert (pod, container) == INGEST_POD, rest
                return self._done(0, site.read_retained(pod))
            assert given["storage"] == {"user": "root", "password": "root-secret"}, "credentials on stdin"
            assert given["topics"] == [], "objects and retained messages are read apart"
            assert (pod, container) in READERS.values(), rest
            return self._done(0, site.read_objects(pod, given.get("listing_only", False)))
        if "exec" in argv and input is not None and site is not None and not input.endswith(STATUS_SQL):
            self.calls.append(SimpleNamespace(argv=list(argv), input=input))
            assert input.startswith(f"{PASSWORD}\n"), "the password first on stdin, never an argument"
            sql = input.split("\n", 1)[1]
            if sql.startswith("SELECT datname FROM pg_database"):
                return self._done(0, "telemetry\ndevice_registry\n")
            if sql == DATABASE_SQL:
                return self._done(0, "\n".join(site.tables if argv[-1] == "telemetry" else []) + "\n")
            if sql == DEVICES_SQL.format(table="devices"):
                return self._done(0, "\n".join(DEVICES) + "\n")
            raise AssertionError(f"unexpected SQL: {sql[:80]}")
        if "exec" in argv and site is not None and site.statuses:
            site.status = site.statuses[min(site.reads, len(site.statuses) - 1)]
            site.reads += 1
        return super().__call__(argv, env=env, input=input, capture_output=capture_output, text=text, timeout=timeout)


class FakeStack:
    """The engine's stack behind `smartnation up`: each update is a new history entry."""

    def __init__(self) -> None:
        self.version = 7
        self.previews = self.updates = 0
        self.fail_update: Exception | None = None
        self.move: dict[str, Any] | None = None
        self.violations: list[str] = []

    def preview(self, **kwargs: Any) -> Any:
        assert kwargs["diff"] and kwargs["policy_packs"], "previewed with diff and the policy pack"
        kwargs["on_output"]("+ kubernetes:core/v1:Service monaco-onprem-dev-database-published create")
        self.previews += 1
        for line in self.violations:
            kwargs["on_output"](line)
        if self.violations:
            raise auto.CommandError(auto.CommandResult("", "error: preview failed\n", 255))
        return SimpleNamespace(change_summary={"create": 12, "update": 3, "same": 80})

    def up(self, **kwargs: Any) -> Any:
        assert kwargs["policy_packs"], "applied with the policy pack, as `smartnation up` does"
        if self.fail_update is not None:
            raise self.fail_update
        self.updates += 1
        self.version += 1
        self.move = APPLIED
        return SimpleNamespace(summary=SimpleNamespace(resource_changes={"same": 95}))

    def history(self, page_size: int | None = None, show_secrets: bool = True) -> list[Any]:
        assert show_secrets is False and page_size is None, "the whole history is counted"
        # As a self-managed backend (file://, s3://) records them: every update's version is 0.
        return [SimpleNamespace(version=0) for _ in range(self.version)]

    def outputs(self) -> dict[str, Output]:
        return {"cluster": Output(SOURCE), **({"move": Output(self.move)} if self.move else {})}

    def export_stack(self) -> Any:
        return SimpleNamespace(deployment={})

    def get_all_config(self) -> dict[str, Any]:
        return {}


class Clock:
    """time for the driver: sleep advances it, nothing waits."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    strftime = staticmethod(time.strftime)
    gmtime = staticmethod(time.gmtime)


@pytest.fixture
def project(tmp_path: Path, monkeypatch) -> Path:
    """A project with the repository's environment files (dev on Düsseldorf), its own name."""
    root = tmp_path / "project"
    shutil.copytree(REPO_ENVIRONMENTS, root / "environments", ignore=shutil.ignore_patterns("stacks", "audit"))
    (root / "Pulumi.yaml").write_text(f"name: {PROJECT}\nruntime: python\n")
    monkeypatch.setenv("SMARTNATION_PROJECT_DIR", str(root))
    monkeypatch.setenv("SMARTNATION_ENVIRONMENTS_DIR", str(root / "environments"))
    monkeypatch.setenv("SMARTNATION_KUBECONFIG", str(tmp_path / "kubeconfig"))
    monkeypatch.setenv("SMARTNATION_OPERATOR", "operator@example.mc")
    return root


@pytest.fixture
def moving(project: Path) -> Path:
    with (project / "environments" / "dev.yaml").open("a") as file:
        file.write(MOVE)
    return project


@pytest.fixture
def stack(monkeypatch) -> FakeStack:
    """The engine stood in for the driver and for `smartnation up` (its lock and marker reads too)."""
    fake = FakeStack()

    def select(environment: str, create: bool = True, environments: Path | None = None, remove_torn: bool = False):
        return fake, load_settings(environment)

    monkeypatch.setattr("smartnation.cli.workspace.select", select)
    monkeypatch.setattr("smartnation.cli.up.select", select)
    monkeypatch.setattr("smartnation.cli.up.moved_to", lambda environment: None)
    monkeypatch.setattr("smartnation.cli.up.lock_holders", lambda environment: [])
    monkeypatch.setattr("smartnation.cli.up.missing_secrets", lambda settings, config: None)
    monkeypatch.setattr(move_driver, "time", Clock())
    return fake


def two_sites(source: list[dict[str, Any]] | None = None, **changes: Any) -> Clusters:
    return Clusters({SOURCE: Site(None, statuses=source or lagging(0)), TARGET: Site(STANDBY_STATUS, **changes)})


def drive(monkeypatch, caplog, capsys, fake: Clusters, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(subprocess, "run", fake)
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="smartnation"):
        code = main(["move", "dev", "--to", TARGET, "--interval", "2", *args])
    return code, capsys.readouterr().out, caplog.text


def audit_lines(project: Path) -> list[tuple[str | None, str]]:
    path = project / "environments" / "audit" / "promotions.jsonl"
    entries = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    assert all(e["extra"]["operation"] == "move" for e in entries)
    return [(e["extra"]["step"], e["result"]) for e in entries]


def progress(project: Path) -> dict[str, Any]:
    return json.loads((project / ".smartnation" / "move" / "dev.json").read_text())


STEPS = ("preview", "apply", "wait", "verify")


def test_replicate_previews_applies_waits_for_lag_0_verifies_and_says_the_next_step(
    moving, stack, monkeypatch, caplog, capsys
):
    declared = (moving / "environments" / "dev.yaml").read_text()
    fake = two_sites(lagging(4000, 3000, 1000, 0))
    code, out, errors = drive(monkeypatch, caplog, capsys, fake, "--yes")
    assert code == exit_codes.OK, errors
    lines = out.splitlines()
    assert lines[0] == f"dev (environments/dev.yaml): move from {SOURCE} to {TARGET}, phase replicate"
    assert "+ kubernetes:core/v1:Service monaco-onprem-dev-database-published create" in lines, "the preview shown"
    assert (stack.previews, stack.updates) == (1, 1)
    # One progress line a poll: the lag, the time since the last replay, an estimate from the lag's rate.
    waits = [line for line in lines if line.startswith("  lag ")]
    assert waits == [
        "  lag 4000 bytes, last replay 12.5 s ago, time left unknown; walsender streaming, standby receiver "
        "streaming (0 of 1800 s)",
        "  lag 3000 bytes, last replay 12.5 s ago, about 6 s left at 500 bytes/s; walsender streaming, standby "
        "receiver streaming (2 of 1800 s)",
        "  lag 1000 bytes, last replay 12.5 s ago, about 1 s left at 1000 bytes/s; walsender streaming, standby "
        "receiver streaming (4 of 1800 s)",
        "  lag 0 bytes, last replay 12.5 s ago, about 0 s left at 500 bytes/s; walsender streaming, standby "
        "receiver streaming (6 of 1800 s)",
    ]
    # Then the bucket mirror: the target's buckets list the source's objects.
    assert [line for line in lines if line.startswith("  objects:")] == [
        "  objects: source 2, target 2, 0 to copy or remove (6 of 1800 s)"
    ]
    (finished,) = [line for line in lines if line.startswith("[3/4 wait] finished")]
    assert finished.startswith(
        f"[3/4 wait] finished in 6 s: {TARGET} streams with lag 0 bytes after 6 s; the bucket mirror holds "
        "the source's 2 objects after 6 s (progress "
    ), finished
    report_line = next(line for line in lines if line.startswith("  report "))
    report = json.loads(Path(report_line.removeprefix("  report ")).read_text())
    assert report["equal"] is True and report["differences"] == []
    assert report["sections"] == ["tables", "chunks", "devices", "objects", "buckets", "retained"]
    assert report["fingerprints"]["source"] == report["fingerprints"]["target"]
    assert report["fingerprints"]["target"]["retained"] == {"city/traffic/t-1/telemetry": f"sha256={'ef' * 32}"}
    # The retained messages read once a side (equal at once), through each site's telemetry-ingest Pod.
    assert fake.clusters[SOURCE].retained_reads == fake.clusters[TARGET].retained_reads == [INGEST_POD[0]]
    assert "  retained: read 1 time(s)" in lines
    assert report["fingerprints"]["source"]["objects"] == {
        "backups/2026-11-29.dump.gz": f"size=3000 sha256={'ab' * 32}",
        "open-data/readme.txt": f"size=12 sha256={'cd' * 32}",
    }
    assert report["fingerprints"]["source"]["buckets"] == {"backups": "objects=1", "open-data": "objects=1"}
    # Listed once each in the wait, hashed once each in the verification: the source through its
    # telemetry-ingest Pod, the target through the bucket mirror's reader.
    assert fake.clusters[SOURCE].object_reads == [
        ("dev-telemetry-ingest-5d8f", True),
        ("dev-telemetry-ingest-5d8f", False),
    ]
    # The driver's polls leave the broker bridge's Pod to the operator's --status.
    assert not [call for call in fake.calls if BRIDGE_SELECTOR in call.argv], "no bridge read by the driver"
    assert fake.clusters[TARGET].object_reads == [
        ("dev-object-storage-mirror-7c9b", True),
        ("dev-object-storage-mirror-7c9b", False),
    ]
    assert report["fingerprints"]["source"]["tables"] == {"telemetry.public.readings": "rows=300 sum=123456"}
    assert report["fingerprints"]["source"]["devices"] == {"traffic-001": "0cc175b9c0f1b6a831c399e269772661"}
    assert lines[-1] == (
        "next: declare `phase: cutover` in environments/dev.yaml, open a pull request, and once merged run this "
        "again: it stops the writes here, waits for the target to replay them, verifies, promotes the target "
        "and applies"
    )
    assert audit_lines(moving) == [(step, result) for step in STEPS for result in ("started", "finished")]
    saved = progress(moving)
    assert (saved["to"], saved["phase"], saved["stack_update"]) == (TARGET, "replicate", 8)
    assert sorted(saved["finished"]) == sorted(STEPS)
    assert (moving / "environments" / "dev.yaml").read_text() == declared, "the driver never edits the file"


def test_a_re_run_after_everything_finished_redoes_nothing(moving, stack, monkeypatch, caplog, capsys):
    assert drive(monkeypatch, caplog, capsys, two_sites(), "--yes")[0] == exit_codes.OK
    fake = two_sites()
    code, out, _ = drive(monkeypatch, caplog, capsys, fake, "--yes")
    assert code == exit_codes.OK
    assert (stack.previews, stack.updates) == (1, 1)
    assert sum("for this phase and stack update #8: not redone" in line for line in out.splitlines()) == 4
    assert fake.calls == [] and out.splitlines()[-1].startswith("next: declare `phase: cutover`")


def test_the_wait_times_out_with_its_own_exit_and_a_re_run_resumes_after_the_apply(
    moving, stack, monkeypatch, caplog, capsys
):
    code, out, errors = drive(monkeypatch, caplog, capsys, two_sites(lagging(500)), "--yes", "--timeout", "10")
    assert code == exit_codes.TIMED_OUT == 9
    assert f"{TARGET} did not catch up within --timeout 10 s (last: lag 500 bytes" in errors
    assert "time left unknown (the lag is not shrinking)" in out
    assert audit_lines(moving)[-2:] == [("wait", "started"), ("wait", "failed")]
    assert sorted(progress(moving)["finished"]) == ["apply", "preview"]
    assert "[4/4 verify]" not in out

    code, out, _ = drive(monkeypatch, caplog, capsys, two_sites(lagging(200, 0)), "--yes")
    assert code == exit_codes.OK
    assert (stack.previews, stack.updates) == (1, 1), "preview and apply were not redone"
    assert "[1/4 preview] finished at" in out and "[2/4 apply] finished at" in out and "not redone" in out
    assert sorted(progress(moving)["finished"]) == sorted(STEPS)


def test_an_update_by_someone_else_in_between_starts_the_steps_over(moving, stack, monkeypatch, caplog, capsys):
    drive(monkeypatch, caplog, capsys, two_sites(lagging(500)), "--yes", "--timeout", "4")
    stack.version += 1  # another update of the stack since the apply
    code, out, _ = drive(monkeypatch, caplog, capsys, two_sites(), "--yes")
    assert code == exit_codes.OK
    assert "stack update #8; now monaco-onprem, replicate, #9: every step runs again" in out
    assert (stack.previews, stack.updates) == (2, 2)


def test_only_the_walsender_to_the_target_counts_and_the_standby_must_stream(
    moving, stack, monkeypatch, caplog, capsys
):
    # An in-site replica (a Pod address) at lag 0 is not the target.
    fake = two_sites(lagging(0, address="10.244.0.17"))
    code, out, _ = drive(monkeypatch, caplog, capsys, fake, "--yes", "--timeout", "4")
    assert code == exit_codes.TIMED_OUT
    assert "  lag unknown, last replay 12.5 s ago, time left unknown; no walsender to the target" in out
    # A few bytes behind is not caught up.
    code, out, _ = drive(monkeypatch, caplog, capsys, two_sites(lagging(8)), "--yes", "--timeout", "4")
    assert code == exit_codes.TIMED_OUT and out.count("  lag 8 bytes,") == 3
    # The walsender at lag 0 but the standby's receiver not streaming: not caught up either.
    fake = two_sites()
    fake.clusters[TARGET].status = {**STANDBY_STATUS, "receiver_status": "stopping"}
    code, out, _ = drive(monkeypatch, caplog, capsys, fake, "--yes", "--timeout", "4")
    assert code == exit_codes.TIMED_OUT
    assert "walsender streaming, standby receiver stopping" in out


def test_a_side_not_read_while_waiting_is_named_and_the_wait_goes_on(moving, stack, monkeypatch, caplog, capsys):
    fake = two_sites()
    fake.clusters[TARGET].psql = (2, "", "psql: error: the database system is starting up")
    code, out, errors = drive(monkeypatch, caplog, capsys, fake, "--yes", "--timeout", "4")
    assert code == exit_codes.TIMED_OUT
    assert "not read: target monaco-onprem: psql in dev-database-primary-0 failed: psql: error: the database" in out
    assert out.count("  lag 0 bytes") == 3, "polled until the timeout, never taken as caught up"


def test_a_difference_fails_the_verification_naming_it_in_the_report(moving, stack, monkeypatch, caplog, capsys):
    changed = ["SNCMP|tables|telemetry.public.readings|rows=300 sum=999", TABLES[1]]
    report = moving / "verify.json"
    fake = two_sites(tables=changed)
    code, out, errors = drive(monkeypatch, caplog, capsys, fake, "--yes", "--report", str(report))
    assert code == exit_codes.FAILED
    assert "  tables   source     1  target     1  1 DIFFERENT" in out.splitlines()
    assert f"differ in 1 item(s); report {report}" in errors
    written = json.loads(report.read_text())
    assert written["equal"] is False
    assert [d["key"] for d in written["differences"]] == ["telemetry.public.readings"]
    assert audit_lines(moving)[-1] == ("verify", "failed")
    assert "verify" not in progress(moving)["finished"] and "next:" not in out


def test_a_retained_message_the_bridge_carries_late_is_read_again(moving, stack, monkeypatch, caplog, capsys):
    newer = {"city/traffic/t-1/telemetry": "01" * 32}
    fake = two_sites()
    # The source's device published a newer retained reading; the target gets it by the second read.
    fake.clusters[SOURCE].retained = [newer]
    fake.clusters[TARGET].retained = [dict(RETAINED), newer]
    report = moving / "verify.json"
    code, out, errors = drive(monkeypatch, caplog, capsys, fake, "--yes", "--report", str(report))
    assert code == exit_codes.OK, out + errors
    assert "  retained: read 2 time(s)" in out.splitlines()
    assert "  retained source     1  target     1  equal" in out.splitlines()
    assert len(fake.clusters[TARGET].retained_reads) == 2
    assert json.loads(report.read_text())["seconds"] == 1, "the second read a second after the first"


def test_a_retained_message_missing_three_reads_in_a_row_fails(moving, stack, monkeypatch, caplog, capsys):
    report = moving / "verify.json"
    fake = two_sites()
    fake.clusters[SOURCE].retained = [{**RETAINED, "city/parking/p-9/telemetry": "02" * 32}]
    code, out, errors = drive(monkeypatch, caplog, capsys, fake, "--yes", "--report", str(report))
    assert code == exit_codes.FAILED
    assert "  retained: read 3 time(s)" in out.splitlines()
    assert "  retained source     2  target     1  1 DIFFERENT" in out.splitlines()
    assert f"  retained city/parking/p-9/telemetry: only on the source (sha256={'02' * 32})" in out.splitlines()
    written = json.loads(report.read_text())
    assert [(d["section"], d["key"]) for d in written["differences"]] == [("retained", "city/parking/p-9/telemetry")]
    assert len(fake.clusters[SOURCE].retained_reads) == len(fake.clusters[TARGET].retained_reads) == 3
    assert written["seconds"] == 2, "three reads, a second apart"
    assert audit_lines(moving)[-1] == ("verify", "failed")


def test_a_retained_reader_that_stops_early_fails_the_verification_naming_the_side(
    moving, stack, monkeypatch, caplog, capsys
):
    fake = two_sites()
    target = fake.clusters[TARGET]
    target.read_retained = lambda pod: "Traceback: the broker refused the login\n"  # no SNCMP-DONE
    code, out, errors = drive(monkeypatch, caplog, capsys, fake, "--yes")
    assert code == exit_codes.FAILED
    assert f"verification could not read a side: {TARGET}/" in errors
    assert f"the reader in {INGEST_POD[0]} stopped early: Traceback: the broker refused the login" in errors
    assert audit_lines(moving)[-1] == ("verify", "failed")


@pytest.mark.parametrize(
    ("appended", "to", "named"),
    [
        ("", TARGET, "environments/dev.yaml: move: no move declared; the environment file is the reviewed "
         f"declaration: add `move: {{to: {TARGET}, phase: replicate}}` to environments/dev.yaml"),
        (MOVE, SOURCE, f"environments/dev.yaml: move.to: --to {SOURCE} is not the declared move ({TARGET})"),
    ],
)  # fmt: skip
def test_the_file_is_the_declaration_and_a_mismatch_touches_nothing(
    project, stack, monkeypatch, caplog, capsys, appended, to, named
):
    env_file = project / "environments" / "dev.yaml"
    env_file.write_text(env_file.read_text() + appended)
    before = env_file.read_text()
    fake = two_sites()
    monkeypatch.setattr(subprocess, "run", fake)
    with caplog.at_level(logging.ERROR, logger="smartnation"):
        code = main(["move", "dev", "--to", to, "--yes"])
    assert code == exit_codes.BAD_INPUT
    assert named in caplog.text
    assert fake.calls == [] and (stack.previews, stack.updates) == (0, 0)
    assert env_file.read_text() == before
    assert not (project / ".smartnation").exists()
    assert audit_lines(project) == [(None, "refused")]


def test_a_torn_progress_file_is_reported_not_a_traceback(moving, stack, monkeypatch, caplog, capsys):
    path = moving / ".smartnation" / "move" / "dev.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"version": 1, "environment": "dev", "to": "monaco-on')
    code, out, errors = drive(monkeypatch, caplog, capsys, two_sites(), "--yes")
    assert code == exit_codes.BAD_INPUT
    assert f"the progress file is torn: {path}: not whole JSON" in errors and "Remove it" in errors
    assert "Traceback" not in out + errors and (stack.previews, stack.updates) == (0, 0)
    path.write_text(json.dumps({"version": 1, "environment": "dev", "to": TARGET, "phase": "replicate"}))
    code, _, errors = drive(monkeypatch, caplog, capsys, two_sites(), "--yes")
    assert code == exit_codes.BAD_INPUT and "are not all as written" in errors


def test_without_yes_and_no_terminal_the_apply_is_aborted_as_up_does(moving, stack, monkeypatch, caplog, capsys):
    monkeypatch.setattr("sys.stdin", open("/dev/null"))  # noqa: SIM115 - closed with the test
    code, out, errors = drive(monkeypatch, caplog, capsys, two_sites())
    assert code == exit_codes.ABORTED
    assert "Deploy dev to dusseldorf-test?: no terminal to ask on; pass --yes to proceed" in errors
    assert (stack.previews, stack.updates) == (1, 0)
    assert audit_lines(moving)[-2:] == [("apply", "started"), ("apply", "failed")]
    assert sorted(progress(moving)["finished"]) == ["preview"]


VIOLATIONS = [
    "    smartnation-guardrails@v0.1.0 [mandatory] [severity: critical]  no-public-data-services  "
    "(kubernetes:core/v1:Service: dusseldorf-test-database-published)No LoadBalancer or NodePort Service exposes",
    "    smartnation-guardrails@v0.1.0 [mandatory] [severity: high]  allowed-registries  "
    "(kubernetes:apps/v1:StatefulSet: monaco-onprem-database-primary-server)Container images come only from",
    "    smartnation-guardrails@v0.1.0 [advisory] [severity: low]  prefer-pod-disruption-budget  (...)",
]


def test_a_mandatory_policy_failing_in_the_preview_stops_before_the_apply(moving, stack, monkeypatch, caplog, capsys):
    stack.violations = VIOLATIONS
    code, out, errors = drive(monkeypatch, caplog, capsys, two_sites(), "--yes")
    assert code == exit_codes.POLICY_VIOLATION
    assert "a mandatory policy failed in the preview (allowed-registries, no-public-data-services;" in errors
    assert VIOLATIONS[0] in out.splitlines(), "the violations are shown"
    assert (stack.previews, stack.updates) == (1, 0)
    assert audit_lines(moving) == [("preview", "started"), ("preview", "failed")]
    assert not (moving / ".smartnation" / "move" / "dev.json").exists()


def test_an_engine_failure_in_the_apply_is_audited_and_exits_as_up_does(moving, stack, monkeypatch, caplog, capsys):
    stack.fail_update = auto.CommandError(auto.CommandResult("", "error: update failed: quota exceeded\n", 255))
    code, _, errors = drive(monkeypatch, caplog, capsys, two_sites(), "--yes")
    assert code == exit_codes.FAILED
    assert "pulumi failed: " in errors and "error: update failed: quota exceeded" in errors
    assert audit_lines(moving)[-1] == ("apply", "failed")
    entries = (moving / "environments" / "audit" / "promotions.jsonl").read_text().splitlines()
    assert "quota exceeded" in json.loads(entries[-1])["reason"]


def test_status_and_to_together_are_refused(moving, stack, monkeypatch, caplog, capsys):
    fake = two_sites()
    code, _, errors = drive(monkeypatch, caplog, capsys, fake, "--status")
    assert code == exit_codes.BAD_INPUT and "--status reads, --to drives" in errors
    assert fake.calls == []


@pytest.fixture
def saved(project: Path) -> Iterator[move_progress.Progress]:
    yield move_progress.Progress("dev", TARGET, "replicate", 8, {"preview": "2026-11-29T16:00:00Z"})


def test_the_progress_file_is_replaced_atomically(project, saved, monkeypatch):
    path = move_progress.save(saved)
    assert move_progress.load("dev") == saved
    before = path.read_text()

    def killed(*_: Any) -> None:
        raise KeyboardInterrupt  # stands for the process dying between write and rename

    monkeypatch.setattr(releases_copy.os, "replace", killed)  # the write move_progress.save uses
    saved.finished["apply"] = "2026-11-29T16:01:00Z"
    with pytest.raises(KeyboardInterrupt):
        move_progress.save(saved)
    assert path.read_text() == before, "the old file stays whole"
    assert [p.name for p in path.parent.iterdir()] == ["dev.json"], "no temporary file left"
    assert saved.keeps(TARGET, "replicate", 8) and not saved.keeps(TARGET, "replicate", 9)
    assert not saved.keeps(TARGET, "cutover", 8) and not saved.keeps(SOURCE, "replicate", 8)


def test_the_wait_goes_on_until_the_bucket_mirror_lists_the_sources_objects(moving, stack, monkeypatch, caplog, capsys):
    first = {"backups/2026-11-29.dump.gz": OBJECTS["backups/2026-11-29.dump.gz"]}
    half = {**first, "backups/old.dump.gz": (10, "ef" * 32)}  # one still to copy, one to remove
    fake = two_sites(objects=[{}, half, dict(OBJECTS)])
    code, out, errors = drive(monkeypatch, caplog, capsys, fake, "--yes")
    assert code == exit_codes.OK, errors
    assert [line for line in out.splitlines() if line.startswith("  objects:")] == [
        "  objects: source 2, target 0, 2 to copy or remove (0 of 1800 s)",
        "  objects: source 2, target 2, 2 to copy or remove (2 of 1800 s)",
        "  objects: source 2, target 2, 0 to copy or remove (4 of 1800 s)",
    ]
    assert "the bucket mirror holds the source's 2 objects after 4 s" in out
    assert audit_lines(moving)[-2:] == [("verify", "started"), ("verify", "finished")]


def test_a_mirror_that_does_not_catch_up_times_out_naming_its_log(moving, stack, monkeypatch, caplog, capsys):
    fake = two_sites(objects=[{}])
    code, out, errors = drive(monkeypatch, caplog, capsys, fake, "--yes", "--timeout", "4")
    assert code == exit_codes.TIMED_OUT
    assert (
        f"the bucket mirror on {TARGET} did not catch up within --timeout 4 s (last: objects: source 2, "
        "target 0, 2 to copy or remove); its log: `kubectl --context monaco-onprem -n smartnation-unit-dev "
        "logs deployment/dev-object-storage-mirror -c mirror`"
    ) in errors
    assert audit_lines(moving)[-2:] == [("wait", "started"), ("wait", "failed")]
    assert "[4/4 verify]" not in out


def test_an_object_whose_content_differs_fails_the_verification(moving, stack, monkeypatch, caplog, capsys):
    # Same names and sizes (the wait's listing passes), another sha256: only the hashes show it.
    changed = {**OBJECTS, "open-data/readme.txt": (12, "00" * 32)}
    report = moving / "verify.json"
    fake = two_sites(objects=[changed])
    code, out, errors = drive(monkeypatch, caplog, capsys, fake, "--yes", "--report", str(report))
    assert code == exit_codes.FAILED
    written = json.loads(report.read_text())
    assert [(d["section"], d["key"]) for d in written["differences"]] == [("objects", "open-data/readme.txt")]
    assert "objects  source     2  target     2  1 DIFFERENT" in out
