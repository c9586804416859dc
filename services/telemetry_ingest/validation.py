"""What a telemetry message must look like; everything else is rejected with a reason.

Topic ``city/<domain>/<device id>/telemetry`` (the device classes' publish ACLs in
environments/defaults.yaml), payload a JSON object::

    {"ts": "2026-11-28T22:00:00.250Z", "metrics": {"occupied": 1, "battery_v": 3.61}}

``ts`` is RFC 3339 with an offset, or seconds since the epoch; ``metrics`` maps 1 to 32 names
(lowercase, digits, ``_``) to finite numbers. The device's identity comes from the topic, which
the broker's ACL ties to the device's credentials, never from the payload.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

MAX_PAYLOAD_BYTES = 16 * 1024
MAX_METRICS = 32
DEVICE_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
DOMAIN_RE = re.compile(r"[a-z][a-z0-9-]{0,31}")
METRIC_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")
ALLOWED_KEYS = frozenset({"ts", "metrics"})


class Rejected(Exception):
    """A message that is not a valid reading; ``reason`` is a short label for the counter."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Reading:
    """One validated reading; (device_id, ts) is its identity, so a redelivery is the same row."""

    device_id: str
    domain: str
    ts: datetime
    metrics_json: str
    received_at: datetime

    @property
    def key(self) -> tuple[str, datetime]:
        return (self.device_id, self.ts)


def parse_topic(topic: str) -> tuple[str, str]:
    """(domain, device id) of ``city/<domain>/<device id>/telemetry``."""
    parts = topic.split("/")
    if len(parts) != 4 or parts[0] != "city" or parts[3] != "telemetry":
        raise Rejected("topic", f"not city/<domain>/<device>/telemetry: {topic[:120]!r}")
    domain, device_id = parts[1], parts[2]
    if not DOMAIN_RE.fullmatch(domain):
        raise Rejected("topic", f"bad domain {domain[:40]!r}")
    if not DEVICE_ID_RE.fullmatch(device_id):
        raise Rejected("topic", f"bad device id {device_id[:80]!r}")
    return domain, device_id


def parse_ts(value: object) -> datetime:
    if isinstance(value, bool):
        raise Rejected("ts", "a boolean is not a time")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise Rejected("ts", "not a finite number")
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError) as error:
            raise Rejected("ts", f"out of range: {value!r}") from error
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError as error:
            raise Rejected("ts", f"not RFC 3339: {value[:40]!r}") from error
        if parsed.tzinfo is None:
            raise Rejected("ts", f"no UTC offset: {value[:40]!r}")
        return parsed.astimezone(UTC)
    raise Rejected("ts", f"expected a string or a number, got {type(value).__name__}")


def parse_metrics(value: object) -> str:
    if not isinstance(value, dict):
        raise Rejected("metrics", f"expected an object, got {type(value).__name__}")
    if not 1 <= len(value) <= MAX_METRICS:
        raise Rejected("metrics", f"expected 1 to {MAX_METRICS} metrics, got {len(value)}")
    for name, number in value.items():
        if not METRIC_RE.fullmatch(name):
            raise Rejected("metrics", f"bad metric name {name[:70]!r}")
        if isinstance(number, bool) or not isinstance(number, int | float) or not math.isfinite(number):
            raise Rejected("metrics", f"metric {name!r} is not a finite number")
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def parse_message(
    topic: str,
    payload: bytes,
    *,
    now: datetime,
    max_clock_skew: timedelta = timedelta(minutes=5),
    max_age: timedelta = timedelta(days=7),
) -> Reading:
    """Validate one MQTT message; raises :class:`Rejected`."""
    domain, device_id = parse_topic(topic)
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise Rejected("too_large", f"{len(payload)} bytes > {MAX_PAYLOAD_BYTES}")
    try:
        document = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise Rejected("not_json", str(error)[:120]) from error
    if not isinstance(document, dict):
        raise Rejected("schema", f"expected a JSON object, got {type(document).__name__}")
    unknown = set(document) - ALLOWED_KEYS
    if unknown:
        raise Rejected("schema", f"unknown fields {sorted(unknown)[:5]}")
    if "ts" not in document or "metrics" not in document:
        raise Rejected("schema", "needs both ts and metrics")
    ts = parse_ts(document["ts"])
    if ts > now + max_clock_skew:
        raise Rejected("ts_future", f"{ts.isoformat()} is ahead of {now.isoformat()}")
    if ts < now - max_age:
        raise Rejected("ts_too_old", f"{ts.isoformat()} is older than {max_age}")
    return Reading(device_id, domain, ts, parse_metrics(document["metrics"]), now)
