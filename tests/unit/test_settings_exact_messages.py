"""The settings' messages and answers to the letter, where tests elsewhere check a part: `make
mutation` showed a message wrapped in other text ("XX...XX"), a key path other than
``<top level>``, the allowed keys joined otherwise, and the real-node question turned around, all
passing the suite (session 10)."""

from __future__ import annotations

import dataclasses
import ipaddress
from pathlib import Path

import pytest

from smartnation.settings import load_cluster_profile, load_settings
from smartnation.settings.errors import SettingsError
from smartnation.settings.models import Simulation
from smartnation.settings.stack_secrets import CONFIG_NAMESPACE, missing_secrets, required_secrets
from smartnation.settings.validation import Origins, check_kind, convert, setting

pytestmark = pytest.mark.unit


@dataclasses.dataclass(frozen=True)
class Pair:
    first: int
    second_key: int


def test_an_environment_variable_name_is_refused_with_exactly_the_rule() -> None:
    assert check_kind("env_var", "1A") == (
        "expected an environment variable name (letters, digits and '_', not starting with a digit), got '1A'"
    )
    assert check_kind("env_var", "A_1") is None


def test_a_document_that_is_no_mapping_is_refused_at_the_top_level_naming_every_key() -> None:
    with pytest.raises(SettingsError) as refused:
        convert(Pair, ["a", "list"], (), Origins("environments/x.yaml"))
    assert (refused.value.file, refused.value.key_path) == ("environments/x.yaml", "<top level>")
    assert refused.value.detail == "expected a mapping with keys first, second_key, got a list"


def test_an_unknown_key_lists_the_known_ones() -> None:
    with pytest.raises(SettingsError) as refused:
        convert(Pair, {"first": 1, "second_key": 2, "third": 3}, ("pair",), Origins("environments/x.yaml"))
    assert (refused.value.key_path, refused.value.detail) == (
        "pair.third",
        "unknown key; expected one of first, second_key",
    )


def test_the_real_node_environments_are_those_listed_and_no_other() -> None:
    simulation = load_cluster_profile("dusseldorf-test").simulation
    assert simulation is not None and set(simulation.real_node_environments) == {"dev", "staging"}
    assert simulation.runs_on_real_nodes("staging") is True
    assert simulation.runs_on_real_nodes("production") is False
    assert dataclasses.replace(simulation, real_node_environments=()).runs_on_real_nodes("dev") is False
    assert isinstance(simulation, Simulation)


def test_secrets_present_under_the_config_namespace_count_as_present() -> None:
    staging = load_settings("staging")
    keys = list(required_secrets(staging))
    assert missing_secrets(staging, [f"{CONFIG_NAMESPACE}:{key}" for key in keys]) is None
    assert missing_secrets(staging, keys) is None
    assert missing_secrets(staging, [f"{CONFIG_NAMESPACE}:{key}" for key in keys[1:]]) is not None


@dataclasses.dataclass(frozen=True)
class Networks:
    pool: ipaddress.IPv4Network = setting(range=(24, 24))
    wide: ipaddress.IPv4Network = setting(range=(16, 28), default=ipaddress.IPv4Network("10.0.0.0/16"))
    any_size: ipaddress.IPv4Network = setting(default=ipaddress.IPv4Network("10.1.0.0/16"))


def _refused(data: dict, key: str) -> str:
    with pytest.raises(SettingsError) as refused:
        convert(Networks, data, ("simulation",), Origins("environments/clusters/p.yaml"))
    assert (refused.value.file, refused.value.key_path) == ("environments/clusters/p.yaml", f"simulation.{key}")
    return refused.value.detail


@pytest.mark.parametrize(
    ("data", "key", "detail"),
    [
        ({"pool": "10.0.0.0/25"}, "pool", "expected a /24 IPv4 network such as 198.51.100.0/24, got '10.0.0.0/25'"),
        ({"pool": 7}, "pool", "expected a /24 IPv4 network such as 198.51.100.0/24, got 7"),
        ({"pool": "10.0.0.1/24"}, "pool",
         "expected a /24 IPv4 network such as 198.51.100.0/24, got '10.0.0.1/24' (10.0.0.1/24 has host bits set)"),
        ({"pool": "10.0.0.0/24", "wide": "10.0.0.0/15"}, "wide",
         "expected an IPv4 network from /16 to /28 such as 198.51.100.0/24, got '10.0.0.0/15'"),
        ({"pool": "10.0.0.0/24", "wide": "10.0.0.0/29"}, "wide",
         "expected an IPv4 network from /16 to /28 such as 198.51.100.0/24, got '10.0.0.0/29'"),
        ({"pool": "10.0.0.0/24", "any_size": ["x"]}, "any_size",
         "expected an IPv4 network such as 198.51.100.0/24, got a list"),
        ({"pool": "10.0.0.0/24", "any_size": "nope"}, "any_size",
         "expected an IPv4 network such as 198.51.100.0/24, got 'nope' (Expected 4 octets in 'nope')"),
    ],
)  # fmt: skip
def test_a_network_out_of_its_range_or_malformed_is_refused_saying_what_is_expected(data, key, detail) -> None:
    assert _refused(data, key) == detail


def test_a_network_within_its_range_is_taken_at_both_ends() -> None:
    taken = convert(Networks, {"pool": "10.0.0.0/24", "wide": "10.0.0.0/16", "any_size": "10.0.0.0/8"}, (),
                    Origins("p.yaml"))  # fmt: skip
    assert (taken.pool.prefixlen, taken.wide.prefixlen, taken.any_size.prefixlen) == (24, 16, 8)
    assert convert(Networks, {"pool": "10.0.0.0/24", "wide": "10.0.0.0/28"}, (), Origins("p.yaml")).wide.prefixlen == 28


def test_a_completed_move_is_refused_in_the_defaults_and_beside_a_declared_move() -> None:
    from types import SimpleNamespace

    from smartnation.settings.move_complete import check_move_complete

    done = SimpleNamespace(move_complete=True, move=None)
    with pytest.raises(SettingsError) as refused:
        check_move_complete(done, {"move_complete": True}, "environments/defaults.yaml", "environments/production.yaml")
    assert (refused.value.file, refused.value.key_path, refused.value.detail) == (
        "environments/defaults.yaml",
        "move_complete",
        "must not be in the defaults: a completed move is one environment's, recorded in its own file",
    )
    moving = SimpleNamespace(move_complete=True, move=SimpleNamespace(to="monaco-onprem", phase="cutover"))
    with pytest.raises(SettingsError) as refused:
        check_move_complete(moving, {}, "environments/defaults.yaml", "environments/production.yaml")
    assert (refused.value.file, refused.value.key_path, refused.value.detail) == (
        "environments/production.yaml",
        "move_complete",
        "true while `move: {to: monaco-onprem, phase: cutover}` is still declared: the move is over only once "
        "`cluster: monaco-onprem` stands alone and the state has moved (docs/move.md)",
    )
    check_move_complete(done, {}, "environments/defaults.yaml", "environments/production.yaml")
    check_move_complete(SimpleNamespace(move_complete=False, move=moving.move), {}, "d.yaml", "e.yaml")


def test_a_service_name_must_start_with_a_letter_and_a_host_name_must_be_valid() -> None:
    from smartnation.settings.derived_names import ENVIRONMENT_KEY, check_derived_names

    spec = load_settings("staging")
    profile = load_cluster_profile("dusseldorf-test")
    origins = Origins("environments/x.yaml")
    with pytest.raises(SettingsError) as refused:
        check_derived_names("1abc", spec, profile, origins, "environments/clusters/p.yaml")
    assert (refused.value.file, refused.value.key_path) == ("environments/x.yaml", ENVIRONMENT_KEY)
    assert refused.value.detail == (
        "gives the Service name '1abc-broker-headless', which Kubernetes refuses: expected at most 63 characters "
        "(a DNS label), lowercase letters, digits and '-', starting with a letter"
    )
    long_domain = dataclasses.replace(profile, ingress=dataclasses.replace(profile.ingress, base_domain="d" * 64))
    with pytest.raises(SettingsError) as refused:
        check_derived_names("abc", spec, long_domain, origins, "environments/clusters/p.yaml")
    assert (refused.value.file, refused.value.key_path) == ("environments/clusters/p.yaml", "ingress.base_domain")
    assert refused.value.detail.startswith("gives the host name '")


def test_an_unknown_cluster_profile_is_refused_listing_the_known_ones(tmp_path) -> None:
    import shutil

    from smartnation.settings.loader import read_cluster_profile

    with pytest.raises(SettingsError) as refused:
        load_cluster_profile("mars-base")
    assert (refused.value.file, refused.value.key_path, refused.value.detail) == (
        "environments/clusters/mars-base.yaml",
        "<file>",
        "no such cluster profile; known profiles: dusseldorf-test, monaco-onprem",
    )
    (tmp_path / "environments" / "clusters").mkdir(parents=True)
    with pytest.raises(SettingsError) as refused:
        load_cluster_profile("dusseldorf-test", tmp_path / "environments")
    assert refused.value.detail == "no such cluster profile; known profiles: none"
    # A profile whose name is not its file's name.
    renamed = tmp_path / "environments" / "clusters" / "elsewhere.yaml"
    shutil.copy(Path(__file__).resolve().parents[2] / "environments" / "clusters" / "dusseldorf-test.yaml", renamed)
    with pytest.raises(SettingsError) as refused:
        read_cluster_profile(renamed)
    assert (refused.value.file, refused.value.key_path, refused.value.detail) == (
        str(renamed),
        "name",
        "expected 'elsewhere' (the file name), got 'dusseldorf-test'",
    )
