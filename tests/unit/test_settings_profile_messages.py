"""A cluster profile's cross-field rules, a move's and the name kinds' messages to the letter: the
survivors of session 10's settings mutation run in models.py (Registry, Storage and ClusterProfile
checks), move.py and validation.py were messages and key paths tests matched only in part."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import pytest

from smartnation.settings import SettingsError, load_cluster_profile, load_settings
from smartnation.settings.move import check_move_settings
from smartnation.settings.validation import check_kind
from tests.unit.harness import edit

pytestmark = pytest.mark.unit

PROFILE = "environments/clusters/dusseldorf-test.yaml"


def profile_refused(envdir: Path, path: str, value: Any) -> tuple[str, str, str]:
    edit(envdir, "clusters/dusseldorf-test.yaml", path, value)
    with pytest.raises(SettingsError) as caught:
        load_cluster_profile("dusseldorf-test", envdir)
    return caught.value.file, caught.value.key_path, caught.value.detail


def test_the_registry_default_must_be_one_the_cluster_allows(envdir) -> None:
    assert profile_refused(envdir, "registry.default", "registry.example/other") == (
        PROFILE,
        "registry.default",
        "'registry.example/other' is not in registry.allowed",
    )


def test_a_storage_class_and_a_node_pool_name_used_twice_are_named_where_repeated(envdir) -> None:
    assert profile_refused(envdir, "storage.classes.1.name", "csi-disk") == (
        PROFILE,
        "storage.classes.1.name",
        "'csi-disk' is already used in classes",
    )
    edit(envdir, "clusters/dusseldorf-test.yaml", "storage.classes.1.name", "csi-disk-topology")
    assert profile_refused(envdir, "node_pools.1.name", "general") == (
        PROFILE,
        "node_pools.1.name",
        "'general' is already used in node_pools",
    )


def test_a_workload_selector_of_no_pool_is_refused_exactly(envdir) -> None:
    assert profile_refused(envdir, "workload_node_selector.stateful", {"cce.cloud.com/cce-nodepool": "gpu"}) == (
        PROFILE,
        "workload_node_selector.stateful",
        "selects none of the node_pools by their label",
    )


def test_a_move_in_the_defaults_is_refused_with_the_reason(envdir) -> None:
    edit(envdir, "defaults.yaml", "move", {"to": "monaco-onprem", "phase": "replicate"})
    with pytest.raises(SettingsError) as caught:
        load_settings("staging", envdir)
    assert caught.value.detail == (
        "must not be in the defaults: a move is one environment's, declared in its own file beside `cluster:`"
    )


def test_a_move_to_its_own_cluster_or_an_unknown_one_says_what_is_expected(envdir) -> None:
    edit(envdir, "dev.yaml", "move", {"to": "dusseldorf-test", "phase": "replicate"})
    with pytest.raises(SettingsError) as caught:
        load_settings("dev", envdir)
    assert caught.value.detail == (
        "'dusseldorf-test' is the environment's cluster already (`cluster: dusseldorf-test`): during a move "
        "`cluster:` names where the environment comes from and `move.to` where it goes"
    )
    edit(envdir, "dev.yaml", "move", {"to": "atlantis", "phase": "replicate"})
    with pytest.raises(SettingsError) as caught:
        load_settings("dev", envdir)
    assert caught.value.detail == (
        "expected one of the cluster profiles in clusters/ (dusseldorf-test, monaco-onprem), got 'atlantis'"
    )
    # Without any profile (the loader refuses `cluster:` first; the check says so on its own).
    edit(envdir, "dev.yaml", "move", {"to": "monaco-onprem", "phase": "replicate"})
    spec = types.SimpleNamespace(move=load_settings("dev", envdir).move, cluster="dusseldorf-test")
    with pytest.raises(SettingsError) as caught:
        check_move_settings(spec, {}, "d.yaml", "e.yaml", (), "clusters")  # type: ignore[arg-type]
    assert caught.value.detail == "expected one of the cluster profiles in clusters/ (none), got 'monaco-onprem'"


@pytest.mark.parametrize(
    ("kind", "value", "problem"),
    [
        ("dns_subdomain", "Upper", "lowercase DNS labels separated by '.', at most 253 characters"),
        ("hostname", "a" * 64 + ".example", "each label at most 63 characters"),
        ("label_key", "-bad/key", "its prefix before '/' must be a DNS subdomain"),
        (
            "label_key",
            "example.com/-key",
            "a name of letters, digits, '-', '_' and '.', starting and ending alphanumeric, at most 63",
        ),
        ("label_value", "-value", "at most 63 letters, digits, '-', '_', '.', alphanumeric ends"),
    ],
)
def test_each_name_kind_says_its_rule_exactly(kind: str, value: str, problem: str) -> None:
    message = check_kind(kind, value)
    assert message is not None and message.endswith(f" ({problem}), got {value!r}")
