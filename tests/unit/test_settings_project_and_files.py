"""Where settings come from, each read from the right place: the Pulumi project's name (none, or
changed on disk), the environments beside a profile (not the checkout's), the file a parse error
names, the stack secrets' namespace under another project name. Session 10's settings mutation
run left these alive: the tests only ever loaded the checkout's own files, unchanged."""

from __future__ import annotations

import os
import shutil

import pulumi
import pytest

from smartnation.paths import PROJECT_DIR_VARIABLE
from smartnation.settings import SettingsError, list_environments, load_cluster_profile, load_settings
from smartnation.settings.derived_names import ENVIRONMENT_KEY, PROJECT_NAME_ROOM, check_derived_names, project_name
from smartnation.settings.stack_secrets import CONFIG_NAMESPACE, check_secrets, required_secrets
from smartnation.settings.validation import Origins
from smartnation.settings.yaml_files import read_yaml_documents
from tests.unit.harness import edit

pytestmark = pytest.mark.unit

PROFILE = "environments/clusters/dusseldorf-test.yaml"


def test_the_project_name_is_empty_without_a_pulumi_yaml_and_follows_the_file(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(PROJECT_DIR_VARIABLE, str(tmp_path))
    assert project_name() == ""
    project = tmp_path / "Pulumi.yaml"
    project.write_text("name: first\nruntime: python\n")
    os.utime(project, ns=(1_000_000_000, 1_000_000_000))
    assert project_name() == "first"
    project.write_text("name: second\nruntime: python\n")
    os.utime(project, ns=(2_000_000_000, 2_000_000_000))
    assert project_name() == "second"  # read again: its time changed


def test_without_a_project_name_the_namespace_is_named_after_smartnation(tmp_path, monkeypatch) -> None:
    spec = load_settings("staging")
    profile = load_cluster_profile("dusseldorf-test")
    monkeypatch.setenv(PROJECT_DIR_VARIABLE, str(tmp_path))
    name = "e" * (63 - PROJECT_NAME_ROOM)
    with pytest.raises(SettingsError) as refused:
        check_derived_names(name, spec, profile, Origins("environments/x.yaml"), PROFILE)
    assert (refused.value.key_path, refused.value.detail) == (
        ENVIRONMENT_KEY,
        f"{name!r} gives the namespace 'smartnation-{name}' ({len(name) + 12} characters), and under the "
        f"{PROJECT_NAME_ROOM}-character project names the tests use more; a namespace is at most 63: "
        f"use at most {62 - PROJECT_NAME_ROOM} characters",
    )


def test_environments_are_listed_and_checked_where_the_profile_is(envdir) -> None:
    shutil.copy(envdir / "dev.yaml", envdir / "qa.yaml")
    assert list_environments(envdir) == ("dev", "production", "qa", "staging")
    edit(envdir, "clusters/dusseldorf-test.yaml", "simulation.real_node_environments", ["qa", "dev"])
    assert load_cluster_profile("dusseldorf-test", envdir).simulation.real_node_environments == ("qa", "dev")
    edit(envdir, "clusters/dusseldorf-test.yaml", "simulation.real_node_environments", ["dev", "test", "prod"])
    with pytest.raises(SettingsError) as refused:
        load_cluster_profile("dusseldorf-test", envdir)
    assert (refused.value.file, refused.value.key_path, refused.value.detail) == (
        PROFILE,
        "simulation.real_node_environments",
        "test, prod: no such environment; known environments: dev, production, qa, staging",
    )


def test_a_profile_without_real_node_environments_or_a_simulation_needs_no_real_node(envdir) -> None:
    edit(envdir, "clusters/dusseldorf-test.yaml", "simulation.real_node_environments", [])
    edit(envdir, "clusters/dusseldorf-test.yaml", "simulation.real_nodes", 0)
    assert load_cluster_profile("dusseldorf-test", envdir).simulation.real_nodes == 0
    path = envdir / "clusters" / "dusseldorf-test.yaml"
    path.write_text(path.read_text().split("\nsimulation:")[0] + "\n")
    assert load_cluster_profile("dusseldorf-test", envdir).simulation is None


def test_a_profile_that_does_not_parse_is_named_by_its_path_in_environments(envdir) -> None:
    (envdir / "clusters" / "dusseldorf-test.yaml").write_text("name: [dusseldorf-test\n")
    with pytest.raises(SettingsError) as refused:
        load_cluster_profile("dusseldorf-test", envdir)
    assert refused.value.file == PROFILE


def test_a_multi_document_file_that_does_not_parse_is_named_by_its_path(tmp_path) -> None:
    path = tmp_path / "objects.yaml"
    path.write_text("a: 1\n---\nb: [2\n")
    with pytest.raises(SettingsError) as refused:
        read_yaml_documents(path)
    assert refused.value.file == str(path)


def test_the_stack_secrets_are_read_from_their_namespace_whatever_the_project_is_called(monkeypatch) -> None:
    staging = load_settings("staging")
    # The tests' stacks run under other project names (PROJECT_NAME_ROOM); the keys stay smartnation:.
    monkeypatch.setattr(pulumi.config, "get_project", lambda: "smartnation-delivery")
    pulumi.runtime.set_all_config({f"{CONFIG_NAMESPACE}:{key}": "x" for key in required_secrets(staging)}, [])
    try:
        check_secrets(staging)
    finally:
        pulumi.runtime.set_all_config({})
