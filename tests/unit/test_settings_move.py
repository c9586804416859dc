"""``move:`` in an environment file: refused with the file and the key when it cannot be a move,
and, against what the stack deployed, a plain change of ``cluster:`` on an environment with data
or a skipped phase is refused before anything is registered (program/move_guard.py). A valid
phase the program cannot run yet (cutover, complete) is refused as not yet available, never ignored."""

from __future__ import annotations

from pathlib import Path

import pytest

from smartnation.program.move_guard import Deployed, check_move, deployed_by_engine
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


# replicate runs (test_move_replicate.py); the later phases do not yet.
@pytest.mark.parametrize(("phase", "recorded"), [("cutover", "replicate"), ("complete", "cutover")])
def test_a_phase_the_program_cannot_run_yet_is_refused_not_ignored(envdir: Path, phase: str, recorded) -> None:
    edit(envdir, "dev.yaml", "move", {"to": OTHER, "phase": phase})
    error = guard_error(load_settings("dev", envdir), Deployed(HOME, OTHER if recorded else None, recorded))
    assert (error.file, error.key_path) == ("environments/dev.yaml", "move")
    assert "not available yet" in error.detail and "docs/move.md" in error.detail


def test_the_stack_outputs_say_what_is_deployed() -> None:
    assert Deployed.from_outputs({}) is None
    assert Deployed.from_outputs({"cluster": HOME, "namespace": "x"}) == Deployed(HOME)
    assert Deployed.from_outputs({"cluster": HOME, "move": {"to": OTHER, "phase": "cutover"}}) == Deployed(
        HOME, OTHER, "cutover"
    )


def test_outside_the_engine_nothing_deployed_is_read() -> None:
    assert deployed_by_engine() is None
