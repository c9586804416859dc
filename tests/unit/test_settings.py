"""Settings: every environment loads, and every kind of mistake is refused with file + key path."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from smartnation.paths import ENVIRONMENTS_DIR_VARIABLE
from smartnation.settings import SettingsError, list_clusters, load_cluster_profile, load_settings
from smartnation.settings.models import PLATFORM_COMPONENTS, Releases
from smartnation.settings.yaml_files import read_yaml, read_yaml_documents
from tests.unit.harness import ENVIRONMENTS, REPO_ENVIRONMENTS, edit

pytestmark = pytest.mark.unit


# --- What the repository holds ------------------------------------------------------------


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_every_environment_loads_with_its_profile(environment: str) -> None:
    settings = load_settings(environment)
    assert settings.environment == environment
    assert settings.cluster.name in list_clusters()
    assert settings.source == f"environments/{environment}.yaml"


def test_sites_are_as_planned() -> None:
    # The data vault (production) is on-premise in Monaco; dev and staging are on the test cluster.
    assert load_settings("production").cluster.site.country == "MC"
    for environment in ("dev", "staging"):
        assert load_settings(environment).cluster.name == "dusseldorf-test"


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_each_environment_file_states_its_release_block_in_full(environment: str) -> None:
    raw = yaml.safe_load((REPO_ENVIRONMENTS / f"{environment}.yaml").read_text(encoding="utf-8"))
    releases = raw["releases"]
    assert set(releases) == {f.name for f in dataclasses.fields(Releases)}
    # The platform's releases and one per API of the environment, none left over.
    apis = load_settings(environment).city_apis
    assert set(releases["components"]) == {*PLATFORM_COMPONENTS, *apis}


def test_defaults_hold_no_release_and_no_cluster() -> None:
    raw = yaml.safe_load((REPO_ENVIRONMENTS / "defaults.yaml").read_text(encoding="utf-8"))
    assert "releases" not in raw and "cluster" not in raw


def test_environment_files_hold_only_differences() -> None:
    defaults = yaml.safe_load((REPO_ENVIRONMENTS / "defaults.yaml").read_text(encoding="utf-8"))

    def repeated(env: Any, base: Any, path: str = "") -> list[str]:
        if isinstance(env, dict) and isinstance(base, dict):
            return [p for k, v in env.items() if k in base for p in repeated(v, base[k], f"{path}.{k}")]
        return [path] if env == base else []

    for environment in ENVIRONMENTS:
        raw = yaml.safe_load((REPO_ENVIRONMENTS / f"{environment}.yaml").read_text(encoding="utf-8"))
        assert repeated(raw, defaults) == [], f"{environment}.yaml repeats defaults"


def test_promoting_staging_release_block_into_production_is_valid(envdir: Path) -> None:
    staging = yaml.safe_load((envdir / "staging.yaml").read_text(encoding="utf-8"))["releases"]
    edit(envdir, "production.yaml", "releases", staging)
    assert load_settings("production", envdir).releases == load_settings("staging", envdir).releases


def test_profiles_load_and_differ_where_sites_differ() -> None:
    a, b = (load_cluster_profile(name) for name in list_clusters())
    assert a.storage.default_class != b.storage.default_class
    assert a.registry.default != b.registry.default
    assert a.workload_node_selector != b.workload_node_selector


def test_environments_dir_can_be_overridden(envdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    edit(envdir, "dev.yaml", "broker.replicas", 2)
    monkeypatch.setenv(ENVIRONMENTS_DIR_VARIABLE, str(envdir))
    assert load_settings("dev").broker.replicas == 2


def test_merge_keeps_defaults_under_an_override(envdir: Path) -> None:
    defaults = load_settings("dev", envdir)
    edit(envdir, "dev.yaml", "broker", {"replicas": 2})
    merged = load_settings("dev", envdir)
    assert merged.broker.replicas == 2
    assert merged.broker.device_classes == defaults.broker.device_classes


# --- Mistakes ---------------------------------------------------------------------------

MISTAKES = [
    # (file, dotted path, bad value, key path expected in the message, words expected)
    ("staging.yaml", "broker.replicas", "three", "broker.replicas", "expected an integer from 1 to 9, got 'three'"),
    ("staging.yaml", "broker.replica", 3, "broker.replica", "unknown key"),
    ("staging.yaml", "broker.replicas", 12, "broker.replicas", "from 1 to 9"),
    ("dev.yaml", "object_storage.mode", "cluster", "object_storage.mode", "expected one of"),
    ("dev.yaml", "database.storage_size", "50Ti", "database.storage_size", "from 1Gi to 10Ti"),
    ("dev.yaml", "database.storage_size", "lots", "database.storage_size", "size"),
    ("dev.yaml", "broker.resources.limits.cpu", "10m", "broker.resources", "at least requests.cpu"),
    ("production.yaml", "releases.components.broker.tag", "latest", "releases.components.broker.tag", "not 'latest'"),
    ("production.yaml", "releases.chart_version", "one", "releases.chart_version", "semantic version"),
    ("dev.yaml", "cluster", "paris-edge", "cluster", "paris-edge"),
    ("dev.yaml", "city_apis.open_data_api.storage_user", "nobody", "city_apis.open_data_api.storage_user", "users"),
    ("dev.yaml", "city_apis.device_registry.replicas", True, "city_apis.device_registry.replicas", "integer"),
    ("dev.yaml", "guardrails.quota.pods", 0, "guardrails.quota.pods", "from 1"),
    ("staging.yaml", "object_storage.replicas", 3, "object_storage", "even number"),
    ("dev.yaml", "broker.device_classes", "all", "broker.device_classes", "expected a list"),
    ("dev.yaml", "database.backup.schedule", "nightly", "database.backup.schedule", "cron"),
    # A mistake inherited from the defaults is reported against defaults.yaml.
    ("defaults.yaml", "broker.storage_size", 5, "broker.storage_size", "size"),
    ("defaults.yaml", "releases", {}, "releases", "must not be in the defaults"),
]


@pytest.mark.parametrize(("file", "path", "value", "key_path", "words"), MISTAKES)
def test_mistakes_name_file_key_path_and_expectation(
    envdir: Path, file: str, path: str, value: Any, key_path: str, words: str
) -> None:
    environment = "dev" if file == "defaults.yaml" else file.removesuffix(".yaml")
    edit(envdir, file, path, value)
    with pytest.raises(SettingsError) as caught:
        load_settings(environment, envdir)
    message = str(caught.value)
    assert message.startswith(f"environments/{file}: {key_path}"), message
    assert words in message


def test_the_documented_example_message_is_exact(envdir: Path) -> None:
    edit(envdir, "staging.yaml", "broker.replicas", "three")
    with pytest.raises(SettingsError, match=r"^environments/staging\.yaml: broker\.replicas: expected an integer"):
        load_settings("staging", envdir)


def test_unknown_cluster_lists_the_known_profiles(envdir: Path) -> None:
    edit(envdir, "dev.yaml", "cluster", "paris-edge")
    with pytest.raises(SettingsError) as caught:
        load_settings("dev", envdir)
    for known in list_clusters():
        assert known in str(caught.value)


def test_unparseable_yaml_names_file_and_line(envdir: Path) -> None:
    path = envdir / "staging.yaml"
    path.write_text(path.read_text(encoding="utf-8") + "broker:\n  replicas: [3\n", encoding="utf-8")
    with pytest.raises(SettingsError, match=r"^environments/staging\.yaml: <line \d+, column \d+>: not valid YAML"):
        load_settings("staging", envdir)


def test_duplicate_keys_are_refused(envdir: Path) -> None:
    path = envdir / "staging.yaml"
    path.write_text(path.read_text(encoding="utf-8") + "broker:\n  replicas: 5\n", encoding="utf-8")
    with pytest.raises(SettingsError, match=r"^environments/staging\.yaml: <line \d+.*duplicate key 'broker'"):
        load_settings("staging", envdir)


def test_missing_release_block_is_refused(envdir: Path) -> None:
    data = yaml.safe_load((envdir / "dev.yaml").read_text(encoding="utf-8"))
    del data["releases"]
    (envdir / "dev.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(SettingsError, match=r"^environments/dev\.yaml: releases: required key is missing"):
        load_settings("dev", envdir)


def test_unknown_environment_is_refused(envdir: Path) -> None:
    with pytest.raises(SettingsError, match=r"environments/qa\.yaml: <file>: no such environment file"):
        load_settings("qa", envdir)


def test_profile_mistakes_name_the_profile_file(envdir: Path) -> None:
    edit(envdir, "clusters/monaco-onprem.yaml", "storage.default_class", "nfs")
    with pytest.raises(
        SettingsError, match=r"^environments/clusters/monaco-onprem\.yaml: storage\.default_class: .nfs. is not one"
    ):
        load_settings("production", envdir)


def test_a_misspelt_real_node_environment_is_refused_naming_the_key(envdir: Path) -> None:
    edit(envdir, "clusters/dusseldorf-test.yaml", "simulation.real_node_environments", ["dev", "stagign"])
    with pytest.raises(
        SettingsError,
        match=r"^environments/clusters/dusseldorf-test\.yaml: simulation\.real_node_environments: stagign: "
        r"no such environment; known environments: dev, production, staging",
    ):
        load_settings("staging", envdir)


def test_real_node_environments_without_real_nodes_are_refused(envdir: Path) -> None:
    edit(envdir, "clusters/monaco-onprem.yaml", "simulation.real_nodes", 0)
    with pytest.raises(
        SettingsError,
        match=r"^environments/clusters/monaco-onprem\.yaml: simulation\.real_node_environments: names environments "
        r"for the real nodes, but simulation\.real_nodes is 0",
    ):
        load_settings("production", envdir)


# --- The one YAML reader ------------------------------------------------------------------


def test_the_yaml_reader_refuses_duplicate_keys_in_nested_mappings(tmp_path: Path) -> None:
    path = tmp_path / "pins.yaml"
    path.write_text("kwok:\n  version: 0.8.0\n  version: 0.9.0\n", encoding="utf-8")
    with pytest.raises(SettingsError, match=r"pins\.yaml: <line 3, column 3>: not valid YAML: duplicate key 'version'"):
        read_yaml(path)


def test_the_yaml_reader_reads_every_document_of_a_stage_file(tmp_path: Path) -> None:
    path = tmp_path / "stages.yaml"
    path.write_text("kind: Stage\n---\n---\nkind: Stage\n", encoding="utf-8")
    assert read_yaml_documents(path) == [{"kind": "Stage"}, {"kind": "Stage"}]
    path.write_text("kind: Stage\n---\nkind: [Stage\n", encoding="utf-8")
    with pytest.raises(SettingsError, match=r"stages\.yaml: <line \d+, column \d+>: not valid YAML"):
        read_yaml_documents(path, "stages.yaml")


def test_an_unreadable_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"^clusters/absent\.yaml: <file>: cannot read"):
        read_yaml(tmp_path / "absent.yaml", "clusters/absent.yaml")
