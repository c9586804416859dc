"""The non-negotiables in the program's own preflight: what `pulumi up` run without the CLI (and
so without the policy pack) still refuses, with the file and key to change, registering nothing.

Each case edits a copy of environments/ and runs the real ``build`` under the mocks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from smartnation.program.city_platform import build
from smartnation.program.preflight import check_non_negotiables, check_residency
from smartnation.settings import SettingsError, load_settings
from smartnation.settings.models import Settings
from smartnation_policy.residency import PRODUCTION_COUNTRIES
from tests.unit.harness import ENVIRONMENTS, Recorder, environments_copy, run, secrets_for, set_secrets

pytestmark = pytest.mark.unit

LEAKED = "Hunter2-leaked-value"


def edit_yaml(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def build_edited(
    tmp_path: Path, recorder: Recorder, environment: str, cluster: str, change: Callable[[Path], None]
) -> None:
    """Build ``environment`` on ``cluster`` from a copy of environments/ that ``change`` edited."""
    root = environments_copy(tmp_path, environment, cluster)
    change(root)
    settings = load_settings(environment, root)
    set_secrets(secrets_for(settings))
    run(recorder, lambda: build(settings))


def test_production_outside_the_allowed_countries_is_refused_by_the_program(tmp_path, recorder):
    def move_dusseldorf_to_france(root: Path) -> None:
        edit_yaml(root / "clusters" / "dusseldorf-test.yaml", lambda p: p["site"].update(country="FR"))

    with pytest.raises(SettingsError) as caught:
        build_edited(tmp_path, recorder, "production", "dusseldorf-test", move_dusseldorf_to_france)
    error = caught.value
    assert (error.file, error.key_path) == ("environments/production.yaml", "cluster")
    assert "production must not deploy to cluster 'dusseldorf-test' in country FR" in str(error)
    assert f"production may run only in {list(PRODUCTION_COUNTRIES)}" in str(error)
    assert "environments/clusters/dusseldorf-test.yaml site.country" in str(error)
    assert recorder.resources == []


def test_residency_follows_the_shared_list_when_production_moves_to_monaco_only(tmp_path):
    # What happens once PRODUCTION_COUNTRIES becomes ("MC",): Düsseldorf (DE) is refused, Monaco is not.
    dusseldorf = load_settings("production", environments_copy(tmp_path, "production", "dusseldorf-test"))
    with pytest.raises(SettingsError, match=r"country DE; production may run only in \['MC'\]"):
        check_residency(dusseldorf, production_countries=("MC",))
    check_residency(load_settings("production"), production_countries=("MC",))


@pytest.mark.parametrize("environment", ["dev", "staging"])
def test_residency_does_not_restrict_other_environments(environment):
    check_residency(load_settings(environment), production_countries=("XX",))


def test_unprotected_production_state_is_refused_by_the_program(tmp_path, recorder):
    def unprotect(root: Path) -> None:
        edit_yaml(root / "production.yaml", lambda e: e["guardrails"].update(protect_state=False))

    with pytest.raises(SettingsError) as caught:
        build_edited(tmp_path, recorder, "production", "monaco-onprem", unprotect)
    assert (caught.value.file, caught.value.key_path) == ("environments/production.yaml", "guardrails.protect_state")
    assert "production's state must be protected" in str(caught.value)
    assert recorder.resources == []


def with_extra_env(settings: Settings, extra_env: dict[str, str]) -> Settings:
    """``settings`` with the device registry's extra_env replaced, past the settings model.

    The settings model refuses credential-looking extra_env itself (ApiSettings.__post_init__); the
    program's preflight must hold without it (Settings built another way, a check loosened there),
    so these cases set the field the way no loader would.
    """
    api = dataclasses.replace(settings.city_apis["device_registry"], extra_env={})
    object.__setattr__(api, "extra_env", extra_env)
    return dataclasses.replace(settings, city_apis={**settings.city_apis, "device_registry": api})


def build_settings(recorder: Recorder, settings: Settings) -> None:
    set_secrets(secrets_for(settings))
    run(recorder, lambda: build(settings))


@pytest.mark.parametrize(
    ("environment", "variable", "value"),
    [
        ("production", "DB_PASSWORD", LEAKED),
        ("staging", "API_TOKEN", LEAKED),
        ("dev", "DATABASE_URL", f"postgres://app:{LEAKED}@db:5432/app"),
    ],
)
def test_a_plaintext_credential_in_extra_env_is_refused_by_the_program(recorder, environment, variable, value):
    settings = with_extra_env(load_settings(environment), {"LOG_LEVEL": "info", variable: value})
    with pytest.raises(SettingsError) as caught:
        build_settings(recorder, settings)
    error = caught.value
    assert (error.file, error.key_path) == (
        f"environments/{environment}.yaml",
        f"city_apis.device_registry.extra_env.{variable}",
    )
    assert "plain text" in str(error) and "--secret" in str(error)
    assert LEAKED not in str(error)
    assert recorder.resources == []


def test_a_plaintext_credential_in_a_cluster_profile_names_the_profile(tmp_path, recorder):
    def leak(root: Path) -> None:
        edit_yaml(
            root / "clusters" / "monaco-onprem.yaml",
            lambda p: p["load_balancer"]["service_annotations"].update(
                {"metallb.universe.tf/webhook": f"https://lb:{LEAKED}@controller.local/hook"}
            ),
        )

    with pytest.raises(SettingsError) as caught:
        build_edited(tmp_path, recorder, "staging", "monaco-onprem", leak)
    assert caught.value.file == "environments/clusters/monaco-onprem.yaml"
    assert caught.value.key_path == "load_balancer.service_annotations.metallb.universe.tf/webhook"
    assert LEAKED not in str(caught.value)


@pytest.mark.parametrize("environment", ENVIRONMENTS)
@pytest.mark.parametrize("cluster", ["dusseldorf-test", "monaco-onprem"])
def test_every_environment_as_written_passes_the_non_negotiables(tmp_path, environment, cluster):
    check_non_negotiables(load_settings(environment, environments_copy(tmp_path, environment, cluster)))


def test_extra_env_that_is_not_a_credential_passes(recorder):
    extra_env = {"LOG_LEVEL": "debug", "UPSTREAM_URL": "https://open-data.example.mc/v1"}
    build_settings(recorder, with_extra_env(load_settings("production"), extra_env))
    assert recorder.resources
