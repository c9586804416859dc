"""Real nodes pull from their own site's registry only: the site registries' ports come from the
cluster profiles, each node's containerd maps its profile's registry host to that port in its
namespace (and every other host to a closed port), and its forwarder pair reaches that port alone."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from smartnation.settings.loader import load_cluster_profile
from smartnation.tooling.images.cache import ImageCache
from smartnation.tooling.images.registry import RegistryError, site_registries
from smartnation.tooling.local_clusters import node_network
from smartnation.tooling.local_clusters.containerd_config import (
    DEFAULT_HOSTS,
    UNREACHABLE_REGISTRY,
    containerd_config,
    registry_hosts,
    stale_registry_hosts,
)
from smartnation.tooling.local_clusters.node_plan import RealNodePlan
from smartnation.tooling.local_clusters.real_nodes import PROCESSES
from tests.unit.harness import edit

pytestmark = pytest.mark.unit

CLUSTERS = ("dusseldorf-test", "monaco-onprem")


def _plan(tmp_path: Path, cluster: str) -> RealNodePlan:
    return RealNodePlan(cluster, CLUSTERS.index(cluster), 0, tmp_path / "real-nodes" / cluster)


def _hosts(plan: RealNodePlan, cluster: str) -> dict[str, dict]:
    """host directory name -> parsed hosts.toml, as the node would be given them."""
    profile = load_cluster_profile(cluster)
    files = registry_hosts(plan, profile.registry.default, profile.simulation.registry_port)
    assert all(path.name == "hosts.toml" and path.parent.parent == plan.registry_hosts_dir for path in files)
    return {path.parent.name: tomllib.loads(text) for path, text in files.items()}


@pytest.mark.parametrize("cluster", CLUSTERS)
def test_the_site_registry_host_goes_to_the_sites_local_registry_only(tmp_path, cluster):
    profile = load_cluster_profile(cluster)
    hosts = _hosts(_plan(tmp_path, cluster), cluster)
    site_host = profile.registry.default.split("/")[0]
    assert set(hosts) == {site_host, DEFAULT_HOSTS}
    local = f"http://127.0.0.1:{profile.simulation.registry_port}"
    # `server` is the same address: no fallback to the site registry's real host.
    assert hosts[site_host]["server"] == local
    assert hosts[site_host]["host"] == {local: {"capabilities": ["pull", "resolve"]}}
    # Any other registry host (the other site's included) goes to a closed port of the node.
    assert hosts[DEFAULT_HOSTS]["server"] == UNREACHABLE_REGISTRY
    assert set(hosts[DEFAULT_HOSTS]["host"]) == {UNREACHABLE_REGISTRY}


def test_a_node_knows_nothing_of_the_other_sites_registry(tmp_path):
    dusseldorf, monaco = (load_cluster_profile(c) for c in CLUSTERS)
    text = "".join(registry_hosts(_plan(tmp_path, "dusseldorf-test"), dusseldorf.registry.default, 15000).values())
    assert str(monaco.simulation.registry_port) not in text
    assert monaco.registry.default.split("/")[0] not in text
    assert dusseldorf.simulation.registry_port != monaco.simulation.registry_port


def test_containerd_reads_the_nodes_own_registry_hosts(tmp_path):
    plan = _plan(tmp_path, "monaco-onprem")
    cri = tomllib.loads(containerd_config(plan))["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["registry"] == {"config_path": str(plan.registry_hosts_dir)}
    assert plan.registry_hosts_dir.is_relative_to(plan.node_dir)


@pytest.mark.parametrize("bad", ["", "/smartnation", "_default/mirror", ".example/x"])
def test_a_registry_name_without_a_host_is_refused(tmp_path, bad):
    with pytest.raises(ValueError, match="registry host"):
        registry_hosts(_plan(tmp_path, "monaco-onprem"), bad, 15001)


def test_a_host_the_profile_no_longer_names_is_stale(tmp_path):
    plan = _plan(tmp_path, "monaco-onprem")
    files = registry_hosts(plan, "registry.smartnation.mc/mirror", 15001)
    for path in files:
        path.parent.mkdir(parents=True)
    (plan.registry_hosts_dir / "old-registry.example").mkdir()
    assert stale_registry_hosts(plan, files) == [plan.registry_hosts_dir / "old-registry.example"]


def test_the_registry_forwarders_reach_the_sites_port_from_the_nodes_loopback(tmp_path):
    plan = _plan(tmp_path, "dusseldorf-test")
    argv = node_network.registry_forwarders(plan, 15000)
    assert set(argv) == {"registry-forward-host", "registry-forward-node"}
    sock = plan.registry_socket
    assert len(str(sock).encode()) < 108 and sock != plan.api_socket and sock.parent == plan.run_dir
    # On the host: the socket to the registry's loopback port; nothing listens on a TCP port.
    assert argv["registry-forward-host"] == [
        "socat",
        f"UNIX-LISTEN:{sock},fork,unlink-early,mode=600",
        "TCP:127.0.0.1:15000",
    ]
    # In the node's namespace: its own loopback only, to the socket.
    node = argv["registry-forward-node"]
    assert node[:3] == ["nsenter", f"--net=/run/netns/{plan.netns}", "--"]
    assert node[3:] == ["socat", "TCP-LISTEN:15000,bind=127.0.0.1,fork,reuseaddr", f"UNIX-CONNECT:{sock}"]
    # Both are node processes, up before containerd asks for an image.
    assert PROCESSES.index("registry-forward-node") < PROCESSES.index("containerd")
    assert PROCESSES.index("registry-forward-host") < PROCESSES.index("registry-forward-node")


def test_each_site_registry_listens_on_its_profiles_port_under_its_profiles_path(tmp_path):
    registries = {r.cluster: r for r in site_registries(ImageCache(tmp_path))}
    assert set(registries) == set(CLUSTERS)
    for cluster, registry in registries.items():
        profile = load_cluster_profile(cluster)
        assert registry.port == profile.simulation.registry_port
        assert registry.address == f"127.0.0.1:{profile.simulation.registry_port}"
        # Pushed under the path of registry.default, so <registry.default>/<repo> resolves to it.
        assert f"{registry.site_host}/{registry.remote_repository('mosquitto')}" == (
            f"{profile.registry.default}/mosquitto"
        )


def test_two_sites_on_one_registry_port_are_refused_naming_the_file_and_key(tmp_path, envdir):
    edit(envdir, "clusters/monaco-onprem.yaml", "simulation.registry_port", 15000)
    with pytest.raises(RegistryError) as exc:
        site_registries(ImageCache(tmp_path / "cache"), envdir)
    message = str(exc.value)
    assert "simulation.registry_port" in message and str(envdir / "clusters" / "monaco-onprem.yaml") in message


def test_a_profile_without_a_local_section_has_no_local_registry(tmp_path, envdir):
    profile = envdir / "clusters" / "monaco-onprem.yaml"
    profile.write_text(profile.read_text().split("\nsimulation:")[0] + "\n")
    assert [r.cluster for r in site_registries(ImageCache(tmp_path / "cache"), envdir)] == ["dusseldorf-test"]
