"""The registry's settings: the connections the program wires, plus the device classes."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from service_common.settings import BrokerSettings, DatabaseSettings, ServiceSettings

SERVICE = "device-registry"


class DeviceClassTopics(BaseModel):
    """Where a class's devices receive commands: an MQTT topic with one ``+`` for the device id,
    the class's ``subscribe`` entry in environments/defaults.yaml; null when it receives none."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    commands: str | None = None

    @field_validator("commands")
    @classmethod
    def _one_wildcard(cls, value: str | None) -> str | None:
        if value is None:
            return value
        levels = value.split("/")
        if levels.count("+") != 1 or "#" in value or any(not level for level in levels):
            raise ValueError(f"expected a topic with exactly one '+' level for the device id, got {value!r}")
        return value

    def command_topic(self, device_id: str) -> str | None:
        if self.commands is None:
            return None
        return "/".join(device_id if level == "+" else level for level in self.commands.split("/"))


# The sensor classes of environments/defaults.yaml (broker.device_classes). Not wired by the
# program yet (services/README.md): DEVICE_CLASSES, a JSON object, overrides it.
DEFAULT_DEVICE_CLASSES = {
    "traffic-sensor": DeviceClassTopics(commands="city/traffic/+/commands"),
    "parking-sensor": DeviceClassTopics(commands="city/parking/+/commands"),
    "air-quality-sensor": DeviceClassTopics(commands=None),
}


class RegistrySettings(ServiceSettings, BrokerSettings, DatabaseSettings):
    """Everything device-registry reads from its environment, once, at start."""

    device_classes: dict[str, DeviceClassTopics] = Field(
        default_factory=lambda: dict(DEFAULT_DEVICE_CLASSES), validation_alias="DEVICE_CLASSES"
    )
    migrate_on_start: bool = Field(default=True, validation_alias="MIGRATE_ON_START")
    command_timeout_s: float = Field(default=5.0, gt=0, le=60, validation_alias="COMMAND_TIMEOUT_SECONDS")
