"""The registry's pure parts: device classes and their command topics, request bodies."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from device_registry.models import DeviceIn
from device_registry.settings import DEFAULT_DEVICE_CLASSES, DeviceClassTopics, RegistrySettings
from smartnation.settings.loader import load_settings

pytestmark = pytest.mark.unit

ENV = {"MQTT_URL": "mqtt://b:1883", "MQTT_USERNAME": "device-registry", "MQTT_PASSWORD": "p",
       "PGHOST": "db", "PGDATABASE": "devices", "PGUSER": "device_registry", "PGPASSWORD": "p"}  # fmt: skip


@pytest.mark.parametrize("environment", ["dev", "staging", "production"])
def test_default_classes_match_the_environments_acls(environment: str) -> None:
    """Every default class exists with exactly that command topic, and the registry may publish it."""
    classes = {c.name: c for c in load_settings(environment).broker.device_classes}
    registry_may_publish = classes["device-registry"].publish
    for name, topics in DEFAULT_DEVICE_CLASSES.items():
        commands = [t for t in classes[name].subscribe if t.endswith("/commands")]
        assert commands == ([topics.commands] if topics.commands else [])
        if topics.commands:
            levels = topics.commands.split("/")
            assert any(
                all(a in ("+", b) for a, b in zip(p.split("/"), levels, strict=True)) for p in registry_may_publish
            )


def test_command_topic_puts_the_device_in_the_wildcard() -> None:
    assert DeviceClassTopics(commands="city/parking/+/commands").command_topic("p-7") == "city/parking/p-7/commands"
    assert DeviceClassTopics(commands=None).command_topic("a-1") is None


@pytest.mark.parametrize("bad", ["city/#", "city/+/+/commands", "city/parking/commands", "city//+/x"])
def test_command_topics_need_exactly_one_device_level(bad: str) -> None:
    with pytest.raises(ValidationError):
        DeviceClassTopics(commands=bad)


def test_device_classes_from_json(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DEVICE_CLASSES", '{"street-light": {"commands": "city/lighting/+/commands"}}')
    settings = RegistrySettings()  # type: ignore[call-arg]
    assert settings.device_classes["street-light"].command_topic("l-1") == "city/lighting/l-1/commands"


@pytest.mark.parametrize("device_id", ["a/b", "+", "#", "has space", "", "-leading", "x" * 65])
def test_device_ids_are_single_topic_levels(device_id: str) -> None:
    with pytest.raises(ValidationError):
        DeviceIn.model_validate(
            {"id": device_id, "class": "parking-sensor", "location": {"latitude": 0, "longitude": 0}}
        )


def test_locations_are_on_earth() -> None:
    with pytest.raises(ValidationError):
        DeviceIn.model_validate({"id": "p-1", "class": "parking-sensor", "location": {"latitude": 91, "longitude": 0}})
