"""A device publishing readings through a site's public MQTT endpoint, for the move's tests: the
load that keeps running while the environment moves, and the record of what the broker
acknowledged (each PUBACK), which is what must not be lost.

The device is real: a client certificate from the site's issuer (cert-manager, as `smartnation
verify` issues one), TLS to the broker's load-balancer address with the broker's hostname checked,
QoS 1. It reconnects by itself (paho's loop) and only a PUBACK counts: a reading published while
disconnected is not acknowledged and so not expected anywhere.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from base64 import b64decode
from dataclasses import dataclass, field
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from smartnation.cli.device_identity import (
    DeviceIdentity,
    broker_issuer,
    issue_device_certificate,
    retire_device_certificate,
)
from smartnation.cli.kubectl import Kubectl
from smartnation.cli.verify_checks import tls_context

TLS_PORT = 8883


@dataclass
class Acknowledged:
    """One reading the broker acknowledged: its timestamp (the store's key with the device id)
    and when the PUBACK came (wall clock, to tell readings from before and after an event)."""

    ts: str
    at: float


@dataclass(eq=False)  # a Thread is a dict key in threading's own tables: hashed by identity
class DeviceLoad(threading.Thread):
    """Publishes one reading every ``interval_s`` on ``city/traffic/<device>/telemetry``."""

    kubectl: Kubectl
    hostname: str
    """The broker's public name (its certificate's), from the stack's ``mqtt_endpoint``."""
    address: str
    """Where it is reached: the stack's ``mqtt_load_balancer_address``."""
    device_id: str
    interval_s: float = 0.2
    acknowledged: list[Acknowledged] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    retained: str = ""
    """The sha256 of the retained reading's payload (the device's first), once published."""

    def __post_init__(self) -> None:
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self._identity: DeviceIdentity | None = None

    @property
    def topic(self) -> str:
        return f"city/traffic/{self.device_id}/telemetry"

    def run(self) -> None:
        issuer = broker_issuer(self.kubectl, self.hostname)
        self._identity = issue_device_certificate(self.kubectl, self.device_id, issuer)
        context = tls_context(_broker_ca(self.kubectl), self.hostname)
        context.load_cert_chain(self._identity.certfile, self._identity.keyfile)
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"move-load-{self.device_id}", protocol=mqtt.MQTTv5)
        client.tls_set_context(context)
        pending: dict[int, str] = {}
        lock = threading.Lock()

        def on_publish(_client, _userdata, mid, reason, _properties) -> None:  # noqa: ANN001
            with lock:
                ts = pending.pop(mid, None)
            if ts is None:
                return
            if reason.is_failure:
                self.refused.append(f"{ts}: {reason}")
            else:
                self.acknowledged.append(Acknowledged(ts, time.time()))

        client.on_publish = on_publish
        client.reconnect_delay_set(1, 5)
        client.connect_async(self.address, TLS_PORT, keepalive=15)
        client.loop_start()
        retain = True  # the first reading is retained: a retained message for the move to carry
        try:
            while not self.stop.wait(self.interval_s):
                if not client.is_connected():
                    continue
                now = datetime.now(UTC)
                ts = now.replace(microsecond=(now.microsecond // 1000) * 1000).isoformat(timespec="milliseconds")
                payload = json.dumps({"ts": ts, "metrics": {"load": 1}})
                with lock:
                    info = client.publish(self.topic, payload, qos=1, retain=retain)
                    pending[info.mid] = ts
                if retain:
                    self.retained = hashlib.sha256(payload.encode()).hexdigest()
                    retain = False
            deadline = time.monotonic() + 10
            while pending and time.monotonic() < deadline:  # the last PUBACKs
                time.sleep(0.1)
        finally:
            client.disconnect()
            client.loop_stop()

    def finish(self) -> None:
        """Stop publishing, wait for the thread, retire the certificate."""
        self.stop.set()
        self.join(30)
        if self._identity is not None:
            retire_device_certificate(self.kubectl, self._identity)


def _broker_ca(kubectl: Kubectl) -> str:
    """``ca.crt`` of the broker's key pair Secret: the issuer the device checks the broker with."""
    environment = kubectl.namespace.rsplit("-", 1)[-1]
    secret = json.loads(kubectl.run("get", "secret", f"{environment}-broker-tls", "-o", "json"))
    return b64decode(secret["data"]["ca.crt"]).decode()
