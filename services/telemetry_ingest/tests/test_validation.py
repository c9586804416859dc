"""Validation of telemetry messages: every way a message can be wrong has its reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from telemetry_ingest.validation import MAX_PAYLOAD_BYTES, Rejected, parse_message

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 28, 22, 0, tzinfo=UTC)
TOPIC = "city/parking/p-0042/telemetry"


def payload(**document: object) -> bytes:
    return json.dumps(document).encode()


def test_a_valid_reading() -> None:
    reading = parse_message(TOPIC, payload(ts="2026-11-28T21:59:59.5Z", metrics={"occupied": 1, "v": 3.6}), now=NOW)
    assert (reading.device_id, reading.domain) == ("p-0042", "parking")
    assert reading.ts == datetime(2026, 11, 28, 21, 59, 59, 500000, tzinfo=UTC)
    assert json.loads(reading.metrics_json) == {"occupied": 1, "v": 3.6}
    assert reading.received_at == NOW


def test_the_same_instant_in_any_notation_is_the_same_key() -> None:
    """Redeliveries and re-sends in another notation collapse onto one (device, ts) key."""
    epoch = parse_message(TOPIC, payload(ts=NOW.timestamp() - 1, metrics={"a": 1}), now=NOW)
    utc = parse_message(TOPIC, payload(ts="2026-11-28T21:59:59+00:00", metrics={"a": 1}), now=NOW)
    monaco = parse_message(TOPIC, payload(ts="2026-11-28T22:59:59+01:00", metrics={"a": 1}), now=NOW)
    assert epoch.key == utc.key == monaco.key


@pytest.mark.parametrize(
    ("topic", "body", "reason"),
    [
        ("city/parking/p-1/commands", payload(ts=1, metrics={"a": 1}), "topic"),
        ("city/parking/p 1/telemetry", payload(ts=1, metrics={"a": 1}), "topic"),
        ("city/Parking/p-1/telemetry", payload(ts=1, metrics={"a": 1}), "topic"),
        ("city/parking/p-1/x/telemetry", payload(ts=1, metrics={"a": 1}), "topic"),
        (TOPIC, b"\xff\xfe not utf-8", "not_json"),
        (TOPIC, b"{not json", "not_json"),
        (TOPIC, b"[1, 2]", "schema"),
        (TOPIC, payload(metrics={"a": 1}), "schema"),
        (TOPIC, payload(ts="2026-11-28T21:00:00Z"), "schema"),
        (TOPIC, payload(ts="2026-11-28T21:00:00Z", metrics={"a": 1}, device="spoofed"), "schema"),
        (TOPIC, payload(ts="yesterday", metrics={"a": 1}), "ts"),
        (TOPIC, payload(ts="2026-11-28T21:00:00", metrics={"a": 1}), "ts"),
        (TOPIC, payload(ts=True, metrics={"a": 1}), "ts"),
        (TOPIC, payload(ts=1e300, metrics={"a": 1}), "ts"),
        (TOPIC, payload(ts=None, metrics={"a": 1}), "ts"),
        (TOPIC, payload(ts="2026-11-28T22:10:00Z", metrics={"a": 1}), "ts_future"),
        (TOPIC, payload(ts="2026-11-01T00:00:00Z", metrics={"a": 1}), "ts_too_old"),
        (TOPIC, payload(ts="2026-11-28T21:00:00Z", metrics={}), "metrics"),
        (TOPIC, payload(ts="2026-11-28T21:00:00Z", metrics=[1]), "metrics"),
        (TOPIC, payload(ts="2026-11-28T21:00:00Z", metrics={"A-b": 1}), "metrics"),
        (TOPIC, payload(ts="2026-11-28T21:00:00Z", metrics={"a": "1"}), "metrics"),
        (TOPIC, payload(ts="2026-11-28T21:00:00Z", metrics={"a": True}), "metrics"),
        (TOPIC, b'{"ts": "2026-11-28T21:00:00Z", "metrics": {"a": NaN}}', "metrics"),
        (TOPIC, payload(ts="2026-11-28T21:00:00Z", metrics={f"m{i}": i for i in range(33)}), "metrics"),
        (TOPIC, b" " * (MAX_PAYLOAD_BYTES + 1), "too_large"),
        (TOPIC, b"[" * 100_000 + b"]" * 100_000, "too_large"),
    ],
)
def test_rejections_have_a_reason(topic: str, body: bytes, reason: str) -> None:
    with pytest.raises(Rejected) as raised:
        parse_message(topic, body, now=NOW)
    assert raised.value.reason == reason


def test_deep_nesting_within_the_size_limit_is_rejected_not_a_crash() -> None:
    with pytest.raises(Rejected) as raised:
        parse_message(TOPIC, b"[" * 5000 + b"]" * 5000, now=NOW)
    assert raised.value.reason in {"not_json", "schema"}


def test_limits_are_settings() -> None:
    late = payload(ts="2026-11-20T00:00:00Z", metrics={"a": 1})
    assert parse_message(TOPIC, late, now=NOW, max_age=timedelta(days=30)).domain == "parking"
