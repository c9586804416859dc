"""Settings: the variable names the chart sets, checked at start."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from service_common.settings import BrokerSettings, DatabaseSettings, StorageSettings, parse_broker_url

pytestmark = pytest.mark.unit

BROKER_ENV = {
    "MQTT_URL": "mqtt://staging-broker.ns.svc:1883",
    "MQTT_USERNAME": "telemetry-ingest",
    "MQTT_PASSWORD": "s",
}
DB_ENV = {"PGHOST": "primary", "PGHOST_READONLY": "replicas", "PGPORT": "5432", "PGDATABASE": "telemetry",
          "PGUSER": "open_data", "PGPASSWORD": "secret-pw"}  # fmt: skip


def clear(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for name in ("MQTT_URL", "MQTT_BROKER_URLS", "MQTT_USERNAME", "MQTT_PASSWORD", "PGHOST", "PGHOST_READONLY",
                 "PGPORT", "PGDATABASE", "PGUSER", "PGPASSWORD", "S3_ENDPOINT", "AWS_ACCESS_KEY_ID",
                 "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_DEFAULT_REGION"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def test_broker_urls_are_every_pod_when_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    clear(monkeypatch, BROKER_ENV | {"MQTT_BROKER_URLS": "mqtt://b-0.h:1883,mqtt://b-1.h:1883"})
    urls = BrokerSettings().broker_urls()  # type: ignore[call-arg]
    assert [(u.host, u.port) for u in urls] == [("b-0.h", 1883), ("b-1.h", 1883)]


def test_broker_urls_fall_back_to_the_service(monkeypatch: pytest.MonkeyPatch) -> None:
    clear(monkeypatch, BROKER_ENV)
    (url,) = BrokerSettings().broker_urls()  # type: ignore[call-arg]
    assert (url.host, url.port, url.tls) == ("staging-broker.ns.svc", 1883, False)


@pytest.mark.parametrize(
    "value", ["http://b:1883", "mqtt://", "mqtt://user:pw@b:1883", "mqtt://b:1883/topic", "b:1883"]
)
def test_bad_broker_urls_are_refused(value: str) -> None:
    with pytest.raises(ValueError):
        parse_broker_url(value)


def test_mqtts_defaults_to_8883() -> None:
    url = parse_broker_url("mqtts://mqtt.example.mc")
    assert (url.port, url.tls) == (8883, True)


def test_a_missing_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    clear(monkeypatch, {k: v for k, v in DB_ENV.items() if k != "PGPASSWORD"})
    with pytest.raises(ValidationError, match="PGPASSWORD"):
        DatabaseSettings()  # type: ignore[call-arg]


def test_read_only_connections_use_the_read_host(monkeypatch: pytest.MonkeyPatch) -> None:
    clear(monkeypatch, DB_ENV)
    settings = DatabaseSettings()  # type: ignore[call-arg]
    assert settings.conninfo(application="x")["host"] == "primary"
    read = settings.conninfo(application="x", read_only=True)
    assert read["host"] == "replicas"
    assert read["options"] == "-c default_transaction_read_only=on"


def test_read_host_falls_back_to_the_primary(monkeypatch: pytest.MonkeyPatch) -> None:
    clear(monkeypatch, {k: v for k, v in DB_ENV.items() if k != "PGHOST_READONLY"})
    assert DatabaseSettings().conninfo(application="x", read_only=True)["host"] == "primary"  # type: ignore[call-arg]


def test_secrets_stay_out_of_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    clear(monkeypatch, DB_ENV | BROKER_ENV)
    assert "secret-pw" not in repr(DatabaseSettings())  # type: ignore[call-arg]


def test_storage_endpoint_must_be_a_url(monkeypatch: pytest.MonkeyPatch) -> None:
    clear(monkeypatch, {"S3_ENDPOINT": "minio:9000", "AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"})
    with pytest.raises(ValidationError, match="S3_ENDPOINT"):
        StorageSettings()  # type: ignore[call-arg]
    monkeypatch.setenv("S3_ENDPOINT", "http://staging-object-storage.ns.svc.cluster.local:9000")
    assert StorageSettings().aws_region == "us-east-1"  # type: ignore[call-arg]
