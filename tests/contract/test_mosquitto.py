"""Contract: the mosquitto configuration smartnation renders, run by the real Debian mosquitto 2.x."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from smartnation.program.daemon_config.mosquitto import (
    DeviceClass,
    hash_password,
    render_acl_file,
    render_device_acl_file,
    render_mosquitto_conf,
    render_password_file,
    render_tls_reloader,
)

from .contract_daemons import (
    MOSQUITTO,
    MOSQUITTO_PUB,
    MOSQUITTO_SUB,
    MQTT_DEVICE_CLASSES,
    MQTT_INTERNAL_CLASSES,
    MQTT_PASSWORDS,
    OPENSSL,
    Broker,
    RunAs,
    daemon_user,
    free_port,
    group_name,
    make_client_certificate,
    make_tls_material,
    make_workdir,
    require_binaries,
    start_broker,
    stop,
    stop_broker,
    wait_for_ports,
)
from .mqtt_client import QUIET_PERIOD, TIMEOUT, Client, unique

pytestmark = pytest.mark.contract

DASH = "/usr/bin/dash"


@pytest.fixture
def connect(broker: Broker):
    """Factory for connected internal clients (password, plain listener); closed after the test."""
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


@pytest.fixture
def device(broker: Broker):
    """Factory for connected devices: each with its own certificate, on the TLS listener."""
    clients: list[Client] = []

    def _device(device_id: str) -> Client:
        client = Client(broker, None, None, tls=True, cert=broker.device_certificate(device_id))
        clients.append(client)
        reason = client.connect()
        assert reason is not None and not reason.is_failure, f"device {device_id} was refused: {reason}"
        return client

    yield _device
    for client in clients:
        client.close()


def test_device_publishes_and_ingest_receives(connect, device) -> None:
    ingest = connect("ingest")
    assert not ingest.subscribe("city/+/+/telemetry").is_failure
    device_id = unique("p")
    parking = device(device_id)
    topic = f"city/parking/{device_id}/telemetry"

    assert not parking.publish(topic, b'{"occupied": true}').is_failure

    message = ingest.next_message()
    assert message is not None, "the ingester did not receive the device's telemetry"
    assert (message.topic, message.payload) == (topic, b'{"occupied": true}')


def test_a_backlog_beyond_the_in_flight_window_is_kept_whole(broker: Broker, device) -> None:
    """An ingest that falls behind loses nothing a device was acknowledged for.

    The ingest acknowledges a reading only once it is stored, so under load its in-flight window
    fills and the broker queues the rest; mosquitto's default queue (1,000) dropped everything
    beyond it for good (1,020 of 3,000 arrived). The subscriber here holds its acks with a small
    window until every reading was published and acknowledged to the device, then takes them all."""
    readings = 3_000
    received: set[bytes] = set()
    held: list[tuple[int, int]] = []
    acking = threading.Event()
    lock = threading.Lock()
    ingest = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=unique("ingest"), protocol=mqtt.MQTTv5, manual_ack=True
    )
    ingest.username_pw_set("ingest", MQTT_PASSWORDS["ingest"])

    def on_message(client, _userdata, message) -> None:
        with lock:
            received.add(message.payload)
            if acking.is_set():
                client.ack(message.mid, message.qos)
            else:
                held.append((message.mid, message.qos))

    subscribed = threading.Event()
    ingest.on_message = on_message
    ingest.on_subscribe = lambda *_args: subscribed.set()
    window = Properties(PacketTypes.CONNECT)
    window.ReceiveMaximum = 20
    ingest.tls_set_context(ssl.create_default_context(cafile=str(broker.cafile)))
    ingest.connect("127.0.0.1", broker.plain_port, keepalive=30, properties=window)
    ingest.loop_start()
    try:
        deadline = time.monotonic() + TIMEOUT
        while not ingest.is_connected():
            assert time.monotonic() < deadline, "the ingest did not connect"
            time.sleep(0.05)
        ingest.subscribe("city/+/+/telemetry", qos=1)
        assert subscribed.wait(TIMEOUT), "no SUBACK for the ingest"
        device_id = unique("q")
        sensor = device(device_id)
        topic = f"city/parking/{device_id}/telemetry"
        for n in range(readings):
            reason = sensor.publish(topic, str(n).encode())
            assert not reason.is_failure, f"reading {n} was refused: {reason}"
        with lock:
            assert len(received) < readings, "the window did not fill: this test would prove nothing"
            acking.set()
            for held_mid, qos in held:
                ingest.ack(held_mid, qos)
        seen, deadline = -1, time.monotonic() + 60
        while len(received) != seen and len(received) < readings and time.monotonic() < deadline:
            seen = len(received)
            time.sleep(1.5)
        assert len(received) == readings, f"{readings - len(received)} acknowledged readings were dropped"
    finally:
        ingest.disconnect()
        ingest.loop_stop()


def test_a_device_cannot_publish_as_another_device(connect, device) -> None:
    ingest = connect("ingest")
    assert not ingest.subscribe("city/+/+/telemetry").is_failure
    a, b = unique("p"), unique("p")
    device_a = device(a)

    # Device A presents its own certificate and publishes a reading as device B: refused.
    forged = device_a.publish(f"city/parking/{b}/telemetry", b"forged")
    # Then a message it may send; QoS 1 and one connection keep the two in order.
    own_topic = f"city/parking/{a}/telemetry"
    assert not device_a.publish(own_topic, b"marker").is_failure

    first = ingest.next_message()
    assert first is not None and (first.topic, first.payload) == (own_topic, b"marker"), "the forged reading arrived"
    assert ingest.next_message(QUIET_PERIOD) is None
    assert forged.is_failure, f"MQTT 5 PUBACK should say the publish was not authorised, got {forged}"


def test_a_device_reads_its_own_commands_only_and_cannot_forge_any(connect, device) -> None:
    a, b = unique("p"), unique("p")
    device_a, device_b = device(a), device(b)
    assert not device_a.subscribe(f"city/parking/{a}/commands").is_failure
    # B asks for A's commands, every device's commands and everything: the SUBACKs may grant
    # them (mosquitto checks `read` per delivered message), so what arrives is what counts.
    for pattern in (f"city/parking/{a}/commands", "city/+/+/commands", "#"):
        device_b.subscribe(pattern)
    registry = connect("registry")

    # A device may read commands but not write them, not even on its own topic.
    assert device_a.publish(f"city/parking/{a}/commands", b"forged").is_failure
    assert device_b.publish(f"city/parking/{a}/commands", b"forged").is_failure
    assert not registry.publish(f"city/parking/{a}/commands", b"open-barrier").is_failure
    assert not registry.publish(f"city/parking/{b}/commands", b"close-barrier").is_failure

    assert device_a.drain() == {(f"city/parking/{a}/commands", b"open-barrier")}
    # B gets its own command (through "#" and the wildcard, so possibly twice), never A's.
    assert device_b.drain() == {(f"city/parking/{b}/commands", b"close-barrier")}


def test_a_device_cannot_read_other_devices_telemetry(device) -> None:
    a, b = unique("p"), unique("a")
    device_a, device_b = device(a), device(b)
    for pattern in ("city/+/+/telemetry", "#"):
        device_a.subscribe(pattern)
    assert not device_b.publish(f"city/air/{b}/telemetry", b"pm10=3").is_failure
    assert device_a.drain() == set()


def test_a_certificate_named_after_an_internal_client_gets_a_devices_rights(connect, device) -> None:
    """The TLS listener's ACL has patterns only: a certificate whose common name is the
    registry's or the ingest's username is confined to topics carrying that name."""
    victim = unique("p")
    target = device(victim)
    assert not target.subscribe(f"city/parking/{victim}/commands").is_failure
    fake_registry, fake_ingest = device("registry"), device("ingest")
    assert fake_ingest.subscribe("city/+/+/telemetry") is not None

    assert fake_registry.publish(f"city/parking/{victim}/commands", b"open-barrier").is_failure
    assert not target.publish(f"city/parking/{victim}/telemetry", b"x").is_failure
    assert target.drain() == set()
    assert fake_ingest.drain() == set()


@pytest.mark.parametrize(
    ("username", "password"),
    [("ingest", "not-the-password"), ("nobody", "whatever"), ("parking", "parking-pw-1"), (None, None)],
    ids=["wrong-password", "unknown-user", "device-class-name", "anonymous"],
)
def test_bad_credentials_are_refused_on_the_plain_listener(
    broker: Broker, username: str | None, password: str | None
) -> None:
    client = Client(broker, username, password)
    try:
        reason = client.connect()
    finally:
        client.close()
    assert reason is not None and reason.is_failure
    assert reason.getName() in {"Bad user name or password", "Not authorized"}, reason


def test_plain_mqtt_is_refused_on_the_internal_listener(broker: Broker) -> None:
    """The internal listener serves TLS only: the ingest's right password sent in the clear gets
    no CONNACK (the password never reaches the ACL check), and the same login over TLS is admitted."""
    plain = Client(broker, "ingest", MQTT_PASSWORDS["ingest"], internal_tls=False)
    try:
        try:
            reason = plain.connect()
        except OSError:  # the broker may reset the socket as it reads a non-TLS first packet
            reason = None
    finally:
        plain.close()
    assert reason is None, f"plain MQTT got a CONNACK ({reason}) on the internal listener"
    over_tls = Client(broker, "ingest", MQTT_PASSWORDS["ingest"])
    try:
        assert not over_tls.connect().is_failure
    finally:
        over_tls.close()


def test_the_internal_listener_is_verified_against_the_ca(broker: Broker, tmp_path: Path) -> None:
    """A client that trusts another CA refuses the broker's certificate, before any password."""
    other_ca, _crt, _key = make_tls_material(tmp_path, None)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"contract-{uuid.uuid4().hex[:12]}")
    client.username_pw_set("ingest", MQTT_PASSWORDS["ingest"])
    client.tls_set_context(ssl.create_default_context(cafile=str(other_ca)))
    with pytest.raises(ssl.SSLCertVerificationError):
        client.connect("127.0.0.1", broker.plain_port, keepalive=30)


def _tls_refused(broker: Broker, username: str | None, password: str | None, cert=None) -> ssl.SSLError | None:
    """The handshake error when the TLS listener refuses the client before MQTT, else None."""
    client = Client(broker, username, password, tls=True, cert=cert)
    try:
        client.connect()
    except ssl.SSLError as error:
        return error
    except OSError as error:  # the broker may close the socket as the client finishes its part
        return ssl.SSLError(str(error))
    finally:
        client.close()
    return None if client.connect_reason is not None else ssl.SSLError("closed without CONNACK")


@pytest.mark.parametrize("username", sorted(MQTT_PASSWORDS), ids=lambda name: f"{name}-password")
def test_an_internal_credential_is_refused_on_the_tls_listener(broker: Broker, username: str) -> None:
    """The registry's password commands every device on the plain listener; on the TLS listener
    it is worth nothing: no client certificate, no connection."""
    refused = _tls_refused(broker, username, MQTT_PASSWORDS[username])
    assert refused is not None, f"{username}'s password got a CONNACK on the TLS listener"
    # And the same password is good on the plain listener (the refusal is the listener's).
    plain = Client(broker, username, MQTT_PASSWORDS[username])
    try:
        assert not plain.connect().is_failure
    finally:
        plain.close()


def test_a_certificate_from_another_ca_is_refused(broker: Broker, tmp_path: Path) -> None:
    other = make_workdir("smartnation-other-ca-")
    try:
        ca, _crt, _key = make_tls_material(other, None)
        cert = make_client_certificate(other / "devices", unique("p"), ca, other / "ca.key")
        assert _tls_refused(broker, None, None, cert=cert) is not None
    finally:
        shutil.rmtree(other, ignore_errors=True)


def test_tls_listener_with_the_ca(connect, device) -> None:
    ingest = connect("ingest")
    assert not ingest.subscribe("city/+/+/telemetry").is_failure
    device_id = unique("a")
    airq = device(device_id)
    topic = f"city/air/{device_id}/telemetry"
    assert not airq.publish(topic, b"pm10=12").is_failure
    message = ingest.next_message()
    assert message is not None and message.payload == b"pm10=12"
    assert isinstance(airq.client.socket(), ssl.SSLSocket)
    assert airq.client.socket().version() in {"TLSv1.2", "TLSv1.3"}


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


def test_mosquitto_cli_clients_with_a_device_certificate(broker: Broker) -> None:
    """The Debian clients too: mosquitto_sub (ingest, plain) receives what mosquitto_pub sends
    with a device's certificate over TLS; without a certificate mosquitto_pub gets nowhere."""
    require_binaries(MOSQUITTO_PUB, MOSQUITTO_SUB)
    device_id = unique("a")
    crt, key = broker.device_certificate(device_id)
    tls = ["-h", "127.0.0.1", "-p", str(broker.tls_port), "--cafile", str(broker.cafile)]
    topic = f"city/air/{device_id}/telemetry"
    # Retained, so the subscriber gets it whenever it subscribes; no race with the publisher.
    pub = subprocess.run(
        [MOSQUITTO_PUB, *tls, "--cert", str(crt), "--key", str(key), "-t", topic, "-m", "no2=7", "-q", "1", "-r"],
        capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip
    assert pub.returncode == 0, pub.stderr
    plain = ["-h", "127.0.0.1", "-p", str(broker.plain_port), "--cafile", str(broker.cafile)]
    sub = subprocess.run(
        [MOSQUITTO_SUB, *plain, "-u", "ingest", "-P", MQTT_PASSWORDS["ingest"], "-t", topic, "-C", "1", "-W", "10"],
        capture_output=True, text=True, timeout=TIMEOUT + 5,
    )  # fmt: skip
    assert (sub.returncode, sub.stdout.strip()) == (0, "no2=7"), sub.stderr

    without_certificate = subprocess.run(
        [MOSQUITTO_PUB, *tls, "-u", "registry", "-P", MQTT_PASSWORDS["registry"], "-t", topic, "-m", "x"],
        capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip
    assert without_certificate.returncode != 0, without_certificate.stdout


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

        client = Client(root_broker, "registry", MQTT_PASSWORDS["registry"])
        try:
            reason = client.connect()
            assert reason is not None and not reason.is_failure, reason
            assert not client.publish(f"city/air/{unique('a')}/commands", b"x").is_failure
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


# --------------------------------------------------------------------------- certificate renewal


class SecretVolume:
    """A directory laid out as the kubelet lays out a mounted Secret: each version in its own
    ``..<timestamp>`` directory, ``..data`` a symlink to the current one and every key a symlink
    through ``..data``. An update writes the new version beside the old and renames a new
    ``..data`` over the old one: readers see the old files or the new ones, never a mix."""

    def __init__(self, root: Path, group: int | None) -> None:
        self.root, self.group, self.version = root, group, 0
        root.mkdir(mode=0o755)

    def write(self, files: dict[str, Path]) -> None:
        self.version += 1
        version = self.root / f"..2026_11_29_00_00_{self.version:02d}.000000001"
        version.mkdir(mode=0o755)
        for key, source in files.items():
            target = version / key
            target.write_bytes(source.read_bytes())
            target.chmod(0o640)
            if self.group is not None:
                os.chown(target, 0, self.group)
        staged = self.root / "..data_tmp"
        staged.symlink_to(version.name)
        staged.rename(self.root / "..data")
        for key in files:
            link = self.root / key
            if not link.is_symlink():
                link.symlink_to(f"..data/{key}")


@dataclass
class RenewableBroker:
    proc: subprocess.Popen
    tls_port: int
    volume: SecretVolume
    workdir: Path
    run_as: RunAs
    plain_port: int = 0

    def served_fingerprint(self) -> str:
        """SHA-256 of the certificate the TLS listener presents in a fresh handshake."""
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with (
            socket.create_connection(("127.0.0.1", self.tls_port), timeout=TIMEOUT) as raw,
            context.wrap_socket(raw) as tls,
        ):
            return hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest()

    def new_key_pair(self, name: str, *, new_ca: bool = False) -> dict[str, Path]:
        """A new key and certificate signed by the first version's CA, as cert-manager's renewal
        (rotationPolicy Always) gives; with ``new_ca`` a new CA too (the site rotated its CA)."""
        directory = self.workdir / name
        directory.mkdir(mode=0o755)
        ca, crt, key = make_tls_material(directory, self.volume.group)
        if not new_ca:
            first = self.workdir / "v1"
            subprocess.run(
                [OPENSSL, "x509", "-req", "-in", str(directory / "server.csr"), "-CA", str(first / "ca.crt"),
                 "-CAkey", str(first / "ca.key"), "-CAcreateserial", "-days", "1",
                 "-extfile", str(directory / "server.ext"), "-out", str(crt)],
                check=True, capture_output=True,
            )  # fmt: skip
            ca = first / "ca.crt"
        return {"tls.crt": crt, "tls.key": key, "ca.crt": ca}


def fingerprint_of(pem: Path) -> str:
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem.read_text())).hexdigest()


@pytest.fixture
def renewable_broker() -> Iterator[RenewableBroker]:
    """Mosquitto on the config the program renders, its key pair in a Secret-like volume."""
    require_binaries(OPENSSL, DASH)
    run_as = daemon_user("mosquitto")
    group = run_as.gid if os.geteuid() == 0 else None
    workdir = make_workdir("smartnation-mosquitto-renewal-")
    data = workdir / "data"
    data.mkdir(mode=0o700)
    run_as.chown(data)
    volume = SecretVolume(workdir / "tls", group)
    broker = RenewableBroker(None, free_port(), volume, workdir, run_as)  # type: ignore[arg-type]
    volume.write(broker.new_key_pair("v1"))
    plain_port = broker.plain_port = free_port()
    password_file, acl_file, conf = workdir / "passwd", workdir / "acl", workdir / "mosquitto.conf"
    device_acl_file = workdir / "device-acl"
    password_file.write_text(render_password_file(MQTT_PASSWORDS))
    acl_file.write_text(render_acl_file(MQTT_INTERNAL_CLASSES))
    device_acl_file.write_text(render_device_acl_file(MQTT_DEVICE_CLASSES))
    conf.write_text(
        render_mosquitto_conf(
            plain_port=plain_port, tls_port=broker.tls_port, certfile=str(volume.root / "tls.crt"),
            keyfile=str(volume.root / "tls.key"), cafile=str(volume.root / "ca.crt"),
            password_file=str(password_file), acl_file=str(acl_file), device_acl_file=str(device_acl_file),
            persistence_dir=str(data), internal_tls=True, bind_address="127.0.0.1",
        )
    )  # fmt: skip
    for path in (password_file, acl_file, device_acl_file):
        path.chmod(0o640)
        if group is not None:
            os.chown(path, 0, group)
    log = workdir / "mosquitto.log"
    with log.open("wb") as handle:
        broker.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(conf)], stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            **run_as.popen_kwargs(),
        )  # fmt: skip
    try:
        wait_for_ports(broker.proc, [plain_port, broker.tls_port], log, "mosquitto")
        yield broker
    finally:
        stop(broker.proc)
        shutil.rmtree(workdir, ignore_errors=True)


@contextmanager
def reloader(
    broker: RenewableBroker, *, interval_s: int = 1, reloaded_files: tuple[Path, ...] = ()
) -> Iterator[subprocess.Popen]:
    """The sidecar's script, run by Debian's dash as the broker's user, told the broker's PID
    (in a Pod it finds it in the shared process namespace; here other brokers may run)."""
    script = broker.workdir / "reload-tls.sh"
    script.write_text(
        render_tls_reloader(
            tls_dir=str(broker.volume.root), interval_s=interval_s, reloaded_files=[str(f) for f in reloaded_files]
        )
    )
    script.chmod(0o644)
    log = broker.workdir / "reloader.log"
    with log.open("wb") as handle:
        proc = subprocess.Popen(
            [DASH, str(script)], stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={"PATH": "/usr/bin:/bin", "MOSQUITTO_PID": str(broker.proc.pid)}, **broker.run_as.popen_kwargs(),
        )  # fmt: skip
    try:
        yield proc
    finally:
        stop(proc)


def wait_for_fingerprint(broker: RenewableBroker, expected: str, seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while (served := broker.served_fingerprint()) != expected and time.monotonic() < deadline:
        time.sleep(0.2)
    return served


def test_mosquitto_alone_keeps_serving_the_replaced_certificate(renewable_broker: RenewableBroker) -> None:
    """Why the reloader exists: the daemon reads its key pair at start only."""
    first = renewable_broker.served_fingerprint()
    renewed = renewable_broker.new_key_pair("v2")
    renewable_broker.volume.write(renewed)
    time.sleep(3)
    assert renewable_broker.served_fingerprint() == first != fingerprint_of(renewed["tls.crt"])


def test_the_reloader_has_mosquitto_serve_a_renewed_certificate(renewable_broker: RenewableBroker) -> None:
    broker = renewable_broker
    assert broker.served_fingerprint() == fingerprint_of(broker.volume.root / "tls.crt")
    with reloader(broker) as watcher:
        # A device connected before the renewal stays connected through the reload.
        first = broker.workdir / "v1"
        device_id = unique("p")
        cert = make_client_certificate(first / "devices", device_id, first / "ca.crt", first / "ca.key")
        device = Client(_tls_broker(broker), None, None, tls=True, cert=cert)
        device.client.tls_insecure_set(True)
        assert not device.connect().is_failure
        try:
            for version in ("v2", "v3"):  # and again: the watcher keeps watching after a reload
                renewed = broker.new_key_pair(version)
                broker.volume.write(renewed)
                served = wait_for_fingerprint(broker, fingerprint_of(renewed["tls.crt"]), 10)
                assert served == fingerprint_of(renewed["tls.crt"]), (broker.workdir / "reloader.log").read_text()
            assert broker.proc.poll() is None, "mosquitto exited instead of reloading"
            assert watcher.poll() is None, (broker.workdir / "reloader.log").read_text()
            assert not device.publish(f"city/parking/{device_id}/telemetry", b"still here").is_failure
        finally:
            device.close()
    log = (broker.workdir / "reloader.log").read_text()
    assert log.count(f"sent SIGHUP to mosquitto (pid {broker.proc.pid})") == 2, log


def test_after_a_reload_each_listener_still_authenticates_on_its_own(renewable_broker: RenewableBroker) -> None:
    """SIGHUP re-reads the whole config (per-listener auth, both ACL files, the CA): after a
    renewal a new device is admitted by the renewed CA and still confined to its own id, the
    ingest still logs in on the plain listener, and a password still gets nowhere on TLS."""
    broker = renewable_broker
    with reloader(broker):
        renewed = broker.new_key_pair("v2")
        broker.volume.write(renewed)
        assert wait_for_fingerprint(broker, fingerprint_of(renewed["tls.crt"]), 10) == fingerprint_of(
            renewed["tls.crt"]
        )
    tls_broker = _tls_broker(broker)
    ingest = Client(tls_broker, "ingest", MQTT_PASSWORDS["ingest"])
    device_id = unique("p")
    first = broker.workdir / "v1"  # renewals keep the CA: devices' certificates stay valid
    cert = make_client_certificate(first / "devices", device_id, first / "ca.crt", first / "ca.key")
    device = Client(tls_broker, None, None, tls=True, cert=cert)
    device.client.tls_insecure_set(True)
    try:
        assert not ingest.connect().is_failure
        assert not ingest.subscribe("city/+/+/telemetry").is_failure
        assert not device.connect().is_failure
        assert device.publish(f"city/parking/{unique('p')}/telemetry", b"forged").is_failure
        assert not device.publish(f"city/parking/{device_id}/telemetry", b"own").is_failure
        assert ingest.drain() == {(f"city/parking/{device_id}/telemetry", b"own")}
    finally:
        device.close()
        ingest.close()
    assert _tls_refused(tls_broker, "registry", MQTT_PASSWORDS["registry"]) is not None


def test_a_new_ca_restarts_mosquitto(renewable_broker: RenewableBroker) -> None:
    """SIGHUP does not re-read `cafile` (mosquitto 2.0.11: a device certificate from a new CA is
    still refused after it), so a changed CA stops the broker for the kubelet to start it again."""
    broker = renewable_broker
    with reloader(broker):
        broker.volume.write(broker.new_key_pair("v2", new_ca=True))
        try:
            broker.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pytest.fail("mosquitto kept running on the old CA")
    assert broker.proc.returncode == 0, "mosquitto should stop cleanly (SIGTERM), not crash"
    log = (broker.workdir / "reloader.log").read_text()
    assert f"CA changed: restarting mosquitto (pid {broker.proc.pid})" in log, log
    assert "SIGHUP" not in log, log


def test_the_reloader_admits_a_user_added_to_the_password_and_acl_files(renewable_broker: RenewableBroker) -> None:
    """A move adds its bridge's user to the running brokers of both sites: the reloader, told to
    watch the password and ACL files, has mosquitto re-read them (SIGHUP, per_listener_settings
    true) and the user logs in and gets its rights, with no restart (the same process, every
    device connection kept)."""
    broker = renewable_broker
    pid = broker.proc.pid
    password_file, acl_file = broker.workdir / "passwd", broker.workdir / "acl"
    tls_broker = _tls_broker(broker)
    newcomer = DeviceClass(name="move-bridge", username="move-bridge", publish=("city/+/+/telemetry",), subscribe=())
    password = "bridge-pw-7"
    ingest = Client(tls_broker, "ingest", MQTT_PASSWORDS["ingest"])
    device_id = unique("p")
    first = broker.workdir / "v1"
    cert = make_client_certificate(first / "devices", device_id, first / "ca.crt", first / "ca.key")
    device = Client(tls_broker, None, None, tls=True, cert=cert)
    device.client.tls_insecure_set(True)

    def login() -> Client | None:
        client = Client(tls_broker, newcomer.username, password)
        reason = client.connect()
        if reason is not None and not reason.is_failure:
            return client
        client.close()
        return None

    with reloader(broker, reloaded_files=(password_file, acl_file)) as watcher:
        try:
            assert not ingest.connect().is_failure
            assert not ingest.subscribe("city/+/+/telemetry").is_failure
            assert not device.connect().is_failure
            assert login() is None, "the user logged in before it was added"
            # The ACL first: once the password logs in, a reload after both changes took place.
            acl_file.write_text(render_acl_file((*MQTT_INTERNAL_CLASSES, newcomer)))
            password_file.write_text(render_password_file(MQTT_PASSWORDS | {newcomer.username: password}))
            deadline = time.monotonic() + 5  # the reloader looks every second
            while (admitted := login()) is None and time.monotonic() < deadline:
                time.sleep(0.2)
            assert admitted is not None, (broker.workdir / "reloader.log").read_text()
            try:
                # Its rights came with it: it may publish telemetry, not commands.
                assert not admitted.publish(f"city/air/{device_id}/telemetry", b"bridged").is_failure
                assert admitted.publish(f"city/air/{device_id}/commands", b"forged").is_failure
            finally:
                admitted.close()
            assert ingest.drain() == {(f"city/air/{device_id}/telemetry", b"bridged")}
            # A device connected before the reload is still connected.
            assert not device.publish(f"city/parking/{device_id}/telemetry", b"still here").is_failure
            assert ingest.drain() == {(f"city/parking/{device_id}/telemetry", b"still here")}
            assert watcher.poll() is None, (broker.workdir / "reloader.log").read_text()
        finally:
            device.close()
            ingest.close()
    assert broker.proc.pid == pid and broker.proc.poll() is None, "mosquitto restarted instead of reloading"
    log = (broker.workdir / "reloader.log").read_text()
    assert log.count(f"password or ACL file changed: sent SIGHUP to mosquitto (pid {pid})") >= 1, log
    assert "restarting" not in log, log


def test_the_reloader_leaves_an_unchanged_certificate_alone(renewable_broker: RenewableBroker) -> None:
    """The kubelet rewrites the volume for any change of the Secret (labels do not count, but a
    re-sync with the same data may): same content, no signal, no reload log line."""
    broker = renewable_broker
    before = broker.served_fingerprint()
    with reloader(broker):
        broker.volume.write({key: broker.volume.root / key for key in ("tls.crt", "tls.key", "ca.crt")})
        time.sleep(3)
    assert broker.served_fingerprint() == before
    assert "SIGHUP" not in (broker.workdir / "reloader.log").read_text()
    assert "Reloading config" not in (broker.workdir / "mosquitto.log").read_text()


def test_the_reloader_check_fails_without_a_readable_certificate(renewable_broker: RenewableBroker) -> None:
    """The sidecar's probes: ready when it can read the certificate and sees a mosquitto process."""
    broker = renewable_broker
    script = broker.workdir / "check.sh"
    env = {"PATH": "/usr/bin:/bin"}

    def check(tls_dir: Path, pid: str | None) -> subprocess.CompletedProcess:
        script.write_text(render_tls_reloader(tls_dir=str(tls_dir), interval_s=1))
        extra = {"MOSQUITTO_PID": pid} if pid else {}
        return subprocess.run([DASH, str(script), "check"], env={**env, **extra}, capture_output=True, text=True,
                              timeout=TIMEOUT)  # fmt: skip

    assert check(broker.volume.root, str(broker.proc.pid)).returncode == 0
    # Without MOSQUITTO_PID it searches /proc by process name, as in the Pod; ours is running.
    assert check(broker.volume.root, None).returncode == 0
    missing = check(broker.workdir / "no-such-volume", str(broker.proc.pid))
    assert missing.returncode == 1 and "cannot read" in missing.stdout


def _tls_broker(broker: RenewableBroker) -> Broker:
    """The fields Client needs, for a broker started by the renewal fixture."""
    return Broker(broker.proc, broker.workdir, broker.plain_port, broker.tls_port, broker.volume.root / "ca.crt",
                  broker.workdir / "passwd", broker.workdir / "mosquitto.log", broker.run_as)  # fmt: skip


def test_each_log_line_is_written_as_it_happens(broker: Broker) -> None:
    """The broker's output goes to a file here, as to the container runtime's pipe there: a line
    must be there when it happens, not when 4 KiB have gathered (with `log_dest stdout` mosquitto's
    stdio buffered it, and `kubectl logs` showed a quiet broker's lines minutes late)."""
    client = Client(broker, "ingest", MQTT_PASSWORDS["ingest"])
    client_id = client.client._client_id.decode()
    try:
        reason = client.connect()
        assert reason is not None and not reason.is_failure, reason
        deadline = time.monotonic() + 5
        while f" as {client_id} (" not in broker.log.read_text():
            assert time.monotonic() < deadline, f"no line of the connection yet:\n{broker.log.read_text()[-2000:]}"
            time.sleep(0.1)
    finally:
        client.close()
