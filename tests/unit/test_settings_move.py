"""``move:`` in an environment file: refused with the file and the key when it cannot be a move,
and, against what the stack deployed, a plain change of ``cluster:`` on an environment with data
or a skipped phase, or a way back from the cutover, is refused before anything is registered
(program/move_guard.py); after the complete phase `cluster:` must name the new site."""

from __future__ import annotations

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
    assert "keep `phase: cutover`" in error.detail


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
