"""Production only in Monaco once its move is complete (issue 10 item 4).

``move_complete: true`` in environments/production.yaml (set after `smartnation state move`) is the
one record; ``smartnation_policy.residency.production_countries`` turns it into the allowed list.
Both sides apply it: the CLI writes it into the policy pack's target config (so the pack's
`data-residency` refuses Düsseldorf) and the program's preflight reads the same settings (so a
plain `pulumi up` without the pack refuses it too). Before the record, Düsseldorf is still allowed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from smartnation.cli.policy import policy_config
from smartnation.program.city_platform import build
from smartnation.settings import SettingsError, load_settings
from smartnation_policy import rules
from smartnation_policy.residency import PRODUCTION_COUNTRIES, PRODUCTION_COUNTRIES_AFTER_MOVE, production_countries
from tests.unit.harness import edit, environments_copy, run, secrets_for, set_secrets
from tests.unit.test_policy import STATEFULSET, check, resource_args

pytestmark = pytest.mark.unit


def production_on(tmp_path: Path, cluster: str, move_complete: bool | None) -> Path:
    """environments/ with production on ``cluster`` and ``move_complete`` set (None: absent)."""
    root = environments_copy(tmp_path, "production", cluster)
    if move_complete is not None:
        edit(root, "production.yaml", "move_complete", move_complete)
    return root


def pack_violations(root: Path) -> list[str]:
    """What the pack's data-residency rule says with the target config the CLI writes."""
    config = policy_config(load_settings("production", root))
    target = config["data-residency"]
    args = resource_args(STATEFULSET, {}, name="postgres", config=target)
    return check(rules.data_residency_validator, args).messages


def test_the_lists_before_and_after_the_move():
    assert production_countries(False) == PRODUCTION_COUNTRIES == ("DE", "MC")
    assert production_countries(True) == PRODUCTION_COUNTRIES_AFTER_MOVE == ("MC",)


@pytest.mark.parametrize("move_complete", [None, False])
def test_before_the_move_completes_production_may_still_run_in_dusseldorf(tmp_path, recorder, move_complete):
    root = production_on(tmp_path, "dusseldorf-test", move_complete)
    settings = load_settings("production", root)
    assert policy_config(settings)["data-residency"]["production_countries"] == ["DE", "MC"]
    assert pack_violations(root) == []
    set_secrets(secrets_for(settings))
    run(recorder, lambda: build(settings))
    assert recorder.resources, "production on Düsseldorf should still build during the move"


def test_once_complete_the_pack_refuses_production_in_dusseldorf(tmp_path):
    root = production_on(tmp_path, "dusseldorf-test", True)
    assert policy_config(load_settings("production", root))["data-residency"]["production_countries"] == ["MC"]
    messages = pack_violations(root)
    assert len(messages) == 1
    assert "production must not deploy to cluster 'dusseldorf-test' in country DE" in messages[0]
    assert "production may run only in ['MC']" in messages[0]


def test_once_complete_the_program_refuses_production_in_dusseldorf_without_the_pack(tmp_path, recorder):
    root = production_on(tmp_path, "dusseldorf-test", True)
    settings = load_settings("production", root)
    set_secrets(secrets_for(settings))
    with pytest.raises(SettingsError) as caught:
        run(recorder, lambda: build(settings))
    error = caught.value
    assert (error.file, error.key_path) == ("environments/production.yaml", "cluster")
    assert "in country DE; production may run only in ['MC']" in error.detail
    assert "PRODUCTION_COUNTRIES_AFTER_MOVE" in error.detail and "move_complete: true" in error.detail
    assert recorder.resources == []


def test_once_complete_production_in_monaco_passes_both(tmp_path, recorder):
    root = production_on(tmp_path, "monaco-onprem", True)
    assert pack_violations(root) == []
    settings = load_settings("production", root)
    set_secrets(secrets_for(settings))
    run(recorder, lambda: build(settings))
    assert recorder.resources


@pytest.mark.parametrize("environment", ["dev", "staging"])
def test_move_complete_does_not_restrict_other_environments(tmp_path, environment):
    root = environments_copy(tmp_path, environment, "dusseldorf-test")
    edit(root, f"{environment}.yaml", "move_complete", True)
    settings = load_settings(environment, root)
    assert settings.move_complete is True
    config = policy_config(settings)["data-residency"]
    args = resource_args(STATEFULSET, {}, name="postgres", config=config)
    assert check(rules.data_residency_validator, args).messages == []


def test_move_complete_in_the_defaults_is_refused(envdir):
    edit(envdir, "defaults.yaml", "move_complete", True)
    with pytest.raises(SettingsError) as caught:
        load_settings("production", envdir)
    assert (caught.value.file, caught.value.key_path) == ("environments/defaults.yaml", "move_complete")


def test_move_complete_beside_a_declared_move_is_refused(envdir):
    edit(envdir, "dev.yaml", "move", {"to": "monaco-onprem", "phase": "complete"})
    edit(envdir, "dev.yaml", "move_complete", True)
    with pytest.raises(SettingsError) as caught:
        load_settings("dev", envdir)
    assert (caught.value.file, caught.value.key_path) == ("environments/dev.yaml", "move_complete")
    assert "still declared" in caught.value.detail


@pytest.mark.parametrize("value", ["yes", 1, "true"])
def test_move_complete_must_be_a_boolean(envdir, value):
    edit(envdir, "production.yaml", "move_complete", value)
    with pytest.raises(SettingsError) as caught:
        load_settings("production", envdir)
    assert (caught.value.file, caught.value.key_path) == ("environments/production.yaml", "move_complete")
