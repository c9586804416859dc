"""``move:`` in an environment file: refused with the file and the key when it cannot be a move,
and, against what the stack deployed, a plain change of ``cluster:`` on an environment with data
or a skipped phase, or a way back from the cutover, is refused before anything is registered
(program/move_guard.py); after the complete phase `cluster:` must name the new site."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from smartnation.program import naming
from smartnation.program.move_guard import (
    Deployed,
    check_cutover_ran,
    check_final_backup,
    check_move,
    deployed_by_engine,
)
from smartnation.settings import SettingsError, load_settings
from tests.unit.harness import edit

pytestmark = pytest.mark.unit

HOME, OTHER = "dusseldorf-test", "monaco-onprem"  # dev's cluster and the one it moves to


def refused(envdir: Path, environment: str = "dev") -> SettingsError:
    with pytest.raises(SettingsError) as caught:
        load_settings(environment, envdir)
    return caught.value


def test_a_move_to_an_unknown_cluster_is_refused(envdir: Path) -> None:
    edit(envdir, "dev.yaml", "move", {"to": "atlantis", "phase": "replicate"})
    error = refused(envdir)
    assert (error.file, error.key_path) == ("environments/dev.yaml", "move.to")
    assert "atlantis" in error.detail and OTHER in error.detail


def test_a_move_to_the_cluster_it_is_on_is_refused(envdir: Path) -> None:
    edit(envdir, "dev.yaml", "move", {"to": HOME, "phase": "replicate"})
    error = refused(envdir)
    assert (error.file, error.key_path) == ("environments/dev.yaml", "move.to")
    assert "already" in error.detail


@pytest.mark.parametrize("phase", ["copy", "Replicate", "", 3])
def test_a_bad_phase_is_refused(envdir: Path, phase: object) -> None:
    edit(envdir, "dev.yaml", "move", {"to": OTHER, "phase": phase})
    error = refused(envdir)
    assert (error.file, error.key_path) == ("environments/dev.yaml", "move.phase")
    assert "replicate" in error.detail


def test_an_unknown_or_missing_move_key_is_refused(envdir: Path) -> None:
    edit(envdir, "dev.yaml", "move", {"to": OTHER, "phase": "replicate", "when": "now"})
    assert refused(envdir).key_path == "move.when"
    edit(envdir, "dev.yaml", "move", {"to": OTHER})
    assert refused(envdir).key_path == "move.phase"


def test_a_move_in_the_defaults_is_refused(envdir: Path) -> None:
    edit(envdir, "defaults.yaml", "move", {"to": OTHER, "phase": "replicate"})
    error = refused(envdir, "staging")
    assert (error.file, error.key_path) == ("environments/defaults.yaml", "move")


def test_a_valid_move_loads(envdir: Path) -> None:
    edit(envdir, "dev.yaml", "move", {"to": OTHER, "phase": "replicate"})
    settings = load_settings("dev", envdir)
    assert settings.move is not None and (settings.move.to, settings.move.phase) == (OTHER, "replicate")
    assert settings.cluster.name == HOME
    assert load_settings("staging", envdir).move is None


# --- Against what the stack deployed (the program's preflight) ------------------------------


def guard_error(settings, deployed: Deployed | None) -> SettingsError:
    with pytest.raises(SettingsError) as caught:
        check_move(settings, lambda: deployed)
    return caught.value


def test_a_plain_cluster_change_on_an_environment_with_data_is_refused_pointing_to_the_move(envdir: Path) -> None:
    edit(envdir, "dev.yaml", "cluster", OTHER)
    error = guard_error(load_settings("dev", envdir), Deployed(HOME))
    assert (error.file, error.key_path) == ("environments/dev.yaml", "cluster")
    assert f"move: {{to: {OTHER}, phase: replicate}}" in error.detail and f"cluster: {HOME}" in error.detail


def test_the_cluster_may_change_while_nothing_is_deployed_and_stay_while_something_is(envdir: Path) -> None:
    check_move(load_settings("dev", envdir), lambda: Deployed(HOME))
    edit(envdir, "dev.yaml", "cluster", OTHER)
    check_move(load_settings("dev", envdir), lambda: None)


def test_during_a_move_the_cluster_stays_where_the_data_is(envdir: Path) -> None:
    edit(envdir, "dev.yaml", "cluster", OTHER)
    edit(envdir, "dev.yaml", "move", {"to": HOME, "phase": "replicate"})
    error = guard_error(load_settings("dev", envdir), Deployed(HOME))
    assert error.key_path == "cluster" and "stays" in error.detail


@pytest.mark.parametrize(
    ("phase", "recorded", "skipped"),
    [("cutover", None, "replicate"), ("complete", None, "replicate"), ("complete", "replicate", "cutover")],
)
def test_a_skipped_phase_is_refused(envdir: Path, phase: str, recorded: str | None, skipped: str) -> None:
    edit(envdir, "dev.yaml", "move", {"to": OTHER, "phase": phase})
    deployed = Deployed(HOME, OTHER if recorded else None, recorded)
    error = guard_error(load_settings("dev", envdir), deployed)
    assert (error.file, error.key_path) == ("environments/dev.yaml", "move.phase")
    assert f"skips {skipped}" in error.detail


@pytest.mark.parametrize("recorded", ["replicate", "cutover"])
def test_cutover_follows_replicate_and_may_run_again(envdir: Path, recorded: str) -> None:
    edit(envdir, "dev.yaml", "move", {"to": OTHER, "phase": "cutover"})
    check_move(load_settings("dev", envdir), lambda: Deployed(HOME, OTHER, recorded))


def test_back_to_replicate_after_the_cutover_is_refused(envdir: Path) -> None:
    edit(envdir, "dev.yaml", "move", {"to": OTHER, "phase": "replicate"})
    error = guard_error(load_settings("dev", envdir), Deployed(HOME, OTHER, "cutover"))
    assert (error.file, error.key_path) == ("environments/dev.yaml", "move.phase")
    assert f"{OTHER} has taken writes since, which going back to replicate would lose" in error.detail
    assert f"declare `move: {{to: {OTHER}, phase: rollback}}`" in error.detail


def test_removing_the_move_after_the_cutover_is_refused(envdir: Path) -> None:
    error = guard_error(load_settings("dev", envdir), Deployed(HOME, OTHER, "cutover"))
    assert (error.file, error.key_path) == ("environments/dev.yaml", "move")
    assert "going back to no move would lose" in error.detail


@pytest.mark.parametrize("recorded", ["cutover", "complete"])
def test_complete_follows_the_cutover_and_may_run_again(envdir: Path, recorded: str) -> None:
    edit(envdir, "dev.yaml", "move", {"to": OTHER, "phase": "complete"})
    # After the complete phase the stack says the environment is on the new site.
    deployed = Deployed(OTHER if recorded == "complete" else HOME, OTHER, recorded)
    check_move(load_settings("dev", envdir), lambda: deployed)


def test_after_the_complete_phase_the_cluster_is_the_new_site(envdir: Path) -> None:
    done = Deployed(OTHER, OTHER, "complete")
    error = guard_error(load_settings("dev", envdir), done)  # `move:` removed, `cluster:` still the old site
    assert (error.file, error.key_path) == ("environments/dev.yaml", "cluster")
    assert (
        f"move to {OTHER} is complete" in error.detail and f"set `cluster: {OTHER}` and remove `move:`" in error.detail
    )
    edit(envdir, "dev.yaml", "move", {"to": OTHER, "phase": "cutover"})
    assert guard_error(load_settings("dev", envdir), done).key_path == "cluster", "no phase back either"
    edit(envdir, "dev.yaml", "move", None)
    edit(envdir, "dev.yaml", "cluster", OTHER)
    check_move(load_settings("dev", envdir), lambda: done)  # `cluster: monaco-onprem` alone: a plain update


def test_removing_the_move_during_replicate_is_the_rollback(envdir: Path) -> None:
    check_move(load_settings("dev", envdir), lambda: Deployed(HOME, OTHER, "replicate"))


def test_the_stack_outputs_say_what_is_deployed() -> None:
    assert Deployed.from_outputs({}) is None
    assert Deployed.from_outputs({"cluster": HOME, "namespace": "x"}) == Deployed(HOME)
    assert Deployed.from_outputs({"cluster": HOME, "move": {"to": OTHER, "phase": "cutover"}}) == Deployed(
        HOME, OTHER, "cutover"
    )


def test_outside_the_engine_nothing_deployed_is_read() -> None:
    assert deployed_by_engine() is None


# --- The cutover's update, against both clusters live (check_cutover_ran) ------------------


def _sides(source: dict, target: dict):
    read: list[tuple[str, str, str, str]] = []

    def side(environment: str, role: str, cluster: str, context: str) -> dict:
        read.append((environment, role, cluster, context))
        return source if role == "source" else target

    return side, read


FENCED, TAKING_WRITES = {"read_only": True, "in_recovery": False}, {"read_only": False, "in_recovery": False}
STANDBY = {"read_only": False, "in_recovery": True}


def test_the_cutover_applies_once_the_source_is_fenced_and_the_target_promoted(envdir: Path) -> None:
    edit(envdir, "dev.yaml", "move", {"to": OTHER, "phase": "cutover"})
    side, read = _sides(FENCED, TAKING_WRITES)
    check_cutover_ran(load_settings("dev", envdir), side)
    assert read == [("dev", "source", HOME, "dusseldorf-test"), ("dev", "target", OTHER, "monaco-onprem")]


@pytest.mark.parametrize(
    ("source", "target", "said"),
    [
        (FENCED, STANDBY, f"once {OTHER}'s database is promoted, and it is still a standby"),
        (FENCED, {"in_recovery": None, "problem": "target monaco-onprem: no Running database primary Pod"},
         "was not read: target monaco-onprem: no Running database primary Pod"),
        (TAKING_WRITES, TAKING_WRITES, f"once {HOME}'s database is fenced (read-only), and it is not"),
        ({"read_only": None, "problem": "source dusseldorf-test: psql failed"}, TAKING_WRITES,
         "was not read: source dusseldorf-test: psql failed"),
    ],
)  # fmt: skip
def test_a_cutover_update_without_the_drivers_steps_is_refused(envdir: Path, source, target, said: str) -> None:
    edit(envdir, "dev.yaml", "move", {"to": OTHER, "phase": "cutover"})
    with pytest.raises(SettingsError) as caught:
        check_cutover_ran(load_settings("dev", envdir), _sides(source, target)[0])
    assert (caught.value.file, caught.value.key_path) == ("environments/dev.yaml", "move.phase")
    assert said in caught.value.detail and f"run `smartnation move dev --to {OTHER}`" in caught.value.detail


@pytest.mark.parametrize("phase", [None, "replicate"])
def test_other_phases_read_nothing_for_the_cutover(envdir: Path, phase: str | None) -> None:
    if phase:
        edit(envdir, "dev.yaml", "move", {"to": OTHER, "phase": phase})
    side, read = _sides(TAKING_WRITES, STANDBY)
    check_cutover_ran(load_settings("dev", envdir), side)
    assert read == []


def test_under_mocks_the_cutover_reads_no_cluster(envdir: Path) -> None:
    edit(envdir, "dev.yaml", "move", {"to": OTHER, "phase": "cutover"})
    check_cutover_ran(load_settings("dev", envdir))  # outside the engine: nothing read, nothing refused


# --- The complete phase's update, against the new site's record of a final backup -----------


def _record(data: dict | None):
    read: list[tuple[str, str, str]] = []

    def record(context: str, namespace: str, environment: str) -> dict | None:
        read.append((context, namespace, environment))
        return data

    return record, read


def test_complete_applies_once_the_final_backup_was_verified(envdir: Path) -> None:
    edit(envdir, "dev.yaml", "move", {"to": OTHER, "phase": "complete"})
    record, read = _record({"verified": "true", "source": HOME, "backup": "2026-11-30T12:00:00Z"})
    check_final_backup(load_settings("dev", envdir), record)
    assert read == [("monaco-onprem", naming.namespace("dev"), "dev")]


@pytest.mark.parametrize(
    "data", [None, {}, {"verified": "false", "source": HOME}, {"verified": "true", "source": "another-cluster"}]
)
def test_complete_without_a_verified_final_backup_of_this_source_is_refused(envdir: Path, data) -> None:
    edit(envdir, "dev.yaml", "move", {"to": OTHER, "phase": "complete"})
    with pytest.raises(SettingsError) as caught:
        check_final_backup(load_settings("dev", envdir), _record(data)[0])
    assert (caught.value.file, caught.value.key_path) == ("environments/dev.yaml", "move.phase")
    assert f"complete deletes {HOME}'s resources" in caught.value.detail
    assert f"(ConfigMap dev-move-final-backup): run `smartnation move dev --to {OTHER}`" in caught.value.detail


@pytest.mark.parametrize("phase", [None, "replicate", "cutover"])
def test_other_phases_read_no_final_backup(envdir: Path, phase: str | None) -> None:
    if phase:
        edit(envdir, "dev.yaml", "move", {"to": OTHER, "phase": phase})
    record, read = _record(None)
    check_final_backup(load_settings("dev", envdir), record)
    assert read == []


# --- The rollback phase (docs/move.md, section 10) -----------------------------------------------


def test_a_rollback_loads_and_a_bad_phase_names_it_among_the_phases(envdir: Path) -> None:
    edit(envdir, "dev.yaml", "move", {"to": OTHER, "phase": "rollback"})
    settings = load_settings("dev", envdir)
    assert settings.move is not None and settings.move.phase == "rollback" and settings.cluster.name == HOME
    edit(envdir, "dev.yaml", "move", {"to": OTHER, "phase": "back"})
    error = refused(envdir)
    assert (error.file, error.key_path) == ("environments/dev.yaml", "move.phase")
    assert "'replicate', 'cutover', 'complete', 'rollback'" in error.detail


@pytest.mark.parametrize("recorded", ["cutover", "rollback"])
def test_a_rollback_follows_the_cutover_and_may_run_again(envdir: Path, recorded: str) -> None:
    edit(envdir, "dev.yaml", "move", {"to": OTHER, "phase": "rollback"})
    check_move(load_settings("dev", envdir), lambda: Deployed(HOME, OTHER, recorded))


@pytest.mark.parametrize(
    ("deployed", "said"),
    [
        (Deployed(HOME, OTHER, "replicate"),
         f"rollback applies only after the cutover to {OTHER} (the stack's `move` output): from replicate {OTHER} "
         f"took no writes (its database is a standby): the rollback is removing `move:`, which deletes {OTHER}'s "
         f"side and leaves {HOME} as it is (docs/move.md)"),
        (Deployed(HOME),
         f"rollback applies only after the cutover to {OTHER} (the stack's `move` output): it goes back from a "
         "cutover, and none ran (no phase has run yet) (docs/move.md)"),
        # A cutover recorded towards another site is no cutover of this move.
        (Deployed(HOME, "atlantis", "cutover"), "it goes back from a cutover, and none ran (no phase has run yet)"),
    ],
)  # fmt: skip
def test_a_rollback_without_a_cutover_is_refused(envdir: Path, deployed: Deployed, said: str) -> None:
    edit(envdir, "dev.yaml", "move", {"to": OTHER, "phase": "rollback"})
    error = guard_error(load_settings("dev", envdir), deployed)
    assert (error.file, error.key_path) == ("environments/dev.yaml", "move.phase")
    assert said in error.detail


def test_a_rollback_of_a_move_never_deployed_is_refused_as_any_move(envdir: Path) -> None:
    edit(envdir, "dev.yaml", "move", {"to": OTHER, "phase": "rollback"})
    error = guard_error(load_settings("dev", envdir), None)
    assert (error.file, error.key_path) == ("environments/dev.yaml", "move")


@pytest.mark.parametrize("phase", ["replicate", "cutover", "complete"])
def test_after_a_rollback_no_forward_phase_follows(envdir: Path, phase: str) -> None:
    edit(envdir, "dev.yaml", "move", {"to": OTHER, "phase": phase})
    error = guard_error(load_settings("dev", envdir), Deployed(HOME, OTHER, "rollback"))
    assert (error.file, error.key_path) == ("environments/dev.yaml", "move.phase")
    assert error.detail == (
        f"dev's rollback from {OTHER} ran (the stack's `move` output): {OTHER}'s database is no longer a standby "
        f"of {HOME}'s, so `move: {{to: {OTHER}, phase: {phase}}}` cannot follow it; remove `move:` first (once "
        f"`smartnation move dev --to {OTHER}` drove the rollback: that deletes {OTHER}'s side), then a new move "
        "starts with replicate (docs/move.md)"
    )


def test_after_a_rollback_a_rollback_to_another_site_is_refused_naming_the_target(envdir: Path) -> None:
    edit(envdir, "dev.yaml", "move", {"to": "atlantis", "phase": "rollback"})
    (envdir / "clusters" / "atlantis.yaml").write_text((envdir / "clusters" / f"{OTHER}.yaml").read_text())
    error = guard_error(load_settings("dev", envdir), Deployed(HOME, OTHER, "rollback"))
    assert (error.file, error.key_path) == ("environments/dev.yaml", "move.to")
    assert f"rollback from {OTHER} ran" in error.detail


ROLLED_BACK = {"verified": "true", "from": OTHER, "at": "2026-12-01T10:00:00Z"}


def _rollback_record(data: dict | None):
    read: list[tuple[str, str, str]] = []

    def record(context: str, namespace: str, environment: str) -> dict | None:
        read.append((context, namespace, environment))
        return data

    return record, read


def test_removing_the_move_after_a_verified_rollback_reads_the_record_on_the_old_site(envdir: Path) -> None:
    record, read = _rollback_record(ROLLED_BACK)
    check_move(load_settings("dev", envdir), lambda: Deployed(HOME, OTHER, "rollback"), record)
    assert read == [("dusseldorf-test", naming.namespace("dev"), "dev")], "the old site's context"


@pytest.mark.parametrize(
    "data",
    [None, {}, {**ROLLED_BACK, "verified": "false"}, {**ROLLED_BACK, "from": "atlantis"},
     {"verified": "true", "at": "2026-12-01T10:00:00Z"}],
    ids=["no-configmap", "no-data", "not-verified", "another-move", "from-missing"],
)  # fmt: skip
def test_removing_the_move_after_a_rollback_without_its_record_is_refused(envdir: Path, data) -> None:
    with pytest.raises(SettingsError) as caught:
        check_move(load_settings("dev", envdir), lambda: Deployed(HOME, OTHER, "rollback"), _rollback_record(data)[0])
    assert (caught.value.file, caught.value.key_path) == ("environments/dev.yaml", "move")
    assert caught.value.detail == (
        f"removing `move:` after the rollback from {OTHER} deletes {OTHER}'s side, with what it took since the "
        f"cutover; it does so only once that was brought back to {HOME} and verified there, and no such record is "
        f'on {HOME} (ConfigMap dev-move-rollback, `verified: "true"`, `from: {OTHER}`): drive the rollback first, '
        f"`smartnation move dev --to {OTHER}`, then remove `move:`"
    )


@pytest.mark.parametrize("phase", [None, "rollback"])
@pytest.mark.parametrize("recorded", [None, "replicate", "cutover"])
def test_no_rollback_record_is_read_but_to_remove_the_move_after_a_rollback(
    envdir: Path, phase: str | None, recorded: str | None
) -> None:
    if phase:
        edit(envdir, "dev.yaml", "move", {"to": OTHER, "phase": phase})
    record, read = _rollback_record(None)
    # Refused or not (tested above), what matters here is that nothing was read.
    with contextlib.suppress(SettingsError):
        check_move(load_settings("dev", envdir), lambda: Deployed(HOME, OTHER if recorded else None, recorded), record)
    assert read == []
    # The rollback declared again after a recorded rollback reads nothing either.
    edit(envdir, "dev.yaml", "move", {"to": OTHER, "phase": "rollback"})
    check_move(load_settings("dev", envdir), lambda: Deployed(HOME, OTHER, "rollback"), record)
    assert read == []


def test_outside_the_engine_removing_the_move_after_a_rollback_reads_nothing(envdir: Path) -> None:
    check_move(load_settings("dev", envdir), lambda: Deployed(HOME, OTHER, "rollback"))  # mocks: no cluster


def test_the_rollback_record_is_read_in_an_update_run_by_the_engine_only(envdir: Path, monkeypatch) -> None:
    import pulumi

    from smartnation.program import move_guard

    read: list[tuple[str, str, str]] = []
    monkeypatch.setattr(move_guard, "_read_rollback", lambda *args: read.append(args) or ROLLED_BACK)
    monkeypatch.setattr("pulumi.runtime.settings.get_monitor", lambda: object())
    settings = load_settings("dev", envdir)
    monkeypatch.setattr(pulumi.runtime, "is_dry_run", lambda: True)
    check_move(settings, lambda: Deployed(HOME, OTHER, "rollback"))
    assert read == [], "the driver previews before it carries the data back"
    monkeypatch.setattr(pulumi.runtime, "is_dry_run", lambda: False)
    check_move(settings, lambda: Deployed(HOME, OTHER, "rollback"))
    assert read == [("dusseldorf-test", naming.namespace("dev"), "dev")]


def test_the_rollback_record_is_the_configmap_on_the_old_site_read_with_kubectl(monkeypatch) -> None:
    from types import SimpleNamespace

    from smartnation.program import move_guard

    calls: list[list[str]] = []

    def run(argv: list[str], **_: object) -> SimpleNamespace:
        calls.append(argv)
        return SimpleNamespace(returncode=0, stdout='{"data": {"verified": "true", "from": "x"}}', stderr="")

    monkeypatch.setattr(move_guard.shutil, "which", lambda name: f"/bin/{name}")
    monkeypatch.setattr(move_guard.subprocess, "run", run)
    assert move_guard._read_rollback("dus-ctx", "smartnation-dev", "dev") == {"verified": "true", "from": "x"}
    assert calls == [["/bin/kubectl", "--context", "dus-ctx", "-n", "smartnation-dev", "get", "configmap",
                      "dev-move-rollback", "--ignore-not-found", "-o", "json"]]  # fmt: skip
    refusal = SimpleNamespace(returncode=1, stdout="", stderr="forbidden")
    monkeypatch.setattr(move_guard.subprocess, "run", lambda *_a, **_k: refusal)
    with pytest.raises(SettingsError, match="cannot read the rollback's record: forbidden"):
        move_guard._read_rollback("dus-ctx", "smartnation-dev", "dev")


def test_the_records_name_and_keys_are_the_ones_the_driver_imports() -> None:
    from smartnation.program import move_guard, move_records

    assert move_records.record_name("dev", move_records.ROLLBACK) == "dev-move-rollback"
    assert (move_records.ROLLBACK_VERIFIED, move_records.ROLLBACK_FROM, move_records.ROLLBACK_AT) == (
        "verified",
        "from",
        "at",
    )
    assert move_guard.FINAL_BACKUP == move_records.FINAL_BACKUP == "move-final-backup", "cli/move_complete imports it"


def test_the_cutover_check_does_not_apply_to_the_rollback(envdir: Path) -> None:
    """The rollback's update only turns the bridge and the outputs: safe without the driver's steps."""
    edit(envdir, "dev.yaml", "move", {"to": OTHER, "phase": "rollback"})
    side, read = _sides(TAKING_WRITES, STANDBY)
    check_cutover_ran(load_settings("dev", envdir), side)
    check_final_backup(load_settings("dev", envdir), _record(None)[0])
    assert read == []
