"""`smartnation promote` in this process with the real gates, the engine stood in at its boundary.

test_promotion_in_process.py replaces the gates to walk the ways a promotion ends; here the gates
run for real and only what talks to the engine or the backend stands in: `select` (the stacks,
their history, outputs and `up`), `drift` (the refresh preview), `preview_environment` and the
lock check. So these pin what cmd_promote hands each gate, in which order it checks the locks,
what the operator is asked and shown, the exit code and audit entry of each way it stops, and the
messages on stderr.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from pulumi import automation as auto

from smartnation.cli import exit_codes, promote
from smartnation.cli import main as cli_main
from smartnation.cli.audit_log import APPLIED, FAILED, REFUSED, read_audit
from smartnation.cli.drift import Drift
from smartnation.cli.history import RELEASES_OUTPUT, file_releases
from smartnation.cli.locks import StackLocked
from smartnation.cli.promotion_runs import STARTED
from smartnation.cli.releases_copy import TMP_SUFFIX, releases_of
from smartnation.cli.report import OK, UPDATE, EnvironmentPreview, Step, render_environment
from smartnation.settings import load_settings
from smartnation.settings.stack_secrets import required_secrets
from smartnation.tooling.images.lock import image_key, read_lock, write_lock
from tests.unit.harness import REPO_ENVIRONMENTS

pytestmark = pytest.mark.unit

WHEN = dt.datetime(2026, 11, 29, 2, 0, 0, tzinfo=dt.UTC)
NEW_BROKER = "2.0.12"


def entry(version: int, result: str = "succeeded") -> SimpleNamespace:
    return SimpleNamespace(kind="update", result=result, version=version, start_time=WHEN, end_time=WHEN)


class EngineStack:
    """A stack as the Automation API answers: history, outputs, and `up` (recorded)."""

    def __init__(self, name: str, history: list[SimpleNamespace], outputs: dict[str, Any] | None = None) -> None:
        self.name = name
        self._history = history
        self._outputs = outputs or {}
        self.ups: list[dict[str, Any]] = []
        self.fail: Exception | None = None

    def history(self, show_secrets: bool = True) -> list[SimpleNamespace]:
        return self._history

    def outputs(self) -> dict[str, auto.OutputValue]:
        return {k: auto.OutputValue(value=v, secret=False) for k, v in self._outputs.items()}

    def get_all_config(self) -> dict[str, auto.ConfigValue]:
        """A stack file with every secret its environment needs (check_target reads it)."""
        settings = load_settings(self.name, REPO_ENVIRONMENTS)
        return {f"smartnation:{key}": auto.ConfigValue("s3cret", secret=True) for key in required_secrets(settings)}

    def up(self, **kwargs: Any) -> None:
        # The policy config exists only while `up` runs: read it now.
        configs = [json.loads(Path(p).read_text()) for p in kwargs.get("policy_pack_configs", [])]
        self.ups.append({**kwargs, "configs": configs})
        kwargs["on_output"]("Updating (production):\n")
        if self.fail:
            raise self.fail


class Engine:
    """The stand-ins and what each was asked, in order."""

    def __init__(self, envdir: Path) -> None:
        deployed = file_releases(load_settings("staging", envdir))
        self.stacks = {
            "staging": EngineStack("staging", [entry(7)], {RELEASES_OUTPUT: deployed}),
            "production": EngineStack("production", [entry(12)]),
        }
        self.calls: list[tuple] = []
        self.locked: dict[int, str] = {}
        """Lock checks (by their position, 0 = the first) that find the stack locked."""
        self.drift_error: Exception | None = None
        self.preview = EnvironmentPreview(
            "production",
            "monaco-onprem",
            steps=[Step(UPDATE, "urn:pulumi:production::smartnation::kubernetes:apps/v1:Deployment::api", "x")],
            result=OK,
        )

    def check_unlocked(self, environment: str) -> None:
        position = sum(1 for c in self.calls if c[0] == "lock")
        self.calls.append(("lock", environment))
        if position in self.locked:
            raise StackLocked(f"the stack {self.locked[position]!r} is locked by another update: ci@runner (pid 7)")

    def select(self, environment: str, create: bool = True, environments: Path | None = None):
        self.calls.append(("select", environment, create))
        return self.stacks[environment], load_settings(environment, environments)

    def drift(self, stack: EngineStack) -> Drift:
        self.calls.append(("drift", stack.name))
        if self.drift_error:
            raise self.drift_error
        return Drift(resources=())

    def preview_environment(self, environment: str, reasons: tuple[str, ...] = (), environments: Path | None = None):
        self.calls.append(("preview", environment, reasons))
        return self.preview


@pytest.fixture()
def envdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """environments/ with staging running a broker release production does not have yet."""
    envdir = tmp_path / "environments"
    shutil.copytree(REPO_ENVIRONMENTS, envdir, ignore=shutil.ignore_patterns("stacks", "audit"))
    (tmp_path / "Pulumi.yaml").write_text("name: smartnation-boundary\nruntime: python\n")
    staging = envdir / "staging.yaml"
    broker = yaml.safe_load(staging.read_text())["releases"]["components"]["broker"]
    line = f"broker: {{version: {broker['version']}, repository: {broker['repository']}, tag: {broker['tag']}}}"
    assert line in staging.read_text(), f"no one-line broker release in {staging}"
    new = f"broker: {{version: {NEW_BROKER}, repository: {broker['repository']}, tag: {NEW_BROKER}}}"
    staging.write_text(staging.read_text().replace(line, new))
    lock = envdir / "images.lock.yaml"
    locked = read_lock(lock)
    old_key, new_key = image_key(broker["repository"], broker["tag"]), image_key(broker["repository"], NEW_BROKER)
    write_lock(lock, {**locked, new_key: locked[old_key]})
    monkeypatch.setenv("SMARTNATION_PROJECT_DIR", str(tmp_path))
    monkeypatch.setenv("SMARTNATION_ENVIRONMENTS_DIR", str(envdir))
    monkeypatch.setenv("SMARTNATION_OPERATOR", "night-shift@smartnation.mc")
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    return envdir


@pytest.fixture()
def engine(envdir: Path, monkeypatch: pytest.MonkeyPatch) -> Engine:
    engine = Engine(envdir)
    for name in ("check_unlocked", "select", "drift", "preview_environment"):
        monkeypatch.setattr(promote, name, getattr(engine, name))
    return engine


@pytest.fixture()
def questions(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, bool]]:
    """What the operator is asked (the answer is --yes's)."""
    asked: list[tuple[str, bool]] = []

    def confirm(question: str, assume_yes: bool) -> bool:
        asked.append((question, assume_yes))
        return assume_yes

    monkeypatch.setattr(promote, "confirm", confirm)
    return asked


def promote_cli(*args: str) -> int:
    return cli_main.main(["promote", "staging", "production", *args])


def messages(caplog: pytest.LogCaptureFixture, level: str | None = None) -> list[str]:
    return [r.getMessage() for r in caplog.records if level is None or r.levelname == level]


def test_an_applied_promotion_runs_each_gate_on_the_right_stack_in_order(
    envdir: Path,
    engine: Engine,
    questions: list,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with caplog.at_level(logging.INFO, logger="smartnation"):
        assert promote_cli("--yes", "--apply") == exit_codes.OK

    assert engine.calls == [
        ("lock", "staging"),
        ("lock", "production"),
        ("select", "staging", False),
        ("drift", "staging"),
        ("preview", "production", ("environments/production.yaml",)),
        ("lock", "production"),
        ("select", "production", False),
        ("drift", "production"),
        ("lock", "production"),
        ("select", "production", True),
    ]
    assert questions == [("Promote staging -> production: write the file and update production?", True)]
    [up] = engine.stacks["production"].ups
    assert up["color"] == "never"
    assert up["configs"] and all(isinstance(c, dict) for c in up["configs"])
    assert Path(up["policy_packs"][0]).name == "policy"
    assert "Updating (production):" in capsys.readouterr().err

    staging, production = ((envdir / f"{e}.yaml").read_text() for e in ("staging", "production"))
    assert releases_of(production, "p") == releases_of(staging, "s")
    entries = read_audit(envdir)
    assert [e["result"] for e in entries] == [STARTED, APPLIED]
    assert all(dt.datetime.fromisoformat(e["when"].replace("Z", "+00:00")).tzinfo for e in entries)
    assert entries[1]["source_update"] == {"version": 7, "time": "2026-11-29T02:00:00Z", "result": "succeeded"}
    assert entries[1]["target_update"] == {"version": 12, "time": "2026-11-29T02:00:00Z", "result": "succeeded"}

    audit = envdir / "audit" / "promotions.jsonl"
    info = messages(caplog, "INFO")
    assert f"recorded in {audit}: started" in info
    assert f"recorded in {audit}: applied" in info
    assert "environments/production.yaml written" in info
    assert "updating production on monaco-onprem ..." in info
    assert info[-1] == "production now runs staging's releases"


def test_the_operator_sees_the_diff_and_the_preview_then_is_asked(
    envdir: Path, engine: Engine, questions: list, capsys: pytest.CaptureFixture[str]
) -> None:
    before = (envdir / "production.yaml").read_text()
    assert promote_cli() == exit_codes.ABORTED
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "--- a/environments/production.yaml" in lines
    assert "+++ b/environments/production.yaml" in lines
    changed = [line for line in lines if line.startswith(("-  ", "+  ")) and "broker:" in line]
    assert len(changed) == 2 and changed[1].startswith("+") and f"tag: {NEW_BROKER}}}" in changed[1]
    rendered = "\n".join(render_environment(engine.preview))
    assert rendered and f"\n{rendered}\n" in out
    assert questions == [("Promote staging -> production: write the file for production?", False)]
    assert (envdir / "production.yaml").read_text() == before


def test_a_target_that_already_has_the_releases_says_so(
    envdir: Path, engine: Engine, questions: list, capsys: pytest.CaptureFixture[str]
) -> None:
    assert promote_cli("--yes") == exit_codes.OK
    capsys.readouterr()
    assert promote_cli("--yes") == exit_codes.OK
    out = capsys.readouterr().out
    assert out.startswith("(no change: environments/production.yaml already has staging's releases)\n")


@pytest.mark.parametrize(("position", "locked"), [(0, "staging"), (1, "production"), (2, "production")])
def test_a_stack_locked_while_the_gates_run_is_refused_with_the_lock_exit_code(
    envdir: Path,
    engine: Engine,
    questions: list,
    caplog: pytest.LogCaptureFixture,
    position: int,
    locked: str,
) -> None:
    engine.locked = {position: locked}
    before = (envdir / "production.yaml").read_text()
    assert promote_cli("--yes", "--apply") == exit_codes.STACK_LOCKED
    assert (envdir / "production.yaml").read_text() == before
    assert questions == []
    entries = read_audit(envdir)
    assert [(e["result"], e["reason"]) for e in entries][1:] == [
        (REFUSED, f"the stack {locked!r} is locked by another update: ci@runner (pid 7)")
    ]
    assert messages(caplog, "ERROR") == [
        f"the stack {locked!r} is locked by another update: ci@runner (pid 7); wait for it to finish and retry"
    ]


def test_a_concurrent_update_met_by_a_gate_is_refused_with_the_lock_exit_code(
    envdir: Path, engine: Engine, questions: list
) -> None:
    engine.drift_error = auto.ConcurrentUpdateError(
        auto.CommandResult(stdout="", stderr="error: the stack is currently locked by 1 lock(s)", code=255)
    )
    assert promote_cli("--yes", "--apply") == exit_codes.STACK_LOCKED
    entries = read_audit(envdir)
    assert [(e["result"], e["reason"]) for e in entries][1:] == [(REFUSED, "a stack is locked by another update")]


def test_a_target_locked_during_the_confirmation_is_not_written(envdir: Path, engine: Engine, questions: list) -> None:
    engine.locked = {2: "production"}  # the third check: the one after the confirmation (no --apply)
    before = (envdir / "production.yaml").read_text()
    assert promote_cli("--yes") == exit_codes.STACK_LOCKED
    assert [c for c in engine.calls if c[0] == "lock"] == [
        ("lock", "staging"),
        ("lock", "production"),
        ("lock", "production"),
    ]
    assert (envdir / "production.yaml").read_text() == before
    assert read_audit(envdir)[-1]["reason"] == ("the stack 'production' is locked by another update: ci@runner (pid 7)")
    assert read_audit(envdir)[-1]["result"] == REFUSED


def test_a_refusal_is_logged_naming_the_pair_and_the_reason(
    envdir: Path, engine: Engine, questions: list, caplog: pytest.LogCaptureFixture
) -> None:
    engine.stacks["staging"]._history = [entry(8, result="failed")]
    assert promote_cli("--yes") == exit_codes.FAILED
    reason = "staging's last update #8 at 2026-11-29T02:00:00Z failed: fix and redeploy staging first"
    assert messages(caplog, "ERROR") == [f"promotion staging -> production refused: {reason}"]
    refused = read_audit(envdir)[-1]
    assert (refused["result"], refused["reason"]) == (REFUSED, reason)
    assert refused["source_update"]["version"] == 8


def test_a_file_changed_meanwhile_is_logged_as_refused(
    envdir: Path, engine: Engine, questions: list, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    production = envdir / "production.yaml"

    def confirm(question: str, assume_yes: bool) -> bool:
        production.write_text(production.read_text() + "# edited meanwhile\n")
        return True

    monkeypatch.setattr(promote, "confirm", confirm)
    assert promote_cli() == exit_codes.FAILED
    assert messages(caplog, "ERROR") == [
        "promotion staging -> production refused: environments/production.yaml changed since it was read; "
        "nothing written: run the promotion again"
    ]


def test_an_update_that_finds_the_stack_locked_is_recorded_as_failed_with_the_file_written(
    envdir: Path, engine: Engine, questions: list
) -> None:
    engine.stacks["production"].fail = auto.ConcurrentUpdateError(
        auto.CommandResult(stdout="", stderr="error: the stack is currently locked", code=255)
    )
    assert promote_cli("--yes", "--apply") == exit_codes.STACK_LOCKED
    staging, production = ((envdir / f"{e}.yaml").read_text() for e in ("staging", "production"))
    assert releases_of(production, "p") == releases_of(staging, "s")
    last = read_audit(envdir)[-1]
    assert (last["result"], last["reason"]) == (
        FAILED,
        "environments/production.yaml written; the update of production found the stack locked",
    )


def test_a_failed_update_is_recorded_with_the_engines_last_line_and_the_targets_update(
    envdir: Path, engine: Engine, questions: list, caplog: pytest.LogCaptureFixture
) -> None:
    error = auto.CommandError(auto.CommandResult(stdout="", stderr="first line\nerror: the provider said no\n", code=1))
    tail = str(error).strip().splitlines()[-1]
    assert "the provider said no" in tail
    engine.stacks["production"].fail = error
    engine.stacks["production"]._history = [entry(13, result="failed"), entry(12)]
    assert promote_cli("--yes", "--apply") == exit_codes.FAILED
    last = read_audit(envdir)[-1]
    assert (last["result"], last["reason"]) == (
        FAILED,
        f"environments/production.yaml written; the update of production failed: {tail}",
    )
    assert last["target_update"] == {"version": 13, "time": "2026-11-29T02:00:00Z", "result": "failed"}
    assert messages(caplog, "ERROR") == [f"the update of production failed: {tail}"]


def test_a_write_a_killed_promotion_left_is_removed_and_reported(
    envdir: Path, engine: Engine, questions: list, caplog: pytest.LogCaptureFixture
) -> None:
    leftover = envdir / f".production.yaml.abc123{TMP_SUFFIX}"
    leftover.write_text("half a file")
    other = envdir / f".staging.yaml.abc123{TMP_SUFFIX}"
    other.write_text("not the target's")
    assert promote_cli() == exit_codes.ABORTED
    assert not leftover.exists()
    assert other.exists()
    assert messages(caplog, "WARNING")[0] == (
        "an earlier write of environments/production.yaml was killed before its rename; "
        f"environments/production.yaml is intact, removing {leftover.name}"
    )


def test_a_killed_promotion_is_reported_on_stderr_and_closed_under_its_own_run(
    envdir: Path, engine: Engine, questions: list, caplog: pytest.LogCaptureFixture
) -> None:
    assert promote_cli() == exit_codes.ABORTED
    audit = envdir / "audit" / "promotions.jsonl"
    audit.write_text(audit.read_text().splitlines(keepends=True)[0])  # the end entry lost: a kill
    killed = read_audit(envdir)[0]
    caplog.clear()
    assert promote_cli() == exit_codes.ABORTED
    warnings = messages(caplog, "WARNING")
    assert len(warnings) == 1
    assert warnings[0].startswith(
        f"the promotion staging -> production started at {killed['when']} by night-shift@smartnation.mc "
        f"(run {killed['extra']['run']}) never ended: environments/production.yaml does not hold"
    )
    interrupted = read_audit(envdir)[1]
    assert (interrupted["result"], interrupted["reason"], interrupted["extra"]["run"]) == (
        "interrupted",
        warnings[0],
        killed["extra"]["run"],
    )
    # Reported once: the next run finds nothing to close.
    caplog.clear()
    assert promote_cli() == exit_codes.ABORTED
    assert messages(caplog, "WARNING") == []


def test_a_killed_promotion_whose_file_was_written_says_so(
    envdir: Path, engine: Engine, questions: list, caplog: pytest.LogCaptureFixture
) -> None:
    assert promote_cli("--yes") == exit_codes.OK
    audit = envdir / "audit" / "promotions.jsonl"
    audit.write_text(audit.read_text().splitlines(keepends=True)[0])
    caplog.clear()
    assert promote_cli() == exit_codes.ABORTED
    [warning] = messages(caplog, "WARNING")
    assert "never ended: environments/production.yaml holds the releases it promoted" in warning


def test_a_bad_pair_names_the_promotion_file_where_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Not `environments/`: the message names the directory the operator configured.
    envdir = tmp_path / "envs"
    shutil.copytree(REPO_ENVIRONMENTS, envdir, ignore=shutil.ignore_patterns("stacks", "audit"))
    (tmp_path / "Pulumi.yaml").write_text("name: smartnation-boundary\nruntime: python\n")
    monkeypatch.setenv("SMARTNATION_PROJECT_DIR", str(tmp_path))
    monkeypatch.setenv("SMARTNATION_ENVIRONMENTS_DIR", str(envdir))
    assert cli_main.main(["promote", "production", "staging", "--yes"]) == exit_codes.BAD_INPUT
    [error] = messages(caplog, "ERROR")
    assert error.startswith("envs/promotion.yaml: order: production -> staging goes backwards")
    assert not (envdir / "audit").exists()
