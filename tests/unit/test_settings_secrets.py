"""The secrets an environment needs, how a missing one is reported and how new ones are made.

Pure functions of the settings (stack_secrets.py); the stack tests show the program reads these
keys. Added when `make mutation` showed these rules unguarded within the settings' own tests.
"""

from __future__ import annotations

import string

import pulumi
import pytest

from smartnation.settings import load_settings
from smartnation.settings.stack_secrets import (
    CONFIG_NAMESPACE,
    OBJECT_STORAGE_ROOT_USER,
    REQUIRED_SECRETS,
    MissingSecretsError,
    api_token,
    broker_password,
    check_secrets,
    database_role_password,
    generate_missing,
    object_storage_secret_key,
    random_secret,
    required_secrets,
)

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def staging():
    return load_settings("staging")


def test_keys_are_derived_from_the_names_they_serve() -> None:
    assert database_role_password("open_data_api") == "database-password-open-data-api"
    assert broker_password("telemetry-ingest") == "broker-password-telemetry-ingest"
    assert object_storage_secret_key("exports") == "object-storage-secret-key-exports"


def test_an_environment_needs_the_fixed_secrets_and_one_per_login_role_internal_client_and_user(staging) -> None:
    keys = required_secrets(staging)
    for key, what in REQUIRED_SECRETS.items():
        assert keys[key] == what
    roles = {r.name for r in staging.database.roles if r.login}
    no_login = {r.name for r in staging.database.roles if not r.login}
    internal = {c.name for c in staging.broker.device_classes if c.internal}
    devices = {c.name for c in staging.broker.device_classes if not c.internal}
    users = {u.name for u in staging.object_storage.users}
    assert roles and internal and devices and users, "staging should exercise every kind"
    expected = {
        **{database_role_password(r): f"PostgreSQL password of role {r}" for r in roles},
        **{broker_password(c): f"MQTT password of internal client {c}" for c in internal},
        **{object_storage_secret_key(u): f"MinIO secret key of access key {u}" for u in users},
        **{
            api_token(api.app, client): f"bearer token of operator client {client} of {api.app}"
            for api in staging.city_apis.values()
            for client in api.operator_clients
        },
    }
    assert {k: v for k, v in keys.items() if k not in REQUIRED_SECRETS} == expected
    assert not any(database_role_password(r) in keys for r in no_login)
    assert not any(broker_password(c) in keys for c in devices)


def test_missing_secrets_are_all_named_with_the_stack_file_and_the_fix(staging) -> None:
    keys = list(required_secrets(staging))
    present = {f"{CONFIG_NAMESPACE}:{key}": "x" for key in keys[2:]}
    pulumi.runtime.set_all_config(present, [f"{CONFIG_NAMESPACE}:{key}" for key in keys[2:]])
    try:
        with pytest.raises(MissingSecretsError) as error:
            check_secrets(staging)
    finally:
        pulumi.runtime.set_all_config({})
    assert error.value.file == "environments/stacks/Pulumi.staging.yaml"
    assert error.value.key_path == f"config.{CONFIG_NAMESPACE}:{keys[0]}"
    what = required_secrets(staging)
    assert error.value.detail == (
        f"missing secret(s): {CONFIG_NAMESPACE}:{keys[0]} ({what[keys[0]]}); "
        f"{CONFIG_NAMESPACE}:{keys[1]} ({what[keys[1]]}). Set each with "
        f"`pulumi config set --secret {CONFIG_NAMESPACE}:<key> --stack staging` "
        "or initialise them all with the ops CLI"
    )


def test_nothing_is_reported_when_every_secret_is_set(staging) -> None:
    keys = list(required_secrets(staging))
    pulumi.runtime.set_all_config({f"{CONFIG_NAMESPACE}:{k}": "x" for k in keys}, [])
    try:
        check_secrets(staging)
    finally:
        pulumi.runtime.set_all_config({})


def test_random_secrets_are_long_and_of_letters_and_digits() -> None:
    values = {random_secret() for _ in range(20)}
    assert len(values) == 20
    for value in values:
        assert len(value) == 32
        assert set(value) <= set(string.ascii_letters + string.digits)
    assert len(random_secret(16)) == 16


def test_only_missing_secrets_are_generated_prefixed_or_not(staging) -> None:
    keys = list(required_secrets(staging))
    generated = generate_missing(staging, [f"{CONFIG_NAMESPACE}:{keys[0]}", keys[1]])
    assert sorted(generated) == sorted(keys[2:])
    assert len(generated[OBJECT_STORAGE_ROOT_USER]) == 16
    assert all(len(v) == 32 for k, v in generated.items() if k != OBJECT_STORAGE_ROOT_USER)
    assert sorted(generate_missing(staging)) == sorted(keys)


def test_a_role_that_cannot_log_in_has_no_password(staging) -> None:
    import dataclasses

    role = staging.database.roles[0]
    assert role.login
    database = dataclasses.replace(
        staging.database, roles=(dataclasses.replace(role, login=False), *staging.database.roles[1:])
    )
    keys = required_secrets(dataclasses.replace(staging, database=database))
    assert database_role_password(role.name) not in keys
    assert database_role_password(role.name) in required_secrets(staging)
