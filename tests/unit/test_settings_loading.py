"""load_settings' own refusals and whom it blames for a missing key, to the letter: not an
environment name, no such file (listing the environments beside it, or none), a file that is no
mapping or does not parse, an own block in the defaults, and a missing key blamed on the defaults
(a block), the environment file (its own blocks, or no defaults file) or the file stating the list
(inside a list item). Also the platform's releases and a few kinds' messages. From the survivors
of this session's second resumed settings run (load_settings 34, Releases 8, validation 4)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from smartnation.settings import SettingsError, load_settings
from smartnation.settings.validation import check_kind, parse_quantity
from tests.unit.harness import edit

pytestmark = pytest.mark.unit

DEFAULTS = "environments/defaults.yaml"
DEV = "environments/dev.yaml"


def refused(envdir: Path, environment: str = "dev") -> tuple[str, str, str]:
    with pytest.raises(SettingsError) as caught:
        load_settings(environment, envdir)
    return caught.value.file, caught.value.key_path, caught.value.detail


@pytest.mark.parametrize("name", ["defaults", "Dev"])
def test_a_name_that_is_no_environment_is_refused(envdir, name: str) -> None:
    assert refused(envdir, name) == (f"environments/{name}.yaml", "<file>", f"{name!r} is not an environment name")


def test_an_environment_without_a_file_is_refused_listing_those_beside_it(envdir, tmp_path) -> None:
    (envdir / "qa.yaml").write_text((envdir / "dev.yaml").read_text())
    assert refused(envdir, "test") == (
        "environments/test.yaml",
        "<file>",
        "no such environment file; known environments: dev, production, qa, staging",
    )
    empty = tmp_path / "empty" / "environments"
    empty.mkdir(parents=True)
    assert refused(empty, "dev") == (DEV, "<file>", "no such environment file; known environments: none")


@pytest.mark.parametrize(("file", "name"), [("defaults.yaml", DEFAULTS), ("dev.yaml", DEV)])
def test_a_file_that_is_no_mapping_or_does_not_parse_is_named(envdir, file: str, name: str) -> None:
    (envdir / file).write_text("- a list\n")
    assert refused(envdir) == (name, "<top level>", f"expected a mapping of settings in {file}")
    (envdir / file).write_text("a: [\n")
    assert refused(envdir)[0] == name


def test_an_own_block_in_the_defaults_is_refused_with_the_reason(envdir) -> None:
    edit(envdir, "defaults.yaml", "cluster", "dusseldorf-test")
    assert refused(envdir) == (DEFAULTS, "cluster", "must not be in the defaults; each environment file states it")


def _drop(envdir: Path, file: str, *path: str | int) -> None:
    data = yaml.safe_load((envdir / file).read_text())
    node = data
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    (envdir / file).write_text(yaml.safe_dump(data, sort_keys=False))


def test_a_missing_key_of_a_block_is_blamed_on_the_defaults(envdir) -> None:
    _drop(envdir, "defaults.yaml", "broker", "replicas")
    assert refused(envdir) == (DEFAULTS, "broker.replicas", "required key is missing")
    # Even where the environment file changes the same block (which a wrong value there is blamed on).
    edit(envdir, "dev.yaml", "broker.replicas", 1)
    _drop(envdir, "defaults.yaml", "broker", "storage_size")
    assert refused(envdir) == (DEFAULTS, "broker.storage_size", "required key is missing")


def test_a_missing_key_of_an_own_block_is_blamed_on_the_environment_file(envdir) -> None:
    _drop(envdir, "dev.yaml", "releases", "components", "broker", "tag")
    assert refused(envdir) == (DEV, "releases.components.broker.tag", "required key is missing")


def test_without_a_defaults_file_a_missing_key_is_the_environment_files(envdir) -> None:
    (envdir / "defaults.yaml").unlink()
    file, key, detail = refused(envdir)
    assert (file, detail) == (DEV, "required key is missing")


def test_a_missing_key_in_a_list_item_is_blamed_on_the_file_that_states_the_list(envdir) -> None:
    users = yaml.safe_load((envdir / "defaults.yaml").read_text())["object_storage"]["users"]
    edit(envdir, "dev.yaml", "object_storage.users", [*users[:2], {"name": "open-data-api", "buckets": ["open-data"]}])
    assert refused(envdir) == (DEV, "object_storage.users.2.access", "required key is missing")


def test_every_platform_component_needs_its_release(envdir) -> None:
    _drop(envdir, "dev.yaml", "releases", "components", "object_storage_client")
    assert refused(envdir) == (
        DEV,
        "releases.components.object_storage_client",
        "required key is missing (a release of the platform)",
    )


def test_limits_may_equal_requests_and_not_be_below(envdir) -> None:
    resources = "city_apis.open_data_api.resources"
    edit(envdir, "defaults.yaml", f"{resources}.limits", {"cpu": "25m", "memory": "64Mi"})
    load_settings("dev", envdir)
    edit(envdir, "defaults.yaml", f"{resources}.limits", {"cpu": "24m", "memory": "64Mi"})
    assert refused(envdir) == (DEFAULTS, resources, "limits.cpu must be at least requests.cpu")


def test_kind_messages_and_a_malformed_quantity_say_exactly_what_is_wrong() -> None:
    assert check_kind("dns_label", "A") == (
        "expected a DNS label (Kubernetes name) (lowercase letters, digits and '-', at most 63 characters), got 'A'"
    )
    assert check_kind("component_name", "9a") == (
        "expected a component name such as street_lighting (with '-' for '_', a DNS label) (lowercase letters, "
        "digits and '_', starting with a letter, ending alphanumeric, at most 63 characters), got '9a'"
    )
    assert check_kind("cidr", "10.0.0.0") == (
        "expected an IP network in CIDR notation such as 198.51.100.0/24 (the prefix length (/NN) must be written), "
        "got '10.0.0.0'"
    )
    assert check_kind("cidr", "10.0.0.1/8") is not None  # host bits set: strict
    with pytest.raises(ValueError, match=r"^12 apples$"):
        parse_quantity("12 apples")


def test_a_block_the_environment_file_replaces_with_no_mapping_is_refused_there(envdir) -> None:
    edit(envdir, "dev.yaml", "broker", 3)
    file, key, _ = refused(envdir)
    assert (file, key) == (DEV, "broker")


def test_a_block_the_environment_file_leaves_empty_is_the_defaults(envdir) -> None:
    # A rule on the whole block, broken by the defaults alone, is blamed on them; once the
    # environment file changes the block, on it (what it changed).
    edit(envdir, "defaults.yaml", "object_storage.replicas", 2)
    edit(envdir, "dev.yaml", "object_storage", {})
    assert refused(envdir) == (DEFAULTS, "object_storage", "mode standalone needs replicas 1, got 2")
    edit(envdir, "dev.yaml", "object_storage", {"mode": "standalone"})
    assert refused(envdir) == (DEV, "object_storage", "mode standalone needs replicas 1, got 2")
