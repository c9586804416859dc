"""The registry's settings: the connections the program wires, plus the device classes."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from service_common.settings import BrokerSettings, DatabaseSettings, ServiceSettings

SERVICE = "device-registry"

_CLIENT_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
MIN_TOKEN_LENGTH = 24
"""Shorter tokens are refused at start: the stack's secrets are 32 random letters and digits."""


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

    # A refused value is not echoed in the error (the process's log): it may be a token.
    model_config = SettingsConfigDict(hide_input_in_errors=True)

    device_classes: dict[str, DeviceClassTopics] = Field(
        default_factory=lambda: dict(DEFAULT_DEVICE_CLASSES), validation_alias="DEVICE_CLASSES"
    )
    migrate_on_start: bool = Field(default=True, validation_alias="MIGRATE_ON_START")
    command_timeout_s: float = Field(default=5.0, gt=0, le=60, validation_alias="COMMAND_TIMEOUT_SECONDS")
    operator_tokens: dict[str, SecretStr] = Field(default_factory=dict, validation_alias="OPERATOR_TOKENS")
    """Operator client -> bearer token (a JSON object; the program's ``<release>-operator-tokens``
    Secret). Every /v1 route needs one of them (auth.py); none at all refuses every request."""

    @field_validator("operator_tokens")
    @classmethod
    def _tokens(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for client, token in value.items():
            if not _CLIENT_RE.fullmatch(client):
                raise ValueError(f"operator client {client!r}: expected a DNS label (lower-case letters, digits, '-')")
            if len(token.get_secret_value()) < MIN_TOKEN_LENGTH:
                raise ValueError(f"operator client {client!r}: token shorter than {MIN_TOKEN_LENGTH} characters")
        plain = [token.get_secret_value() for token in value.values()]
        if len(set(plain)) != len(plain):
            raise ValueError("two operator clients share one token: each needs its own")
        return value
