"""One paho-mqtt client per broker pod, reconnecting by itself (docs/broker-ha.md).

"One broker pod unreachable" is a normal state: each connection retries on its own, and the
service keeps using the others. MQTT 5 throughout: the broker then honours the client's Receive
Maximum, which bounds how many unacknowledged QoS 1 messages it sends us (the ingest's window).
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from service_common.settings import BrokerUrl

log = logging.getLogger(__name__)

MessageHandler = Callable[["BrokerConnection", mqtt.MQTTMessage], None]


@dataclass(frozen=True)
class Subscription:
    topic_filter: str
    qos: int = 1


class BrokerConnection:
    """A client for one broker; ``handler`` runs on this connection's network thread."""

    def __init__(
        self,
        url: BrokerUrl,
        *,
        client_id: str,
        username: str,
        password: str,
        subscriptions: Sequence[Subscription] = (),
        handler: MessageHandler | None = None,
        manual_ack: bool = False,
        receive_maximum: int = 1000,
        keepalive_s: int = 15,
        session_expiry_s: int = 0,
    ) -> None:
        self.url = url
        self.subscriptions = tuple(subscriptions)
        self.connected = threading.Event()
        self.last_error = "not connected yet"
        self._handler = handler
        self._stopping = False
        self._keepalive = keepalive_s
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=manual_ack,
        )
        self._client.username_pw_set(username, password)
        self._client.reconnect_delay_set(min_delay=1, max_delay=15)
        # Outgoing QoS 1 publishes we may have in flight (commands); incoming is Receive Maximum.
        self._client.max_inflight_messages_set(100)
        self._client.max_queued_messages_set(10000)
        if url.tls:
            self._client.tls_set(cert_reqs=ssl.CERT_REQUIRED)
        self._connect_properties = Properties(PacketTypes.CONNECT)
        self._connect_properties.ReceiveMaximum = receive_maximum
        # A session that outlives the connection (session_expiry_s > 0) is resumed by the next
        # connection with the same client id: the broker then resends what was not acknowledged.
        self._session_expiry_s = session_expiry_s
        if session_expiry_s:
            self._connect_properties.SessionExpiryInterval = session_expiry_s
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message

    @property
    def name(self) -> str:
        return f"{self.url.host}:{self.url.port}"

    def start(self) -> None:
        """Connect in the background; paho's loop thread reconnects after any loss."""
        self._client.connect_async(
            self.url.host, self.url.port, keepalive=self._keepalive, clean_start=not self._session_expiry_s,
            properties=self._connect_properties,
        )  # fmt: skip
        self._client.loop_start()

    def stop(self) -> None:
        """Disconnect and end the session: after a clean stop nothing is left unacknowledged, and a
        session kept for a client id that never returns would collect messages for nobody."""
        self._stopping = True
        properties = Properties(PacketTypes.DISCONNECT)
        if self._session_expiry_s:
            properties.SessionExpiryInterval = 0
        self._client.disconnect(properties=properties)
        self._client.loop_stop()
        self.connected.clear()

    def unsubscribe_all(self) -> None:
        """Stop new deliveries (before a drain) while keeping the session to send acks."""
        if self.subscriptions and self.connected.is_set():
            self._client.unsubscribe([s.topic_filter for s in self.subscriptions])

    def ack(self, mid: int, qos: int) -> None:
        """Acknowledge a message received with manual_ack (after it is stored)."""
        self._client.ack(mid, qos)

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, timeout_s: float = 5.0) -> bool:
        """Publish and wait for the broker's PUBACK; False when not connected or no answer in time."""
        if not self.connected.is_set():
            return False
        info = self._client.publish(topic, payload, qos=qos, retain=False)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            self.last_error = mqtt.error_string(info.rc)
            return False
        try:
            info.wait_for_publish(timeout=timeout_s)
        except (RuntimeError, ValueError) as error:
            self.last_error = str(error)
            return False
        return info.is_published()

    def status(self) -> str:
        return "connected" if self.connected.is_set() else f"disconnected ({self.last_error})"

    # paho callbacks (network thread) ---------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, _userdata, _flags, reason_code, _properties) -> None:  # noqa: ANN001
        if reason_code.is_failure:
            self.last_error = f"connect refused: {reason_code}"
            log.warning("broker refused the connection", extra={"broker": self.name, "reason": str(reason_code)})
            return
        if self.subscriptions:
            client.subscribe([(s.topic_filter, s.qos) for s in self.subscriptions])
        self.connected.set()
        log.info("connected to broker", extra={"broker": self.name})

    def _on_disconnect(self, _client, _userdata, _flags, reason_code, _properties) -> None:  # noqa: ANN001
        was_connected = self.connected.is_set()
        self.connected.clear()
        self.last_error = f"disconnected: {reason_code}"
        if was_connected and not self._stopping:
            log.warning("lost the broker; reconnecting", extra={"broker": self.name, "reason": str(reason_code)})

    def _on_message(self, _client, _userdata, message: mqtt.MQTTMessage) -> None:  # noqa: ANN001
        if self._handler is not None:
            self._handler(self, message)


def client_id(service: str, index: int) -> str:
    """Unique per process and broker, for clean sessions."""
    return f"{service}-{uuid.uuid4().hex[:12]}-{index}"


def stable_client_id(service: str, index: int) -> str:
    """The same for every start of the container in one pod (the pod name is the hostname), so a
    restarted container resumes its sessions. Two processes on one host must set HOSTNAME apart."""
    host = os.environ.get("HOSTNAME") or socket.gethostname()
    return f"{service}-{host}-{index}"[:128]
