"""The promotion gates (a)-(c) and the pre-apply check, with stand-ins at the engine boundary only.

What stands in: the stack (its history and outputs, as the Automation API returns them), the
workspace's `select`, the refresh preview `drift` and the engine preview `preview_environment`,
the lock check. What runs for real: the gates themselves, `last_update`, `deployed_releases`,
`file_releases` (the program's release summary), the settings loader and the copy of
environments/ the target preview is made from. The integration tests run the same gates on the
clusters; these make each refusal's exact words and exit code cheap to pin (and visible to
`make mutation`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pulumi import automation as auto

from smartnation.cli import exit_codes, promote
from smartnation.cli.audit_log import SourceUpdate
from smartnation.cli.drift import Drift
from smartnation.cli.history import RELEASES_OUTPUT, file_releases
from smartnation.cli.locks import StackLocked
from smartnation.cli.report import DELETE, ERROR, OK, REPLACE, UPDATE, EnvironmentPreview, Step, Violation
from smartnation.settings import SettingsError, load_settings
from smartnation.settings.stack_secrets import required_secrets
from tests.unit.harness import REPO_ENVIRONMENTS

pytestmark = pytest.mark.unit

WHEN = dt.datetime(2026, 11, 29, 2, 0, 0, tzinfo=dt.UTC)


EVERY_SECRET = {
    f"smartnation:{key}": auto.ConfigValue(value="s3cret", secret=True)
    for environment in ("dev", "staging", "production")
    for key in required_secrets(load_settings(environment, REPO_ENVIRONMENTS))
}
"""A stack file with every secret any environment needs."""


class EngineStack:
    """What `auto.Stack` answers for history and outputs (newest history entry first)."""

    def __init__(
        self,
        history: list[SimpleNamespace] | None = None,
        outputs: dict[str, Any] | None = None,
        config: dict[str, Any] | None = None,
    ) -> None:
        self._history = history or []
        self._outputs = outputs or {}
        self._config = EVERY_SECRET if config is None else config

    def get_all_config(self) -> dict[str, Any]:
        return self._config

    def history(self, show_secrets: bool = True) -> list[SimpleNamespace]:
        assert show_secrets is False, "the gates never need secret values"
        return self._history

    def outputs(self) -> dict[str, auto.OutputValue]:
        return {k: auto.OutputValue(value=v, secret=False) for k, v in self._outputs.items()}


def entry(kind: str = "update", result: str = "succeeded", version: int = 7) -> SimpleNamespace:
    return SimpleNamespace(kind=kind, result=result, version=version, start_time=WHEN, end_time=WHEN)


@pytest.fixture()
def envdir(tmp_path: Path) -> Path:
    copy = tmp_path / "environments"
    shutil.copytree(REPO_ENVIRONMENTS, copy, ignore=shutil.ignore_patterns("stacks", "audit"))
    return copy


def use_select(monkeypatch: pytest.MonkeyPatch, stack: Any) -> list[tuple]:
    """`select` answering ``stack`` with the environment's real settings; records each call."""
    calls: list[tuple] = []

    def select(environment: str, create: bool = True, environments: Path | None = None):
        calls.append((environment, create, environments))
        if isinstance(stack, Exception):
            raise stack
        return stack, load_settings(environment, environments)

    monkeypatch.setattr(promote, "select", select)
    return calls


def staging_deployed(envdir: Path, **changed: Any) -> dict[str, Any]:
    """The releases output staging's last update would have recorded for its file as it is."""
    return {**file_releases(load_settings("staging", envdir)), **changed}


# --- (a) SOURCE's last update deployed what its file says --------------------------------------


def test_gate_a_passes_when_the_last_update_deployed_the_files_releases(
    envdir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    stack = EngineStack([entry(), entry(version=6)], {RELEASES_OUTPUT: staging_deployed(envdir, helm_releases=["x"])})
    calls = use_select(monkeypatch, stack)
    with caplog.at_level(logging.INFO, logger="smartnation"):
        update, selected = promote.gate_source_deployed("staging", envdir)
    assert calls == [("staging", False, envdir)]
    assert selected is stack
    assert update == SourceUpdate(version=7, time="2026-11-29T02:00:00Z", result="succeeded")
    assert "gate (a) passed: staging's last update #7 at 2026-11-29T02:00:00Z deployed its current releases" in (
        caplog.messages
    )


def refusal(gate, *args: Any) -> promote.Refused:
    with pytest.raises(promote.Refused) as caught:
        gate(*args)
    assert str(caught.value) == caught.value.reason
    return caught.value


def test_gate_a_refuses_a_source_never_deployed_to_this_backend(envdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_select(monkeypatch, auto.StackNotFoundError(auto.CommandResult(stdout="", stderr="no stack", code=255)))
    refused = refusal(promote.gate_source_deployed, "staging", envdir)
    assert refused.reason == "staging was never deployed to this backend: nothing it ran can be promoted"
    assert (refused.code, refused.source_update) == (exit_codes.FAILED, None)


def test_gate_a_refuses_a_source_with_no_update(envdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A refresh is history but deploys nothing.
    use_select(monkeypatch, EngineStack([entry(kind="refresh")]))
    refused = refusal(promote.gate_source_deployed, "staging", envdir)
    assert refused.reason == "staging has no update in its history: nothing it ran can be promoted"
    assert refused.source_update is None


def test_gate_a_refuses_when_the_last_operation_was_a_destroy(envdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_select(monkeypatch, EngineStack([entry(kind="destroy", version=9), entry()]))
    refused = refusal(promote.gate_source_deployed, "staging", envdir)
    assert refused.reason == "staging's last operation was a destroy (#9), not an update"
    assert refused.source_update == SourceUpdate(version=9, time="2026-11-29T02:00:00Z", result="succeeded")


def test_gate_a_refuses_a_failed_last_update(envdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_select(monkeypatch, EngineStack([entry(result="failed", version=8), entry()]))
    refused = refusal(promote.gate_source_deployed, "staging", envdir)
    assert refused.reason == ("staging's last update #8 at 2026-11-29T02:00:00Z failed: fix and redeploy staging first")
    assert refused.source_update == SourceUpdate(version=8, time="2026-11-29T02:00:00Z", result="failed")
    assert refused.code == exit_codes.FAILED


def test_gate_a_refuses_a_stack_without_the_releases_output(envdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_select(monkeypatch, EngineStack([entry()], {"other": 1}))
    refused = refusal(promote.gate_source_deployed, "staging", envdir)
    assert refused.reason == "staging's stack has no `deployed_releases` output: redeploy staging first"
    assert refused.source_update is not None and refused.source_update.version == 7


def test_gate_a_refuses_releases_the_source_never_ran_naming_them(
    envdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deployed = staging_deployed(envdir)
    changed = sorted(deployed)[:2]
    deployed = {**deployed, changed[0]: "older", changed[1]: "older"}
    use_select(monkeypatch, EngineStack([entry()], {RELEASES_OUTPUT: deployed}))
    refused = refusal(promote.gate_source_deployed, "staging", envdir)
    assert refused.reason == (
        f"environments/staging.yaml: releases differ from what staging's last update #7 deployed "
        f"({changed[0]}, {changed[1]}): staging never ran them; deploy staging first"
    )
    assert refused.source_update is not None and refused.source_update.result == "succeeded"


# --- (b) SOURCE has not drifted ---------------------------------------------------------------


def use_drift(monkeypatch: pytest.MonkeyPatch, found: Drift) -> list[Any]:
    stacks: list[Any] = []

    def drift(stack: Any) -> Drift:
        stacks.append(stack)
        return found

    monkeypatch.setattr(promote, "drift", drift)
    return stacks


def test_gate_b_passes_without_drift(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    stack = EngineStack()
    stacks = use_drift(monkeypatch, Drift(resources=()))
    with caplog.at_level(logging.INFO, logger="smartnation"):
        promote.gate_no_drift("staging", stack)
    assert stacks == [stack]
    assert caplog.messages == [
        "gate (b): checking staging for drift (refresh preview) ...",
        "gate (b) passed: staging has no drift",
    ]


def test_gate_b_refuses_when_the_drift_check_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    use_drift(monkeypatch, Drift(resources=(), error="error: the cluster is unreachable"))
    refused = refusal(promote.gate_no_drift, "staging", EngineStack())
    assert refused.reason == "the drift check of staging failed: error: the cluster is unreachable"


def test_gate_b_refuses_drift_listing_the_first_ten_resources(monkeypatch: pytest.MonkeyPatch) -> None:
    drifted = tuple(f"apps/v1:Deployment api-{i}" for i in range(12))
    use_drift(monkeypatch, Drift(resources=drifted))
    refused = refusal(promote.gate_no_drift, "staging", EngineStack())
    assert refused.reason == (
        f"staging has drifted from its state (12 resource(s): {', '.join(drifted[:10])} and 2 more); "
        "run `smartnation up staging` (or find who changed the cluster) first"
    )


def test_gate_b_lists_ten_drifted_resources_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    drifted = tuple(f"v1:Service s-{i}" for i in range(10))
    use_drift(monkeypatch, Drift(resources=drifted))
    refused = refusal(promote.gate_no_drift, "staging", EngineStack())
    assert f"(10 resource(s): {', '.join(drifted)}); run" in refused.reason


# --- (c) TARGET's preview with the new file ---------------------------------------------------

URN = "urn:pulumi:production::smartnation::{type}::{name}"
STATEFULSET = "kubernetes:apps/v1:StatefulSet"


def step(kind: str, type_: str, name: str) -> Step:
    return Step(kind=kind, urn=URN.format(type=type_, name=name), type=type_)


def use_preview(monkeypatch: pytest.MonkeyPatch, result: EnvironmentPreview) -> list[dict[str, Any]]:
    """`preview_environment` answering ``result``; records what it was asked and the file it saw."""
    calls: list[dict[str, Any]] = []

    def preview_environment(environment: str, reasons: tuple[str, ...] = (), environments: Path | None = None):
        assert environments is not None
        calls.append(
            {
                "environment": environment,
                "reasons": reasons,
                "environments": environments,
                "text": (environments / f"{environment}.yaml").read_text(encoding="utf-8"),
                "listing": sorted(p.name for p in environments.iterdir()),
            }
        )
        return result

    monkeypatch.setattr(promote, "preview_environment", preview_environment)
    return calls


def promoted_text(envdir: Path) -> str:
    return (envdir / "production.yaml").read_text() + "# promoted\n"


def test_gate_c_previews_the_new_file_from_a_copy_and_leaves_environments_alone(
    envdir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    (envdir / "stacks").mkdir()
    (envdir / "audit").mkdir()
    before = (envdir / "production.yaml").read_text()
    ok = EnvironmentPreview("production", "monaco-onprem", steps=[step(UPDATE, STATEFULSET, "database")], result=OK)
    calls = use_preview(monkeypatch, ok)
    new = promoted_text(envdir)
    with caplog.at_level(logging.INFO, logger="smartnation"):
        assert promote.gate_target_preview("production", new, envdir, False) is ok
    [call] = calls
    assert call["environment"] == "production"
    assert call["reasons"] == ("environments/production.yaml",)
    assert call["environments"].name == "environments" and call["environments"] != envdir
    assert call["text"] == new
    assert "stacks" not in call["listing"] and "audit" not in call["listing"]
    assert "promotion.yaml" in call["listing"]
    assert not call["environments"].exists(), "the temporary copy is removed"
    assert (envdir / "production.yaml").read_text() == before
    assert caplog.messages == [
        "gate (c): previewing production with the promoted releases ...",
        "gate (c) passed: production's preview has no mandatory violation",
    ]


def test_gate_c_refuses_an_invalid_promoted_file_before_the_engine_sees_it(
    envdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = use_preview(monkeypatch, EnvironmentPreview("production", "monaco-onprem"))
    bad = promoted_text(envdir).replace("cluster:", "clusterr:", 1)
    with pytest.raises(SettingsError) as caught:
        promote.gate_target_preview("production", bad, envdir, False)
    assert caught.value.file.endswith("production.yaml")
    assert calls == []


@pytest.mark.parametrize(
    ("errors", "shown"),
    [(["error: first", "error: the provider said no"], "error: the provider said no"), ([], "see the output above")],
)
def test_gate_c_refuses_a_failed_preview_with_its_last_error(
    envdir: Path, monkeypatch: pytest.MonkeyPatch, errors: list[str], shown: str
) -> None:
    use_preview(monkeypatch, EnvironmentPreview("production", "monaco-onprem", errors=errors, result=ERROR))
    refused = refusal(promote.gate_target_preview, "production", promoted_text(envdir), envdir, False)
    assert refused.reason == f"the preview of production failed: {shown}"
    assert refused.code == exit_codes.FAILED


def test_gate_c_refuses_mandatory_violations_with_the_policy_exit_code(
    envdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    violations = [
        Violation("no-latest-tag", "image uses :latest", "mandatory", None),
        Violation("limits-required", "no limits", "mandatory", None),
        Violation("no-latest-tag", "again", "mandatory", None),
        Violation("labels", "advisory only", "advisory", None),
    ]
    use_preview(monkeypatch, EnvironmentPreview("production", "monaco-onprem", violations=violations, result=OK))
    refused = refusal(promote.gate_target_preview, "production", promoted_text(envdir), envdir, True)
    assert refused.reason == (
        "the preview of production has 3 mandatory policy violation(s): limits-required, no-latest-tag"
    )
    assert refused.code == exit_codes.POLICY_VIOLATION


def destructive_preview(count: int) -> EnvironmentPreview:
    steps = [step(REPLACE, STATEFULSET, f"db-{i:02d}") for i in range(count)]
    steps.append(step(DELETE, "kubernetes:core/v1:PersistentVolumeClaim", "data-db-0"))
    steps.append(step(REPLACE, "kubernetes:apps/v1:Deployment", "api"))  # stateless: not counted
    return EnvironmentPreview("production", "monaco-onprem", steps=steps, result=OK)


def test_gate_c_refuses_stateful_replacements_listing_ten(envdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_preview(monkeypatch, destructive_preview(11))
    refused = refusal(promote.gate_target_preview, "production", promoted_text(envdir), envdir, False)
    listed = ["delete core/v1:PersistentVolumeClaim data-db-0"] + [
        f"replace apps/v1:StatefulSet db-{i:02d}" for i in range(9)
    ]
    assert refused.reason == (
        f"the promotion would replace or delete 12 stateful resource(s) of production ({', '.join(listed)}); "
        "re-run with --allow-stateful-changes if that is intended"
    )
    assert refused.code == exit_codes.FAILED


def test_gate_c_lets_stateful_changes_through_when_allowed_and_says_so(
    envdir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    preview = destructive_preview(1)
    use_preview(monkeypatch, preview)
    with caplog.at_level(logging.INFO, logger="smartnation"):
        assert promote.gate_target_preview("production", promoted_text(envdir), envdir, True) is preview
    assert caplog.messages[-1] == (
        "gate (c) passed: production's preview has no mandatory violation "
        "(stateful changes allowed by --allow-stateful-changes)"
    )


# --- before --apply: TARGET unlocked, drift reported -------------------------------------------


def use_locks(monkeypatch: pytest.MonkeyPatch, locked: set[str] = frozenset()) -> list[str]:
    checked: list[str] = []

    def check_unlocked(environment: str) -> None:
        checked.append(environment)
        if environment in locked:
            raise StackLocked(f"the stack {environment!r} is locked by another update: ci@runner (pid 7)")

    monkeypatch.setattr(promote, "check_unlocked", check_unlocked)
    return checked


def test_check_target_refuses_a_locked_target_before_selecting_it(
    envdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checked = use_locks(monkeypatch, {"production"})
    calls = use_select(monkeypatch, EngineStack())
    with pytest.raises(StackLocked, match="'production' is locked"):
        promote.check_target("production", envdir)
    assert (checked, calls) == (["production"], [])


def test_check_target_refuses_when_the_drift_check_failed(envdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_locks(monkeypatch)
    stack = EngineStack()
    calls = use_select(monkeypatch, stack)
    stacks = use_drift(monkeypatch, Drift(resources=(), error="timeout"))
    refused = refusal(promote.check_target, "production", envdir)
    assert refused.reason == "the drift check of production failed: timeout"
    assert calls == [("production", False, envdir)]
    assert stacks == [stack]


def test_check_target_refuses_a_stack_file_missing_a_secret_before_the_drift_check(
    envdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_locks(monkeypatch)
    lacking = dict(EVERY_SECRET)
    del lacking["smartnation:api-token-device-registry-verify"]
    use_select(monkeypatch, EngineStack(config=lacking))
    stacks = use_drift(monkeypatch, Drift(resources=()))
    refused = refusal(promote.check_target, "production", envdir)
    assert "Pulumi.production.yaml" in refused.reason
    assert "config.smartnation:api-token-device-registry-verify" in refused.reason
    assert "missing secret(s): smartnation:api-token-device-registry-verify" in refused.reason
    assert stacks == []  # refused before the drift check ran


def test_check_target_warns_of_drift_and_goes_on(
    envdir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    checked = use_locks(monkeypatch)
    use_select(monkeypatch, EngineStack())
    drifted = tuple(f"apps/v1:Deployment api-{i}" for i in range(11))
    use_drift(monkeypatch, Drift(resources=drifted))
    with caplog.at_level(logging.INFO, logger="smartnation"):
        promote.check_target("production", envdir)
    assert checked == ["production"]
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        (
            "WARNING",
            f"production has drifted from its state ({', '.join(drifted[:10])}); "
            "the update compares with the state, not the cluster",
        )
    ]


def test_check_target_is_quiet_without_drift(
    envdir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    use_locks(monkeypatch)
    use_select(monkeypatch, EngineStack())
    use_drift(monkeypatch, Drift(resources=()))
    with caplog.at_level(logging.INFO, logger="smartnation"):
        promote.check_target("production", envdir)
    assert caplog.records == []


# --- the target's update as recorded, the command line ----------------------------------------


def test_last_is_the_targets_newest_update_or_none() -> None:
    stack = EngineStack([entry(kind="refresh", version=13), entry(version=12, result="failed")])
    assert promote._last(stack) == SourceUpdate(version=12, time="2026-11-29T02:00:00Z", result="failed")
    assert promote._last(EngineStack([entry(kind="refresh")])) is None


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="smartnation")
    promote.add_parser(root.add_subparsers(dest="command"))
    return root


def test_the_command_line_defaults_to_asking_writing_only_and_no_stateful_changes() -> None:
    args = parser().parse_args(["promote", "staging", "production"])
    assert (args.source, args.target) == ("staging", "production")
    assert (args.yes, args.apply, args.allow_stateful_changes) == (False, False, False)
    assert args.func is promote.cmd_promote


def test_the_command_line_flags() -> None:
    args = parser().parse_args(["promote", "dev", "staging", "--yes", "--apply", "--allow-stateful-changes"])
    assert (args.yes, args.apply, args.allow_stateful_changes) == (True, True, True)


def test_the_help_says_what_each_flag_does(capsys: pytest.CaptureFixture[str]) -> None:
    root = parser()
    with pytest.raises(SystemExit):
        root.parse_args(["--help"])
    with pytest.raises(SystemExit):
        root.parse_args(["promote", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "copy SOURCE's releases into TARGET's file after the gates (order: environments/promotion.yaml)" in out
    assert "usage: smartnation promote [-h] [--yes] [--apply] [--allow-stateful-changes] SOURCE TARGET" in out
    assert "--yes do not ask for confirmation" in out
    assert "--apply also update TARGET once the file is written" in out
    assert (
        "--allow-stateful-changes accept replacing or deleting StatefulSets, volumes, namespaces or "
        "data-service resources" in out
    )
