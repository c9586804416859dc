"""Revoking a device on Debian's real mosquitto (issue 11, device certificates cannot be revoked).

The device ACL file gets a deny-all block for the revoked id (``render_device_acl_file``) and
mosquitto re-reads it on SIGHUP, what the broker Pod's reloader sends: the revoked device's
certificate still completes the handshake (no CRL), but from then on its publishes reach nobody
and its subscriptions are refused, while every other device keeps working."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator

import pytest
from paho.mqtt.reasoncodes import ReasonCode

from smartnation.program.daemon_config.mosquitto import render_device_acl_file
from tests.contract.contract_daemons import MQTT_DEVICE_CLASSES, MQTT_PASSWORDS, Broker, start_broker, stop_broker
from tests.contract.test_mosquitto import Client

pytestmark = pytest.mark.contract

NOT_AUTHORIZED = 0x87


@pytest.fixture(scope="module")
def own_broker() -> Iterator[Broker]:
    """A broker of its own: this module rewrites its device ACL file."""
    running = start_broker()
    yield running
    stop_broker(running)


def revoke(broker: Broker, *device_ids: str) -> None:
    (broker.workdir / "device-acl").write_text(render_device_acl_file(MQTT_DEVICE_CLASSES, revoked=device_ids))
    os.kill(broker.proc.pid, signal.SIGHUP)
    # mosquitto handles the signal in its main loop: wait until it logged the reload.
    deadline = time.monotonic() + 10
    while b"Reloading config" not in broker.log.read_bytes()[-4000:] and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)


def connected(broker: Broker, clients: list[Client], username: str | None = None, device: str | None = None) -> Client:
    if device is not None:
        client = Client(broker, None, None, tls=True, cert=broker.device_certificate(device))
    else:
        client = Client(broker, username, MQTT_PASSWORDS[str(username)])
    clients.append(client)
    reason = client.connect()
    assert reason is not None and not reason.is_failure, reason
    return client


def test_a_revoked_device_is_refused_while_the_others_keep_working(own_broker: Broker) -> None:
    kept, lost = f"p-kept-{uuid.uuid4().hex[:6]}", f"p-lost-{uuid.uuid4().hex[:6]}"
    clients: list[Client] = []
    try:
        ingest = connected(own_broker, clients, "ingest")
        assert ingest.subscribe("city/parking/+/telemetry") == ReasonCode(9, identifier=1)
        registry = connected(own_broker, clients, "registry")
        kept_device = connected(own_broker, clients, device=kept)
        lost_device = connected(own_broker, clients, device=lost)
        # Before: both publish and both receive their commands.
        for device_id, client in ((kept, kept_device), (lost, lost_device)):
            assert not client.subscribe(f"city/parking/{device_id}/commands").is_failure
            assert not client.publish(f"city/parking/{device_id}/telemetry", b"before").is_failure
        assert {(m.topic, m.payload) for m in (ingest.next_message(), ingest.next_message())} == {
            (f"city/parking/{kept}/telemetry", b"before"),
            (f"city/parking/{lost}/telemetry", b"before"),
        }

        revoke(own_broker, lost)

        # The connected revoked device: its publish is refused and reaches nobody, and what is
        # published on its command topic is no longer delivered to it (mosquitto 2.0 grants any
        # SUBSCRIBE and checks read access at each delivery).
        assert lost_device.publish(f"city/parking/{lost}/telemetry", b"after").value == NOT_AUTHORIZED
        # A new connection with the revoked certificate gets no further.
        again = connected(own_broker, clients, device=lost)
        assert again.publish(f"city/parking/{lost}/telemetry", b"again").value == NOT_AUTHORIZED
        again.subscribe(f"city/parking/{lost}/commands")
        assert registry.publish(f"city/parking/{lost}/commands", b"reboot").value == 0
        # The other device keeps publishing and receiving its commands.
        assert not kept_device.publish(f"city/parking/{kept}/telemetry", b"after").is_failure
        assert registry.publish(f"city/parking/{kept}/commands", b"ping").value == 0
        kept_command = kept_device.next_message()
        assert kept_command is not None and kept_command.payload == b"ping"
        assert ingest.drain() == {(f"city/parking/{kept}/telemetry", b"after")}
        assert lost_device.drain() == set()
        assert again.drain() == set()
    finally:
        for client in clients:
            client.close()
        revoke(own_broker)


def test_revocations_are_device_ids() -> None:
    for bad in ("a/b", "+", "#", "two words", ""):
        with pytest.raises(ValueError):
            render_device_acl_file(MQTT_DEVICE_CLASSES, revoked=(bad,))
    with pytest.raises(ValueError, match="listed twice"):
        render_device_acl_file(MQTT_DEVICE_CLASSES, revoked=("p-1", "p-1"))
    assert "user p-1\ntopic deny #\n" in render_device_acl_file(MQTT_DEVICE_CLASSES, revoked=("p-1",))
