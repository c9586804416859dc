"""Cluster DNS of a real node: CoreDNS (built from its Go module) as one more node process.

Each real node runs its own CoreDNS inside the node's network namespace, listening on the
node's address, port 53; the kubelet's clusterDNS points there, so every Pod's resolv.conf names
it. The kubernetes plugin answers for cluster.local (Services, headless endpoints, Pods) and the
reverse zones, from the API server reached through the node's forwarder at 127.0.0.1:<port>,
with a client certificate of the cluster's CA (user smartnation:node-dns, bound to a ClusterRole
that lists and watches what the plugin reads, nothing more).

Nothing is forwarded upstream: the local clusters have no internet, so a name outside
cluster.local is answered NXDOMAIN at once instead of timing out against a resolver that
cannot answer.

Real clusters run CoreDNS as Pods in kube-system, which the platform's `allow-dns` policy
(namespace kube-system, port 53) lets every Pod reach. Here the resolver is the node itself, so
node_network_policy.py marks DNS to the node's address as allowed before kube-router judges it.
"""

from __future__ import annotations

from pathlib import Path

from smartnation.tooling.local_clusters.kubelet_config import CLUSTER_DOMAIN
from smartnation.tooling.local_clusters.node_plan import RealNodePlan

DNS_PORT = 53
DNS_USER = "smartnation:node-dns"
"""The client certificate's CN: the API user CoreDNS's kubernetes plugin acts as."""
DNS_ROLE = "smartnation:node-dns"
REVERSE_ZONES = ("in-addr.arpa", "ip6.arpa")
TTL_SECONDS = 30
"""How long a Pod may cache an answer (and CoreDNS its own): Service addresses rarely change,
and an answer at most this old is what real clusters' CoreDNS hands out by default."""


def corefile(plan: RealNodePlan, kubeconfig_path: Path) -> str:
    """The node's Corefile: cluster.local and the reverse zones from the API server, everything
    else NXDOMAIN (two server blocks on the same address: CoreDNS routes a query to the block
    of the longest matching zone)."""
    zones = " ".join((CLUSTER_DOMAIN, *REVERSE_ZONES))
    listen = " ".join(f"{zone}:{DNS_PORT}" for zone in (CLUSTER_DOMAIN, *REVERSE_ZONES))
    return "\n".join(
        [
            "# Written by smartnation (local_clusters/node_dns.py) on every node start.",
            f"{listen} {{",
            f"    bind {plan.node_ip}",
            "    errors",
            f"    kubernetes {zones} {{",
            # The API server through the node's forwarder, as the kubelet reaches it.
            f"        kubeconfig {kubeconfig_path} local",
            "        pods insecure",
            f"        ttl {TTL_SECONDS}",
            "    }",
            f"    cache {TTL_SECONDS}",
            "}",
            # No upstream: anything else does not exist here, and says so without a timeout.
            f".:{DNS_PORT} {{",
            f"    bind {plan.node_ip}",
            "    errors",
            "    template ANY ANY {",
            "        rcode NXDOMAIN",
            "    }",
            "}",
            "",
        ]
    )


def coredns_args(corefile_path: Path) -> list[str]:
    return ["-conf", str(corefile_path)]


def rbac() -> list[dict]:
    """What the kubernetes plugin lists and watches, bound to the node DNS's user."""
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": DNS_ROLE, "labels": {"app.kubernetes.io/managed-by": "smartnation"}},
            "rules": [
                {"apiGroups": [""], "resources": ["services", "namespaces", "pods"], "verbs": ["list", "watch"]},
                {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": DNS_ROLE, "labels": {"app.kubernetes.io/managed-by": "smartnation"}},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": DNS_ROLE},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": DNS_USER}],
        },
    ]
