"""An MQTT client for the contract tests: synchronous calls over paho against a broker started by
contract_daemons.start_broker. Shared by the broker's own tests (test_mosquitto.py) and the move's
bridge between two brokers (test_mosquitto_bridge.py)."""

from __future__ import annotations

import queue
import ssl
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from .contract_daemons import Broker

TIMEOUT = 10.0
# How long "nothing arrives" is watched for. Delivery on loopback takes milliseconds; the
# marker message published afterwards proves the broker had handled the refused one.
QUIET_PERIOD = 1.0


class Client:
    """A synchronous wrapper around paho: each call waits for the broker's answer.

    Internal clients log in with a password on the internal listener, over TLS checked against the
    broker's CA as in the cluster (``internal_tls=False``: plain MQTT, to see it refused); devices
    present their client certificate (``cert``: certificate and key) on the device listener."""

    def __init__(
        self,
        broker: Broker,
        username: str | None,
        password: str | None,
        *,
        tls: bool = False,
        cert: tuple[Path, Path] | None = None,
        internal_tls: bool = True,
    ) -> None:
        self.broker = broker
        self.port = broker.tls_port if tls else broker.plain_port
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self._connack = threading.Event()
        self._acks: dict[int, threading.Event] = {}
        self._ack_codes: dict[int, list[ReasonCode]] = {}
        self._lock = threading.Lock()
        self.connect_reason: ReasonCode | None = None
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"contract-{uuid.uuid4().hex[:12]}", protocol=mqtt.MQTTv5
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        if tls:
            context = ssl.create_default_context(cafile=str(broker.cafile))
            if cert is not None:
                context.load_cert_chain(str(cert[0]), str(cert[1]))
            self.client.tls_set_context(context)
        elif internal_tls and broker.internal_tls:
            self.client.tls_set_context(ssl.create_default_context(cafile=str(broker.cafile)))
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *_args: self._connack.set()
        self.client.on_subscribe = self._on_subscribe
        self.client.on_publish = self._on_publish
        self.client.on_message = lambda _client, _userdata, message: self.messages.put(message)

    def _event(self, mid: int) -> threading.Event:
        with self._lock:
            return self._acks.setdefault(mid, threading.Event())

    def _on_connect(self, _client, _userdata, _flags, reason_code, _properties) -> None:
        self.connect_reason = reason_code
        self._connack.set()

    def _on_subscribe(self, _client, _userdata, mid, reason_codes, _properties) -> None:
        self._ack_codes[mid] = list(reason_codes)
        self._event(mid).set()

    def _on_publish(self, _client, _userdata, mid, reason_code, _properties) -> None:
        self._ack_codes[mid] = [reason_code]
        self._event(mid).set()

    def connect(self) -> ReasonCode | None:
        """Connect; return the CONNACK reason code, or None when the broker hung up without one."""
        self.client.connect("127.0.0.1", self.port, keepalive=30)
        self.client.loop_start()
        assert self._connack.wait(TIMEOUT), "neither CONNACK nor disconnect from the broker"
        return self.connect_reason

    def subscribe(self, topic: str) -> ReasonCode:
        """Subscribe at QoS 1 and return the SUBACK reason code for the filter."""
        _result, mid = self.client.subscribe(topic, qos=1)
        assert self._event(mid).wait(TIMEOUT), f"no SUBACK for {topic}"
        return self._ack_codes[mid][0]

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> ReasonCode:
        """Publish at QoS 1 and return the PUBACK reason code."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        assert self._event(info.mid).wait(TIMEOUT), f"no PUBACK for {topic}"
        return self._ack_codes[info.mid][0]

    def next_message(self, timeout: float = TIMEOUT) -> mqtt.MQTTMessage | None:
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            return None

    def drain(self) -> set[tuple[str, bytes]]:
        """(topic, payload) of everything that arrives until QUIET_PERIOD passes without one."""
        received = set()
        while (message := self.next_message(QUIET_PERIOD)) is not None:
            received.add((message.topic, message.payload))
        return received

    def collect(self, seconds: float) -> list[tuple[str, bytes]]:
        """(topic, payload) of every message already here or arriving in the next ``seconds``,
        duplicates included (``drain`` folds them into one)."""
        received = []
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            try:
                message = self.messages.get(timeout=left) if left > 0 else self.messages.get_nowait()
            except queue.Empty:
                if left <= 0:
                    return received
                continue
            received.append((message.topic, message.payload))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"
