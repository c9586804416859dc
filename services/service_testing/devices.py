"""Simulated devices: MQTT clients with a device class's credentials."""

from __future__ import annotations

import json
import queue
import time
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


class Device:
    """One MQTT connection as a device of ``device_class`` would open it."""

    def __init__(self, port: int, username: str, password: str, client_id: str = "") -> None:
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.client.username_pw_set(username, password)
        self.client.on_message = lambda _c, _u, message: self.messages.put(message)
        self.client.max_inflight_messages_set(1000)
        result = self.client.connect("127.0.0.1", port, keepalive=30)
        assert result == mqtt.MQTT_ERR_SUCCESS, mqtt.error_string(result)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, timeout_s: float = 5) -> None:
        info = self.client.publish(topic, payload, qos=qos)
        info.wait_for_publish(timeout_s)
        assert info.is_published(), f"no PUBACK for {topic}"

    def publish_async(self, topic: str, payload: bytes | str, qos: int = 1) -> mqtt.MQTTMessageInfo:
        return self.client.publish(topic, payload, qos=qos)

    def subscribe(self, topic: str, qos: int = 1, timeout_s: float = 5) -> list[int]:
        granted: queue.Queue[list] = queue.Queue()
        self.client.on_subscribe = lambda _c, _u, _mid, codes, _p: granted.put([c.value for c in codes])
        self.client.subscribe(topic, qos=qos)
        return granted.get(timeout=timeout_s)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def reading(metrics: dict[str, float], ts: datetime | float | None = None) -> str:
    """A valid telemetry payload."""
    if ts is None:
        ts = time.time()
    stamp = ts.astimezone(UTC).isoformat() if isinstance(ts, datetime) else ts
    return json.dumps({"ts": stamp, "metrics": metrics})
