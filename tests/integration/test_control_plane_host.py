"""testinfra: the local control-plane host runs what it should, and only on loopback."""

from __future__ import annotations

import pytest
import testinfra

pytestmark = pytest.mark.integration

# kwokctl links kwok as "kwok-controller" in each cluster directory.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok-controller")


@pytest.fixture(scope="module")
def host():
    return testinfra.get_host("local://")


def _processes(host, clusters, name: str):
    return [p for p in host.process.filter(comm=name[:15]) if any(c.name in p.args for c in clusters.profiles())]


@pytest.mark.parametrize("component", COMPONENTS)
def test_each_cluster_runs_every_component(host, clusters, component):
    procs = _processes(host, clusters, component)
    for cluster in clusters.profiles():
        assert [p for p in procs if f"/clusters/{cluster.name}/" in p.args], (
            f"{component} of {cluster.name} not running"
        )


def test_control_plane_listens_only_on_loopback(host, clusters):
    pids = {p.pid for c in COMPONENTS for p in _processes(host, clusters, c)}
    sockets = host.check_output("ss -Hltnp")
    ours = [line for line in sockets.splitlines() if any(f"pid={pid}," in line for pid in pids)]
    assert ours, "no listening sockets found for the control plane"
    for line in ours:
        local = line.split()[3]
        address = local.rsplit(":", 1)[0]
        assert address in ("127.0.0.1", "[::1]"), f"listens beyond loopback: {line}"


def test_api_servers_on_the_profile_ports(host, clusters):
    for cluster in clusters.profiles():
        assert host.socket(f"tcp://127.0.0.1:{cluster.simulation.apiserver_port}").is_listening
        assert not host.socket(f"tcp://0.0.0.0:{cluster.simulation.apiserver_port}").is_listening
