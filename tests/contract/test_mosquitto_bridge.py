"""Contract: the move's broker bridge (daemon_config/mosquitto_bridge.py) run by Debian's mosquitto
between real brokers.

Each site's broker is rendered as the product renders it (contract_daemons.start_broker): the
internal listener over TLS, the bridge's user ``move-bridge`` in its password file and in its ACL
with the rights broker_bridge.bridge_user gives that site. A third mosquitto runs the rendered
bridge configuration, as the bridge's Deployment does: one connection per old-site broker pod and
one to the new site, TLS verified against each site's CA. Devices publish with their certificates
on the old site's device listener; the new site's ingest and registry log in with passwords.
"""

from __future__ import annotations

import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from smartnation.program.components.broker_bridge import BRIDGE_USER, bridge_user, device_topics
from smartnation.program.daemon_config.mosquitto_bridge import CLOSED_SOCKET, BridgeEnd, render_bridge_conf
from smartnation.settings.models import BrokerSettings, Compute, DeviceClassSettings, Resources

from .contract_daemons import (
    MOSQUITTO,
    MOSQUITTO_PUB,
    MQTT_DEVICE_CLASSES,
    MQTT_INTERNAL_CLASSES,
    MQTT_PASSWORDS,
    OPENSSL,
    Broker,
    RunAs,
    daemon_user,
    make_workdir,
    require_binaries,
    start_broker,
    stop,
    stop_broker,
)
from .mqtt_client import TIMEOUT, Client, unique

pytestmark = pytest.mark.contract

# The contract brokers' classes as an environment's settings: the devices' classes give the topics
# that cross (device_topics) and the bridge's rights on each site (bridge_user).
SETTINGS = BrokerSettings(
    replicas=2,
    storage_size="1Gi",
    resources=Resources(requests=Compute(cpu="10m", memory="16Mi"), limits=Compute(cpu="1", memory="64Mi")),
    device_classes=(
        *(DeviceClassSettings(name=c.name, publish=c.publish, subscribe=c.subscribe) for c in MQTT_DEVICE_CLASSES),
        *(
            DeviceClassSettings(name=c.username, publish=c.publish, subscribe=c.subscribe, internal=True)
            for c in MQTT_INTERNAL_CLASSES
        ),
    ),
)
TELEMETRY, COMMANDS = device_topics(SETTINGS)
BRIDGE_PASSWORD = "0f3c9a6b1d2e4f5a #6b7c8d9e0f1a2b3c"
"""broker_bridge.bridge_password derives hex; this one also has what render_bridge_conf lets through
and mosquitto reads back as written: an inner space and a '#'."""
# "Nothing (more) arrives" is watched this long: a bridged message takes milliseconds on loopback.
WATCH = 3.0
STDBUF = "/usr/bin/stdbuf"
"""mosquitto writes its log through stdio, in blocks to a file: line by line, a test can follow it
(exec's mosquitto itself: the same process, the same configuration)."""


def telemetry(device_id: str) -> str:
    return f"city/parking/{device_id}/telemetry"


def commands(device_id: str) -> str:
    return f"city/parking/{device_id}/commands"


def test_the_settings_give_the_bridge_both_directions() -> None:
    """What the tests below rely on: parking devices publish telemetry and read commands."""
    assert TELEMETRY == ("city/parking/+/telemetry", "city/air/+/telemetry")
    assert COMMANDS == ("city/parking/+/commands",)


# --------------------------------------------------------------------------- sites and clients


@pytest.fixture
def site() -> Iterator[Callable[..., Broker]]:
    """Factory for a site's broker (one pod) with the bridge's user (its rights the same on both
    sites, broker_bridge.bridge_user); ``bridge_password=None`` leaves the bridge's user out of
    both files."""
    started: list[Broker] = []

    def _site(*, bridge_password: str | None = BRIDGE_PASSWORD) -> Broker:
        passwords, classes = dict(MQTT_PASSWORDS), [*MQTT_INTERNAL_CLASSES]
        if bridge_password is not None:
            passwords[BRIDGE_USER] = bridge_password
            classes.append(bridge_user(SETTINGS))
        broker = start_broker(passwords=passwords, internal_classes=classes)
        started.append(broker)
        return broker

    yield _site
    for broker in started:
        stop_broker(broker)


@pytest.fixture
def clients() -> Iterator[tuple[Callable[[Broker, str], Client], Callable[[Broker, str], Client]]]:
    """(login, device): connected internal clients (password) and devices (certificate)."""
    opened: list[Client] = []

    def _connected(client: Client, who: str) -> Client:
        opened.append(client)
        reason = client.connect()
        assert reason is not None and not reason.is_failure, f"{who} was refused: {reason}"
        return client

    def login(broker: Broker, username: str) -> Client:
        return _connected(Client(broker, username, MQTT_PASSWORDS[username]), username)

    def device(broker: Broker, device_id: str) -> Client:
        return _connected(Client(broker, None, None, tls=True, cert=broker.device_certificate(device_id)), device_id)

    yield login, device
    for client in opened:
        client.close()


# --------------------------------------------------------------------------- the bridge's mosquitto


class Bridge:
    """The bridge's mosquitto on the rendered configuration, run as the broker's user, its
    persistence directory kept across a stop and a start (the Pod's emptyDir across a container
    restart)."""

    def __init__(self, render: Callable[[str], str], run_as: RunAs) -> None:
        """``render``: the configuration for a persistence directory."""
        self.run_as = run_as
        self.workdir = make_workdir("smartnation-mosquitto-bridge-")
        self.data = self.workdir / "data"
        self.data.mkdir(mode=0o700)
        run_as.chown(self.data)
        self.conf = self.workdir / "mosquitto.conf"
        # It holds the password: readable by the broker's user alone.
        self.conf.write_text(render(str(self.data)))
        self.conf.chmod(0o600)
        run_as.chown(self.conf)
        self.log = self.workdir / "mosquitto.log"
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        with self.log.open("ab") as handle:
            self.proc = subprocess.Popen(
                [STDBUF, "-oL", MOSQUITTO, "-c", str(self.conf)], stdout=handle, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, **self.run_as.popen_kwargs(),
            )  # fmt: skip
        deadline = time.monotonic() + TIMEOUT
        while self.log.read_text().count("running") < self.starts:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the bridge's mosquitto did not start:\n{self.log.read_text()}", pytrace=False)
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            assert self.proc.returncode == 0, f"the bridge did not stop cleanly:\n{self.log.read_text()}"

    def log_text(self) -> str:
        return f"bridge:\n{self.log.read_text()}"


def end(name: str, broker: Broker, cafile: Path | None = None) -> BridgeEnd:
    """A broker as the bridge dials it: by the name its certificate carries, a client id of its own
    per test (the far side keeps a durable session under it)."""
    return BridgeEnd(
        name=name, address=f"localhost:{broker.plain_port}", client_id=unique(f"bridge-{name}"),
        cafile=str(cafile or broker.cafile),
    )  # fmt: skip


@pytest.fixture
def bridge() -> Iterator[Callable[..., Bridge]]:
    """Factory: render the bridge's configuration for ``sources`` and ``target`` and start it."""
    require_binaries(MOSQUITTO, MOSQUITTO_PUB, STDBUF)
    running: list[Bridge] = []

    def _bridge(
        sources: Sequence[BridgeEnd], target: BridgeEnd, *, reverse_commands: bool, password: str = BRIDGE_PASSWORD
    ) -> Bridge:
        started = Bridge(
            lambda data: render_bridge_conf(
                sources=sources, target=target, device_topics=TELEMETRY, command_topics=COMMANDS,
                username=BRIDGE_USER, password=password, reverse_commands=reverse_commands, persistence_dir=data,
            ),
            daemon_user("mosquitto"),
        )  # fmt: skip
        running.append(started)
        started.start()
        return started

    yield _bridge
    for started in running:
        if started.proc is not None:
            stop(started.proc)
        shutil.rmtree(started.workdir, ignore_errors=True)


def flows(publish: Callable[[], object], receiver: Client, what: str, log: Callable[[], str]) -> None:
    """Publish until ``receiver`` (subscribed to the probe's topic alone) sees a probe: the bridge
    has connected and subscribed on both sides (a message published before its subscription
    reached nobody)."""
    deadline = time.monotonic() + 3 * TIMEOUT
    while receiver.next_message(0.5) is None:
        if time.monotonic() > deadline:
            pytest.fail(f"{what} never crossed the bridge:\n{log()}", pytrace=False)
        publish()
    receiver.collect(0.5)  # probes still on their way


def telemetry_flows(clients, old: Broker, new: Broker, log: Callable[[], str]) -> None:
    """A device on ``old`` reaches the ingest on ``new``."""
    login, device = clients
    probe = unique("probe")
    watcher = login(new, "ingest")
    assert not watcher.subscribe(telemetry(probe)).is_failure
    sender = device(old, probe)
    flows(lambda: sender.publish(telemetry(probe), b"probe"), watcher, f"telemetry from {old.plain_port}", log)


def commands_flow(clients, old: Broker, new: Broker, log: Callable[[], str]) -> None:
    """The registry on ``new`` reaches a device on ``old``."""
    login, device = clients
    probe = unique("probe")
    watcher = device(old, probe)
    assert not watcher.subscribe(commands(probe)).is_failure
    sender = login(new, "registry")
    flows(lambda: sender.publish(commands(probe), b"probe"), watcher, f"a command to {old.plain_port}", log)


def only(received: list[tuple[str, bytes]], *topics: str) -> list[tuple[str, bytes]]:
    """What arrived on ``topics`` (not the probes), in order."""
    return [item for item in received if item[0] in topics]


def logs(*brokers: Broker, bridge: Bridge | None = None) -> Callable[[], str]:
    def text() -> str:
        parts = [f"broker {b.plain_port}:\n{b.log.read_text()}" for b in brokers]
        return "\n".join([*parts, bridge.log_text() if bridge else ""])

    return text


# --------------------------------------------------------------------------- the phases


def test_replicate_carries_telemetry_to_the_new_site_and_no_command_back(site, bridge, clients) -> None:
    login, device = clients
    old, new = site(), site()
    running = bridge([end("source-0", old)], end("target", new), reverse_commands=False)
    seen = logs(old, new, bridge=running)
    telemetry_flows(clients, old, new, seen)
    ingest = login(new, "ingest")
    assert not ingest.subscribe("city/+/+/telemetry").is_failure
    device_id = unique("p")
    sensor = device(old, device_id)
    assert not sensor.subscribe(commands(device_id)).is_failure
    # On the new site a device of the same id (it moved already) sees the registry's command.
    moved = device(new, device_id)
    assert not moved.subscribe(commands(device_id)).is_failure

    assert not sensor.publish(telemetry(device_id), b'{"occupied": true}').is_failure
    message = ingest.next_message()
    assert message is not None, seen()
    assert (message.topic, message.payload, message.qos) == (telemetry(device_id), b'{"occupied": true}', 1)
    assert not login(new, "registry").publish(commands(device_id), b"open-barrier").is_failure

    assert moved.collect(WATCH) == [(commands(device_id), b"open-barrier")]
    assert sensor.collect(0) == [], "a command crossed to the old site before the cutover"
    assert only(ingest.collect(0), telemetry(device_id)) == [], "the reading arrived twice"


def test_retained_telemetry_stays_retained_on_the_new_site(site, bridge, clients) -> None:
    """The move's verification compares the sites' retained messages: one retained before the
    bridge started (the old broker sends it on the bridge's subscription) and one retained while
    it runs (the old broker forwards it as published, retain flag included, because the bridge
    identifies itself as one: try_private) are both retained on the new site."""
    login, device = clients
    old, new = site(), site()
    before, during = unique("p"), unique("p")
    assert not device(old, before).publish(telemetry(before), b"state-before", retain=True).is_failure
    running = bridge([end("source-0", old)], end("target", new), reverse_commands=False)
    seen = logs(old, new, bridge=running)
    telemetry_flows(clients, old, new, seen)
    assert not device(old, during).publish(telemetry(during), b"state-during", retain=True).is_failure

    for device_id, payload in ((before, b"state-before"), (during, b"state-during")):
        deadline = time.monotonic() + TIMEOUT
        while True:
            # A new subscriber: what it gets at once is what the broker retained.
            fresh = login(new, "ingest")
            assert not fresh.subscribe(telemetry(device_id)).is_failure
            message = fresh.next_message(1.0)
            fresh.close()
            if message is not None or time.monotonic() > deadline:
                break
        assert message is not None, f"{device_id}'s retained reading is not on the new site:\n{seen()}"
        assert (message.topic, message.payload, message.retain) == (telemetry(device_id), payload, True), seen()


def test_cutover_carries_commands_back_and_nothing_loops(site, bridge, clients) -> None:
    login, device = clients
    old, new = site(), site()
    running = bridge([end("source-0", old)], end("target", new), reverse_commands=True)
    seen = logs(old, new, bridge=running)
    telemetry_flows(clients, old, new, seen)
    commands_flow(clients, old, new, seen)
    device_id = unique("p")
    # Every side's subscribers to both topics: a message that came back would arrive twice.
    sensor, moved = device(old, device_id), device(new, device_id)
    old_ingest, new_ingest = login(old, "ingest"), login(new, "ingest")
    for subscriber, topic in ((sensor, commands(device_id)), (moved, commands(device_id)),
                              (old_ingest, telemetry(device_id)), (new_ingest, telemetry(device_id))):  # fmt: skip
        assert not subscriber.subscribe(topic).is_failure

    assert not sensor.publish(telemetry(device_id), b"reading").is_failure
    assert not login(new, "registry").publish(commands(device_id), b"close-barrier").is_failure

    once = {"command": [(commands(device_id), b"close-barrier")], "reading": [(telemetry(device_id), b"reading")]}
    got = {
        "old site's device": sensor.collect(WATCH),
        "new site's device": moved.collect(0),
        "old site's ingest": old_ingest.collect(0),
        "new site's ingest": new_ingest.collect(0),
    }
    assert got == {
        "old site's device": once["command"],
        "new site's device": once["command"],
        "old site's ingest": once["reading"],
        "new site's ingest": once["reading"],
    }, seen()


def test_nobody_can_publish_through_the_bridge_itself(site, bridge, clients) -> None:
    """The bridge's mosquitto has no TCP listener (mosquitto 2 opens loopback 1883 to anonymous
    clients when a configuration has none: what they published crossed to both sites) but a Unix
    socket that admits no one: neither anonymously nor as the bridge's user."""
    login, device = clients
    old, new = site(), site()
    running = bridge([end("source-0", old)], end("target", new), reverse_commands=True)
    seen = logs(old, new, bridge=running)
    telemetry_flows(clients, old, new, seen)
    commands_flow(clients, old, new, seen)
    device_id = unique("p")
    sensor, ingest = device(old, device_id), login(new, "ingest")
    assert not sensor.subscribe(commands(device_id)).is_failure
    assert not ingest.subscribe("city/+/+/telemetry").is_failure
    socket_path = running.data / CLOSED_SOCKET

    for credentials in ([], ["-u", BRIDGE_USER, "-P", BRIDGE_PASSWORD]):
        for topic in (commands(device_id), telemetry(device_id)):
            injected = subprocess.run(
                [MOSQUITTO_PUB, "--unix", str(socket_path), *credentials, "-q", "1", "-t", topic, "-m", "forged"],
                capture_output=True, text=True, timeout=TIMEOUT,
            )  # fmt: skip
            assert "not authorised" in injected.stderr, (injected.returncode, injected.stderr)
    assert sensor.collect(WATCH) == [] and only(ingest.collect(0), telemetry(device_id)) == [], seen()
    log = running.log_text()
    assert f"Opening unix listen socket on path {socket_path}." in log, log
    assert "listen socket on port" not in log, log


# Per refusal: why the bridge's log says it failed, and what the old broker logs (mosquitto 2.0.11
# does not name a client it turned away: "<unknown>"; a TLS refusal is the alert the bridge sent).
REFUSALS = {
    "wrong-password": ("Connection Refused: not authorised", "Client <unknown> disconnected, not authorised."),
    "no-bridge-user": ("Connection Refused: not authorised", "Client <unknown> disconnected, not authorised."),
    "another-ca": ("certificate verify failed", "SSL routines::tlsv1 alert unknown ca"),
    "another-host": ("Error: host name verification failed.", "SSL routines::tlsv1 alert internal error"),
}


def serve_a_certificate_for_another_host(broker: Broker) -> None:
    """The broker's key with a certificate from its own CA for another name, served from its
    next TLS handshake on (SIGHUP re-reads it): the bridge dials ``localhost`` and must refuse it.
    The test's clients dial 127.0.0.1, which it still names."""
    directory = broker.workdir
    ext = directory / "elsewhere.ext"
    ext.write_text("subjectAltName=DNS:broker.elsewhere.example,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    subprocess.run(
        [OPENSSL, "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
         "-days", "1", "-extfile", str(ext), "-out", "server.crt"],
        check=True, capture_output=True, cwd=directory,
    )  # fmt: skip
    expected = ssl.PEM_cert_to_DER_cert((directory / "server.crt").read_text())
    broker.proc.send_signal(signal.SIGHUP)
    context = ssl.create_default_context(cafile=str(broker.cafile))
    context.check_hostname = False
    deadline = time.monotonic() + TIMEOUT
    while True:
        with (
            socket.create_connection(("127.0.0.1", broker.plain_port), timeout=TIMEOUT) as raw,
            context.wrap_socket(raw) as tls,
        ):
            if tls.getpeercert(binary_form=True) == expected:
                return
        assert time.monotonic() < deadline, "the broker kept serving its first certificate"
        time.sleep(0.2)


@pytest.mark.parametrize("refusal", sorted(REFUSALS))
def test_a_refused_bridge_delivers_nothing_and_the_old_site_logs_why(site, bridge, clients, refusal: str) -> None:
    """A wrong password, an old site that does not know the bridge's user, a bridge that does not
    trust the old site's CA, an old broker whose certificate names another host: nothing crosses,
    and the logs say why (no silent success)."""
    login, device = clients
    old = site(bridge_password=None if refusal == "no-bridge-user" else BRIDGE_PASSWORD)
    new = site()
    if refusal == "another-host":
        serve_a_certificate_for_another_host(old)
    source = end("source-0", old, cafile=new.cafile if refusal == "another-ca" else None)
    target = end("target", new)
    password = "not-" + BRIDGE_PASSWORD if refusal == "wrong-password" else BRIDGE_PASSWORD
    running = bridge([source], target, reverse_commands=True, password=password)
    seen = logs(old, new, bridge=running)
    ingest = login(new, "ingest")
    assert not ingest.subscribe("city/+/+/telemetry").is_failure
    device_id = unique("p")
    sensor = device(old, device_id)
    bridge_says, old_says = REFUSALS[refusal]

    # The bridge tried and its connection to the old site ended; then a reading there goes nowhere.
    deadline = time.monotonic() + TIMEOUT
    while bridge_says not in running.log_text() or f"local.{source.client_id}" not in running.log_text():
        if time.monotonic() > deadline:
            pytest.fail(f"the bridge did not try the old site:\n{seen()}", pytrace=False)
        time.sleep(0.2)
    assert not sensor.publish(telemetry(device_id), b"reading").is_failure
    assert ingest.collect(WATCH) == [], seen()
    # mosquitto writes its log in blocks: all of it once stopped.
    stop(old.proc)
    stop(new.proc)
    assert old_says in old.log.read_text(), seen()
    # "New bridge connected from ... as <client id>" when admitted: the new site let the bridge in
    # unless its password was wrong, the old site never did.
    assert f"as {source.client_id}" not in old.log.read_text(), seen()
    assert (f"as {target.client_id}" in new.log.read_text()) is (refusal != "wrong-password"), seen()


def test_what_the_old_site_got_while_the_bridge_was_down_arrives_after_its_restart(site, bridge, clients) -> None:
    """The bridge's session on the old site is durable (cleansession false, a stable client id):
    the old broker keeps what the devices publish while the bridge is away. When the bridge is
    back the old site hands it the whole backlog at once, faster than the new site takes it (here
    the new broker is paused: its TLS handshake waits), so the bridge acknowledges it and holds it
    in its own queue for the new site; more than mosquitto's default queue of 1,000 per
    connection, which dropped the rest."""
    login, device = clients
    old, new = site(), site()
    running = bridge([end("source-0", old)], end("target", new), reverse_commands=False)
    seen = logs(old, new, bridge=running)
    telemetry_flows(clients, old, new, seen)
    ingest = login(new, "ingest")
    device_id = unique("p")
    assert not ingest.subscribe(telemetry(device_id)).is_failure
    sensor = device(old, device_id)
    readings = [str(n).encode() for n in range(3_000)]

    running.stop()
    for payload in readings:
        assert not sensor.publish(telemetry(device_id), payload).is_failure
    assert ingest.collect(1.0) == [], "delivered with the bridge stopped"
    new.proc.send_signal(signal.SIGSTOP)
    try:
        running.start()
        time.sleep(WATCH)  # the old site's backlog crosses into the bridge in well under a second
    finally:
        new.proc.send_signal(signal.SIGCONT)

    received: list[bytes] = []
    deadline = time.monotonic() + 60
    while len(set(received)) < len(readings) and time.monotonic() < deadline:
        received += [payload for _topic, payload in ingest.collect(1.0)]
    missing = len(readings) - len(set(received))
    assert missing == 0, f"{missing} readings lost across the bridge's restart:\n{seen()}"
    assert received == readings, "out of order or duplicated"


def test_two_old_pods_each_reach_the_new_site_once(site, bridge, clients) -> None:
    """The old site's broker pods are independent: the bridge dials each, and each pod's readings
    arrive once; from the cutover on a command reaches a device on whichever pod it is."""
    login, device = clients
    old_0, old_1, new = site(), site(), site()
    running = bridge([end("source-0", old_0), end("source-1", old_1)], end("target", new), reverse_commands=True)
    seen = logs(old_0, old_1, new, bridge=running)
    for old in (old_0, old_1):
        telemetry_flows(clients, old, new, seen)
        commands_flow(clients, old, new, seen)
    ingest = login(new, "ingest")
    assert not ingest.subscribe("city/+/+/telemetry").is_failure
    on_0, on_1 = unique("p"), unique("p")
    sensors = {on_0: device(old_0, on_0), on_1: device(old_1, on_1)}
    for device_id, sensor in sensors.items():
        assert not sensor.subscribe(commands(device_id)).is_failure
        assert not sensor.publish(telemetry(device_id), device_id.encode()).is_failure
    registry = login(new, "registry")
    for device_id in sensors:
        assert not registry.publish(commands(device_id), b"command").is_failure

    assert sorted(only(ingest.collect(WATCH), telemetry(on_0), telemetry(on_1))) == sorted(
        [(telemetry(on_0), on_0.encode()), (telemetry(on_1), on_1.encode())]
    ), seen()
    for device_id, sensor in sensors.items():
        assert sensor.collect(0) == [(commands(device_id), b"command")], seen()


# --------------------------------------------------------------------------- the rollback


def retained(login: Callable[[Broker, str], Client], broker: Broker, device_id: str) -> bytes | None:
    """What a new subscriber gets at once on ``device_id``'s telemetry: the retained reading."""
    fresh = login(broker, "ingest")
    assert not fresh.subscribe(telemetry(device_id)).is_failure
    message = fresh.next_message(1.0)
    fresh.close()
    return None if message is None else message.payload


def test_the_rollback_carries_the_new_sites_devices_to_the_old_site_and_nothing_loops(site, bridge, clients) -> None:
    """The rollback turns the bridge (components/broker_bridge.py): the new site's pods are where
    the devices are heard (telemetry in, commands out), the old site serves (telemetry out to it,
    its registry's commands in); the rights are the cutover's, both ways."""
    login, device = clients
    old, new = site(), site()
    running = bridge([end("arrived-0", new)], end("source-0", old), reverse_commands=True)
    seen = logs(old, new, bridge=running)
    telemetry_flows(clients, new, old, seen)  # a device on the new site reaches the old site's ingest
    commands_flow(clients, new, old, seen)  # the old site's registry reaches a device on the new site
    device_id = unique("p")
    back, moved = device(old, device_id), device(new, device_id)
    old_ingest, new_ingest = login(old, "ingest"), login(new, "ingest")
    for subscriber, topic in ((back, commands(device_id)), (moved, commands(device_id)),
                              (old_ingest, telemetry(device_id)), (new_ingest, telemetry(device_id))):  # fmt: skip
        assert not subscriber.subscribe(topic).is_failure

    assert not moved.publish(telemetry(device_id), b"reading").is_failure
    assert not login(old, "registry").publish(commands(device_id), b"close-barrier").is_failure

    once = {"command": [(commands(device_id), b"close-barrier")], "reading": [(telemetry(device_id), b"reading")]}
    got = {
        "old site's device": back.collect(WATCH),
        "new site's device": moved.collect(0),
        "old site's ingest": old_ingest.collect(0),
        "new site's ingest": new_ingest.collect(0),
    }
    assert got == {
        "old site's device": once["command"],
        "new site's device": once["command"],
        "old site's ingest": once["reading"],
        "new site's ingest": once["reading"],
    }, seen()


def test_retained_messages_across_the_turn_from_the_cutover_to_the_rollback(site, bridge, clients) -> None:
    """What the driver's check of equal retained messages meets after the rollback. The bridge runs
    the cutover, then (one Pod after the other, its persistence kept, the old pod 0's client id
    kept) the rollback:

    - a reading retained on the new site crosses to the old site when the turned bridge subscribes
      there (the broker sends its retained messages on a subscription);
    - mosquitto 2.0.11 also sends the bridge's OWN retained messages (kept in its persistence since
      the cutover carried them) over an ``out`` topic when that connection comes up: a reading the
      new site no longer retains is retained on the old site again from the bridge's store, even
      though the old site retained a newer one while the bridge was down;
    - what the old site retained since is not carried to the new site (telemetry crosses the
      other way now)."""
    login, device = clients
    old, new = site(), site()
    old_pod_0 = end("source-0", old)
    running = bridge([old_pod_0], end("target", new), reverse_commands=True)
    seen = logs(old, new, bridge=running)
    telemetry_flows(clients, old, new, seen)
    stayed, moved = unique("p"), unique("p")
    assert not device(old, stayed).publish(telemetry(stayed), b"r1", retain=True).is_failure
    deadline = time.monotonic() + TIMEOUT
    while retained(login, new, stayed) != b"r1":
        assert time.monotonic() < deadline, f"r1 never retained on the new site:\n{seen()}"
    running.stop()

    # While the bridge is down: the old site retains a newer reading of `stayed`, the new site
    # forgets `stayed` (an empty retained message clears it) and retains `moved`'s reading.
    assert not device(old, stayed).publish(telemetry(stayed), b"r2", retain=True).is_failure
    assert not device(new, stayed).publish(telemetry(stayed), b"", retain=True).is_failure
    assert not device(new, moved).publish(telemetry(moved), b"m1", retain=True).is_failure
    assert retained(login, old, stayed) == b"r2" and retained(login, new, stayed) is None

    running.conf.write_text(
        render_bridge_conf(
            sources=[end("arrived-0", new)], target=old_pod_0, device_topics=TELEMETRY, command_topics=COMMANDS,
            username=BRIDGE_USER, password=BRIDGE_PASSWORD, reverse_commands=True, persistence_dir=str(running.data),
        )
    )  # fmt: skip
    running.start()
    deadline = time.monotonic() + TIMEOUT
    while retained(login, old, moved) != b"m1":
        assert time.monotonic() < deadline, f"m1 never retained on the old site:\n{seen()}"
    time.sleep(WATCH)  # anything else the turn sends has arrived

    assert retained(login, new, stayed) is None, "the old site's reading crossed to the new site"
    assert retained(login, old, moved) == b"m1"
    assert retained(login, old, stayed) == b"r1", (
        "the bridge's own retained copy (r1, from the cutover) replaced the old site's newer r2",
        seen(),
    )
