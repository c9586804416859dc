"""`smartnation promote staging production` run in this process, with the engine-facing gates stood in.

The killed-promotion tests run the same command in a child process (it must die there), so no
test ran cmd_promote where a mutation of it could be seen (`make mutation` counted its every
mutant unreached). These walk each way a promotion ends: applied, written only, refused by a gate,
not confirmed, the target file changed under it, the update failed; and what each leaves in the
target file and the audit log.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from pulumi import automation as auto

from smartnation.cli import exit_codes, promote
from smartnation.cli import main as cli_main
from smartnation.cli.audit_log import APPLIED, FAILED, REFUSED, WRITTEN_ONLY, SourceUpdate, read_audit
from smartnation.cli.promotion_runs import INTERRUPTED, STARTED
from smartnation.cli.releases_copy import releases_of
from smartnation.tooling.images.lock import image_key, read_lock, write_lock
from tests.unit.harness import REPO_ENVIRONMENTS

pytestmark = pytest.mark.unit

SOURCE_UPDATE = SourceUpdate(version=7, time="2026-11-29T02:00:00Z", result="succeeded")
TARGET_UPDATE = SourceUpdate(version=12, time="2026-11-29T03:00:00Z", result="succeeded")


class Stack:
    def __init__(self, fail: Exception | None = None) -> None:
        self.ups: list[dict[str, Any]] = []
        self.fail = fail

    def up(self, **kwargs: Any) -> None:
        self.ups.append(kwargs)
        if self.fail:
            raise self.fail


@pytest.fixture()
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Staging runs a broker release production does not have yet; the gates pass."""
    envdir = tmp_path / "environments"
    shutil.copytree(REPO_ENVIRONMENTS, envdir, ignore=shutil.ignore_patterns("stacks", "audit"))
    (tmp_path / "Pulumi.yaml").write_text("name: smartnation-inproc\nruntime: python\n")
    staging = envdir / "staging.yaml"
    broker = yaml.safe_load(staging.read_text())["releases"]["components"]["broker"]
    text = staging.read_text()
    line = f"broker: {{version: {broker['version']}, repository: {broker['repository']}, tag: {broker['tag']}}}"
    assert line in text, f"no one-line broker release in {staging}"
    staging.write_text(
        text.replace(line, f"broker: {{version: 2.0.12, repository: {broker['repository']}, tag: 2.0.12}}")
    )
    lock = envdir / "images.lock.yaml"
    locked = read_lock(lock)
    write_lock(
        lock,
        {**locked, image_key(broker["repository"], "2.0.12"): locked[image_key(broker["repository"], broker["tag"])]},
    )
    monkeypatch.setenv("SMARTNATION_PROJECT_DIR", str(tmp_path))
    monkeypatch.setenv("SMARTNATION_ENVIRONMENTS_DIR", str(envdir))
    monkeypatch.setenv("SMARTNATION_OPERATOR", "night-shift@smartnation.mc")
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    monkeypatch.setattr(promote, "check_unlocked", lambda environment: None)
    monkeypatch.setattr(promote, "gate_source_deployed", lambda source, environments: (SOURCE_UPDATE, None))
    monkeypatch.setattr(promote, "gate_no_drift", lambda source, stack: None)
    monkeypatch.setattr(promote, "gate_target_preview", lambda *args: None)
    monkeypatch.setattr(promote, "check_target", lambda target, environments: None)
    monkeypatch.setattr(promote, "render_environment", lambda preview: [])
    monkeypatch.setattr(promote, "policy_args", lambda settings: contextlib.nullcontext({"policy_packs": ["p"]}))
    monkeypatch.setattr(promote, "_last", lambda stack: TARGET_UPDATE)
    return tmp_path


def use_stack(monkeypatch: pytest.MonkeyPatch, stack: Stack) -> list[tuple]:
    selected: list[tuple] = []

    def select(target: str, create: bool = True, environments: Path | None = None):
        selected.append((target, create, environments))
        return stack, promote.load_settings(target, environments)

    monkeypatch.setattr(promote, "select", select)
    return selected


def files(project: Path) -> tuple[str, str]:
    envdir = project / "environments"
    return (envdir / "staging.yaml").read_text(), (envdir / "production.yaml").read_text()


def test_an_applied_promotion_writes_the_file_updates_the_target_and_logs_start_and_end(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = Stack()
    selected = use_stack(monkeypatch, stack)
    assert cli_main.main(["promote", "staging", "production", "--yes", "--apply"]) == exit_codes.OK

    staging, production = files(project)
    assert releases_of(production, "production.yaml") == releases_of(staging, "staging.yaml")
    assert selected == [("production", True, project / "environments")]
    assert len(stack.ups) == 1
    assert stack.ups[0]["color"] == "never"
    assert stack.ups[0]["policy_packs"] == ["p"]
    # The diff of the file is shown before the confirmation.
    out = capsys.readouterr().out
    assert "--- a/environments/production.yaml" in out
    assert "+++ b/environments/production.yaml" in out
    assert "tag: 2.0.12" in out

    entries = read_audit(project / "environments")
    assert [e["result"] for e in entries] == [STARTED, APPLIED]
    started, applied = entries
    assert started["extra"]["run"] == applied["extra"]["run"] and len(started["extra"]["run"]) == 12
    assert started["reason"] == "promotion of staging's releases into environments/production.yaml started"
    assert applied["reason"] == "production updated"
    for entry in entries:
        assert (entry["source"], entry["target"], entry["who"]) == (
            "staging",
            "production",
            "night-shift@smartnation.mc",
        )
        assert entry["releases"] == releases_of(staging, "staging.yaml")
    assert applied["source_update"]["version"] == 7
    assert applied["target_update"]["version"] == 12
    assert started["source_update"] is None


def test_without_apply_the_file_is_written_and_nothing_deployed(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stack = Stack()
    selected = use_stack(monkeypatch, stack)
    monkeypatch.setattr(promote, "check_target", lambda *a: pytest.fail("check_target without --apply"))
    assert cli_main.main(["promote", "staging", "production", "--yes"]) == exit_codes.OK

    staging, production = files(project)
    assert releases_of(production, "production.yaml") == releases_of(staging, "staging.yaml")
    assert (selected, stack.ups) == ([], [])
    entries = read_audit(project / "environments")
    assert [e["result"] for e in entries] == [STARTED, WRITTEN_ONLY]
    assert entries[1]["reason"] == ("environments/production.yaml written; deploy with `smartnation up production`")


def test_a_gate_refusal_writes_nothing_and_logs_why(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(source: str, environments: Path):
        raise promote.Refused("staging's last update failed", code=exit_codes.BAD_INPUT, source_update=SOURCE_UPDATE)

    monkeypatch.setattr(promote, "gate_source_deployed", refuse)
    use_stack(monkeypatch, Stack())
    before = files(project)
    assert cli_main.main(["promote", "staging", "production", "--yes", "--apply"]) == exit_codes.BAD_INPUT
    assert files(project) == before
    entries = read_audit(project / "environments")
    assert [e["result"] for e in entries] == [STARTED, REFUSED]
    assert entries[1]["reason"] == "staging's last update failed"
    assert entries[1]["source_update"]["version"] == 7


def test_a_promotion_not_confirmed_writes_nothing(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_stack(monkeypatch, Stack())
    monkeypatch.setattr(promote, "confirm", lambda question, assume_yes: False)
    before = files(project)
    assert cli_main.main(["promote", "staging", "production", "--apply"]) == exit_codes.ABORTED
    assert files(project) == before
    entries = read_audit(project / "environments")
    assert [(e["result"], e["reason"]) for e in entries][1] == (REFUSED, "not confirmed by the operator")


def test_a_target_file_changed_while_the_gates_ran_is_not_overwritten(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    production = project / "environments" / "production.yaml"

    def edit_meanwhile(*args: Any) -> None:
        production.write_text(production.read_text() + "# edited by someone else\n")

    monkeypatch.setattr(promote, "gate_target_preview", edit_meanwhile)
    use_stack(monkeypatch, Stack())
    assert cli_main.main(["promote", "staging", "production", "--yes", "--apply"]) == exit_codes.FAILED
    assert production.read_text().endswith("# edited by someone else\n")
    entries = read_audit(project / "environments")
    assert entries[-1]["result"] == REFUSED
    assert entries[-1]["reason"] == (
        "environments/production.yaml changed since it was read; nothing written: run the promotion again"
    )


def test_a_failed_update_is_logged_with_the_file_written(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    error = auto.CommandError(auto.CommandResult(stdout="", stderr="first line\nerror: the provider said no", code=1))
    use_stack(monkeypatch, Stack(fail=error))
    assert cli_main.main(["promote", "staging", "production", "--yes", "--apply"]) == exit_codes.FAILED
    staging, production = files(project)
    assert releases_of(production, "production.yaml") == releases_of(staging, "staging.yaml")
    entries = read_audit(project / "environments")
    assert entries[-1]["result"] == FAILED
    assert entries[-1]["reason"].startswith("environments/production.yaml written; the update of production failed: ")
    assert entries[-1]["target_update"]["version"] == 12


def test_a_promotion_left_started_is_closed_by_the_next_one(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_stack(monkeypatch, Stack())
    monkeypatch.setattr(promote, "confirm", lambda question, assume_yes: False)
    # The first run stops at the confirmation: started then refused; drop its end to play a kill.
    assert cli_main.main(["promote", "staging", "production"]) == exit_codes.ABORTED
    log = project / "environments" / "audit" / "promotions.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    log.write_text(lines[0])
    killed_run = read_audit(project / "environments")[0]["extra"]["run"]

    monkeypatch.setattr(promote, "confirm", lambda question, assume_yes: True)
    assert cli_main.main(["promote", "staging", "production", "--yes"]) == exit_codes.OK
    entries = read_audit(project / "environments")
    assert [e["result"] for e in entries] == [STARTED, INTERRUPTED, STARTED, WRITTEN_ONLY]
    assert entries[1]["extra"]["run"] == killed_run
    assert "never ended" in entries[1]["reason"]
    assert "does not hold the releases it promoted" in entries[1]["reason"]
    assert entries[2]["extra"]["run"] != killed_run
