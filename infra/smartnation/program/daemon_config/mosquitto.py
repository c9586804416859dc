"""Eclipse Mosquitto 2.x: broker configuration, password file and ACL file.

The three renderers are pure and deterministic, so a Pulumi preview of an unchanged
stack shows no diff on the ConfigMap/Secret that carries their output.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# mosquitto_passwd (2.0) writes `$7$<iterations>$<base64 salt>$<base64 hash>`: PBKDF2-HMAC-SHA512
# over the UTF-8 password, a 12-byte salt, 101 iterations, a 64-byte key, standard base64 with
# padding. The broker reads the iteration count from each line, but refuses salts that are not
# exactly 12 bytes, so both constants below must stay as they are.
PBKDF2_SHA512_ID = "7"
PBKDF2_ITERATIONS = 101
SALT_LENGTH = 12

# Iterations of the salt derivation; see _derive_salt. Kept well above PBKDF2_ITERATIONS so
# that the salt is never a cheaper way to test password guesses than the hash next to it.
_SALT_DERIVATION_ITERATIONS = 1000
_SALT_DERIVATION_CONTEXT = b"smartnation/mosquitto/password-salt/v1\x00"

_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
# MQTT strings are at most 65535 bytes of UTF-8 (MQTT 3.1.1 section 1.5.3).
_MQTT_STRING_MAX_BYTES = 65535


@dataclass(frozen=True)
class DeviceClass:
    """One kind of MQTT client and the topics it may use, e.g. all parking sensors.

    Internal consumers (a telemetry ingester) are device classes too: they only have
    ``subscribe`` patterns.
    """

    name: str
    """Human name of the class, lowercase DNS-label style (``parking-sensor``); used in comments."""
    username: str
    """MQTT username every client of this class connects with; no ':' and no whitespace."""
    publish: tuple[str, ...]
    """Topic filters this class may publish to (``topic write``); ``+`` and a final ``#`` allowed."""
    subscribe: tuple[str, ...]
    """Topic filters this class may subscribe to and receive from (``topic read``)."""

    def __post_init__(self) -> None:
        if not _NAME_RE.fullmatch(self.name):
            raise ValueError(
                f"device class name {self.name!r}: expected lowercase letters, digits and '-', "
                "starting and ending with a letter or digit, at most 63 characters"
            )
        validate_username(self.username, where=f"device class {self.name!r}")
        for field_name in ("publish", "subscribe"):
            topics = getattr(self, field_name)
            if isinstance(topics, str) or not isinstance(topics, tuple):
                raise ValueError(
                    f"device class {self.name!r}: {field_name} must be a tuple of topic filters, got {topics!r}"
                )
            for topic in topics:
                validate_topic_filter(topic, where=f"device class {self.name!r} {field_name}")
            if len(set(topics)) != len(topics):
                raise ValueError(f"device class {self.name!r}: {field_name} lists a topic twice: {topics!r}")
        if not self.publish and not self.subscribe:
            raise ValueError(f"device class {self.name!r}: needs at least one publish or subscribe topic")


def validate_username(username: str, *, where: str = "username") -> None:
    """Raise ValueError unless ``username`` can be written to a password file and an ACL file.

    The password file is ``username:hash`` per line and the ACL file ``user <name>``, so a ':'
    or any whitespace would be read back as a different user.
    """
    if not isinstance(username, str) or not username:
        raise ValueError(f"{where}: username must be a non-empty string, got {username!r}")
    if ":" in username:
        raise ValueError(f"{where}: username {username!r} contains ':', which separates user and hash")
    if any(ch.isspace() or not ch.isprintable() for ch in username):
        raise ValueError(f"{where}: username {username!r} contains whitespace or control characters")
    if len(username.encode()) > _MQTT_STRING_MAX_BYTES:
        raise ValueError(f"{where}: username is longer than {_MQTT_STRING_MAX_BYTES} bytes")


def validate_topic_filter(topic: str, *, where: str = "topic") -> None:
    """Raise ValueError unless ``topic`` is an MQTT topic filter we accept in an ACL.

    Stricter than MQTT on purpose: empty levels (``a//b``, a leading or trailing ``/``) are
    legal MQTT but in an ACL they are almost always a typo that silently matches nothing.
    """
    if not isinstance(topic, str) or not topic:
        raise ValueError(f"{where}: topic filter must be a non-empty string, got {topic!r}")
    if len(topic.encode()) > _MQTT_STRING_MAX_BYTES:
        raise ValueError(f"{where}: topic filter {topic[:40]!r}... is longer than {_MQTT_STRING_MAX_BYTES} bytes")
    if any(ch.isspace() or not ch.isprintable() for ch in topic):
        raise ValueError(f"{where}: topic filter {topic!r} contains whitespace or control characters")
    levels = topic.split("/")
    for index, level in enumerate(levels):
        if level == "":
            raise ValueError(f"{where}: topic filter {topic!r} has an empty level (leading, trailing or double '/')")
        if "#" in level and (level != "#" or index != len(levels) - 1):
            raise ValueError(f"{where}: topic filter {topic!r}: '#' must be a whole level and the last one")
        if "+" in level and level != "+":
            raise ValueError(f"{where}: topic filter {topic!r}: '+' must be a whole level")


LOGGING = (
    # stderr, not stdout: mosquitto writes its log with stdio, and stdout into a pipe (the
    # container runtime's) is block-buffered, so lines reached `kubectl logs` in 4 KiB chunks,
    # minutes late on a quiet broker (the move's bridge showed no line at all for minutes, and the
    # rollback's wait for the bridge's connection line took 90 s). stderr is unbuffered.
    "log_dest stderr",
    "log_type error",
    "log_type warning",
    "log_type notice",
    "log_type information",
    "log_timestamp true",
    "log_timestamp_format %Y-%m-%dT%H:%M:%S",
)
"""Every broker's logging (the platform's and a move's bridge): stderr, for the container runtime."""

# Per client, above its in-flight window: at 2,000 readings/s about 50 s of an ingest's backlog
# (its window is INGEST_RECEIVE_MAXIMUM more); 32 MiB of payload at most per client.
MAX_QUEUED_MESSAGES = 100_000
MAX_QUEUED_BYTES = 32 * 1024 * 1024


def render_mosquitto_conf(
    *,
    plain_port: int,
    tls_port: int,
    certfile: str,
    keyfile: str,
    cafile: str,
    password_file: str,
    acl_file: str,
    device_acl_file: str,
    persistence_dir: str,
    internal_tls: bool,
    bind_address: str | None = None,
) -> str:
    """Render ``mosquitto.conf`` for a broker with an internal and a device listener.

    Each listener has its own authentication (``per_listener_settings true``):

    - internal (``plain_port``; in-cluster clients, the APIs): username and password from
      ``password_file``, rights from ``acl_file`` (per user); with ``internal_tls`` it serves
      TLS with the same key pair as the device listener (server authentication only) and a
      client without TLS is refused; without it (the services' local test harness) plain MQTT;
    - TLS (devices): a client certificate signed by ``cafile`` is required and its common name
      is the client's username, i.e. the device id; rights from ``device_acl_file``, which holds
      only patterns (``%u``), so every device is confined to its own topics and no password,
      not even an internal client's, logs in there.

    ``bind_address`` (optional, default: every interface) restricts both listeners to one
    address; the contract tests use 127.0.0.1, in a pod the default is what is wanted.
    """
    for label, port in (("plain_port", plain_port), ("tls_port", tls_port)):
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise ValueError(f"{label}: expected a TCP port 1-65535, got {port!r}")
    if plain_port == tls_port:
        raise ValueError(f"plain_port and tls_port must differ, both are {plain_port}")
    paths = {
        "certfile": certfile,
        "keyfile": keyfile,
        "cafile": cafile,
        "password_file": password_file,
        "acl_file": acl_file,
        "device_acl_file": device_acl_file,
        "persistence_dir": persistence_dir,
    }
    for label, path in paths.items():
        _require_absolute_path(label, path)
    if bind_address is not None and (not bind_address or any(ch.isspace() for ch in bind_address)):
        raise ValueError(f"bind_address: expected an address without whitespace, got {bind_address!r}")

    # mosquitto 1.x glues persistence_location and the file name together, so it must end in
    # '/'; 2.x adds a '/' of its own, and the resulting '//' is harmless. Safe for both.
    persistence_location = persistence_dir.rstrip("/") + "/"
    address = f" {bind_address}" if bind_address else ""
    lines = [
        "# Generated by smartnation (smartnation.daemon_config.mosquitto). Do not edit by hand.",
        "",
        "# --- Security: each listener authenticates on its own -----------------------------",
        "# Internal clients log in with passwords on the plain listener only; devices with their",
        "# own client certificate on the TLS listener only. A password is worth nothing on the",
        "# TLS listener, a device certificate nothing on the plain one.",
        "per_listener_settings true",
        "",
        "# --- Process -------------------------------------------------------------------------",
        "# No `user` directive on purpose. In Kubernetes the broker starts as a non-root UID and",
        "# mosquitto ignores `user` then; started as root (the Debian service, the contract test)",
        "# it drops to its default user `mosquitto` after binding the ports.",
        "",
        "# --- Persistence: retained messages and durable sessions survive a restart ------------",
        "persistence true",
        f"persistence_location {persistence_location}",
        "",
        "# --- Queues: what a publisher was acknowledged is kept for a slow subscriber ---------",
        "# QoS 1 messages beyond a subscriber's in-flight window wait in its queue, and mosquitto",
        "# drops what exceeds max_queued_messages (default 1000) although the device already got",
        "# its PUBACK: an ingest that fell that far behind lost readings for good (contract test).",
        "# The queue is bounded per client by count and by payload bytes, so memory stays bounded.",
        f"max_queued_messages {MAX_QUEUED_MESSAGES}",
        f"max_queued_bytes {MAX_QUEUED_BYTES}",
        "",
        "# --- Logging: stdout only, so the container runtime collects it ---------------------",
        *LOGGING,
        "connection_messages true",
        "",
        "# --- Internal MQTT listener: in-cluster clients only -----------------------------------",
        "# A NetworkPolicy and a ClusterIP Service keep it inside the cluster; passwords and ACLs",
        "# apply, and the passwords travel inside TLS unless the caller asked for plain MQTT.",
        f"listener {plain_port}{address}",
        "protocol mqtt",
        *(
            [
                "# Server authentication only: clients check the broker against the issuer's CA.",
                f"certfile {certfile}",
                f"keyfile {keyfile}",
                "tls_version tlsv1.2",
            ]
            if internal_tls
            else ["# Plain MQTT: only for a broker on loopback (the services' test harness)."]
        ),
        "# Every client must log in; no anonymous access.",
        "allow_anonymous false",
        "# username -> PBKDF2-SHA512 hash, rendered by render_password_file.",
        f"password_file {password_file}",
        "# Which internal user may publish (write) or subscribe (read) on which topics.",
        f"acl_file {acl_file}",
        "",
        "# --- MQTT over TLS listener: devices, each with its own certificate -----------------",
        f"listener {tls_port}{address}",
        "protocol mqtt",
        f"certfile {certfile}",
        f"keyfile {keyfile}",
        "# Minimum protocol version: TLS 1.2 and 1.3 are accepted, older versions refused.",
        "tls_version tlsv1.2",
        "# A client certificate signed by this CA (the site CA) is required; without one the",
        "# handshake fails before any MQTT packet, so no password is ever checked here.",
        f"cafile {cafile}",
        "require_certificate true",
        "# The certificate's common name is the username: the device id the ACL patterns use.",
        "use_identity_as_username true",
        "allow_anonymous false",
        "# Patterns only (%u): a device publishes and reads under its own id, nothing else.",
        f"acl_file {device_acl_file}",
        "",
    ]
    return "\n".join(lines)


def render_password_file(credentials: Mapping[str, str]) -> str:
    """Render a mosquitto password file from ``{username: cleartext password}``.

    Each line is what ``mosquitto_passwd`` writes (``$7$`` PBKDF2-SHA512), and the whole
    output is a pure function of its input: the same credentials render the same bytes.
    """
    lines = []
    for username in sorted(credentials):
        validate_username(username, where="password file")
        password = credentials[username]
        if not isinstance(password, str) or not password:
            raise ValueError(f"password file: user {username!r} has an empty or non-string password")
        lines.append(f"{username}:{hash_password(password, salt=_derive_salt(username, password))}")
    return "".join(f"{line}\n" for line in lines)


def hash_password(password: str, *, salt: bytes, iterations: int = PBKDF2_ITERATIONS) -> str:
    """Return the ``$7$`` hash mosquitto_passwd writes for ``password`` with this ``salt``."""
    if len(salt) != SALT_LENGTH:
        raise ValueError(f"mosquitto requires a {SALT_LENGTH}-byte salt, got {len(salt)} bytes")
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    salt_b64 = base64.b64encode(salt).decode()
    digest_b64 = base64.b64encode(digest).decode()
    return f"${PBKDF2_SHA512_ID}${iterations}${salt_b64}${digest_b64}"


def _derive_salt(username: str, password: str) -> bytes:
    # Why not os.urandom like mosquitto_passwd: the file is rendered at every `pulumi preview`
    # and `up`; random salts would change the Secret every time, so every preview would show a
    # diff and every update would roll the broker. The salt is therefore derived from the
    # username and the password with HMAC-SHA512, which keeps what a salt is for: it differs
    # per user (two users with one password get different hashes) and per password, and a
    # precomputed table would have to be built for each (username, password) pair.
    # The HMAC is iterated (PBKDF2-HMAC-SHA512) more times than the hash itself: a salt computed
    # with a single HMAC of the password would let an attacker who has the file test guesses
    # ~100 times faster than through the hash. The username is the PBKDF2 salt of this step.
    return hashlib.pbkdf2_hmac(
        "sha512",
        password.encode(),
        _SALT_DERIVATION_CONTEXT + username.encode(),
        _SALT_DERIVATION_ITERATIONS,
        dklen=SALT_LENGTH,
    )


def render_acl_file(classes: Sequence[DeviceClass]) -> str:
    """Render a mosquitto ACL file: per user, ``topic write`` for publish, ``topic read`` for subscribe.

    A filter in both lists becomes one ``topic readwrite`` line. Users not in the file get
    nothing (mosquitto denies by default once an acl_file is set).
    """
    seen: dict[str, str] = {}
    blocks = ["# Generated by smartnation (smartnation.daemon_config.mosquitto). Do not edit by hand.\n"]
    for device_class in classes:
        if not isinstance(device_class, DeviceClass):
            raise ValueError(f"ACL file: expected DeviceClass, got {device_class!r}")
        if device_class.username in seen:
            raise ValueError(
                f"ACL file: username {device_class.username!r} is used by device classes "
                f"{seen[device_class.username]!r} and {device_class.name!r}; each class needs its own user"
            )
        seen[device_class.username] = device_class.name
        lines = [f"# device class: {device_class.name}", f"user {device_class.username}"]
        for topic in device_class.publish:
            access = "readwrite" if topic in device_class.subscribe else "write"
            lines.append(f"topic {access} {topic}")
        lines.extend(f"topic read {topic}" for topic in device_class.subscribe if topic not in device_class.publish)
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


def device_patterns(device_class: DeviceClass) -> list[tuple[str, str]]:
    """(access, pattern) lines of one device class: each filter's one ``+`` level, which stands
    for the device id, becomes ``%u``, the username (the certificate's common name)."""
    lines = []
    for field_name, access in (("publish", "write"), ("subscribe", "read")):
        for topic in getattr(device_class, field_name):
            levels = topic.split("/")
            if levels.count("+") != 1 or "#" in levels:
                raise ValueError(
                    f"device class {device_class.name!r} {field_name}: topic filter {topic!r} must have exactly "
                    "one '+' level (the device id) and no '#', so that a device is confined to its own topics"
                )
            lines.append((access, "/".join("%u" if level == "+" else level for level in levels)))
    return lines


def render_device_acl_file(classes: Sequence[DeviceClass], revoked: Sequence[str] = ()) -> str:
    """Render the TLS listener's ACL file: ``pattern`` lines, one per device-class filter, and a
    deny-all block per revoked device.

    Patterns apply to every client of the listener, and the listener's username is the device
    id from its certificate, so a device may publish and read only topics that carry its own id.
    No ``user`` block grants anything: a certificate whose common name happens to be an internal
    client's name gets a device's rights, not that client's. A filter in both lists becomes
    ``readwrite``.

    ``revoked``: device ids whose certificates must no longer work. Mosquitto checks a user's own
    lines before the patterns and a ``deny`` there ends the check, so a revoked device may still
    complete the TLS handshake (its certificate is valid until it expires: no CRL here) but
    publishes nothing and receives nothing, from the next publish on once mosquitto re-reads
    this file (SIGHUP).
    """
    blocks = [
        "# Generated by smartnation (smartnation.daemon_config.mosquitto). Do not edit by hand.\n"
        "# %u is the device id: the common name of the client certificate (use_identity_as_username).\n"
    ]
    if len(set(revoked)) != len(revoked):
        raise ValueError(f"device ACL file: a revoked device is listed twice: {sorted(revoked)}")
    for device_id in revoked:
        validate_username(device_id, where="device ACL file revoked device")
        if any(ch in device_id for ch in "/+#"):
            raise ValueError(f"device ACL file: revoked device {device_id!r} is not a device id (one topic level)")
        blocks.append(f"# revoked device\nuser {device_id}\ntopic deny #\n")
    for device_class in classes:
        if not isinstance(device_class, DeviceClass):
            raise ValueError(f"device ACL file: expected DeviceClass, got {device_class!r}")
        access_by_pattern: dict[str, set[str]] = {}
        for access, pattern in device_patterns(device_class):
            access_by_pattern.setdefault(pattern, set()).add(access)
        lines = [f"# device class: {device_class.name}"]
        for pattern, accesses in access_by_pattern.items():
            access = "readwrite" if accesses == {"read", "write"} else accesses.pop()
            lines.append(f"pattern {access} {pattern}")
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


def _require_absolute_path(label: str, path: str) -> None:
    if not isinstance(path, str) or not path.startswith("/") or any(ch.isspace() for ch in path):
        raise ValueError(f"{label}: expected an absolute path without whitespace, got {path!r}")


# The TLS reloader runs in a sidecar image that has only dash and a few coreutils (the platform's
# mc image), so the script uses the shell's own `read`, `kill` and `printf` plus `sleep`.
_RELOADER_TEMPLATE = """\
#!/bin/sh
# Generated by smartnation (smartnation.daemon_config.mosquitto). Do not edit by hand.
#
# Mosquitto reads its certificate and key at start and again on SIGHUP, never by itself. cert-manager
# renews the certificate into the mounted Secret (the kubelet swaps the volume's files atomically)
# and this loop, in a sidecar sharing the Pod's process namespace, sends SIGHUP when the files'
# content changed: the TLS listener then serves the new certificate without a restart and without
# dropping a connection. It does the same for the password and ACL files in `reloaded` below:
# mosquitto re-reads them on SIGHUP too, so a user added to a running broker (a move's bridge)
# logs in without a restart of the broker and of every device connection.
set -u
tls_dir=@TLS_DIR@
interval=@INTERVAL@
reloaded="@RELOADED@"

content() {
  out=""
  for file in "$@"; do
    [ -r "$file" ] || continue
    while IFS= read -r line || [ -n "$line" ]; do
      out="$out$line
"
    done < "$file"
  done
  printf '%s' "$out"
}

# MOSQUITTO_PID names the broker where there is no Pod to search (the contract tests); in the Pod
# the broker is the process named mosquitto in the shared process namespace.
broker_pids() {
  if [ -n "${MOSQUITTO_PID:-}" ]; then
    printf '%s\\n' "$MOSQUITTO_PID"
    return
  fi
  for dir in /proc/[0-9]*; do
    comm=""
    read -r comm 2>/dev/null < "$dir/comm" || continue
    [ "$comm" = mosquitto ] && printf '%s\\n' "${dir#/proc/}"
  done
}

# `check` (the container's probes): the certificate is readable and the broker's process visible,
# i.e. the sidecar can do its job.
if [ "${1:-}" = check ]; then
  [ -r "$tls_dir/tls.crt" ] || { printf 'cannot read %s/tls.crt\\n' "$tls_dir"; exit 1; }
  [ -n "$(broker_pids)" ] || { printf 'no mosquitto process in sight\\n'; exit 1; }
  exit 0
fi

# SIGHUP re-reads the certificate and key, but not the CA that client certificates are checked
# against (mosquitto 2.0.11): a new CA takes a restart, which SIGTERM gets (the kubelet starts
# the container again). cert-manager renews the key pair under the same CA, so that is rare.
pair="$tls_dir/tls.crt $tls_dir/tls.key"
seen_pair=$(content $pair)
seen_ca=$(content "$tls_dir/ca.crt")
seen_files=$(content $reloaded)
printf 'watching %s %s every %ss\\n' "$tls_dir" "$reloaded" "$interval"
while :; do
  sleep "$interval"
  now_pair=$(content $pair)
  now_ca=$(content "$tls_dir/ca.crt")
  now_files=$(content $reloaded)
  if [ "$now_ca" != "$seen_ca" ]; then
    signal=TERM what="CA changed: restarting"
  elif [ "$now_pair" != "$seen_pair" ]; then
    signal=HUP what="certificate changed: sent SIGHUP to"
  elif [ "$now_files" != "$seen_files" ]; then
    signal=HUP what="password or ACL file changed: sent SIGHUP to"
  else
    continue
  fi
  pids=$(broker_pids)
  if [ -z "$pids" ]; then
    # Not running (restarting): it reads the new files when it starts.
    printf '%s: no mosquitto process to signal\\n' "$what"
  fi
  for pid in $pids; do
    if kill -"$signal" "$pid"; then
      printf '%s mosquitto (pid %s)\\n' "$what" "$pid"
    fi
  done
  seen_pair=$now_pair
  seen_ca=$now_ca
  seen_files=$now_files
done
"""


def render_tls_reloader(*, tls_dir: str, interval_s: int, reloaded_files: Sequence[str] = ()) -> str:
    """Render the dash script that sends mosquitto SIGHUP when the files in ``tls_dir`` or the
    ``reloaded_files`` (password and ACL files) change.

    Mosquitto 2.0 re-reads ``certfile``/``keyfile``/``cafile`` on SIGHUP (as well as its config,
    password and ACL files), so a certificate cert-manager renewed into the mounted Secret is served
    from the next TLS handshake on, while established connections stay up; a password or ACL the
    kubelet refreshed in the mounted volume applies from the next login or publish.
    """
    _require_absolute_path("tls_dir", tls_dir)
    for path in reloaded_files:
        _require_absolute_path("reloaded_files", path)
    if isinstance(interval_s, bool) or not isinstance(interval_s, int) or not 1 <= interval_s <= 3600:
        raise ValueError(f"interval_s: expected whole seconds 1-3600, got {interval_s!r}")
    for label, path in (("tls_dir", tls_dir), *(("reloaded_files", path) for path in reloaded_files)):
        if any(ch in path for ch in "'\"$`\\;&|<>()*?[]#~") or any(ch.isspace() for ch in path):
            raise ValueError(f"{label}: {path!r} contains a character the shell would interpret")
    return (
        _RELOADER_TEMPLATE.replace("@TLS_DIR@", tls_dir)
        .replace("@INTERVAL@", str(interval_s))
        .replace("@RELOADED@", " ".join(reloaded_files))
    )
