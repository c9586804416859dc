"""What the services read against what the program wires (components/city_apis.py): every
variable a service requires must be one the program sets for that API, so a deployed service
cannot stop at start for a variable nobody provides."""

from __future__ import annotations

import pytest
from pydantic_settings import BaseSettings

from device_registry.settings import RegistrySettings
from open_data_api.settings import OpenDataSettings
from smartnation.program.components.city_apis import Connections, _connections
from smartnation.settings.loader import load_settings
from smartnation.settings.models import API_PROVIDED_ENV
from telemetry_ingest.settings import IngestSettings

pytestmark = pytest.mark.unit

SERVICES: dict[str, type[BaseSettings]] = {
    "device-registry": RegistrySettings,
    "telemetry-ingest": IngestSettings,
    "open-data-api": OpenDataSettings,
}
# What the role, client and user Secrets carry (database.py, broker.py, object_storage.py).
SECRET_KEYS = {"database": {"PGUSER", "PGPASSWORD"}, "broker": {"MQTT_USERNAME", "MQTT_PASSWORD"},
               "storage": {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}}  # fmt: skip


def required_env(settings: type[BaseSettings]) -> set[str]:
    return {str(field.validation_alias) for field in settings.model_fields.values() if field.is_required()}


def wired_env(app: str) -> set[str]:
    api = {a.app: a for a in load_settings("staging").city_apis.values()}[app]  # by Kubernetes name
    connections = Connections(
        mqtt_url="mqtt://b:1883", mqtt_pod_urls=["mqtt://b-0:1883"], broker_client_secrets={api.broker_client: "s"},
        database_host="p", database_read_host="r", database_role_secrets={getattr(api.database, "role", ""): "s"},
        s3_endpoint="http://s3:9000", storage_user_secrets={api.storage_user: "s"},
    )  # fmt: skip
    data, _secrets = _connections("staging", api, connections)
    env = set(data) | {"PORT"}
    env |= SECRET_KEYS["database"] if api.database else set()
    env |= SECRET_KEYS["broker"] if api.broker_client else set()
    env |= SECRET_KEYS["storage"] if api.storage_user else set()
    return env


@pytest.mark.parametrize("app", sorted(SERVICES))
def test_every_required_variable_is_wired(app: str) -> None:
    missing = required_env(SERVICES[app]) - wired_env(app)
    assert not missing, f"{app} requires {sorted(missing)}, which components/city_apis.py does not set"


@pytest.mark.parametrize("app", sorted(SERVICES))
def test_required_variables_are_the_programs_names(app: str) -> None:
    assert required_env(SERVICES[app]) <= API_PROVIDED_ENV
