"""The loader's checks between blocks and its digests, to the letter: the file blamed, the key path
and the whole message. `make mutation` (session 10) left 77 mutants in ``_check_references`` and
37 in ``_with_digests`` alive in the settings selection: messages and key paths that no settings
test read (test_images_lock.py checks the digests, outside it, and only a part)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from smartnation.paths import IMAGES_LOCK
from smartnation.settings import SettingsError, load_settings
from smartnation.tooling.images.lock import image_key, read_lock
from tests.unit.harness import edit

pytestmark = pytest.mark.unit

DEFAULTS = "environments/defaults.yaml"
DEV = "environments/dev.yaml"
LOCK = "environments/images.lock.yaml"


def refused(envdir: Path, file: str, path: str, value: Any, environment: str = "dev") -> tuple[str, str, str]:
    """What loading ``environment`` says once ``path`` in ``file`` is ``value``: file, key path, message."""
    edit(envdir, file, path, value)
    with pytest.raises(SettingsError) as caught:
        load_settings(environment, envdir)
    return caught.value.file, caught.value.key_path, caught.value.detail


def test_an_api_without_its_release_is_blamed_on_the_environment_file_naming_where_the_api_is(envdir) -> None:
    components = _components(envdir)
    del components["open_data_api"]
    assert refused(envdir, "dev.yaml", "releases.components", components) == (
        DEV,
        "releases.components.open_data_api",
        f"required key is missing: city_apis.open_data_api (in {DEFAULTS}) deploys this API, and its image "
        "comes from its release here (version, repository, tag)",
    )


def _components(envdir: Path) -> dict[str, Any]:
    return yaml.safe_load((envdir / "dev.yaml").read_text())["releases"]["components"]


def test_an_api_logs_in_to_the_broker_only_as_an_internal_class(envdir) -> None:
    assert refused(envdir, "defaults.yaml", "city_apis.open_data_api.broker_client", "traffic-sensor") == (
        DEFAULTS,
        "city_apis.open_data_api.broker_client",
        "expected one of the internal broker.device_classes (device-registry, telemetry-ingest): an API logs in "
        "with its class's password on the in-cluster listener",
    )


def test_broker_all_pods_needs_a_broker_client(envdir) -> None:
    assert refused(envdir, "defaults.yaml", "city_apis.open_data_api.broker_all_pods", True) == (
        DEFAULTS,
        "city_apis.open_data_api.broker_all_pods",
        "needs broker_client to be set",
    )


def test_an_api_storage_user_must_be_a_user(envdir) -> None:
    assert refused(envdir, "defaults.yaml", "city_apis.open_data_api.storage_user", "nobody") == (
        DEFAULTS,
        "city_apis.open_data_api.storage_user",
        "expected one of object_storage.users (database-backup, open-data-api, telemetry-ingest)",
    )


def test_an_api_database_must_be_a_database_and_its_role_a_role(envdir) -> None:
    api = "city_apis.open_data_api.database"
    assert refused(envdir, "defaults.yaml", f"{api}.name", "nowhere") == (
        DEFAULTS,
        f"{api}.name",
        "expected one of database.databases (devices, telemetry)",
    )
    edit(envdir, "defaults.yaml", f"{api}.name", "telemetry")
    assert refused(envdir, "defaults.yaml", f"{api}.role", "nobody") == (
        DEFAULTS,
        f"{api}.role",
        "expected one of database.roles (device_registry, devices_owner, open_data, telemetry_ingest, telemetry_owner)",
    )


def test_an_api_role_must_log_in_must_not_own_its_database_and_must_have_a_grant_on_it(envdir) -> None:
    role = "city_apis.open_data_api.database.role"
    assert refused(envdir, "defaults.yaml", "database.roles.2", {"name": "open_data", "login": False}) == (
        DEFAULTS,
        role,
        "the role cannot log in (login: false in database.roles)",
    )
    edit(envdir, "defaults.yaml", "database.roles.2", {"name": "open_data"})
    assert refused(envdir, "defaults.yaml", role, "telemetry_owner") == (
        DEFAULTS,
        role,
        "the role owns database 'telemetry'; an API connects as a role with a grant (write or read) and the "
        "owner runs its migrations only (migrations: true)",
    )
    # open_data has a grant, on telemetry; devices has grants, to other roles: neither is one.
    edit(envdir, "defaults.yaml", role, "open_data")
    assert refused(envdir, "defaults.yaml", "city_apis.open_data_api.database.name", "devices") == (
        DEFAULTS,
        role,
        "role has no grant on database 'devices'",
    )


def test_the_migration_job_needs_an_owner_that_logs_in(envdir) -> None:
    assert refused(envdir, "defaults.yaml", "database.roles.3", {"name": "devices_owner", "login": False}) == (
        DEFAULTS,
        "city_apis.device_registry.database.migrations",
        "the migration Job logs in as the owner of 'devices', 'devices_owner', which cannot log in",
    )


def test_a_digest_written_in_an_environment_file_is_refused_naming_the_lock(envdir) -> None:
    digest = read_lock(envdir / IMAGES_LOCK)["device-registry:0.1.0"]
    device_registry = {**_components(envdir)["device_registry"], "digest": digest}
    assert refused(envdir, "dev.yaml", "releases.components.device_registry", device_registry) == (
        DEV,
        "releases.components.device_registry.digest",
        f"never written by hand: the loader reads it from {LOCK}",
    )


def test_a_release_the_lock_lacks_is_refused_listing_what_the_lock_holds(envdir) -> None:
    known = sorted(read_lock(envdir / IMAGES_LOCK))
    assert image_key("open-data-api", "9.9.9") not in known
    release = {**_components(envdir)["open_data_api"], "tag": "9.9.9"}
    assert refused(envdir, "dev.yaml", "releases.components.open_data_api", release) == (
        DEV,
        "releases.components.open_data_api",
        f"open-data-api:9.9.9 is not in {LOCK}: no image of that repository and tag was built here. `make images` "
        f"builds what the lock lists (images.yaml pins it); release one of: {', '.join(known)}",
    )


def test_a_malformed_lock_is_blamed_on_the_lock_by_its_path_in_environments(envdir) -> None:
    (envdir / IMAGES_LOCK).write_text("digests: {}\n")
    with pytest.raises(SettingsError) as caught:
        load_settings("dev", envdir)
    assert (caught.value.file, caught.value.key_path) == (LOCK, "<top level>")


def test_the_backup_bucket_must_be_a_bucket(envdir) -> None:
    assert refused(envdir, "defaults.yaml", "database.backup.bucket", "nowhere") == (
        DEFAULTS,
        "database.backup.bucket",
        "expected one of object_storage.buckets (backups, open-data, telemetry-archive)",
    )


@pytest.mark.parametrize(
    ("user", "why"),
    [
        ("nobody", "not a user"),
        ("open-data-api", "read access only, though to the bucket"),
        ("telemetry-ingest", "readwrite, but to other buckets"),
    ],
)
def test_the_backup_needs_a_user_that_may_write_its_bucket(envdir, user: str, why: str) -> None:
    edit(envdir, "defaults.yaml", "object_storage.users.2.buckets", ["open-data", "telemetry-archive", "backups"])
    assert refused(envdir, "defaults.yaml", "database.backup.storage_user", user) == (
        DEFAULTS,
        "database.backup.storage_user",
        "expected an object_storage user with readwrite access to 'backups'",
    ), why


def test_the_lock_is_named_by_its_path_beside_environments_named_otherwise(envdir) -> None:
    # An environments directory of another name ($SMARTNATION_ENVIRONMENTS_DIR): the lock's path says it.
    other = envdir.rename(envdir.with_name("site-settings"))
    (other / IMAGES_LOCK).write_text("digests: {}\n")
    with pytest.raises(SettingsError) as caught:
        load_settings("dev", other)
    assert (caught.value.file, caught.value.key_path) == ("site-settings/images.lock.yaml", "<top level>")
