"""`kwokctl stop` SIGKILLs the control plane and returns before its processes have exited; the
start after it (a restart of a cluster with a dead component, or `make clusters` after
`clusters-down`) raced them for their ports. stop_control_plane waits until the processes it
saw running are gone, and names the ones that outlive its deadline."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
import types
from pathlib import Path

import pytest

from smartnation.tooling.local_clusters.lifecycle import CONTROL_PLANE, LocalClusters
from smartnation.tooling.local_clusters.simulation import ClusterError

pytestmark = pytest.mark.unit


class Probe(LocalClusters):
    """A cluster directory as kwokctl lays it out, its components `sleep` copied to
    <dir>/bin/<component>; kwokctl itself replaced by a record of the calls."""

    def __init__(self, home: Path) -> None:  # no toolchain needed
        self.home = home
        self.calls: list[tuple[str, ...]] = []
        self.on_stop = lambda: None

    def cluster_dir(self, name: str) -> Path:
        return self.home / name

    def kwokctl(self, *args: str, check: bool = True):
        self.calls.append(args)
        if args[0] == "stop":
            self.on_stop()
        return subprocess.CompletedProcess(args, 0, "", "")


@pytest.fixture
def probe(tmp_path):
    probe = Probe(tmp_path)
    home = probe.cluster_dir("probe")
    (home / "bin").mkdir(parents=True)
    (home / "pids").mkdir()
    procs = {}
    for component in CONTROL_PLANE:
        shutil.copy(shutil.which("sleep"), home / "bin" / component)
        procs[component] = subprocess.Popen([str(home / "bin" / component), "60"])
        (home / "pids" / f"{component}.pid").write_text(str(procs[component].pid))
    # Popen returns once the child is forked, maybe before it ran exec: until then its cmdline is
    # this test's own (seen on a loaded host: a component taken as stopped). kwokctl writes its
    # PID files after the start, so the product never meets that moment.
    deadline = time.monotonic() + 30
    for component, proc in procs.items():
        program = str(home / "bin" / component).encode()
        while Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0", 1)[0] != program:
            assert time.monotonic() < deadline, f"{component} did not start"
            time.sleep(0.01)
    yield probe, types.SimpleNamespace(name="probe"), procs
    for proc in procs.values():
        proc.kill()
        proc.wait()


def kill_later(procs, seconds: float) -> threading.Thread:
    """What SIGKILL on a loaded host looks like from kwokctl's side: the processes go later."""

    def run() -> None:
        time.sleep(seconds)
        for proc in procs.values():
            proc.kill()
            proc.wait()

    return threading.Thread(target=run)


def test_the_stop_returns_only_after_every_process_it_saw_is_gone(probe):
    local, cluster, procs = probe
    assert local.stopped_components(cluster) == []
    assert set(local.running_components(cluster)) == set(CONTROL_PLANE)
    killer = kill_later(procs, 1.0)
    local.on_stop = killer.start
    began = time.monotonic()
    local.stop_control_plane(cluster, timeout=30)
    assert time.monotonic() - began >= 1.0
    assert all(proc.poll() is not None for proc in procs.values())
    assert local.calls == [("stop", "cluster", "--name", "probe")]
    killer.join()


def test_a_process_that_outlives_the_deadline_is_named_with_its_pid(probe):
    local, cluster, procs = probe
    for component in CONTROL_PLANE:
        if component != "kube-apiserver":
            procs[component].kill()
            procs[component].wait()
    with pytest.raises(ClusterError) as stuck:
        local.stop_control_plane(cluster, timeout=1)
    assert str(stuck.value) == (
        f"[probe] still running 1s after `kwokctl stop`: kube-apiserver (pid {procs['kube-apiserver'].pid}); "
        "its data is kept: run `make clusters` again once they have exited"
    )


def test_a_component_already_dead_is_not_waited_for(probe):
    local, cluster, procs = probe
    procs["kube-controller-manager"].kill()
    procs["kube-controller-manager"].wait()
    assert local.stopped_components(cluster) == ["kube-controller-manager"]
    assert "kube-controller-manager" not in local.running_components(cluster)
    (local.cluster_dir("probe") / "pids" / "kube-scheduler.pid").unlink()  # removed by kwokctl meanwhile
    assert set(local.running_components(cluster)) == {"etcd", "kube-apiserver", "kwok-controller"}


def test_a_recorded_pid_reused_by_another_program_is_not_ours(probe):
    """A PID file outliving its process may name whatever took the number since: not waited for
    (nor killed), and the component counts as stopped."""
    local, cluster, procs = probe
    (local.cluster_dir("probe") / "pids" / "kwok-controller.pid").write_text(str(os.getpid()))
    assert local.stopped_components(cluster) == ["kwok-controller"]
    assert "kwok-controller" not in local.running_components(cluster)
