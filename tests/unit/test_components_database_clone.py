"""The database replica's clone script, as the program declares it, run by sh with stand-in tools.

The replica's init container clones the primary once (pg_basebackup) and marks the copy a standby;
a restarted replica whose volume already holds a cluster must not clone over it. test_stack.py
checks the script names pg_basebackup; here it runs (`sh -c`, the container's own command) with
`pg_isready` and `pg_basebackup` stood in by scripts that record their arguments, so a changed
flag, variable or condition fails. The integration tests run it in the real image on the clusters.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from tests.unit.harness import Registered

pytestmark = pytest.mark.unit

STATEFULSET = "kubernetes:apps/v1:StatefulSet"

# Records its arguments, one per line, then a separator; `pg_isready` fails its first call (the
# primary not up yet), `pg_basebackup` writes PG_VERSION into -D and exits $BASEBACKUP_EXIT.
TOOL = """#!/bin/sh
log="$CALLS/$(basename "$0")"
for arg in "$@"; do printf '%s\\n' "$arg" >> "$log"; done
echo -- >> "$log"
case "$(basename "$0")" in
  pg_isready) [ -e "$CALLS/ready" ] && exit 0; : > "$CALLS/ready"; exit 2 ;;
  sleep) exit 0 ;;
  pg_basebackup)
    while [ $# -gt 0 ]; do [ "$1" = -D ] && echo 17 > "$2/PG_VERSION"; shift; done
    exit "${BASEBACKUP_EXIT:-0}" ;;
esac
"""


def clone_container(build_stack) -> dict:
    stack = build_stack("production")
    (replica,) = [
        r for r in stack.resources if r.type == STATEFULSET and r.plain["metadata"]["name"].endswith("database-replica")
    ]
    assert isinstance(replica, Registered)
    (clone,) = replica.plain["spec"]["template"]["spec"]["initContainers"]
    assert clone["name"] == "clone-primary"
    return clone


def run_clone(clone: dict, tmp_path: Path, **extra: str) -> tuple[subprocess.CompletedProcess, Path, Path]:
    tools, calls, pgdata = tmp_path / "bin", tmp_path / "calls", tmp_path / "data"
    for folder in (tools, calls, pgdata):
        folder.mkdir(exist_ok=True)
    for name in ("pg_isready", "pg_basebackup", "sleep"):
        path = tools / name
        path.write_text(TOOL)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    env = {e["name"]: e["value"] for e in clone["env"] if "value" in e}
    env.update(PGDATA=str(pgdata), CALLS=str(calls), PATH=f"{tools}:{os.environ['PATH']}", **extra)
    command = clone["command"]
    assert command[:2] == ["sh", "-c"]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    return proc, calls, pgdata


def calls_of(calls: Path, tool: str) -> list[list[str]]:
    path = calls / tool
    if not path.exists():
        return []
    return [c.strip("\n").split("\n") for c in path.read_text().split("--\n") if c.strip("\n")]


def test_an_empty_volume_waits_for_the_primary_clones_it_and_becomes_a_standby(build_stack, tmp_path: Path) -> None:
    clone = clone_container(build_stack)
    host = next(e["value"] for e in clone["env"] if e["name"] == "PRIMARY_HOST")
    proc, calls, pgdata = run_clone(clone, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["waiting for primary"]
    assert calls_of(calls, "pg_isready") == [["-q", "-h", host, "-p", "5432"]] * 2
    assert calls_of(calls, "pg_basebackup") == [
        ["-h", host, "-p", "5432", "-U", "replicator", "-D", str(pgdata), "-X", "stream", "-c", "fast", "--no-password"]
    ]
    assert (pgdata / "standby.signal").exists()


def test_a_volume_holding_a_cluster_is_never_cloned_over(build_stack, tmp_path: Path) -> None:
    pgdata = tmp_path / "data"
    pgdata.mkdir()
    (pgdata / "PG_VERSION").write_text("17\n")
    proc, calls, _ = run_clone(clone_container(build_stack), tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["data present, not cloning"]
    assert calls_of(calls, "pg_isready") == calls_of(calls, "pg_basebackup") == []
    assert not (pgdata / "standby.signal").exists()


def test_an_empty_pg_version_is_no_cluster(build_stack, tmp_path: Path) -> None:
    # A clone killed mid-way can leave the file empty: that volume is cloned again.
    pgdata = tmp_path / "data"
    pgdata.mkdir()
    (pgdata / "PG_VERSION").write_text("")
    proc, calls, _ = run_clone(clone_container(build_stack), tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert len(calls_of(calls, "pg_basebackup")) == 1


def test_a_failed_clone_fails_the_container_and_marks_nothing(build_stack, tmp_path: Path) -> None:
    proc, calls, pgdata = run_clone(clone_container(build_stack), tmp_path, BASEBACKUP_EXIT="1")
    assert proc.returncode == 1
    assert len(calls_of(calls, "pg_basebackup")) == 1
    assert not (pgdata / "standby.signal").exists()
