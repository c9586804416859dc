"""Real nodes: the configs of containerd, the CNI network, the kubelet and kube-proxy say what
this machine kind needs (FACTS: cgroup v1, no CAP_SYS_RESOURCE) and keep to the node's own paths."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from smartnation.tooling.local_clusters.containerd_config import SANDBOX_IMAGE, cni_config, containerd_config
from smartnation.tooling.local_clusters.kubelet_config import (
    kube_proxy_configuration,
    kubelet_args,
    kubelet_configuration,
)
from smartnation.tooling.local_clusters.node_plan import REAL_NODE_LABEL, RealNodePlan

pytestmark = pytest.mark.unit


@pytest.fixture
def plan(tmp_path) -> RealNodePlan:
    return RealNodePlan("dusseldorf-test", 0, 1, tmp_path / "real-nodes" / "dusseldorf-test")


def _under(path: str, *roots: Path) -> bool:
    return any(Path(path).is_relative_to(r) for r in roots)


def test_containerd_keeps_oom_scores_and_its_pod_namespaces_to_itself(plan):
    config = tomllib.loads(containerd_config(plan))
    cri = config["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["restrict_oom_score_adj"] is True
    assert cri["netns_mounts_under_state_dir"] is True
    assert cri["sandbox_image"] == SANDBOX_IMAGE and not SANDBOX_IMAGE.startswith(("registry.k8s.io", "docker.io"))
    runc = cri["containerd"]["runtimes"]["runc"]
    assert runc["options"]["SystemdCgroup"] is False


def test_containerd_root_state_socket_and_cni_are_the_nodes_own(plan):
    config = tomllib.loads(containerd_config(plan))
    cri = config["plugins"]["io.containerd.grpc.v1.cri"]
    roots = (plan.node_dir, plan.run_dir)
    for path in (
        config["root"],
        config["state"],
        config["grpc"]["address"],
        config["ttrpc"]["address"],
        config["plugins"]["io.containerd.internal.v1.opt"]["path"],
        cri["containerd"]["runtimes"]["runc"]["options"]["Root"],
        cri["cni"]["conf_dir"],
    ):
        assert _under(path, *roots), path
    other = RealNodePlan("monaco-onprem", 1, 1, plan.cluster_dir.parent / "monaco-onprem")
    assert tomllib.loads(containerd_config(other))["grpc"]["address"] != config["grpc"]["address"]


def test_the_pod_network_is_the_nodes_own_bridge_and_range(plan):
    net = cni_config(plan)
    bridge = next(p for p in net["plugins"] if p["type"] == "bridge")
    assert bridge["bridge"] == plan.bridge
    (rng,) = bridge["ipam"]["ranges"][0]
    assert rng["subnet"] == str(plan.pod_cidr)
    assert _under(bridge["ipam"]["dataDir"], plan.node_dir)  # not /var/lib/cni


def test_kubelet_runs_on_cgroup_v1_with_cgroupfs_under_the_nodes_cgroup(plan, tmp_path):
    config = kubelet_configuration(plan, tmp_path / "ca.crt")
    assert config["failCgroupV1"] is False
    assert config["cgroupDriver"] == "cgroupfs"
    assert config["cgroupRoot"] == plan.cgroup
    assert config["containerRuntimeEndpoint"] == f"unix://{plan.containerd_socket}"
    assert config["address"] == str(plan.node_ip)
    assert config["authentication"]["anonymous"]["enabled"] is False
    assert config["authorization"]["mode"] == "Webhook"
    assert _under(config["podLogsDir"], plan.node_dir)


def test_kubelet_labels_its_node_real_and_names_it_after_the_plan(plan, tmp_path):
    args = kubelet_args(plan, tmp_path / "k.yaml", tmp_path / "kc", {"topology.kubernetes.io/zone": "z1"})
    labels = next(a for a in args if a.startswith("--node-labels=")).split("=", 1)[1].split(",")
    assert f"{REAL_NODE_LABEL}=real" in labels and "topology.kubernetes.io/zone=z1" in labels
    assert f"--hostname-override={plan.name}" in args
    assert f"--node-ip={plan.node_ip}" in args
    assert f"--root-dir={plan.kubelet_dir}" in args


def test_kube_proxy_leaves_machine_wide_conntrack_settings_alone(plan, tmp_path):
    config = kube_proxy_configuration(plan, tmp_path / "kc")
    assert config["mode"] == "iptables"
    assert config["conntrack"]["maxPerCore"] == 0 and config["conntrack"]["min"] == 0
    assert config["conntrack"]["tcpEstablishedTimeout"] == "0s"
    assert config["iptables"]["localhostNodePorts"] is False  # would need route_localnet
    assert config["clusterCIDR"] == str(plan.pod_cidr)
    assert config["hostnameOverride"] == plan.name


def test_kwok_is_limited_to_the_simulated_nodes_and_the_api_server_can_reach_kubelets(tmp_path):
    from smartnation.paths import cluster_profiles_dir
    from smartnation.tooling.local_clusters.kwok_patches import real_node_component_patches
    from smartnation.tooling.local_clusters.simulation import LocalCluster, nodes

    patches = {p["name"]: {a["key"]: a for a in p["extraArgs"]} for p in real_node_component_patches(tmp_path)}
    kwok = patches["kwok-controller"]
    assert kwok["manage-all-nodes"]["value"] == "false" and kwok["manage-all-nodes"]["override"] is True
    key, value = kwok["manage-nodes-with-annotation-selector"]["value"].split("=")
    for profile in sorted(cluster_profiles_dir().glob("*.yaml")):
        simulated = nodes(LocalCluster.read(profile))
        assert simulated and all(n["metadata"]["annotations"].get(key) == value for n in simulated)
    api = patches["kube-apiserver"]
    assert api["kubelet-client-certificate"]["value"].startswith(str(tmp_path))
    assert api["kubelet-preferred-address-types"]["value"].split(",")[0] == "InternalIP"
