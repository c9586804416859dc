"""Unit: the move's broker bridge configuration (daemon_config/mosquitto_bridge.py): what it refuses,
and its shape per phase.

The real mosquitto running it between two real brokers is tests/contract/test_mosquitto_bridge.py;
the bridge's Deployment built under mocks is tests/unit/test_move_bridge.py.
"""

from __future__ import annotations

import re

import pytest

from smartnation.program.daemon_config.mosquitto import MAX_QUEUED_BYTES, MAX_QUEUED_MESSAGES
from smartnation.program.daemon_config.mosquitto_bridge import BridgeEnd, render_bridge_conf

pytestmark = pytest.mark.unit

TELEMETRY = ("city/parking/+/telemetry", "city/air/+/telemetry")
COMMANDS = ("city/parking/+/commands",)
SOURCES = tuple(
    BridgeEnd(f"source-{i}", f"dev-broker-{i}.dev-broker-headless.dev.svc.cluster.local:1883", f"dev-move-bridge-{i}",
              "/cas/source.crt")
    for i in range(2)
)  # fmt: skip
TARGET = BridgeEnd("target", "dev-broker-internal.dev.svc:1883", "dev-move-bridge", "/cas/site.crt")
ARGS = {
    "sources": SOURCES,
    "target": TARGET,
    "device_topics": TELEMETRY,
    "command_topics": COMMANDS,
    "username": "move-bridge",
    "password": "5f1d0c",
    "reverse_commands": False,
    "persistence_dir": "/mosquitto/data",
}


def render(**overrides) -> str:
    return render_bridge_conf(**(ARGS | overrides))


def connections(conf: str) -> dict[str, list[str]]:
    """Each ``connection`` block's lines (comments and blank lines left out), by its name."""
    blocks: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in conf.splitlines():
        if line.startswith("connection "):
            current = blocks.setdefault(line.split()[1], [])
        elif current is not None and line and not line.startswith("#"):
            current.append(line)
    return blocks


def topics(block: list[str]) -> list[str]:
    return [line for line in block if line.startswith("topic ")]


def refused(message: str) -> pytest.RaisesContext:
    return pytest.raises(ValueError, match=re.escape(message))


# --------------------------------------------------------------------------- refusals


def test_no_source_is_refused() -> None:
    with refused("bridge: at least one source broker"):
        render(sources=())


def test_no_device_topic_is_refused() -> None:
    with refused("bridge: at least one device topic to carry"):
        render(device_topics=())


@pytest.mark.parametrize("overlap", ["city/parking/+/telemetry", "city/air/+/telemetry"])
def test_a_topic_in_both_directions_is_refused(overlap: str) -> None:
    """It would cross to the new site and back: a loop."""
    with refused(f"bridge: ['{overlap}'] would cross both ways and loop between the sites"):
        render(command_topics=(*COMMANDS, overlap))
    # Refused in the replicate phase too, where commands do not cross yet: the next phase would loop.
    with refused("would cross both ways"):
        render(command_topics=(overlap,), reverse_commands=False)


@pytest.mark.parametrize(
    ("sources", "target"),
    [
        ((SOURCES[0], SOURCES[0]), TARGET),
        (SOURCES, BridgeEnd("source-1", "elsewhere:1883", "id", "/cas/site.crt")),
        ((BridgeEnd("target", "a:1883", "a", "/cas/source.crt"),), TARGET),
    ],
    ids=["two-sources", "a-source-and-the-target", "one-source-and-the-target"],
)
def test_duplicate_connection_names_are_refused(sources, target) -> None:
    with refused("bridge: connection names must differ"):
        render(sources=sources, target=target)


@pytest.mark.parametrize(
    "password",
    ["", "one\ntwo", "one\rtwo", "\n", "tab\there", " leading", "trailing ", "nul\x00"],
    ids=["empty", "newline", "return", "only-newline", "tab", "leading-space", "trailing-space", "nul"],
)
def test_a_password_mosquitto_would_not_read_back_is_refused(password: str) -> None:
    """A second line would be read as a directive of its own; mosquitto refuses a control
    character (the whole file) and strips leading and trailing blanks (another password)."""
    with refused("bridge password: expected one line of printable characters, not empty, without leading"):
        render(password=password)


@pytest.mark.parametrize("password", ["p4ss-w0rd_with.punctuation!", "inner spaces are kept", "#not-a-comment"])
def test_the_password_is_written_as_given(password: str) -> None:
    """The real mosquitto reads an inner space and a '#' back as written: the contract test's
    bridge logs in with such a password (tests/contract/test_mosquitto_bridge.py)."""
    assert f"\nremote_password {password}\n" in render(password=password)


@pytest.mark.parametrize("username", ["", "move bridge", "move:bridge", "move\tbridge"])
def test_a_username_a_password_file_cannot_hold_is_refused(username: str) -> None:
    with refused("bridge username"):
        render(username=username)


@pytest.mark.parametrize("field", ["device_topics", "command_topics"])
@pytest.mark.parametrize("topic", ["city/parking/+/tele metry", "city/parking/+/telemetry\t", " city/+/x", "city/\n/x"])
def test_whitespace_in_a_topic_is_refused(field: str, topic: str) -> None:
    """A topic line is ``topic <pattern> <direction> <qos>``: a space would split the pattern."""
    with refused("bridge topic"):
        render(**{field: (*ARGS[field], topic)})


@pytest.mark.parametrize("topic", ["city//telemetry", "city/#/x", "city/par+king/x", "/city/x"])
def test_a_topic_filter_we_would_not_accept_in_an_acl_is_refused(topic: str) -> None:
    with refused("bridge topic"):
        render(device_topics=(*TELEMETRY, topic))


# --------------------------------------------------------------------------- shape per phase


def test_replicate_carries_telemetry_from_every_source_to_the_target_and_no_command() -> None:
    blocks = connections(render(reverse_commands=False))
    assert list(blocks) == ["source-0", "source-1", "target"]
    for name in ("source-0", "source-1"):
        assert topics(blocks[name]) == ["topic city/parking/+/telemetry in 1", "topic city/air/+/telemetry in 1"]
    assert topics(blocks["target"]) == ["topic city/parking/+/telemetry out 1", "topic city/air/+/telemetry out 1"]
    assert not [line for line in render(reverse_commands=False).splitlines() if "commands" in line and line[0] != "#"]


def test_from_the_cutover_commands_cross_back_to_every_source() -> None:
    blocks = connections(render(reverse_commands=True))
    for name in ("source-0", "source-1"):
        assert topics(blocks[name]) == [
            "topic city/parking/+/telemetry in 1",
            "topic city/air/+/telemetry in 1",
            "topic city/parking/+/commands out 1",
        ]
    assert topics(blocks["target"]) == [
        "topic city/parking/+/telemetry out 1",
        "topic city/air/+/telemetry out 1",
        "topic city/parking/+/commands in 1",
    ]


@pytest.mark.parametrize("reverse_commands", [False, True], ids=["replicate", "cutover"])
def test_each_direction_crosses_once(reverse_commands: bool) -> None:
    """Every topic goes in on one side and out on the other, never in or out on both: a message
    enters the bridge once and leaves it once per connection that carries it out."""
    blocks = connections(render(reverse_commands=reverse_commands))
    for topic in (*TELEMETRY, *(COMMANDS if reverse_commands else ())):
        directions = {
            name: [line.split()[2] for line in topics(block) if line.split()[1] == topic]
            for name, block in blocks.items()
        }
        into = [name for name, seen in directions.items() if seen == ["in"]]
        out = [name for name, seen in directions.items() if seen == ["out"]]
        assert sorted(into + out) == sorted(blocks), directions
        assert (into, out) in ((["source-0", "source-1"], ["target"]), (["target"], ["source-0", "source-1"]))


def test_each_connection_is_tls_verified_durable_and_logs_in_as_the_bridge() -> None:
    blocks = connections(render(reverse_commands=True))
    for end in (*SOURCES, TARGET):
        block = [line for line in blocks[end.name] if not line.startswith("topic ")]
        assert block == [
            f"address {end.address}",
            f"remote_clientid {end.client_id}",
            "remote_username move-bridge",
            "remote_password 5f1d0c",
            "bridge_protocol_version mqttv311",
            "try_private true",
            "cleansession false",
            "notifications false",
            "start_type automatic",
            "restart_timeout 2 30",
            f"bridge_cafile {end.cafile}",
            "bridge_insecure false",
            "bridge_tls_version tlsv1.2",
        ]


def test_the_bridge_persists_and_queues_as_much_as_the_brokers() -> None:
    conf = render(persistence_dir="/mosquitto/data/")
    head = [line for line in conf.split("\nconnection ", 1)[0].splitlines() if line and not line.startswith("#")]
    assert "persistence true" in head
    assert "persistence_location /mosquitto/data/" in head
    assert f"max_queued_messages {MAX_QUEUED_MESSAGES}" in head
    assert f"max_queued_bytes {MAX_QUEUED_BYTES}" in head


def test_the_bridge_listens_on_a_closed_unix_socket_alone() -> None:
    """Without a listener mosquitto 2 opens loopback 1883 to anonymous clients: one that admits nobody."""
    conf = render(persistence_dir="/mosquitto/data/")
    head = [line for line in conf.split("\nconnection ", 1)[0].splitlines() if line and not line.startswith("#")]
    assert [line for line in head if line.startswith(("listener", "port", "bind_address", "allow_", "password_"))] == [
        "listener 0 /mosquitto/data/closed.sock",
        "allow_anonymous false",
    ]
    assert "password_file" not in conf and "auth_plugin" not in conf and "plugin" not in conf


def test_the_same_input_renders_the_same_file() -> None:
    assert render() == render()
    assert render(reverse_commands=True) != render()
