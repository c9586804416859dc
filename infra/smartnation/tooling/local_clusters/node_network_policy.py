"""NetworkPolicy enforcement on a real node: kube-router in its firewall-only mode.

The Pods' bridge CNI enforces no policy, so each real node runs kube-router (built from its Go
module, versions.yaml) with only its network policy controller: no routing (BGP), no service
proxy (kube-proxy stays the proxy), no CNI. It runs inside the node's network namespace, so its
iptables chains (KUBE-ROUTER-*, KUBE-NWPLCY-*, KUBE-POD-FW-*) and its ipsets exist only in there
(both are per network namespace in the kernel): deleting the namespace on `make clusters-reset`
removes them all, and nothing of one cluster's policies reaches the host or the other cluster.

kube-router reads Pods, Namespaces, NetworkPolicies and the Node (its address) through the
node's API forwarder with its own client certificate (user smartnation:node-network-policy),
bound to a ClusterRole that lists and watches what its informers read, nothing more.
"""

from __future__ import annotations

from pathlib import Path

from smartnation.tooling.local_clusters import node_network
from smartnation.tooling.local_clusters.node_dns import DNS_PORT
from smartnation.tooling.local_clusters.node_plan import RealNodePlan

NETPOL_USER = "smartnation:node-network-policy"
NETPOL_ROLE = "smartnation:node-network-policy"
SERVICE_CIDR = "10.0.0.0/24"
"""The clusters' Service range: kube-apiserver's default (kwokctl sets none). kube-router lets
traffic to it through before the policies, as kube-proxy translates it to the Pods behind."""
POLICY_ALLOWED_MARK = "0x10000/0x10000"
"""The mark with which kube-router's policy chains say "a policy allows this"; an unmarked
packet is rejected at the end of the Pod's firewall chain (kube-router v2.1, netpol/pod.go)."""


def kube_router_args(plan: RealNodePlan, kubeconfig_path: Path) -> list[str]:
    return [
        f"--kubeconfig={kubeconfig_path}",
        f"--hostname-override={plan.name}",
        # Only the network policy controller: Pods get their addresses and routes from the
        # node's bridge CNI, Services from kube-proxy.
        "--run-firewall=true",
        "--run-router=false",
        "--run-service-proxy=false",
        "--run-loadbalancer=false",
        "--enable-cni=false",
        "--enable-ipv4=true",
        "--enable-ipv6=false",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        # The health endpoint would listen on every address of the node, Pods' side included;
        # the node's state file and `status` tell whether the process lives.
        "--health-port=0",
        "--metrics-port=0",
        "--v=1",
    ]


def dns_allowance(plan: RealNodePlan) -> list[list[str]]:
    """The iptables rules (mangle PREROUTING, in the node's namespace) that let every Pod of the
    node reach its DNS on the node's address under any NetworkPolicy.

    Real clusters serve DNS from CoreDNS Pods in kube-system, which the platform's `allow-dns`
    policy opens to every Pod; here CoreDNS is a node process (node_dns.py) at the node's own
    address, which no namespace selector matches, so kube-router would reject DNS from every Pod
    under an egress policy. Marking those packets as policy-allowed before the filter table
    sees them keeps them apart from any other flow to the node, which policies still judge."""
    return [
        ["-s", str(plan.pod_cidr), "-d", str(plan.node_ip), "-p", proto, "--dport", str(DNS_PORT),
         "-m", "comment", "--comment", "smartnation: node DNS is allowed like kube-system's",
         "-j", "MARK", "--set-xmark", POLICY_ALLOWED_MARK]
        for proto in ("udp", "tcp")
    ]  # fmt: skip


def ensure_dns_allowance(plan: RealNodePlan) -> None:
    """Adds the DNS allowance rules that are missing (idempotent; the namespace holds them)."""
    for rule in dns_allowance(plan):
        check = node_network.run(*node_network.in_netns(plan, ["iptables", "-w", "-t", "mangle", "-C", "PREROUTING",
                                                                *rule]), check=False)  # fmt: skip
        if check.returncode != 0:
            node_network.run(
                *node_network.in_netns(plan, ["iptables", "-w", "-t", "mangle", "-A", "PREROUTING", *rule])
            )


def rbac() -> list[dict]:
    """What kube-router's informers list and watch (it starts them all, whichever controllers
    run, and waits for each to sync), and its own Node, bound to the node policy agent's user."""
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": NETPOL_ROLE, "labels": {"app.kubernetes.io/managed-by": "smartnation"}},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["pods", "namespaces", "nodes", "services", "endpoints"],
                    "verbs": ["get", "list", "watch"],
                },
                {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
                {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": ["list", "watch"]},
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": NETPOL_ROLE, "labels": {"app.kubernetes.io/managed-by": "smartnation"}},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": NETPOL_ROLE},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": NETPOL_USER}],
        },
    ]
