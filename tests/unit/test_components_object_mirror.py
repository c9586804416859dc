"""The move's bucket mirror (components/object_mirror.py): its script run by dash against a stand-in
``mc`` (logs in to both MinIO, waiting while one does not admit it, bounded; then one `mc mirror`
pass an interval, going on after a failed pass; stops at SIGTERM at once), and its reader
container's command, which must stop at SIGTERM at once too."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from smartnation.program.components import object_mirror

pytestmark = pytest.mark.unit

FAKE_MC = """#!/bin/sh
# Logs each call; `alias set NAME ...`, `ls NAME` and `mirror` fail while $STATE/refuse-NAME
# (refuse-mirror) holds a count above 0.
echo "$*" >> "$STATE/calls"
case "$1 $2" in
    "alias set") name=$3 ;;
    "ls "*) name=$2 ;;
    "mirror "*) name=mirror ;;
    *) exit 0 ;;
esac
left=$(cat "$STATE/refuse-$name" 2>/dev/null || echo 0)
if [ "$left" -gt 0 ]; then echo $((left - 1)) > "$STATE/refuse-$name"; exit 3; fi
exit 0
"""
FAKE_SLEEP = """#!/bin/sh
# Takes no time; fails from its $SLEEPS_ALLOWED + 1st call on (which ends the mirror's loop).
n=$(($(cat "$STATE/sleeps" 2>/dev/null || echo 0) + 1)); echo $n > "$STATE/sleeps"
[ "$n" -le "$SLEEPS_ALLOWED" ]
"""
SOURCE = "alias set source https://dev-object-storage.smartnation-dev.svc.cluster.local:9000 root secret"
TARGET = "alias set target https://dev-object-storage.smartnation-dev.svc:9000 root secret"
PASS = "mirror --overwrite --remove --retry source/ target/"


def _env(tmp_path: Path, refuse: dict[str, int], sleeps: int, real_sleep: bool = False) -> tuple[dict, Path]:
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    bin_dir.mkdir()
    state.mkdir()
    (bin_dir / "mc").write_text(FAKE_MC)
    (bin_dir / "mc").chmod(0o755)
    if not real_sleep:
        (bin_dir / "sleep").write_text(FAKE_SLEEP)
        (bin_dir / "sleep").chmod(0o755)
    for name, count in refuse.items():
        (state / f"refuse-{name}").write_text(f"{count}\n")
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "STATE": str(state),
        "SLEEPS_ALLOWED": str(sleeps),
        "MIRROR_INTERVAL": "5",
        "SOURCE_ENDPOINT": "https://dev-object-storage.smartnation-dev.svc.cluster.local:9000",
        "TARGET_ENDPOINT": "https://dev-object-storage.smartnation-dev.svc:9000",
        "MINIO_ROOT_USER": "root",
        "MINIO_ROOT_PASSWORD": "secret",
    }
    return env, state


def _calls(state: Path) -> list[str]:
    return (state / "calls").read_text().splitlines() if (state / "calls").exists() else []


def _run(tmp_path: Path, refuse: dict[str, int], sleeps: int) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    env, state = _env(tmp_path, refuse, sleeps)
    done = subprocess.run(
        ["dash", "-c", object_mirror.mirror_script()], env=env, capture_output=True, text=True, timeout=60
    )
    return done, _calls(state)


def test_the_mirror_logs_in_to_both_sites_then_mirrors_every_bucket_a_pass_an_interval(tmp_path: Path) -> None:
    # Two sleeps in the source's login, then two between passes; the fifth fails and ends the loop.
    done, calls = _run(tmp_path, {"source": 2}, sleeps=4)
    # Refused twice (the source's load balancer or policy not there yet), admitted the third time.
    assert calls == [SOURCE, SOURCE, SOURCE, "ls source", TARGET, "ls target", PASS, PASS, PASS]
    assert done.stdout.count("waiting for source") == 2
    assert "mirroring every bucket of https://dev-object-storage.smartnation-dev.svc.cluster.local:9000" in done.stdout
    # Only a failed wait between passes ends it, and not quietly (the kubelet starts it again).
    assert (done.returncode, done.stderr.strip()) == (1, "the wait between passes failed (MIRROR_INTERVAL=5)")


def test_a_failed_pass_is_said_and_the_next_one_runs(tmp_path: Path) -> None:
    done, calls = _run(tmp_path, {"mirror": 1}, sleeps=1)
    assert calls[-2:] == [PASS, PASS]
    assert "mirror pass failed (exit 3); again in 5 s" in done.stderr


def test_a_site_that_never_admits_the_mirror_fails_it_after_the_bounded_wait(tmp_path: Path) -> None:
    done, calls = _run(tmp_path, {"target": 10_000}, sleeps=10_000)
    assert done.returncode == 1
    assert (
        done.stderr.strip() == "target (https://dev-object-storage.smartnation-dev.svc:9000) did not admit the mirror"
    )
    assert calls.count(TARGET) == object_mirror.WAIT_TRIES
    assert not any(call.startswith("mirror") for call in calls), "never mirrors into a site it cannot log in to"


def test_the_mirror_stops_at_sigterm_at_once_with_exit_0(tmp_path: Path) -> None:
    env, state = _env(tmp_path, {}, sleeps=0, real_sleep=True)
    env["MIRROR_INTERVAL"] = "600"
    # Started as a session leader, as PID 1 of its container is.
    proc = subprocess.Popen(["dash", "-c", object_mirror.mirror_script()], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while PASS not in _calls(state):
            assert time.monotonic() < deadline and proc.poll() is None, "no pass started"
            time.sleep(0.1)
        time.sleep(0.3)  # in the 600 s sleep between passes now
        began = time.monotonic()
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert time.monotonic() - began < 3
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the background sleep, left by the shell's exit
        proc.wait()


def test_the_reader_idles_until_sigterm_and_then_exits_0_at_once() -> None:
    command = object_mirror.reader_command()
    assert command[0] == "python3.11"
    # Started as a session leader, as PID 1 of its container is: a default SIGTERM would still end
    # it here, so the test checks the handler's exit code (0), not just that it ended.
    proc = subprocess.Popen([sys.executable, *command[1:]], start_new_session=True)
    try:
        time.sleep(1.0)
        assert proc.poll() is None, "it must idle, not exit"
        began = time.monotonic()
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert time.monotonic() - began < 5
    finally:
        if proc.poll() is None:
            proc.kill()
