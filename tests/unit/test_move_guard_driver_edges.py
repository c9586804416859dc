"""The move's program guard (program/move_guard.py) and driver (cli/move_driver.py), edge by edge,
written against a mutation run's survivors (tests/tools/mutation.py --scope move --only both).

The guard: its reading of the stack through the pulumi CLI (the argv, where it runs, how it fails
closed), odd outputs, the cutover's and the complete phase's live checks only in an update run by
the engine (not under mocks, not in a preview), the readers they use (`move --status`'s, kubectl's
ConfigMap), their messages in full. The driver: each phase's next step, the apply as `smartnation
up`, the replication sources, a lag sample and its progress line, the mirror's wait (what it could
not read, its timeout), both sites read at once, the audit lines and the report, marks kept when a
step fails, --namespace, the report's UTC name.

Stand-ins: the engine's monitor, subprocess.run (pulumi, kubectl), `move --status`'s reader,
compare's object reader; the driver's runs with the fakes of tests/unit/test_cli_move_driver.py.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import re
import subprocess
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pulumi
import pytest

from smartnation.cli import compare, exit_codes, move_complete, move_cutover, move_driver, move_status, up
from smartnation.cli.compare_data import Snapshot
from smartnation.cli.move_driver import Sample, StepFailed
from smartnation.program import move_guard, naming
from smartnation.program.move_guard import (
    Deployed,
    check_cutover_ran,
    check_final_backup,
    check_move,
    deployed_by_engine,
)
from smartnation.settings import SettingsError, load_settings
from tests.unit import test_cli_move_driver as driver_tests
from tests.unit.harness import edit
from tests.unit.test_cli_move_driver import LINK, SOURCE, STANDBY_STATUS, TARGET, drive, lagging, two_sites

pytestmark = pytest.mark.unit
project, stack, moving = driver_tests.project, driver_tests.stack, driver_tests.moving  # the driver tests' fixtures

HOME, OTHER = "dusseldorf-test", "monaco-onprem"  # dev's cluster and the one it moves to


# --- The guard: the stack's outputs --------------------------------------------------------------


@pytest.mark.parametrize("cluster", ["", 5, None, ["dusseldorf-test"]])
def test_a_cluster_output_that_is_no_name_means_nothing_deployed(cluster: Any) -> None:
    assert Deployed.from_outputs({"cluster": cluster, "move": {"to": OTHER, "phase": "cutover"}}) is None


def test_a_move_output_that_is_not_a_mapping_records_no_phase() -> None:
    assert Deployed.from_outputs({"cluster": HOME, "move": "cutover"}) == Deployed(HOME, None, None)


PHASES_RUN = "the phases run replicate -> cutover -> complete, each its own reviewed update"
ROLLBACK = f"to go back to {HOME}, declare `move: {{to: {OTHER}, phase: rollback}}` (docs/move.md)"


@pytest.mark.parametrize(
    ("cluster", "move", "deployed", "key", "said"),
    [
        (OTHER, None, Deployed(HOME), "cluster",
         f"dev is deployed on {HOME} with its data (the stack's `cluster` output); changing `cluster:` to {OTHER} "
         f"alone would create an empty copy there and delete {HOME}'s namespace, volumes and backups in the same "
         f"update. Move it with its data: keep `cluster: {HOME}` and declare `move: {{to: {OTHER}, phase: "
         "replicate}` (docs/move.md)"),
        (OTHER, {"to": HOME, "phase": "replicate"}, Deployed(HOME), "cluster",
         f"during a move `cluster:` stays where the environment is deployed ({HOME}, the stack's `cluster` output), "
         f"got {OTHER}; `move.to` names where it goes"),
        (None, {"to": OTHER, "phase": "replicate"}, Deployed(HOME, OTHER, "cutover"), "move.phase",
         f"dev's cutover to {OTHER} ran (the stack's `move` output): {OTHER} has taken writes since, which going "
         f"back to replicate would lose; {ROLLBACK}"),
        (None, None, Deployed(HOME, OTHER, "cutover"), "move",
         f"dev's cutover to {OTHER} ran (the stack's `move` output): {OTHER} has taken writes since, which going "
         f"back to no move would lose; {ROLLBACK}"),
        (None, {"to": OTHER, "phase": "replicate"}, None, "move",
         f"dev is not deployed on {HOME} (the stack has no `cluster` output): a move replicates a deployed "
         f"environment's data; deploy it on {HOME} first, or change `cluster:` alone while it holds no data"),
        (None, {"to": OTHER, "phase": "cutover"}, Deployed(HOME), "move.phase",
         f"cutover skips replicate (no phase has run yet): {PHASES_RUN}"),
        # A replicate recorded for another target is no replicate of this move.
        (None, {"to": OTHER, "phase": "cutover"}, Deployed(HOME, "atlantis", "replicate"), "move.phase",
         f"cutover skips replicate (no phase has run yet): {PHASES_RUN}"),
        (None, {"to": OTHER, "phase": "complete"}, Deployed(HOME, OTHER, "replicate"), "move.phase",
         f"complete skips cutover (the stack's last recorded phase is replicate): {PHASES_RUN}"),
        (None, None, Deployed(OTHER, OTHER, "complete"), "cluster",
         f"dev's move to {OTHER} is complete (the stack's `move` output): its data is there now; set `cluster: "
         f"{OTHER}` and remove `move:` (docs/move.md)"),
    ],
)  # fmt: skip
def test_each_refusal_of_the_guard_names_the_file_and_key_and_says_why_in_full(
    envdir: Path, cluster, move, deployed, key: str, said: str
) -> None:
    if cluster:
        edit(envdir, "dev.yaml", "cluster", cluster)
    if move:
        edit(envdir, "dev.yaml", "move", move)
    with pytest.raises(SettingsError) as caught:
        check_move(load_settings("dev", envdir), lambda: deployed)
    assert (caught.value.file, caught.value.key_path, caught.value.detail) == ("environments/dev.yaml", key, said)


# --- The guard: the stack read through the engine's CLI --------------------------------------


class PulumiCli:
    """subprocess.run for the pulumi CLI (or kubectl): records each call, answers as told."""

    def __init__(self, returncode: int = 0, stdout: str = "{}", stderr: str = "") -> None:
        self.answer = (returncode, stdout, stderr)
        self.calls: list[tuple[list[str], dict[str, Any]]] = []

    def __call__(self, argv: list[str], **kwargs: Any) -> Any:
        self.calls.append((list(argv), kwargs))
        returncode, stdout, stderr = self.answer
        return SimpleNamespace(returncode=returncode, stdout=stdout, stderr=stderr)


@pytest.fixture
def engine(monkeypatch, tmp_path: Path) -> PulumiCli:
    """Run by the engine (a monitor that is not the mocks'), stack dev, its program in tmp_path/infra,
    the pulumi CLI at /opt/pulumi/bin/pulumi."""
    monkeypatch.setattr("pulumi.runtime.settings.get_monitor", lambda: object())
    monkeypatch.setattr(pulumi, "get_stack", lambda: "dev")
    monkeypatch.setattr(pulumi, "get_root_directory", lambda: str(tmp_path / "infra"))
    monkeypatch.setattr(move_guard.shutil, "which", lambda name: f"/opt/pulumi/bin/{name}")
    cli = PulumiCli()
    monkeypatch.setattr(move_guard.subprocess, "run", cli)
    return cli


def test_the_engine_reads_the_stacks_outputs_with_the_pulumi_cli_in_the_projects_folder(engine, tmp_path) -> None:
    engine.answer = (0, '{"cluster": "dusseldorf-test", "move": {"to": "monaco-onprem", "phase": "replicate"}}', "")
    assert deployed_by_engine() == Deployed(HOME, OTHER, "replicate")
    ((argv, kwargs),) = engine.calls
    assert argv == ["/opt/pulumi/bin/pulumi", "stack", "output", "--json", "--stack", "dev", "--non-interactive"]
    assert kwargs == {
        "capture_output": True,
        "text": True,
        "env": os.environ,
        "cwd": str(tmp_path / "infra"),
        "timeout": 120,
    }


@pytest.mark.parametrize("stdout", ["{}", ""])
def test_a_stack_with_no_outputs_is_not_deployed(engine, stdout: str) -> None:
    engine.answer = (0, stdout, "")
    assert deployed_by_engine() is None


def test_without_the_pulumi_cli_the_program_stops_naming_it(engine, monkeypatch) -> None:
    monkeypatch.setattr(move_guard.shutil, "which", lambda name: None)
    with pytest.raises(SettingsError) as caught:
        deployed_by_engine()
    assert (caught.value.file, caught.value.key_path) == ("Pulumi.yaml", "<program>")
    assert caught.value.detail == "cannot find the pulumi CLI on PATH to read what the stack deployed"
    assert engine.calls == []


@pytest.mark.parametrize(
    ("stdout", "stderr", "said"),
    [
        ("", "  error: no stack named 'dev' found\n", "error: no stack named 'dev' found"),
        ("error: on stdout only\n", "", "error: on stdout only"),
        ("", "x" * 100 + "y" * 500 + "\n", "y" * 500),
    ],
)
def test_outputs_that_cannot_be_read_fail_closed_with_the_clis_last_words(engine, stdout, stderr, said) -> None:
    engine.answer = (255, stdout, stderr)
    with pytest.raises(SettingsError) as caught:
        deployed_by_engine()
    assert (caught.value.file, caught.value.key_path) == ("Pulumi.yaml", "<program>")
    assert caught.value.detail == f"cannot read the stack's outputs to check for a move: {said}"


# --- The guard: the cutover's live check, only in a real update --------------------------------


FENCED, PROMOTED = {"read_only": True, "in_recovery": False}, {"read_only": False, "in_recovery": False}


@pytest.fixture
def cutover_settings(envdir: Path):
    edit(envdir, "dev.yaml", "move", {"to": OTHER, "phase": "cutover"})
    return load_settings("dev", envdir)


@pytest.fixture
def sides(monkeypatch) -> list[tuple[str, str, str, str]]:
    """The reader of one side (`move --status`'s) stood in: the source fenced, the target promoted."""
    read: list[tuple[str, str, str, str]] = []

    def side(environment: str, role: str, cluster: str, context: str) -> dict:
        read.append((environment, role, cluster, context))
        return FENCED if role == "source" else PROMOTED

    monkeypatch.setattr(move_guard, "_read_side", side)
    return read


def test_in_an_update_run_by_the_engine_both_sides_are_read_live(cutover_settings, sides, monkeypatch) -> None:
    monkeypatch.setattr("pulumi.runtime.settings.get_monitor", lambda: object())
    monkeypatch.setattr(pulumi.runtime, "is_dry_run", lambda: False)
    check_cutover_ran(cutover_settings)
    assert sides == [("dev", "source", HOME, "dusseldorf-test"), ("dev", "target", OTHER, "monaco-onprem")]


def test_in_a_preview_run_by_the_engine_nothing_is_read(cutover_settings, sides, monkeypatch) -> None:
    monkeypatch.setattr("pulumi.runtime.settings.get_monitor", lambda: object())
    monkeypatch.setattr(pulumi.runtime, "is_dry_run", lambda: True)
    check_cutover_ran(cutover_settings)
    assert sides == []


def test_one_side_is_read_as_move_status_reads_it_with_its_problem(monkeypatch) -> None:
    given: list[tuple[move_status.Site, str, dict]] = []

    def read_site(site: move_status.Site, environment: str, env: dict) -> move_status.Site:
        given.append((site, environment, env))
        site.database.update(read_only=True, in_recovery=False)
        site.problem = "source dusseldorf-test: no walsender"
        return site

    monkeypatch.setattr(move_status, "read_site", read_site)
    answer = move_guard._read_side("dev", "source", HOME, "dusseldorf-ctx")
    ((site, environment, env),) = given
    assert (site.role, site.cluster, site.context, site.namespace) == (
        "source",
        HOME,
        "dusseldorf-ctx",
        naming.namespace("dev"),
    )
    assert environment == "dev" and env == dict(os.environ)
    assert answer == {
        **dict.fromkeys(move_status.DATABASE_FIELDS),
        "read_only": True,
        "in_recovery": False,
        "problem": "source dusseldorf-test: no walsender",
    }


def test_a_standby_or_a_source_taking_writes_is_named_as_read(cutover_settings) -> None:
    how = f"run `smartnation move dev --to {OTHER}`: it stops the writes, waits, verifies, promotes"
    with pytest.raises(SettingsError) as caught:
        check_cutover_ran(cutover_settings, lambda *_: {"read_only": True, "in_recovery": True})
    assert caught.value.detail == (
        f"cutover applies only once {OTHER}'s database is promoted, and it is still a standby (or was not read: "
        f"in recovery); {how}, then applies this update itself"
    )
    with pytest.raises(SettingsError) as caught:
        check_cutover_ran(cutover_settings, lambda *_: {"read_only": False, "in_recovery": False})
    assert caught.value.detail == (
        f"cutover applies only once {HOME}'s database is fenced (read-only), and it is not (or was not read: "
        f"still takes writes); {how}"
    )


# --- The guard: the complete phase's record of a final backup, read with kubectl ----------------


@pytest.fixture
def kubectl(monkeypatch) -> PulumiCli:
    """kubectl at /opt/k8s/bin/kubectl answering as told (the same recording stand-in)."""
    monkeypatch.setattr(move_guard.shutil, "which", lambda name: f"/opt/k8s/bin/{name}")
    cli = PulumiCli(stdout="")
    monkeypatch.setattr(move_guard.subprocess, "run", cli)
    return cli


def test_the_final_backups_record_is_the_configmaps_data_read_with_kubectl(kubectl) -> None:
    kubectl.answer = (0, '{"metadata": {"name": "dev-move-final-backup"}, "data": {"verified": "true"}}', "")
    assert move_guard._read_final_backup("monaco-ctx", "smartnation-dev", "dev") == {"verified": "true"}
    ((argv, kwargs),) = kubectl.calls
    assert argv == [
        "/opt/k8s/bin/kubectl",
        "--context",
        "monaco-ctx",
        "-n",
        "smartnation-dev",
        "get",
        "configmap",
        "dev-move-final-backup",
        "--ignore-not-found",
        "-o",
        "json",
    ]
    assert kwargs == {"capture_output": True, "text": True, "timeout": 60, "env": os.environ}


@pytest.mark.parametrize("stdout", ["", " \n"])
def test_no_configmap_is_no_record(kubectl, stdout: str) -> None:
    kubectl.answer = (0, stdout, "")
    assert move_guard._read_final_backup("monaco-ctx", "smartnation-dev", "dev") is None


def test_a_record_that_cannot_be_read_fails_closed(kubectl, monkeypatch) -> None:
    kubectl.answer = (1, "", "x" * 10 + "e" * 300 + "\n")
    with pytest.raises(SettingsError) as caught:
        move_guard._read_final_backup("monaco-ctx", "smartnation-dev", "dev")
    assert (caught.value.file, caught.value.key_path) == ("Pulumi.yaml", "<program>")
    assert caught.value.detail == "cannot read the final backup's record: " + "e" * 300
    monkeypatch.setattr(move_guard.shutil, "which", lambda name: None)
    with pytest.raises(SettingsError) as caught:
        move_guard._read_final_backup("monaco-ctx", "smartnation-dev", "dev")
    assert (caught.value.file, caught.value.key_path) == ("Pulumi.yaml", "<program>")
    assert caught.value.detail == "cannot find kubectl on PATH to read the final backup's record"


@pytest.fixture
def complete_settings(envdir: Path):
    edit(envdir, "dev.yaml", "move", {"to": OTHER, "phase": "complete"})
    return load_settings("dev", envdir)


@pytest.mark.parametrize(("dry_run", "reads"), [(True, []), (False, [("monaco-onprem", "dev")])])
def test_the_final_backup_is_read_in_an_update_run_by_the_engine_only(
    complete_settings, monkeypatch, dry_run: bool, reads
) -> None:
    read: list[tuple[str, str]] = []

    def record(context: str, namespace: str, environment: str) -> dict:
        assert namespace == naming.namespace(environment)
        read.append((context, environment))
        return {"verified": "true", "source": HOME}

    monkeypatch.setattr(move_guard, "_read_final_backup", record)
    monkeypatch.setattr("pulumi.runtime.settings.get_monitor", lambda: object())
    monkeypatch.setattr(pulumi.runtime, "is_dry_run", lambda: dry_run)
    check_final_backup(complete_settings)
    assert read == reads


def test_complete_without_the_record_says_what_it_needs_in_full(complete_settings) -> None:
    with pytest.raises(SettingsError) as caught:
        check_final_backup(complete_settings, lambda *_: None)
    assert caught.value.detail == (
        f"complete deletes {HOME}'s resources, which it does only after a final backup of {HOME} was copied into "
        f"{OTHER}'s object storage and restored there equal to its data; no such record on {OTHER} (ConfigMap "
        f"dev-move-final-backup): run `smartnation move dev --to {OTHER}`, which makes and checks it, then applies"
    )


# --- The driver: its steps one by one ------------------------------------------------------------


def test_the_next_step_of_each_phase_is_said_in_full() -> None:
    said = move_driver.next_step("dev", "environments/dev.yaml")
    assert said == {
        "replicate": "declare `phase: cutover` in environments/dev.yaml, open a pull request, and once merged run "
        "this again: it stops the writes here, waits for the target to replay them, verifies, promotes the target "
        "and applies",
        "cutover": "the target serves the environment (`smartnation move dev --status`); once it has run well, "
        "declare `phase: complete` in environments/dev.yaml in a pull request and run this again: a final backup "
        "of the source kept and proven on the target, then the source's resources removed",
        "complete": "set `cluster: <the target>` and remove `move:` in environments/dev.yaml (a pull request whose "
        "preview shows no change), then move the state (`smartnation state move dev`, docs/move.md section 5) and "
        "record `move_complete: true`",
        "rollback": "the source serves the environment again with everything the target took; remove `move:` in "
        "environments/dev.yaml (keeping `cluster:`) in a pull request: its update deletes the target's side, which "
        "the program allows now that ConfigMap dev-move-rollback records the verified rollback on the source",
    }


def _run(**changes: Any) -> Any:
    """What apply and the step wrappers read of a run."""
    return SimpleNamespace(
        **{"environment": "dev", "phase": "replicate", "args": argparse.Namespace(yes=True), **changes}
    )


def test_apply_is_smartnation_up_itself_with_the_runs_yes_and_nothing_else(monkeypatch) -> None:
    given: list[argparse.Namespace] = []
    monkeypatch.setattr(up, "cmd_up", lambda args: given.append(args) or exit_codes.OK)
    assert move_driver.apply(_run()) == "applied phase replicate (`smartnation up dev`)"
    assert given == [argparse.Namespace(environment="dev", yes=True, init_secrets=False, recover=False)]

    monkeypatch.setattr(up, "cmd_up", lambda args: exit_codes.ABORTED)
    with pytest.raises(StepFailed) as caught:
        move_driver.apply(_run(args=argparse.Namespace(yes=False)))
    assert (str(caught.value), caught.value.code) == (
        f"`smartnation up dev` exited {exit_codes.ABORTED}",
        exit_codes.ABORTED,
    )


class Outputs:
    def __init__(self, move: Any = None, history: list[Any] | None = None) -> None:
        self.move, self._history = move, history or []

    def outputs(self) -> dict[str, Any]:
        return {} if self.move is None else {"move": SimpleNamespace(value=self.move)}

    def history(self, show_secrets: bool = True) -> list[Any]:
        assert show_secrets is False
        return self._history


@pytest.mark.parametrize("move", [None, "replicate", {"to": TARGET}, {"replication_sources": []}])
def test_without_replication_sources_the_wait_cannot_tell_the_targets_walsender(move: Any) -> None:
    with pytest.raises(StepFailed) as caught:
        move_driver.replication_sources(Outputs(move))
    assert str(caught.value) == "the stack's `move` output has no replication_sources: was the replicate phase applied?"
    assert caught.value.code == exit_codes.FAILED


def test_replication_sources_are_networks_even_with_host_bits() -> None:
    got = move_driver.replication_sources(Outputs({"replication_sources": ["10.213.0.253/24", "fd00::7"]}))
    assert got == [ipaddress.ip_network("10.213.0.0/24"), ipaddress.ip_network("fd00::7/128")]


def test_a_stack_without_history_has_no_update_number() -> None:
    assert move_driver.stack_update(Outputs(history=[])) is None
    assert move_driver.stack_update(Outputs(history=[object(), object()])) == 2


def _status(rows: list[dict[str, Any]] | None, target: dict[str, Any] | None = None, problems=()) -> Any:
    standby = None if target is None else SimpleNamespace(database={**STANDBY_STATUS, **target})
    return SimpleNamespace(
        source=SimpleNamespace(database={"replication": rows}), target=standby, problems=list(problems)
    )


SOURCES = [ipaddress.ip_network(f"{LINK}/32")]


def _row(address: str | None, state: str = "streaming", lag: float | None = 0) -> dict[str, Any]:
    return {"client_address": address, "state": state, "lag_bytes": lag}


def test_a_sample_takes_the_streaming_walsender_to_the_target_and_nothing_else() -> None:
    rows = [_row(None, lag=0), _row("10.244.0.17", lag=0), _row(LINK, "catchup", 900), _row(LINK, lag=0)]
    now = move_driver.sample(_status(rows, {}), SOURCES, 5.0)
    assert now == Sample(5.0, 0, 12.5, True, (), "walsender streaming, standby receiver streaming")
    # Only a walsender catching up: its lag, not caught up.
    now = move_driver.sample(_status([_row(LINK, "catchup", 900)], {}), SOURCES, 5.0)
    assert (now.lag_bytes, now.caught_up, now.state) == (900, False, "walsender catchup, standby receiver streaming")
    # No replication rows read at all, no target: nothing known.
    now = move_driver.sample(_status(None), SOURCES, 5.0)
    assert now == Sample(5.0, None, None, False, (), "no walsender to the target")


@pytest.mark.parametrize(
    ("target", "problems"),
    [
        ({"in_recovery": False}, ()),  # promoted: not a standby streaming
        ({"in_recovery": None}, ()),  # not read
        ({"receiver_status": None}, ()),
        ({}, ("target monaco-onprem: psql failed",)),
    ],
)
def test_lag_0_is_caught_up_only_with_a_standby_streaming_and_everything_read(target, problems) -> None:
    now = move_driver.sample(_status([_row(LINK, lag=0)], target, problems), SOURCES, 1.0)
    assert now.lag_bytes == 0 and now.caught_up is False and now.problems == tuple(problems)


def test_a_progress_line_says_the_lag_the_replay_and_an_estimate_only_while_the_lag_shrinks() -> None:
    before = Sample(10.0, 4000, 1.0, False, (), "walsender streaming")
    now = Sample(12.0, 3000, 2.5, False, (), "walsender streaming")
    assert move_driver.progress_line(now, before, 2.4, 60) == (
        "  lag 3000 bytes, last replay 2.5 s ago, about 6 s left at 500 bytes/s; walsender streaming (2 of 60 s)"
    )
    same_time = Sample(10.0, 3000, None, False, ("source x: not read",), "no walsender to the target")
    assert move_driver.progress_line(same_time, before, 0, 60) == (
        "  lag 3000 bytes, no replayed transaction yet, time left unknown; no walsender to the target (0 of 60 s)"
        "; not read: source x: not read"
    )
    growing = Sample(12.0, 5000, 1.0, False, (), "s")
    assert "time left unknown (the lag is not shrinking)" in move_driver.progress_line(growing, before, 2, 60)
    unknown = Sample(12.0, None, 1.0, False, (), "s")
    assert move_driver.progress_line(unknown, before, 2, 60).startswith(
        "  lag unknown, last replay 1.0 s ago, time left unknown;"
    )
    assert "time left unknown;" in move_driver.progress_line(now, Sample(10.0, None, 1.0, False, (), "s"), 2, 60)


def test_the_estimate_keeps_the_last_lag_read_across_a_poll_without_one(moving, stack, monkeypatch, caplog, capsys):
    code, out, errors = drive(monkeypatch, caplog, capsys, two_sites(lagging(4000, None, 2000, 0)), "--yes")
    assert code == exit_codes.OK, errors
    waits = [line.split(";")[0] for line in out.splitlines() if line.startswith("  lag ")]
    assert waits == [
        "  lag 4000 bytes, last replay 12.5 s ago, time left unknown",
        "  lag unknown, last replay 12.5 s ago, time left unknown",
        "  lag 2000 bytes, last replay 12.5 s ago, about 4 s left at 500 bytes/s",
        "  lag 0 bytes, last replay 12.5 s ago, about 0 s left at 1000 bytes/s",
    ]


def test_each_steps_audit_line_says_what_it_did_for_whom_in_one_run(moving, stack, monkeypatch, caplog, capsys):
    code, out, errors = drive(monkeypatch, caplog, capsys, two_sites(), "--yes")
    assert code == exit_codes.OK, errors
    path = moving / "environments" / "audit" / "promotions.jsonl"
    entries = [json.loads(line) for line in path.read_text().splitlines()]
    (run,) = {e["extra"]["run"] for e in entries}
    assert re.fullmatch(r"[0-9a-f]{12}", run)
    assert {(e["who"], e["source"], e["target"]) for e in entries} == {
        ("operator@example.mc", f"dev on {SOURCE}", f"dev on {TARGET}")
    }
    assert {(e["extra"]["operation"], e["extra"]["phase"]) for e in entries} == {("move", "replicate")}
    report = next(line for line in out.splitlines() if line.startswith("  report "))[9:]
    where = f"{SOURCE}/smartnation-unit-dev and {TARGET}/smartnation-unit-dev"
    assert [e["reason"] for e in entries] == [
        "preview started",
        'preview: previewed: {"create": 12, "same": 80, "update": 3}',
        "apply started",
        "apply: applied phase replicate (`smartnation up dev`)",
        "wait started",
        f"wait: {TARGET} streams with lag 0 bytes after 0 s; the bucket mirror holds the source's 2 objects after 0 s",
        "verify started",
        f"verify: {where} hold the same data (tables, chunks, devices, objects, buckets, retained) in 0 s; "
        f"report {report}",
    ]
    # The report by default: in the project's .smartnation/move, named after the environment, phase and time.
    assert re.fullmatch(
        re.escape(str(moving / ".smartnation" / "move")) + r"/dev-replicate-verify-\d{8}T\d{6}Z\.json", report
    )
    written = json.loads(Path(report).read_text())
    assert (written["environment"], written["phase"], written["seconds"]) == ("dev", "replicate", 0)
    assert [line for line in out.splitlines() if line.startswith("  ") and " source " in line and "target" in line][
        -6:
    ] == [
        "  tables   source     1  target     1  equal",
        "  chunks   source     1  target     1  equal",
        "  devices  source     1  target     1  equal",
        "  objects  source     2  target     2  equal",
        "  buckets  source     2  target     2  equal",
        "  retained source     1  target     1  equal",
    ]


def test_a_refused_run_is_one_audit_line_with_the_loaders_reason(project, stack, monkeypatch, caplog, capsys):
    env_file = project / "environments" / "dev.yaml"
    env_file.write_text(env_file.read_text() + "move: {to: monaco-onprem, phase: replicate}\n")
    code, _, errors = drive(monkeypatch, caplog, capsys, two_sites(), "--yes", "--to", SOURCE)
    (entry,) = [json.loads(line) for line in (project / "environments" / "audit" / "promotions.jsonl").open()]
    assert entry["result"] == "refused" and entry["extra"]["step"] is None and entry["extra"]["phase"] == "replicate"
    assert entry["reason"].startswith(f"environments/dev.yaml: move.to: --to {SOURCE} is not the declared move")
    assert entry["target"] == f"dev on {SOURCE}"


@pytest.mark.parametrize(
    ("raised", "said", "code"),
    [
        (move_cutover.StepFailure("no fence", timed_out=True), "no fence", exit_codes.TIMED_OUT),
        (move_cutover.StepFailure("not promoted"), "not promoted", exit_codes.FAILED),
        (move_complete.StepFailure("backup differs"), "backup differs", exit_codes.FAILED),
        (
            compare.CompareError("target: psql failed"),
            "a site could not be read: target: psql failed",
            exit_codes.FAILED,
        ),
    ],
)
def test_a_phase_steps_failure_is_the_drivers_with_its_exit(raised, said, code) -> None:
    def action(run: Any) -> str:
        raise raised

    with pytest.raises(StepFailed) as caught:
        move_driver._cutover_step(action)(_run())
    assert (str(caught.value), caught.value.code) == (said, code)
    assert move_driver._cutover_step(lambda run: f"done for {run.environment}")(_run()) == "done for dev"


def test_objects_that_cannot_be_hashed_fail_the_step_naming_why(monkeypatch) -> None:
    def unreadable(*_: Any) -> Any:
        raise compare.CompareError("source: no reader Pod")

    monkeypatch.setattr(move_driver, "_object_sides", unreadable)
    with pytest.raises(StepFailed) as caught:
        move_driver.hash_objects(_run())
    assert (str(caught.value), caught.value.code) == ("the objects could not be read: source: no reader Pod", 1)


def _listing(count: int) -> Snapshot:
    snapshot = Snapshot("somewhere")
    snapshot.sections["objects"] = {f"backups/{n}.dump.gz": "size=10" for n in range(count)}
    snapshot.sections["buckets"] = {"backups": f"objects={count}"} if count else {}
    return snapshot


@pytest.fixture
def mirror(monkeypatch) -> dict[str, list[Any]]:
    """wait_for_mirror's reads stood in: per side, what each poll's listing answers (the last repeated)."""
    monkeypatch.setattr(move_driver, "time", driver_tests.Clock())
    sides = (SimpleNamespace(name="source"), SimpleNamespace(name="target"), ("mirror-pod", "reader"))
    monkeypatch.setattr(move_driver, "_object_sides", lambda run: sides)
    answers: dict[str, list[Any]] = {"source": [], "target": [], "calls": []}

    def read_objects(side: Any, reader: Any = None, *, listing_only: bool = False) -> Snapshot:
        answers["calls"].append((side.name, reader, listing_only))
        queue = answers[side.name]
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(compare, "read_objects", read_objects)
    return answers


def _waiting(timeout: float = 10) -> Any:
    args = argparse.Namespace(timeout=timeout, interval=2)
    return SimpleNamespace(args=args, to=TARGET, namespace="smartnation-unit-dev", environment="dev")


def test_the_mirror_wait_says_what_it_could_not_read_and_polls_on(mirror, capsys) -> None:
    mirror["source"] = [_listing(2)]
    mirror["target"] = [compare.CompareError("target monaco-onprem: no mirror Pod"), _listing(2)]
    said = move_driver.wait_for_mirror(_waiting(), move_driver.time.monotonic())
    assert said == "the bucket mirror holds the source's 2 objects after 2 s"
    assert capsys.readouterr().out.splitlines() == [
        "  objects not read: target monaco-onprem: no mirror Pod (0 of 10 s)",
        "  objects: source 2, target 2, 0 to copy or remove (2 of 10 s)",
    ]
    # Listings only, the target's through the bucket mirror's reader.
    assert sorted(set(mirror["calls"])) == [("source", None, True), ("target", ("mirror-pod", "reader"), True)]


def test_the_mirror_wait_polls_until_its_timeout_and_not_past_it(mirror, capsys) -> None:
    mirror["source"], mirror["target"] = [_listing(2)], [_listing(1)]
    with pytest.raises(StepFailed) as caught:
        move_driver.wait_for_mirror(_waiting(timeout=4), move_driver.time.monotonic())
    assert caught.value.code == exit_codes.TIMED_OUT
    assert str(caught.value).startswith(
        f"the bucket mirror on {TARGET} did not catch up within --timeout 4 s (last: objects: source 2, target 1, "
        "1 to copy or remove); its log: `kubectl --context monaco-onprem -n smartnation-unit-dev logs "
        "deployment/dev-object-storage-mirror -c mirror`; run `smartnation move dev --to monaco-onprem` again"
    )
    assert capsys.readouterr().out.splitlines() == [
        f"  objects: source 2, target 1, 1 to copy or remove ({elapsed} of 4 s)" for elapsed in (0, 2, 4)
    ]


@pytest.mark.parametrize("error", [StepFailed, RuntimeError])
def test_a_step_failing_after_leaving_a_mark_keeps_it_and_audits_why(moving, stack, monkeypatch, caplog, capsys, error):
    """What a step marked before it failed (the fence: when writes stopped) is saved, whichever way it fails."""
    message = "  the kubeconfig is gone: " + "k" * 600 + "\n"

    def fence(run: Any) -> str:
        run.marks["fenced_at"] = 1234.5
        raise error(message)

    monkeypatch.setitem(move_driver.PHASE_STEPS, "replicate", (("fence", fence),))
    if error is StepFailed:
        assert drive(monkeypatch, caplog, capsys, two_sites(), "--yes")[0] == exit_codes.FAILED
        reason = f"fence: {message}"
    else:
        with pytest.raises(RuntimeError):
            drive(monkeypatch, caplog, capsys, two_sites(), "--yes")
        reason = "fence: RuntimeError: " + message.strip()[-500:]
    last = json.loads((moving / "environments" / "audit" / "promotions.jsonl").read_text().splitlines()[-1])
    assert (last["extra"]["step"], last["result"], last["reason"]) == ("fence", "failed", reason)
    saved = driver_tests.progress(moving)
    assert (saved["marks"], saved["finished"]) == ({"fenced_at": 1234.5}, {})


def test_a_namespace_given_is_the_one_every_step_reads(moving, stack, monkeypatch, caplog, capsys):
    other = "smartnation-other-dev"
    sites = {SOURCE: driver_tests.Site(None, statuses=lagging(0)), TARGET: driver_tests.Site(STANDBY_STATUS)}
    fake = driver_tests.Clusters(sites, namespace=other)
    code, out, errors = drive(monkeypatch, caplog, capsys, fake, "--yes", "--namespace", other)
    assert code == exit_codes.OK, errors
    namespaced = [call.argv[4] for call in fake.calls if call.argv[3:4] == ["-n"]]
    assert len(namespaced) > 4 and set(namespaced) == {other}
    assert f"{SOURCE}/{other} and {TARGET}/{other} hold the same data" in out


@pytest.fixture
def tokyo() -> Any:
    """Local time nine hours ahead of UTC (the machine's zone must not name a report)."""
    zone = os.environ.get("TZ")
    os.environ["TZ"] = "Asia/Tokyo"
    time.tzset()
    yield
    if zone is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = zone
    time.tzset()


def test_the_default_report_is_named_after_the_environment_phase_and_utc_time(project, tokyo, monkeypatch) -> None:
    monkeypatch.setattr(move_driver, "time", time)
    before = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = move_driver.default_report(SimpleNamespace(environment="dev", phase="cutover"))
    after = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    assert path.parent == project / ".smartnation" / "move"
    assert path.name in (f"dev-cutover-verify-{before}.json", f"dev-cutover-verify-{after}.json")


def test_both_sites_are_read_at_once_and_an_error_of_either_is_raised() -> None:
    right_started = threading.Event()

    def left() -> bool:
        return right_started.wait(timeout=5)  # only True if right runs meanwhile, not after

    def right() -> str:
        right_started.set()
        return "right"

    assert move_driver.both(left, right) == (True, "right")

    def unreadable() -> str:
        raise compare.CompareError("target: no primary Pod")

    with pytest.raises(compare.CompareError, match="target: no primary Pod"):
        move_driver.both(lambda: "left", unreadable)


# --- What the stack's CLI or kubectl says that is not an answer: refused, naming why ------------


def _hung(argv: list[str], **kwargs: Any) -> Any:
    raise subprocess.TimeoutExpired(argv, kwargs["timeout"])


@pytest.mark.parametrize("stdout", ["warning: something\n{", "[1, 2]"])
def test_outputs_that_are_not_a_json_object_are_refused_not_a_traceback(engine, stdout: str) -> None:
    engine.answer = (0, stdout, "")
    if stdout.startswith("["):
        assert move_guard.deployed_by_engine() is None, "a list is no outputs: nothing deployed"
        return
    with pytest.raises(SettingsError) as caught:
        move_guard.deployed_by_engine()
    assert (caught.value.file, caught.value.key_path) == ("Pulumi.yaml", "<program>")
    assert caught.value.detail == f"the stack's outputs are not JSON: {stdout.strip()!r}"


def test_a_hung_cli_is_refused_after_its_timeout(engine, monkeypatch) -> None:
    monkeypatch.setattr(move_guard.subprocess, "run", _hung)
    with pytest.raises(SettingsError) as caught:
        move_guard.deployed_by_engine()
    assert caught.value.detail == "reading the stack's outputs to check for a move took over 120 s"


def test_a_record_that_is_not_json_or_hangs_is_refused(kubectl, monkeypatch) -> None:
    kubectl.answer = (0, "Error from server: {", "")
    with pytest.raises(SettingsError) as caught:
        move_guard._read_final_backup("monaco-ctx", "smartnation-dev", "dev")
    assert caught.value.detail == "the final backup's record is not JSON: 'Error from server: {'"
    monkeypatch.setattr(move_guard.subprocess, "run", _hung)
    with pytest.raises(SettingsError) as caught:
        move_guard._read_final_backup("monaco-ctx", "smartnation-dev", "dev")
    assert caught.value.detail == "reading the final backup's record took over 60 s"
