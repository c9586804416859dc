"""Devices have their own identity on the broker (issue 11 item 3): a device class's topics name
the device by one `+` level, which the TLS listener's pattern ACL binds to the certificate's
common name; in-cluster clients (`internal: true`) keep a password, on the plain listener only.

The daemon's behaviour on these files is tests/contract/test_mosquitto.py; here: the settings
rules (file and key in every error) and what every stack renders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from smartnation.program.components import broker
from smartnation.settings import SettingsError, load_settings
from tests.unit.harness import BuiltStack, edit

pytestmark = pytest.mark.unit

CONFIGMAP = "kubernetes:core/v1:ConfigMap"
SECRET = "kubernetes:core/v1:Secret"


def _class_index(envdir: Path, name: str) -> int:
    classes = load_settings("dev", envdir).broker.device_classes
    return next(i for i, c in enumerate(classes) if c.name == name)


@pytest.mark.parametrize(
    ("class_name", "field", "value", "words"),
    [
        ("parking-sensor", "publish", ["city/parking/telemetry"], "exactly one '+' level (the device id)"),
        ("parking-sensor", "subscribe", ["city/+/+/commands"], "exactly one '+' level"),
        ("traffic-sensor", "publish", ["city/traffic/+/#"], "and no '#'"),
        # The ingest's filter read by every device would be every device's telemetry.
        ("telemetry-ingest", "internal", False, "exactly one '+' level"),
    ],
)
def test_a_device_class_topic_must_name_the_device(
    envdir: Path, class_name: str, field: str, value: Any, words: str
) -> None:
    index = _class_index(envdir, class_name)
    edit(envdir, "defaults.yaml", f"broker.device_classes.{index}.{field}", value)
    with pytest.raises(SettingsError) as refused:
        load_settings("dev", envdir)
    error = refused.value
    assert error.file == "environments/defaults.yaml", str(error)
    assert error.key_path == f"broker.device_classes.{index}", str(error)
    assert words in error.detail, str(error)
    if field != "internal":
        assert f"{field}.0 {value[0]!r}" in error.detail, str(error)


def test_an_api_logs_in_only_as_an_internal_class(envdir: Path) -> None:
    settings = load_settings("dev", envdir)
    api = next(a for a in settings.city_apis.values() if a.broker_client)
    edit(envdir, "defaults.yaml", f"city_apis.{api.name}.broker_client", "parking-sensor")
    with pytest.raises(SettingsError) as refused:
        load_settings("dev", envdir)
    error = refused.value
    assert (error.file, error.key_path) == ("environments/defaults.yaml", f"city_apis.{api.name}.broker_client")
    assert "internal broker.device_classes" in error.detail, str(error)


def test_internal_must_be_a_boolean(envdir: Path) -> None:
    index = _class_index(envdir, "device-registry")
    edit(envdir, "defaults.yaml", f"broker.device_classes.{index}.internal", "yes please")
    with pytest.raises(SettingsError) as refused:
        load_settings("dev", envdir)
    assert refused.value.key_path == f"broker.device_classes.{index}.internal", str(refused.value)


@pytest.fixture(params=["dev", "production"])
def built(request: pytest.FixtureRequest, build_stack) -> BuiltStack:
    return build_stack(request.param)


def _broker_config(stack: BuiltStack) -> dict[str, str]:
    (config,) = [r for r in stack.of_type(CONFIGMAP) if r.plain["metadata"]["name"].endswith("-broker-config")]
    return config.plain["data"]


def test_every_device_class_is_confined_by_pattern_and_no_internal_client_is(built: BuiltStack) -> None:
    data = _broker_config(built)
    device_acl, acl = data[broker.DEVICE_ACL], data["acl"]
    classes = built.settings.broker.device_classes
    devices, internal = [c for c in classes if not c.internal], [c for c in classes if c.internal]
    assert devices and internal
    patterns = {line.split(" ", 2)[2] for line in device_acl.splitlines() if line.startswith("pattern ")}
    expected = {t.replace("+", "%u") for c in devices for t in (*c.publish, *c.subscribe)}
    assert patterns == expected
    assert all("%u" in p and "+" not in p and "#" not in p for p in patterns)
    assert not any(line.startswith(("user ", "topic ")) for line in device_acl.splitlines())
    # The plain listener's ACL has the internal clients, and only them.
    users = {line.split(" ", 1)[1] for line in acl.splitlines() if line.startswith("user ")}
    assert users == {c.name for c in internal}


def test_the_tls_listener_takes_device_certificates_from_the_brokers_issuer(built: BuiltStack) -> None:
    conf = _broker_config(built)["mosquitto.conf"]
    tls = conf[conf.index(f"listener {broker.TLS_PORT}") :]
    assert "require_certificate true" in tls and "use_identity_as_username true" in tls
    assert "password_file" not in tls
    # cert-manager writes the issuing CA's certificate beside the broker's own key pair.
    assert "cafile /mosquitto/tls/ca.crt" in tls


def test_production_admits_devices_only_from_its_device_networks() -> None:
    ranges = load_settings("production").broker.device_source_ranges
    assert "0.0.0.0/0" not in ranges and "::/0" not in ranges
