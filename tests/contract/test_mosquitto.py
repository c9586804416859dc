"""Contract: the mosquitto configuration smartnation renders, run by the real Debian mosquitto 2.x."""

from __future__ import annotations

import base64
import queue
import socket
import ssl
import subprocess
import threading
import uuid
import warnings

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.reasoncodes import ReasonCode

from smartnation.program.daemon_config.mosquitto import hash_password

from .contract_daemons import (
    MOSQUITTO_PUB,
    MOSQUITTO_SUB,
    MQTT_PASSWORDS,
    Broker,
    group_name,
    require_binaries,
    start_broker,
    stop,
    stop_broker,
)

pytestmark = pytest.mark.contract

TIMEOUT = 10.0
# How long "nothing arrives" is watched for. Delivery on loopback takes milliseconds; the
# marker message published afterwards proves the broker had handled the refused one.
QUIET_PERIOD = 1.0


class Client:
    """A synchronous wrapper around paho: each call waits for the broker's answer."""

    def __init__(self, broker: Broker, username: str | None, password: str | None, *, tls: bool = False) -> None:
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
            self.client.tls_set_context(context)
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

    def publish(self, topic: str, payload: bytes) -> ReasonCode:
        """Publish at QoS 1 and return the PUBACK reason code."""
        info = self.client.publish(topic, payload, qos=1)
        assert self._event(info.mid).wait(TIMEOUT), f"no PUBACK for {topic}"
        return self._ack_codes[info.mid][0]

    def next_message(self, timeout: float = TIMEOUT) -> mqtt.MQTTMessage | None:
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def connect(broker: Broker):
    """Factory for connected clients; every client is closed after the test."""
    clients: list[Client] = []

    def _connect(username: str, *, tls: bool = False) -> Client:
        client = Client(broker, username, MQTT_PASSWORDS[username], tls=tls)
        clients.append(client)
        reason = client.connect()
        assert reason is not None and not reason.is_failure, f"{username} was refused: {reason}"
        return client

    yield _connect
    for client in clients:
        client.close()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_device_publishes_and_ingest_receives(connect) -> None:
    ingest = connect("ingest")
    assert not ingest.subscribe("city/+/+/telemetry").is_failure
    parking = connect("parking")
    topic = f"city/parking/{unique('p')}/telemetry"

    assert not parking.publish(topic, b'{"occupied": true}').is_failure

    message = ingest.next_message()
    assert message is not None, "the ingester did not receive the device's telemetry"
    assert (message.topic, message.payload) == (topic, b'{"occupied": true}')


def test_publish_to_a_foreign_topic_is_not_delivered(connect) -> None:
    ingest = connect("ingest")
    assert not ingest.subscribe("city/+/+/telemetry").is_failure
    airq = connect("airq")

    # The air-quality sensor impersonates a parking sensor: mosquitto must drop it.
    foreign = airq.publish(f"city/parking/{unique('p')}/telemetry", b"forged")
    # Then a message it may send; QoS 1 and one connection keep the two in order.
    own_topic = f"city/air/{unique('a')}/telemetry"
    assert not airq.publish(own_topic, b"marker").is_failure

    first = ingest.next_message()
    assert first is not None and first.payload == b"marker", "the forged message was delivered"
    assert ingest.next_message(QUIET_PERIOD) is None
    assert foreign.is_failure, f"MQTT 5 PUBACK should say the publish was not authorised, got {foreign}"


def test_command_flows_to_device_but_device_cannot_forge_commands(connect) -> None:
    parking = connect("parking")
    device = unique("p")
    assert not parking.subscribe(f"city/parking/{device}/commands").is_failure
    ingest = connect("ingest")
    other_device = connect("parking")
    assert not other_device.subscribe(f"city/parking/{device}/commands").is_failure

    # A device may read commands but not write them, even on its own subtree.
    assert parking.publish(f"city/parking/{device}/commands", b"forged").is_failure
    assert not ingest.publish(f"city/parking/{device}/commands", b"open-barrier").is_failure

    message = other_device.next_message()
    assert message is not None and message.payload == b"open-barrier"
    assert other_device.next_message(QUIET_PERIOD) is None


def test_subscription_outside_the_acl_delivers_nothing_forbidden(connect) -> None:
    # mosquitto's ACL file does not refuse a SUBSCRIBE (the SUBACK grants it); it checks
    # `topic read` for every message it would deliver. So assert on what arrives.
    parking = connect("parking")
    for pattern in ("city/+/+/telemetry", "#"):
        parking.subscribe(pattern)
    airq = connect("airq")
    ingest = connect("ingest")

    assert not airq.publish(f"city/air/{unique('a')}/telemetry", b"other device's data").is_failure
    command_topic = f"city/parking/{unique('p')}/commands"
    assert not ingest.publish(command_topic, b"marker").is_failure

    received = [parking.next_message()]
    while (message := parking.next_message(QUIET_PERIOD)) is not None:
        received.append(message)
    assert received[0] is not None, "the command the device may read did not arrive"
    # "#" and the commands filter overlap, so the permitted command may arrive twice.
    assert {(m.topic, m.payload) for m in received} == {(command_topic, b"marker")}


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
@pytest.mark.parametrize(
    ("username", "password"),
    [("parking", "not-the-password"), ("nobody", "whatever"), (None, None)],
    ids=["wrong-password", "unknown-user", "anonymous"],
)
def test_bad_credentials_are_refused(broker: Broker, tls: bool, username: str | None, password: str | None) -> None:
    client = Client(broker, username, password, tls=tls)
    try:
        reason = client.connect()
    finally:
        client.close()
    assert reason is not None and reason.is_failure
    assert reason.getName() in {"Bad user name or password", "Not authorized"}, reason


def test_tls_listener_with_the_ca(connect) -> None:
    ingest = connect("ingest", tls=True)
    assert not ingest.subscribe("city/+/+/telemetry").is_failure
    airq = connect("airq", tls=True)
    topic = f"city/air/{unique('a')}/telemetry"
    assert not airq.publish(topic, b"pm10=12").is_failure
    message = ingest.next_message()
    assert message is not None and message.payload == b"pm10=12"
    assert isinstance(ingest.client.socket(), ssl.SSLSocket)
    assert ingest.client.socket().version() in {"TLSv1.2", "TLSv1.3"}


def test_tls_listener_refuses_tls_below_1_2(broker: Broker) -> None:
    context = ssl.create_default_context(cafile=str(broker.cafile))
    # The client offers TLS 1.0-1.1 only; SECLEVEL=0 lets OpenSSL 3 speak them at all (checked
    # by hand against `openssl s_server -tls1_1`). Debian's OpenSSL would refuse TLS 1.1 on
    # its own too, but with an internal_error alert; the protocol_version alert is what the
    # broker's `tls_version tlsv1.2` minimum sends.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    context.set_ciphers("DEFAULT:@SECLEVEL=0")

    with (
        socket.create_connection(("127.0.0.1", broker.tls_port), timeout=TIMEOUT) as raw,
        pytest.raises(ssl.SSLError) as refused,
    ):
        context.wrap_socket(raw, server_hostname="127.0.0.1")
    assert "PROTOCOL_VERSION" in str(refused.value), refused.value


def test_plain_mqtt_is_refused_on_the_tls_listener(broker: Broker) -> None:
    client = Client(broker, "ingest", MQTT_PASSWORDS["ingest"])
    client.port = broker.tls_port
    try:
        reason = client.connect()
    finally:
        client.close()
    assert reason is None, f"a cleartext CONNECT on the TLS port got a CONNACK: {reason}"


def test_mosquitto_cli_clients_over_tls(broker: Broker) -> None:
    """The Debian clients too: mosquitto_sub receives what mosquitto_pub sends over TLS."""
    require_binaries(MOSQUITTO_PUB, MOSQUITTO_SUB)
    tls = ["-h", "127.0.0.1", "-p", str(broker.tls_port), "--cafile", str(broker.cafile)]
    topic = f"city/air/{unique('a')}/telemetry"
    # Retained, so the subscriber gets it whenever it subscribes; no race with the publisher.
    pub = subprocess.run(
        [MOSQUITTO_PUB, *tls, "-u", "airq", "-P", MQTT_PASSWORDS["airq"], "-t", topic, "-m", "no2=7", "-q", "1",
         "-r"],
        capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip
    assert pub.returncode == 0, pub.stderr
    sub = subprocess.run(
        [MOSQUITTO_SUB, *tls, "-u", "ingest", "-P", MQTT_PASSWORDS["ingest"], "-t", topic, "-C", "1", "-W", "10"],
        capture_output=True, text=True, timeout=TIMEOUT + 5,
    )  # fmt: skip
    assert (sub.returncode, sub.stdout.strip()) == (0, "no2=7"), sub.stderr

    anonymous = subprocess.run(
        [MOSQUITTO_PUB, *tls, "-t", topic, "-m", "x"], capture_output=True, text=True, timeout=TIMEOUT
    )
    assert anonymous.returncode != 0
    assert "not authori" in anonymous.stderr.lower(), anonymous.stderr


def test_password_hash_matches_mosquitto_passwd(tmp_path) -> None:
    """Same salt, same password: our hash is byte for byte what mosquitto_passwd writes."""
    require_binaries("/usr/bin/mosquitto_passwd")
    passwd = tmp_path / "passwd"
    password = "s3cret with spaces:and:colons"
    subprocess.run(["/usr/bin/mosquitto_passwd", "-c", "-b", str(passwd), "probe", password], check=True)
    username, encoded = passwd.read_text().strip().split(":", 1)
    _empty, algorithm, iterations, salt_b64, _digest = encoded.split("$")
    assert (username, algorithm) == ("probe", "7")
    assert hash_password(password, salt=base64.b64decode(salt_b64), iterations=int(iterations)) == encoded


# --------------------------------------------------------------------------- host state (testinfra)


def test_broker_runs_as_the_unprivileged_user(broker: Broker, testinfra_host) -> None:
    process = testinfra_host.process.get(pid=broker.proc.pid)
    assert process.comm == "mosquitto"
    assert process.user == broker.run_as.user
    assert process.ruser == broker.run_as.user
    assert process.user != "root"


def test_broker_listens_only_on_loopback_at_the_configured_ports(broker: Broker, testinfra_host) -> None:
    for port in (broker.plain_port, broker.tls_port):
        assert testinfra_host.socket(f"tcp://127.0.0.1:{port}").is_listening
        assert not testinfra_host.socket(f"tcp://0.0.0.0:{port}").is_listening
        assert not testinfra_host.socket(f"tcp://:::{port}").is_listening
    ours = {str(broker.plain_port), str(broker.tls_port)}
    listening = [s for s in testinfra_host.socket.get_listening_sockets() if s.rsplit(":", 1)[-1] in ours]
    assert sorted(listening) == sorted(f"tcp://127.0.0.1:{port}" for port in ours)


def test_password_file_is_not_world_readable(broker: Broker, testinfra_host) -> None:
    password_file = testinfra_host.file(str(broker.password_file))
    assert password_file.mode in (0o600, 0o640)
    assert password_file.mode & 0o007 == 0
    assert password_file.group in {broker.run_as.user, group_name(broker.run_as.gid)}
    # And no cleartext in it: only $7$ hashes.
    assert all(line.split(":", 1)[1].startswith("$7$101$") for line in password_file.content_string.splitlines())
    assert not any(password in password_file.content_string for password in MQTT_PASSWORDS.values())


def test_started_as_root_it_drops_to_the_mosquitto_user(testinfra_host) -> None:
    """No `user` directive in our config: as root, mosquitto must still drop to `mosquitto`,
    read the password and ACL files afterwards, and write its persistence file as that user."""
    root_broker = start_broker(run_as_root=True)
    try:
        process = testinfra_host.process.get(pid=root_broker.proc.pid)
        assert process.user == "mosquitto"
        assert process.ruser == "mosquitto"

        client = Client(root_broker, "airq", MQTT_PASSWORDS["airq"])
        try:
            reason = client.connect()
            assert reason is not None and not reason.is_failure, reason
            assert not client.publish(f"city/air/{unique('a')}/telemetry", b"x").is_failure
        finally:
            client.close()

        stop(root_broker.proc)
        assert root_broker.proc.returncode == 0, root_broker.log.read_text()
        database = testinfra_host.file(str(root_broker.workdir / "data" / "mosquitto.db"))
        assert database.exists, "persistence true, but no mosquitto.db written on shutdown"
        assert database.user == "mosquitto"
        log = root_broker.log.read_text()
        assert "Error" not in log, log
    finally:
        stop_broker(root_broker)
