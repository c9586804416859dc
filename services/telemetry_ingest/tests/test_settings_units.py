"""The ingest's settings against the project's own settings (environments/defaults.yaml)."""

from __future__ import annotations

import pytest

from smartnation.settings.loader import load_settings
from telemetry_ingest.settings import IngestSettings

pytestmark = pytest.mark.unit

ENV = {
    "MQTT_URL": "mqtt://broker:1883", "MQTT_USERNAME": "telemetry-ingest", "MQTT_PASSWORD": "p",
    "PGHOST": "db", "PGDATABASE": "telemetry", "PGUSER": "telemetry_ingest", "PGPASSWORD": "p",
    "S3_ENDPOINT": "http://s3:9000", "AWS_ACCESS_KEY_ID": "telemetry-ingest", "AWS_SECRET_ACCESS_KEY": "k",
}  # fmt: skip


@pytest.fixture()
def settings(monkeypatch: pytest.MonkeyPatch) -> IngestSettings:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    return IngestSettings()  # type: ignore[call-arg]


def topic_matches(filter_: str, topic: str) -> bool:
    f, t = filter_.split("/"), topic.split("/")
    return len(f) == len(t) and all(a in ("+", b) for a, b in zip(f, t, strict=True))


@pytest.mark.parametrize("environment", ["dev", "staging", "production"])
def test_the_archive_bucket_is_one_the_ingest_may_write(settings: IngestSettings, environment: str) -> None:
    storage = load_settings(environment).object_storage
    user = next(u for u in storage.users if u.name == "telemetry-ingest")
    assert settings.archive_bucket in user.buckets and user.access == "readwrite"


@pytest.mark.parametrize("environment", ["dev", "staging", "production"])
def test_the_ingest_subscribes_to_what_its_acl_allows(settings: IngestSettings, environment: str) -> None:
    classes = {c.name: c for c in load_settings(environment).broker.device_classes}
    assert settings.topic_filter in classes["telemetry-ingest"].subscribe
    # and that filter covers every sensor class's telemetry
    for device_class in classes.values():
        for topic in device_class.publish:
            if topic.endswith("/telemetry"):
                assert topic_matches(settings.topic_filter, topic.replace("+", "some-device"))


def test_replicas_share_the_subscription(settings: IngestSettings) -> None:
    assert settings.subscription_filter() == "$share/telemetry-ingest/city/+/+/telemetry"


def test_tuning_is_bounded(monkeypatch: pytest.MonkeyPatch, settings: IngestSettings) -> None:
    monkeypatch.setenv("INGEST_RECEIVE_MAXIMUM", "70000")
    with pytest.raises(ValueError, match="INGEST_RECEIVE_MAXIMUM"):
        IngestSettings()  # type: ignore[call-arg]
