"""The broker bridge of a move (docs/move.md): a Mosquitto of its own on the new site whose only
work is its bridge connections.

Why a broker of its own and not a bridge section in the new site's brokers: an environment's
broker pods are independent (docs/broker-ha.md), each with its own devices, so the bridge must
subscribe to every pod of the old site, and it must hand each message to exactly one pod of the
new site (the ingest subscribes to every pod: a bridge in each of N pods would deliver each
reading N times). One bridge broker, one connection per old pod ("in") and one to the new site's
internal Service ("out"), does both.

What crosses, by phase:
- replicate: the devices' publish topics (telemetry), old site -> new site: the new site's
  ingest sees live traffic (and acknowledges what the old site stored, which arrives by
  replication);
- from the cutover on, also the devices' subscribe topics (commands), new site -> old site: the
  new site's APIs reach the devices still connected to the old site until they reconnect, while
  their readings keep arriving on the new site, whose database now stores them;
- in the rollback the same file with the sites' roles swapped by the caller
  (components/broker_bridge.py): ``sources`` are then the new site's pods (where devices that
  reconnected there are heard) and ``target`` the old site, which serves again.

In general: ``sources`` are the brokers the devices publish to, one connection each (their
telemetry in, commands out to every one), ``target`` the site that serves (telemetry out to it,
its commands in).

The topic sets of the two directions never overlap (a device class's publish and subscribe
filters are checked disjoint by the caller), so no message can loop between the connections.
The renderer is pure: the same input, the same file, so an unchanged stack previews no diff.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from smartnation.program.daemon_config.mosquitto import (
    LOGGING,
    MAX_QUEUED_BYTES,
    MAX_QUEUED_MESSAGES,
    validate_topic_filter,
    validate_username,
)

QOS = 1
"""Both directions: a message is kept in the bridge's queue (persisted) until the far side
acknowledged it, up to the brokers' own bounds per connection (MAX_QUEUED_MESSAGES and
MAX_QUEUED_BYTES); mosquitto drops what exceeds them."""
CLOSED_SOCKET = "closed.sock"
"""The bridge broker's only listener, in its persistence directory: a Unix socket that admits nobody."""
RESTART_TIMEOUT = "2 30"
"""Reconnect backoff, seconds from 2 up to 30: a site link blip costs seconds, not minutes."""


@dataclass(frozen=True)
class BridgeEnd:
    """One broker the bridge connects to."""

    name: str
    """The connection's name (``source-0``, ``target``): log lines and the local client id."""
    address: str
    """``host:port`` as the broker's certificate names the host."""
    client_id: str
    """The bridge's client id there: stable, so a durable session (``cleansession false``) keeps
    what was published while the bridge was away."""
    cafile: str
    """The issuer CA of that broker's certificate (TLS verified, hostname included)."""


def render_bridge_conf(
    *,
    sources: Sequence[BridgeEnd],
    target: BridgeEnd,
    device_topics: Sequence[str],
    command_topics: Sequence[str],
    username: str,
    password: str,
    reverse_commands: bool,
    persistence_dir: str,
) -> str:
    """``mosquitto.conf`` of the bridge broker: one connection per source pod and one to the target,
    and no listener anyone can use (a Unix socket in ``persistence_dir`` that admits nobody).

    ``device_topics`` cross from every source to the target; with ``reverse_commands`` (the
    cutover on), ``command_topics`` cross from the target to every source."""
    if not sources:
        raise ValueError("bridge: at least one source broker")
    validate_username(username, where="bridge username")
    # mosquitto strips a value's leading and trailing whitespace (the bridge then logs in with
    # another password) and refuses a whole file with a control character in it (contract test).
    if not password or not password.isprintable() or password != password.strip():
        raise ValueError(
            "bridge password: expected one line of printable characters, not empty, without leading or "
            "trailing whitespace"
        )
    if not device_topics:
        raise ValueError("bridge: at least one device topic to carry")
    for topic in (*device_topics, *command_topics):
        validate_topic_filter(topic, where="bridge topic")
        if any(ch.isspace() for ch in topic):
            raise ValueError(f"bridge topic {topic!r}: a bridge's topic line cannot hold whitespace")
    both = sorted(set(device_topics) & set(command_topics))
    if both:
        raise ValueError(f"bridge: {both} would cross both ways and loop between the sites")
    names = [end.name for end in (*sources, target)]
    if len(set(names)) != len(names):
        raise ValueError(f"bridge: connection names must differ, got {names}")
    lines = [
        "# Generated by smartnation (smartnation.daemon_config.mosquitto_bridge). Do not edit by hand.",
        "# The move's broker bridge: its connections are its whole work.",
        "",
        "# No listener for anyone. Without one mosquitto 2 opens loopback port 1883 to anonymous",
        "# clients, and what one published there crossed to both sites with the bridge's rights",
        "# (commands to the old site's devices; contract test). A Unix socket that admits nobody",
        "# (no password file) takes its place.",
        f"listener 0 {persistence_dir.rstrip('/')}/{CLOSED_SOCKET}",
        "allow_anonymous false",
        "",
        "# A restart keeps what is queued towards either side.",
        "persistence true",
        f"persistence_location {persistence_dir.rstrip('/')}/",
        "# What one side acknowledged to the bridge waits here for the other: a backlog the old site",
        "# kept while the bridge was away arrives faster than the new site takes it, and mosquitto's",
        "# default queue (1000 per connection) dropped the rest for good (contract test). The",
        "# brokers' bounds instead, by count and by payload bytes.",
        f"max_queued_messages {MAX_QUEUED_MESSAGES}",
        f"max_queued_bytes {MAX_QUEUED_BYTES}",
        *LOGGING,
        "",
    ]
    for source in sources:
        lines += _connection(source, username, password)
        lines += [f"topic {topic} in {QOS}" for topic in device_topics]
        if reverse_commands:
            lines += [f"topic {topic} out {QOS}" for topic in command_topics]
        lines.append("")
    lines += _connection(target, username, password)
    lines += [f"topic {topic} out {QOS}" for topic in device_topics]
    if reverse_commands:
        lines += [f"topic {topic} in {QOS}" for topic in command_topics]
    lines.append("")
    return "\n".join(lines)


def _connection(end: BridgeEnd, username: str, password: str) -> list[str]:
    return [
        f"connection {end.name}",
        f"address {end.address}",
        f"remote_clientid {end.client_id}",
        f"remote_username {username}",
        f"remote_password {password}",
        "bridge_protocol_version mqttv311",
        # Mosquitto to Mosquitto: the far side knows it is a bridge, keeps retain flags as
        # published and sends nothing back on the connection it came from.
        "try_private true",
        # A durable session there: what arrives while the bridge is away waits for it.
        "cleansession false",
        # No $SYS/broker/connection/... status messages on the far side (no ACL grants them).
        "notifications false",
        "start_type automatic",
        f"restart_timeout {RESTART_TIMEOUT}",
        f"bridge_cafile {end.cafile}",
        "bridge_insecure false",
        "bridge_tls_version tlsv1.2",
    ]


__all__ = ["CLOSED_SOCKET", "BridgeEnd", "render_bridge_conf"]
