"""Every secret the program reads, defined here and nowhere else.

Secrets live in the stack files (``environments/stacks/Pulumi.<env>.yaml``, encrypted), never
in ``environments/*.yaml``. Components read them with ``pulumi.Config("smartnation")
.require_secret(key)`` using the key functions below; ``check_secrets`` runs before any
resource is registered so a missing one is reported up front, all at once.
"""

from __future__ import annotations

import string
from collections.abc import Collection
from secrets import choice  # the standard library module, not this one (absolute import)

import pulumi

from smartnation.settings.errors import SettingsError
from smartnation.settings.models import Settings

CONFIG_NAMESPACE = "smartnation"
STACK_FILE = "environments/stacks/Pulumi.{environment}.yaml"

DATABASE_SUPERUSER_PASSWORD = "database-superuser-password"
DATABASE_REPLICATION_PASSWORD = "database-replication-password"
OBJECT_STORAGE_ROOT_USER = "object-storage-root-user"
OBJECT_STORAGE_ROOT_PASSWORD = "object-storage-root-password"

REQUIRED_SECRETS: dict[str, str] = {
    DATABASE_SUPERUSER_PASSWORD: "PostgreSQL superuser (postgres) password",
    DATABASE_REPLICATION_PASSWORD: "PostgreSQL replication role password (streaming replicas)",
    OBJECT_STORAGE_ROOT_USER: "MinIO root user name",
    OBJECT_STORAGE_ROOT_PASSWORD: "MinIO root password",
}
"""Secrets every environment needs whatever its settings; per-role, per-device-class and
per-application keys are added from the settings by ``required_secrets``."""


def database_role_password(role: str) -> str:
    """Secret key of an application role's PostgreSQL password."""
    return f"database-password-{role.replace('_', '-')}"


def broker_password(device_class: str) -> str:
    """Secret key of an internal client class's MQTT password."""
    return f"broker-password-{device_class}"


def object_storage_secret_key(user: str) -> str:
    """Secret key of an application's object storage secret access key."""
    return f"object-storage-secret-key-{user}"


def api_token(app: str, client: str) -> str:
    """Secret key of an operator client's bearer token for a city API (``device-registry``).
    Rotated like every other secret: a new value rolls the API (its credentials digest)."""
    return f"api-token-{app}-{client}"


def required_secrets(settings: Settings) -> dict[str, str]:
    """Every secret key this environment needs -> what it is."""
    keys = dict(REQUIRED_SECRETS)
    for role in settings.database.roles:
        if role.login:
            keys[database_role_password(role.name)] = f"PostgreSQL password of role {role.name}"
    # Devices authenticate with their own certificates; only in-cluster clients have a password.
    for device_class in settings.broker.device_classes:
        if device_class.internal:
            keys[broker_password(device_class.name)] = f"MQTT password of internal client {device_class.name}"
    for user in settings.object_storage.users:
        keys[object_storage_secret_key(user.name)] = f"MinIO secret key of access key {user.name}"
    for api in settings.city_apis.values():
        for client in api.operator_clients:
            keys[api_token(api.app, client)] = f"bearer token of operator client {client} of {api.app}"
    return keys


class MissingSecretsError(SettingsError):
    """Required secrets are not set in the stack file."""


def missing_secrets(settings: Settings, present: Collection[str]) -> MissingSecretsError | None:
    """The error naming the stack file and every required key not in ``present`` (keys with or
    without the ``smartnation:`` prefix), or None when none is missing."""
    have = {key.removeprefix(f"{CONFIG_NAMESPACE}:") for key in present}
    missing = {key: what for key, what in required_secrets(settings).items() if key not in have}
    if not missing:
        return None
    stack_file = STACK_FILE.format(environment=settings.environment)
    listed = "; ".join(f"{CONFIG_NAMESPACE}:{key} ({what})" for key, what in missing.items())
    first = next(iter(missing))
    return MissingSecretsError(
        stack_file,
        f"config.{CONFIG_NAMESPACE}:{first}",
        f"missing secret(s): {listed}. Set each with "
        f"`pulumi config set --secret {CONFIG_NAMESPACE}:<key> --stack {settings.environment}` "
        "or initialise them all with the ops CLI",
    )


def check_secrets(settings: Settings) -> None:
    """Raise MissingSecretsError naming the stack file and every missing key; registers nothing."""
    config = pulumi.Config(CONFIG_NAMESPACE)
    present = [key for key in required_secrets(settings) if config.get_secret(key) is not None]
    error = missing_secrets(settings, present)
    if error is not None:
        raise error


_ALPHABET = string.ascii_letters + string.digits


def random_secret(length: int = 32) -> str:
    """A random value safe for every consumer (psql variables, MinIO keys, password files)."""
    return "".join(choice(_ALPHABET) for _ in range(length))


def generate_missing(settings: Settings, existing: Collection[str] = ()) -> dict[str, str]:
    """Random values for every secret ``settings`` require that is not in ``existing``.

    ``existing`` holds keys already set (with or without the ``smartnation:`` prefix); the
    ops CLI passes the stack's current config keys and writes the result as secrets.
    """
    present = {key.removeprefix(f"{CONFIG_NAMESPACE}:") for key in existing}
    values = {}
    for key in required_secrets(settings):
        if key in present:
            continue
        # MinIO wants a short user name; it is secret only so that guessing it does not help.
        values[key] = random_secret(16) if key == OBJECT_STORAGE_ROOT_USER else random_secret()
    return values
