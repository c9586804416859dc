"""Unit: the mosquitto renderers at their edges: the bounds they accept, the key each refusal
names, and the revoked devices' blocks of the device ACL.

The broker's own reading of these files is tests/contract/test_mosquitto.py and
test_device_revocation.py; the renderers' ordinary output is tests/unit/test_daemon_config.py.
"""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path

import pytest

from smartnation.program.daemon_config import DeviceClass, render_acl_file, render_device_acl_file
from smartnation.program.daemon_config.mosquitto import render_mosquitto_conf, render_tls_reloader
from tests.unit.test_daemon_config import CONF_ARGS, device

pytestmark = pytest.mark.unit


def refused(message: str) -> pytest.RaisesContext:
    """The whole message from its start: the key it names is the first word."""
    return pytest.raises(ValueError, match="^" + re.escape(message))


# --------------------------------------------------------------------------- broker config


@pytest.mark.parametrize("label", ["plain_port", "tls_port"])
@pytest.mark.parametrize("port", [1, 65535])
def test_a_port_from_1_to_65535_is_accepted(label: str, port: int) -> None:
    # The other port is the default (1883 or 8883), never the one under test.
    assert f"\nlistener {port}\n" in render_mosquitto_conf(**(CONF_ARGS | {label: port}))


@pytest.mark.parametrize("label", ["plain_port", "tls_port"])
@pytest.mark.parametrize("port", [0, 65536])
def test_a_port_outside_1_to_65535_is_refused_naming_it(label: str, port: int) -> None:
    with refused(f"{label}: expected a TCP port 1-65535, got {port}"):
        render_mosquitto_conf(**(CONF_ARGS | {label: port}))


@pytest.mark.parametrize(
    "label", ["certfile", "keyfile", "cafile", "password_file", "acl_file", "device_acl_file", "persistence_dir"]
)
def test_a_relative_path_is_refused_naming_its_argument(label: str) -> None:
    with refused(f"{label}: expected an absolute path without whitespace, got 'relative'"):
        render_mosquitto_conf(**(CONF_ARGS | {label: "relative"}))


# The directives the renderer writes, each of them documented in mosquitto.conf(5) and read by
# the real broker in tests/contract/test_mosquitto.py; anything else on a line stops mosquitto.
DIRECTIVES = {
    "acl_file",
    "allow_anonymous",
    "cafile",
    "certfile",
    "connection_messages",
    "keyfile",
    "listener",
    "log_dest",
    "log_timestamp",
    "log_timestamp_format",
    "log_type",
    "max_queued_bytes",
    "max_queued_messages",
    "password_file",
    "per_listener_settings",
    "persistence",
    "persistence_location",
    "protocol",
    "require_certificate",
    "tls_version",
    "use_identity_as_username",
}


@pytest.mark.parametrize("internal_tls", [True, False])
def test_every_line_of_the_conf_is_blank_a_comment_or_a_directive_with_a_value(internal_tls: bool) -> None:
    for line in render_mosquitto_conf(**(CONF_ARGS | {"internal_tls": internal_tls})).splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            assert key in DIRECTIVES and value, line


def test_a_persistence_dir_with_a_trailing_slash_gets_one_slash() -> None:
    conf = render_mosquitto_conf(**(CONF_ARGS | {"persistence_dir": "/mosquitto/data/"}))
    assert "\npersistence_location /mosquitto/data/\n" in conf


@pytest.mark.parametrize("address", ["", "127.0.0.1 ", "127.0.0.1\t::1"])
def test_a_bind_address_that_is_empty_or_has_whitespace_is_refused(address: str) -> None:
    with refused(f"bind_address: expected an address without whitespace, got {address!r}"):
        render_mosquitto_conf(**CONF_ARGS, bind_address=address)


# --------------------------------------------------------------------------- TLS reloader


@pytest.mark.parametrize("interval", [1, 3600])
def test_the_reloader_takes_1_to_3600_seconds_and_writes_them_and_the_directory_into_the_script(interval: int) -> None:
    # An ordinary path (capitals, digits, a dash) is no shell character.
    script = render_tls_reloader(tls_dir="/etc/mosquitto/X509-tls", interval_s=interval)
    assert "\ntls_dir=/etc/mosquitto/X509-tls\n" in script
    assert f"\ninterval={interval}\n" in script
    assert not re.search("@[A-Z_]+@", script), "a placeholder left in the script"


@pytest.mark.parametrize("interval", [0, 3601])
def test_the_reloader_refuses_an_interval_outside_1_to_3600(interval: int) -> None:
    with refused(f"interval_s: expected whole seconds 1-3600, got {interval}"):
        render_tls_reloader(tls_dir="/mosquitto/tls", interval_s=interval)


# The reloader's own loop, run by dash: a stand-in `sleep` (first on PATH) counts the rounds, runs
# the test's change for that round ($CALLS/at-<n>) and ends the loop after $ROUNDS; the broker is
# a process of the test's that ignores SIGHUP (MOSQUITTO_PID), so each signal the script sends shows
# as its "sent SIGHUP" line.
RELOADER_SLEEP = """#!/bin/sh
n=$(( $(cat "$CALLS/n" 2>/dev/null || echo 0) + 1 )); echo "$n" > "$CALLS/n"
[ -f "$CALLS/at-$n" ] && sh "$CALLS/at-$n"
[ "$n" -gt "$ROUNDS" ] && kill -KILL "$PPID"
exit 0
"""


def run_reloader(tmp_path: Path, reloaded: tuple[str, ...], at: dict[int, str]) -> list[str]:
    """The script's output lines over ``len(at) + 1`` rounds of a broker whose TLS files never
    change; ``at``: round -> shell run before that round's comparison."""
    tls, calls, tools = tmp_path / "tls", tmp_path / "calls", tmp_path / "bin"
    for folder in (tls, calls, tools):
        folder.mkdir()
    for name in ("tls.crt", "tls.key", "ca.crt"):
        (tls / name).write_text(f"{name} 1\n")
    (tools / "sleep").write_text(RELOADER_SLEEP)
    (tools / "sleep").chmod(0o755)
    for n, command in at.items():
        (calls / f"at-{n}").write_text(command + "\n")
    script = render_tls_reloader(tls_dir=str(tls), interval_s=7, reloaded_files=reloaded)
    broker = subprocess.Popen(["/bin/sleep", "60"], preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    try:
        env = {"PATH": f"{tools}:/usr/bin:/bin", "CALLS": str(calls), "ROUNDS": str(len(at) + 1)}
        done = subprocess.run(
            ["/bin/sh", "-c", script],
            env={**env, "MOSQUITTO_PID": str(broker.pid)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        broker.kill()
        broker.wait()
    assert done.stderr == ""
    return [line.replace(str(broker.pid), "PID") for line in done.stdout.splitlines()]


def test_the_reloader_signals_the_broker_once_per_change_of_a_watched_password_or_acl_file(tmp_path: Path) -> None:
    passwords, acl, other = tmp_path / "passwords", tmp_path / "acl", tmp_path / "other"
    for path in (passwords, acl, other):
        path.write_text("1\n")
    lines = run_reloader(
        tmp_path,
        (str(passwords), str(acl)),
        # A round with no change, each watched file changed, a file beside them changed.
        {2: f"echo 2 > {passwords}", 3: f"echo 2 > {acl}", 4: f"echo 2 > {other}", 5: ":"},
    )
    changed = "password or ACL file changed: sent SIGHUP to mosquitto (pid PID)"
    assert lines == [f"watching {tmp_path / 'tls'} {passwords} {acl} every 7s", changed, changed]


def test_the_reloader_watches_no_password_or_acl_file_unless_given_one(tmp_path: Path) -> None:
    passwords = tmp_path / "passwords"
    passwords.write_text("1\n")
    lines = run_reloader(tmp_path, (), {1: f"echo 2 > {passwords}", 2: ":"})
    assert lines == [f"watching {tmp_path / 'tls'}  every 7s"]


def test_the_reloader_writes_the_files_it_watches_into_the_script_in_order() -> None:
    script = render_tls_reloader(tls_dir="/mosquitto/tls", interval_s=5, reloaded_files=("/b/passwords", "/a/acl"))
    assert '\nreloaded="/b/passwords /a/acl"\n' in script
    assert '\nreloaded=""\n' in render_tls_reloader(tls_dir="/mosquitto/tls", interval_s=5)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("mosquitto/acl", "reloaded_files: expected an absolute path without whitespace, got 'mosquitto/acl'"),
        ("/mosquitto/pass words", "reloaded_files: expected an absolute path without whitespace"),
        ("/mosquitto/acl\n", "reloaded_files: expected an absolute path without whitespace"),
        (
            "/mosquitto/$(reboot)",
            "reloaded_files: '/mosquitto/$(reboot)' contains a character the shell would interpret",
        ),
        ("/mosquitto/acl;reboot", "reloaded_files: '/mosquitto/acl;reboot' contains a character the shell"),
        ("/mosquitto/*", "reloaded_files: '/mosquitto/*' contains a character the shell would interpret"),
    ],
)
def test_the_reloader_refuses_a_watched_file_that_is_relative_or_has_whitespace_or_shell_characters(
    path: str, message: str
) -> None:
    # The bad one after a good one: each is checked, not the first alone.
    with refused(message):
        render_tls_reloader(tls_dir="/mosquitto/tls", interval_s=5, reloaded_files=("/mosquitto/passwords", path))


@pytest.mark.parametrize("character", ["$", ";", "`", "*", " "])
def test_the_reloader_refuses_a_tls_dir_the_shell_would_split_or_interpret_naming_it(character: str) -> None:
    with refused("tls_dir: "):
        render_tls_reloader(tls_dir=f"/mosquitto/tls{character}x", interval_s=5, reloaded_files=("/mosquitto/acl",))


# --------------------------------------------------------------------------- ACL files


def test_the_acl_files_refuse_what_is_no_device_class() -> None:
    with refused("ACL file: expected DeviceClass, got 'parking'"):
        render_acl_file(["parking"])  # type: ignore[list-item]
    with refused("device ACL file: expected DeviceClass, got 'parking'"):
        render_device_acl_file(["parking"])  # type: ignore[list-item]


def test_a_username_shared_by_two_classes_is_refused_naming_both() -> None:
    first = device()
    second = DeviceClass(name="parking-v2", username="parking", publish=("city/parking/+/state",), subscribe=())
    with refused(
        "ACL file: username 'parking' is used by device classes 'parking-sensor' and 'parking-v2'; "
        "each class needs its own user"
    ):
        render_acl_file([first, second])


def test_each_revoked_device_gets_a_deny_all_block_before_the_patterns() -> None:
    # Mosquitto reads a user's own lines before the patterns: the deny ends the check there.
    assert render_device_acl_file([device()], revoked=["sensor-17", "sensor-4"]) == (
        "# Generated by smartnation (smartnation.daemon_config.mosquitto). Do not edit by hand.\n"
        "# %u is the device id: the common name of the client certificate (use_identity_as_username).\n"
        "\n# revoked device\nuser sensor-17\ntopic deny #\n"
        "\n# revoked device\nuser sensor-4\ntopic deny #\n"
        "\n# device class: parking-sensor\npattern write city/parking/%u/telemetry\n"
    )


@pytest.mark.parametrize(
    ("revoked", "complaint"),
    [
        (["sensor-4", "sensor-4"], "device ACL file: a revoked device is listed twice: ['sensor-4', 'sensor-4']"),
        (["sensor 4"], "device ACL file revoked device: username 'sensor 4' contains whitespace"),
        (["city/sensor-4"], "device ACL file: revoked device 'city/sensor-4' is not a device id (one topic level)"),
        (["sensor-+"], "device ACL file: revoked device 'sensor-+' is not a device id"),
        (["sensor-#"], "device ACL file: revoked device 'sensor-#' is not a device id"),
    ],
)
def test_a_revoked_entry_that_is_no_device_id_is_refused(revoked: list[str], complaint: str) -> None:
    with refused(complaint):
        render_device_acl_file([device()], revoked=revoked)
