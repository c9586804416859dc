"""NetworkPolicies are enforced on the real nodes (kube-router's firewall in each node): in a
namespace with a default-deny ingress policy a client Pod cannot reach a server Pod, and once a
policy allows the client's label it can, while a Pod without that label still cannot. Under a
default-deny egress policy like the platform's, DNS stays reachable (the `allow-dns` flow).

Needs what `make test` starts: both clusters with their real nodes (`make clusters`).
"""

from __future__ import annotations

import time
import uuid

import pytest

from tests.integration import node_pods

pytestmark = pytest.mark.integration

ENFORCED_WITHIN = 30
"""Seconds kube-router may take to apply a policy change (it syncs on every policy event)."""


@pytest.fixture
def context(cluster):
    return cluster.context


def _policy(name: str, spec: dict) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": name}, "spec": spec}


def _until(check, what: str) -> None:
    deadline = time.monotonic() + ENFORCED_WITHIN
    while not check():
        assert time.monotonic() < deadline, f"{what} not within {ENFORCED_WITHIN}s"
        time.sleep(1)


@pytest.fixture
def pods(tools, context):
    """A server, a client with the label the allow policy names, another without it."""
    node = node_pods.real_node(tools, context)
    marker = uuid.uuid4().hex
    with node_pods.scratch_namespace(tools, context, "netpol-it") as ns:
        node_pods.apply(
            tools, context, ns,
            node_pods.server_pod("server", node, {"app": "server"}, marker),
            node_pods.service("server", {"app": "server"}),
            node_pods.client_pod("client", node, {"role": "client"}),
            node_pods.client_pod("other", node, {"role": "other"}),
        )  # fmt: skip
        node_pods.wait_ready(tools, context, ns, "server", "client", "other")
        yield ns, node_pods.pod_ip(tools, context, ns, "server"), marker


def test_default_deny_ingress_refuses_until_a_policy_allows_the_client(tools, context, pods):
    ns, server, marker = pods
    direct = (server, node_pods.SERVER_PORT)
    service = (tools.kubectl_json(context, "-n", ns, "get", "service", "server")["spec"]["clusterIP"], 80)

    def reaches(pod: str, target: tuple[str, int] = direct) -> bool:
        code, out, _ = node_pods.fetch(tools, context, ns, pod, *target)
        return code == 0 and marker in out

    # Without a policy the flow works: what follows is the policy's doing, not a broken network.
    assert reaches("client") and reaches("other")

    node_pods.apply(
        tools, context, ns, _policy("default-deny-ingress", {"podSelector": {}, "policyTypes": ["Ingress"]})
    )
    _until(lambda: not reaches("client"), "default-deny ingress enforced")
    code, out, took = node_pods.fetch(tools, context, ns, "client", *direct)
    assert code != 0 and marker not in out
    assert took < 5, f"a refused flow must fail fast (REJECT), took {took:.1f}s: {out}"
    assert not reaches("other")
    # Through the Service's ClusterIP too: kube-proxy's translation does not get around the policy.
    assert not reaches("client", service)

    allow = {
        "podSelector": {"matchLabels": {"app": "server"}},
        "policyTypes": ["Ingress"],
        "ingress": [
            {"from": [{"podSelector": {"matchLabels": {"role": "client"}}}],
             "ports": [{"protocol": "TCP", "port": node_pods.SERVER_PORT}]},
        ],
    }  # fmt: skip
    node_pods.apply(tools, context, ns, _policy("allow-client", allow))
    _until(lambda: reaches("client"), "the allowing policy applied")
    assert reaches("client", service)
    assert not reaches("other")


def test_dns_stays_reachable_under_default_deny_egress_with_the_platforms_allow_dns(tools, context, pods):
    ns, server, _ = pods
    node_pods.apply(
        tools, context, ns,
        _policy("default-deny", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
        # The platform's allow-dns flow (program/components/guardrails.py): port 53 in kube-system.
        _policy("allow-dns", {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}],
                        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}],
        }),
    )  # fmt: skip
    _until(lambda: node_pods.fetch(tools, context, ns, "client", server, node_pods.SERVER_PORT)[0] != 0,
           "default-deny egress enforced")  # fmt: skip
    cluster_ip = tools.kubectl_json(context, "-n", ns, "get", "service", "server")["spec"]["clusterIP"]
    answers, out, _ = node_pods.resolve(tools, context, ns, "client", "server")
    # The name resolves; the connection itself stays refused.
    assert answers.get(f"server.{ns}.svc.cluster.local") == [cluster_ip], out
    code, out, _ = node_pods.fetch(tools, context, ns, "client", cluster_ip, 80)
    assert code != 0, out


def test_the_policy_rules_and_sets_live_only_in_the_nodes_namespace(tools, clusters, cluster, context, pods):
    """kube-router runs inside the node's network namespace: its chains and address sets exist
    there and nowhere on the host, so deleting the namespace (`make clusters-reset`) removes
    them and one cluster's policies never touch the other's traffic."""
    ns, _, _ = pods
    node_pods.apply(
        tools, context, ns, _policy("default-deny-ingress", {"podSelector": {}, "policyTypes": ["Ingress"]})
    )
    netns = clusters.real_nodes(cluster).nodes[0].netns

    def node_sets() -> set[str]:
        return set(tools.run("ip", "netns", "exec", netns, "ipset", "list", "-n").stdout.split())

    _until(lambda: any(s.startswith("KUBE-") for s in node_sets()), "kube-router's address sets in the node")
    node_rules = tools.run("ip", "netns", "exec", netns, "iptables-save", "-t", "filter").stdout
    assert "KUBE-ROUTER-INPUT" in node_rules and "KUBE-POD-FW-" in node_rules
    host_rules = tools.run("iptables-save", "-t", "filter").stdout
    assert not any(chain in host_rules for chain in ("KUBE-ROUTER-", "KUBE-POD-FW-", "KUBE-NWPLCY-"))
    host_sets = set(tools.run("ipset", "list", "-n").stdout.split())
    assert not node_sets() & host_sets
