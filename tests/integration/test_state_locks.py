"""The state backend's lock is real, on the file backend and on an S3 backend (a real MinIO on this
host, the binary `make images` built), and smartnation reads it: who holds it, whether its process
is gone.

A tiny project of its own (a Python program that sleeps, so an update holds the lock a while; no
cluster and no provider) runs `pulumi up` from the toolchain:
- a second update while one runs is refused by the engine; `check_unlocked` names the holder
  (user@host and the running engine's pid) read from the backend itself;
- an update killed with SIGKILL leaves its lock; smartnation calls it stale (its pid is gone from
  this host), removes that lock and nothing else, and the next update runs;
- two updates started at the same moment never both proceed; the state stays readable;
- a file backend as smartnation opens it (file_backend.durable) gets no metadata sidecar from an
  update, so a kill cannot leave one torn; opened plainly it does, and a torn one (empty, as a
  kill between truncate and write leaves it) fails every read with `EOF` until it is removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from smartnation.cli.interrupted import classify
from smartnation.cli.locks import StackLocked, check_unlocked, lock_holders, pid_alive, remove_lock, this_host
from smartnation.paths import cache_root
from smartnation.tooling.toolchain.file_backend import SIDECAR_SUFFIX, durable, remove_torn_sidecars, torn_sidecars
from tests.integration.platform_project import REPO

pytestmark = pytest.mark.integration

PROJECT_NAME = "smartnation-it-locks"
STACK = "dev"
PROGRAM = """
import os, time
import pulumi
time.sleep(float(os.environ.get("HOLD_SECONDS", "0")))
pulumi.export("held", os.environ.get("HOLD_SECONDS", "0"))
"""
MINIO_USER, MINIO_PASSWORD = "faults-tests", "faults-tests-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def minio(tmp_path_factory) -> Iterator[dict[str, str]]:
    """A MinIO server of this module's own on 127.0.0.1, with a bucket for the state; stopped by PID."""
    binaries = sorted((cache_root() / "images" / "programs").glob("minio-*/minio"))
    assert binaries, "no MinIO binary in the images cache: run `make images`"
    data = tmp_path_factory.mktemp("minio-data")
    port, console = free_port(), free_port()
    env = {**os.environ, "MINIO_ROOT_USER": MINIO_USER, "MINIO_ROOT_PASSWORD": MINIO_PASSWORD}
    log = (data.parent / "minio.log").open("w")
    server = subprocess.Popen(
        [
            str(binaries[-1]),
            "server",
            "--address",
            f"127.0.0.1:{port}",
            "--console-address",
            f"127.0.0.1:{console}",
            str(data),
        ],
        env=env,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    try:
        client = boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{port}",
            aws_access_key_id=MINIO_USER,
            aws_secret_access_key=MINIO_PASSWORD,
            region_name="us-east-1",
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                client.create_bucket(Bucket="state")
                break
            except Exception:  # not listening yet
                assert server.poll() is None and time.monotonic() < deadline, "MinIO did not start"
                time.sleep(0.5)
        yield {
            "PULUMI_BACKEND_URL": f"s3://state?endpoint=http://127.0.0.1:{port}&s3ForcePathStyle=true&region=us-east-1",
            "AWS_ACCESS_KEY_ID": MINIO_USER,
            "AWS_SECRET_ACCESS_KEY": MINIO_PASSWORD,
            "AWS_REGION": "us-east-1",
        }
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


class Project:
    def __init__(self, root: Path, tools, backend: dict[str, str]) -> None:
        self.root, self.tools, self.backend = root, tools, backend
        self.started: list[subprocess.Popen[str]] = []
        self.env = {
            **tools.env,
            **backend,
            "PULUMI_CONFIG_PASSPHRASE": "locks-tests",
            "SMARTNATION_PROJECT_DIR": str(root),
        }

    def start_up(self, hold: float) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            ["pulumi", "up", "--yes", "--skip-preview", "--non-interactive", "--stack", STACK],
            cwd=self.root,
            env={**self.env, "HOLD_SECONDS": str(hold)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.started.append(proc)
        return proc

    def stop_leftovers(self) -> None:
        """Whatever this test started and a failure left running (engine and language host)."""
        for proc in self.started:
            if proc.poll() is None:
                kill_all([*descendants(proc.pid), proc.pid])
                proc.wait(timeout=30)

    def pulumi(self, *args: str, check: bool = True):
        return self.tools.run(
            "pulumi", *args, "--non-interactive", cwd=self.root, env=self.env, check=check, timeout=300
        )


def make_project(root: Path, tools, backend: dict[str, str]) -> Project:
    root.mkdir()
    (root / "Pulumi.yaml").write_text(
        f"name: {PROJECT_NAME}\nruntime:\n  name: python\n  options:\n    virtualenv: {REPO / '.venv'}\n"
    )
    (root / "__main__.py").write_text(PROGRAM)
    return Project(root, tools, backend)


@pytest.fixture(params=["file", "s3"])
def project(request, tmp_path: Path, tools, monkeypatch) -> Iterator[Project]:
    if request.param == "file":
        (tmp_path / "state").mkdir()
        # As smartnation opens a file backend (toolchain env): no sidecar a kill could leave torn.
        backend = {"PULUMI_BACKEND_URL": durable(f"file://{tmp_path / 'state'}")}
    else:
        minio = request.getfixturevalue("minio")
        # Each test its own prefix in the bucket: a fresh backend.
        backend = {
            **minio,
            "PULUMI_BACKEND_URL": minio["PULUMI_BACKEND_URL"].replace("s3://state?", f"s3://state/{tmp_path.name}?"),
        }
    built = make_project(tmp_path / "project", tools, backend)
    for key, value in built.env.items():  # what smartnation's lock readers see
        if key in backend or key in ("SMARTNATION_PROJECT_DIR", "PULUMI_CONFIG_PASSPHRASE"):
            monkeypatch.setenv(key, value)
    built.pulumi("stack", "init", STACK)
    try:
        yield built
    finally:
        built.stop_leftovers()


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError):
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for child, its_parent in parents.items():
            if its_parent == parent:
                found.append(child)
                todo.append(child)
    return found


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "gone"


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def wait_for_holders(timeout: float = 60) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        holders = lock_holders(STACK)
        if holders:
            return holders
        time.sleep(0.2)
    raise AssertionError("the update never showed a lock")


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def test_a_second_update_is_refused_and_the_holder_is_named(project: Project):
    first = project.start_up(hold=25)
    try:
        (holder,) = wait_for_holders()
        assert holder.pid == first.pid and holder.hostname == this_host() and holder.username
        second = project.pulumi("up", "--yes", "--skip-preview", "--stack", STACK, check=False)
        assert second.returncode != 0 and "locked" in second.stderr, second.stderr[-2000:]
        with pytest.raises(StackLocked, match=rf"locked by another update: \S+@{this_host()} \(pid {first.pid}\)"):
            check_unlocked(STACK)
    finally:
        code, err = finish(first)
    assert code == 0, err[-2000:]
    assert lock_holders(STACK) == []


def test_a_killed_update_leaves_a_stale_lock_that_alone_is_removed(project: Project):
    first = project.start_up(hold=20)
    (holder,) = wait_for_holders()
    assert not classify(STACK, [holder], {}, this_host(), pid_alive).stale, "a live update called stale"
    time.sleep(3)  # its language host is running the program
    below = descendants(first.pid)
    assert below, "the engine started no language host"
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=30)
    # Nobody tells the plugins of an engine killed with SIGKILL: the language host notices it was
    # orphaned and stops once the program it runs ends (here when its sleep is over).
    deadline = time.monotonic() + 60
    while any(Path(f"/proc/{pid}").exists() and _state(pid) != "Z" for pid in below):
        if time.monotonic() > deadline:
            kill_all(below)
            raise AssertionError(f"the killed engine's plugins outlived it by 60 s: {below}")
        time.sleep(1)
    (left,) = lock_holders(STACK)
    assert left == holder
    found = classify(STACK, [left], {}, this_host(), pid_alive)
    assert found.stale == [left] and not found.live
    blocked = project.pulumi("up", "--yes", "--skip-preview", "--stack", STACK, check=False)
    assert blocked.returncode != 0 and "locked" in blocked.stderr
    remove_lock(left, STACK)
    assert lock_holders(STACK) == []
    project.pulumi("up", "--yes", "--skip-preview", "--stack", STACK)
    outputs = json.loads(project.pulumi("stack", "output", "--json", "--stack", STACK).stdout)
    assert outputs == {"held": "0"}


def test_two_updates_started_together_never_both_proceed(project: Project):
    pair = [project.start_up(hold=15), project.start_up(hold=15)]
    results = [finish(p) for p in pair]
    codes = [code for code, _ in results]
    assert codes.count(0) <= 1, f"both updates ran at once: {codes}"
    for code, err in results:
        if code != 0:
            assert "locked" in err, err[-2000:]
    assert lock_holders(STACK) == []
    project.pulumi("up", "--yes", "--skip-preview", "--stack", STACK)  # the state is whole
    history = json.loads(project.pulumi("stack", "history", "--json", "--stack", STACK).stdout)
    assert [h["result"] for h in history].count("succeeded") == codes.count(0) + 1


def test_a_file_backend_opened_durably_gets_no_sidecar_and_a_torn_one_is_found_and_removed(tmp_path: Path, tools):
    states = {"plain": tmp_path / "plain-state", "durable": tmp_path / "durable-state"}
    projects = {}
    for name, state in states.items():
        state.mkdir()
        url = f"file://{state}"
        projects[name] = make_project(
            tmp_path / name, tools, {"PULUMI_BACKEND_URL": durable(url) if name == "durable" else url}
        )
        projects[name].pulumi("stack", "init", STACK)
        projects[name].pulumi("up", "--yes", "--skip-preview", "--stack", STACK)

    assert sorted(states["durable"].rglob(f"*{SIDECAR_SUFFIX}")) == []
    assert not list(states["durable"].rglob("*.tmp")), "a temporary file was left beside the state"
    # Opened plainly the driver writes one per state file: what the option prevents, shown happening.
    plain_sidecars = sorted(states["plain"].rglob(f"{STACK}.json{SIDECAR_SUFFIX}"))
    assert len(plain_sidecars) == 1, sorted(states["plain"].rglob("*"))

    plain = projects["plain"]
    exported = json.loads(plain.pulumi("stack", "export", "--stack", STACK).stdout)["deployment"]["resources"]
    plain_sidecars[0].write_bytes(b"")
    broken = plain.pulumi("stack", "ls", "--json", check=False)
    assert broken.returncode != 0 and "EOF" in broken.stderr, broken.stderr
    url = plain.backend["PULUMI_BACKEND_URL"]
    assert torn_sidecars(url) == plain_sidecars
    assert remove_torn_sidecars(url) == plain_sidecars
    assert plain.pulumi("stack", "ls", "--json").returncode == 0
    again = json.loads(plain.pulumi("stack", "export", "--stack", STACK).stdout)["deployment"]["resources"]
    assert again == exported
