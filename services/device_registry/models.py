"""Request and response bodies of the registry's HTTP API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

# A device id is one MQTT topic level: no '/', '+', '#', no spaces.
DEVICE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class Location(BaseModel):
    model_config = ConfigDict(extra="forbid")

    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    label: str | None = Field(default=None, max_length=200)


class DeviceIn(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    id: str = Field(pattern=DEVICE_ID_PATTERN)
    device_class: str = Field(alias="class", min_length=1, max_length=63)
    location: Location


class Device(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    id: str
    device_class: str = Field(serialization_alias="class")
    location: Location
    registered_at: datetime
    retired_at: datetime | None = None


class CommandIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    command: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,63}$")
    args: dict[str, Any] = Field(default_factory=dict)


class CommandOut(BaseModel):
    command_id: int
    device_id: str
    topic: str
    brokers_reached: int
    brokers_total: int
