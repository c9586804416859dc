"""Real nodes' cluster DNS and NetworkPolicy agent: CoreDNS answers cluster.local on the node's
address and nothing upstream, the kubelet points Pods at it, kube-router runs its firewall alone
in the node, and both read the API with read-only roles bound to the users their certificates
name."""

from __future__ import annotations

import re

import pytest

from smartnation.tooling.local_clusters import node_dns, node_network_policy
from smartnation.tooling.local_clusters.kubelet_config import CLUSTER_DOMAIN, kubelet_configuration
from smartnation.tooling.local_clusters.node_plan import RealNodePlan
from smartnation.tooling.toolchain.recipes import RECIPES
from smartnation.tooling.toolchain.versions import load_pins

pytestmark = pytest.mark.unit


@pytest.fixture
def plan(tmp_path) -> RealNodePlan:
    return RealNodePlan("monaco-onprem", 1, 2, tmp_path / "real-nodes" / "monaco-onprem")


def _blocks(corefile: str) -> dict[str, list[str]]:
    """Server blocks of a Corefile: their zone line -> their stripped lines (nested ones flattened)."""
    blocks: dict[str, list[str]] = {}
    depth, current = 0, ""
    for raw in corefile.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if depth == 0:
            assert line.endswith("{"), line
            current = line.removesuffix("{").strip()
            blocks[current] = []
        else:
            blocks[current].append(line)
        depth += line.count("{") - line.count("}")
    assert depth == 0
    return blocks


def test_coredns_answers_the_cluster_zones_from_the_api_on_the_nodes_address_only(plan, tmp_path):
    kubeconfig = plan.node_dir / "coredns.kubeconfig"
    blocks = _blocks(node_dns.corefile(plan, kubeconfig))
    cluster = next(zones for zones in blocks if f"{CLUSTER_DOMAIN}:53" in zones.split())
    assert {z.split(":")[0] for z in cluster.split()} == {CLUSTER_DOMAIN, "in-addr.arpa", "ip6.arpa"}
    lines = blocks[cluster]
    kubernetes = next(line for line in lines if line.startswith("kubernetes "))
    assert CLUSTER_DOMAIN in kubernetes.split()
    assert f"kubeconfig {kubeconfig} local" in lines
    # Every block listens on the node's address alone: not the host's, not another node's.
    for body in blocks.values():
        assert [line for line in body if line.startswith("bind")] == [f"bind {plan.node_ip}"]


def test_coredns_forwards_nothing_and_answers_other_names_nxdomain(plan):
    corefile = node_dns.corefile(plan, plan.node_dir / "coredns.kubeconfig")
    blocks = _blocks(corefile)
    assert not re.search(r"^\s*(forward|proxy|grpc)\b", corefile, re.MULTILINE), "no upstream exists here"
    catch_all = blocks[".:53"]
    assert "rcode NXDOMAIN" in catch_all
    # The cluster zones never reach the catch-all: they have their own block.
    assert not any(line.startswith("kubernetes") for line in catch_all)


def test_pods_resolve_through_the_nodes_coredns(plan, tmp_path):
    config = kubelet_configuration(plan, tmp_path / "ca.crt")
    assert config["clusterDNS"] == [str(plan.node_ip)]
    assert config["clusterDomain"] == CLUSTER_DOMAIN
    corefile = node_dns.corefile(plan, plan.node_dir / "coredns.kubeconfig")
    assert f"bind {config['clusterDNS'][0]}" in corefile


def test_kube_router_enforces_policies_only_for_its_own_node(plan):
    args = node_network_policy.kube_router_args(plan, plan.node_dir / "kube-router.kubeconfig")
    flags = dict(a.removeprefix("--").split("=", 1) for a in args)
    assert len(flags) == len(args), "every flag once, in --name=value form"
    assert (flags["run-firewall"], flags["run-router"], flags["run-service-proxy"]) == ("true", "false", "false")
    assert flags["run-loadbalancer"] == "false" and flags["enable-cni"] == "false"
    assert flags["hostname-override"] == plan.name
    assert flags["kubeconfig"] == str(plan.node_dir / "kube-router.kubeconfig")
    # Nothing listens beyond what the node needs (the health port would face the Pods).
    assert flags["health-port"] == "0" and flags["metrics-port"] == "0"


def test_only_dns_from_the_nodes_pods_to_the_nodes_address_is_marked_allowed(plan):
    rules = node_network_policy.dns_allowance(plan)
    assert {r[r.index("-p") + 1] for r in rules} == {"udp", "tcp"}
    for rule in rules:
        assert rule[rule.index("-s") + 1] == str(plan.pod_cidr)
        assert rule[rule.index("-d") + 1] == str(plan.node_ip)
        assert rule[rule.index("--dport") + 1] == str(node_dns.DNS_PORT)
        # The mark kube-router's policy chains set for an allowed flow, and only that bit.
        assert rule[rule.index("--set-xmark") + 1] == "0x10000/0x10000"


@pytest.mark.parametrize(
    ("manifests", "user", "needs"),
    [
        (node_dns.rbac(), node_dns.DNS_USER, {"services", "endpointslices", "namespaces", "pods"}),
        (
            node_network_policy.rbac(),
            node_network_policy.NETPOL_USER,
            {"networkpolicies", "pods", "namespaces", "nodes", "services", "endpoints", "endpointslices"},
        ),
    ],
)
def test_each_node_agent_reads_what_it_watches_and_writes_nothing(manifests, user, needs):
    role = next(m for m in manifests if m["kind"] == "ClusterRole")
    binding = next(m for m in manifests if m["kind"] == "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]
    verbs = {v for rule in role["rules"] for v in rule["verbs"]}
    assert verbs <= {"get", "list", "watch"}
    granted = {r for rule in role["rules"] if {"list", "watch"} <= set(rule["verbs"]) for r in rule["resources"]}
    assert needs <= granted


def test_the_node_agents_are_pinned_tools_that_report_their_pins():
    pins = load_pins()
    assert RECIPES["coredns"].binaries == ("coredns",)
    assert RECIPES["kube-router"].binaries == ("kube-router",)
    # What each binary prints for its version (its own wording) parses to the pin.
    coredns = re.search(RECIPES["coredns"].version_pattern, f"CoreDNS-{pins['coredns'].version}\nlinux/amd64")
    assert coredns and coredns.group(1) == pins["coredns"].version
    kube_router = re.search(
        RECIPES["kube-router"].version_pattern,
        f"Running kube-router version v{pins['kube-router'].version}, built on 1970-01-01T00:00:00Z, go1.26.8",
    )
    assert kube_router and kube_router.group(1) == pins["kube-router"].version
    # Raised dependencies are module@version pairs the wrapper module can require.
    assert all(re.fullmatch(r"[\w.\-/]+@v\S+", r) for r in pins["kube-router"].requires)
