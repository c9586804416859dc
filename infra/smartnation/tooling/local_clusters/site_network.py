"""The network between the real nodes of one site: a router namespace of ours, one veth per node.

Each real node lives in its own network namespace (node_network.py), and the host does not
forward, so two nodes of one cluster cannot reach each other's Pods through the host. A site with
two or more real nodes gets a router instead, as a site's top-of-rack switch would be:

- a network namespace ``sn-<cluster>-site`` (node_plan.RealNodePlan.site_netns), which forwards
  inside itself only (the host's setting is untouched);
- one veth pair per node: ``snnode<i>`` in the router, ``snlan0`` in the node, addresses from
  the node's /30 of 10.213.<s>.64/26 (node_plan.py);
- in each node, a route for the site's Pod addresses (10.214.<16s>.0/20: its own /24 stays on its
  bridge, the more specific route) and for the other nodes' router links, through the router; in
  the router, a route for each node's /24 to that node.

So a Pod reaches a Pod of another node with its own address (no masquerade): the receiving
node's kube-router judges the flow by the Pods' labels as on one node, and a Service's ClusterIP,
which the client node's kube-proxy translates to a Pod address, reaches a backend on any node.
The load-balancer addresses still enter at the site's first node (the host's route, and the site
link's); its kube-proxy masquerades what it forwards to another node's Pod (externalTrafficPolicy
Cluster, as on any cluster), so that Pod sees the first node's address on this network and its
answers come back through the router. The site link's other sites are reached through the first
node too: site_link.py routes them from the other nodes and the router to it.

Nothing is created on the host: deleting the router's namespace takes its veth pairs (so the
nodes' ends and their routes) with it. A site of one node has no router (it would carry nothing).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from smartnation.tooling.local_clusters.node_network import NETNS_DIR, NetworkError, run
from smartnation.tooling.local_clusters.node_plan import RealNodePlan


@dataclass(frozen=True)
class Route:
    """One route the site's network needs: in ``netns``, ``network`` via ``via`` on ``dev``."""

    netns: str
    network: ipaddress.IPv4Network
    via: ipaddress.IPv4Address
    dev: str

    def argv(self, verb: str = "replace") -> list[str]:
        return ["ip", "-n", self.netns, "route", verb, str(self.network), "via", str(self.via), "dev", self.dev]


def _check(nodes: Sequence[RealNodePlan]) -> None:
    if len({(n.cluster, n.site) for n in nodes}) > 1:
        raise NetworkError(f"one site's nodes expected, got {sorted({n.cluster for n in nodes})}")


def routes(nodes: Sequence[RealNodePlan]) -> list[Route]:
    """Every route of the site's network: the router's to each node's Pods, each node's to the
    site's Pods and to the other nodes' router links. None with fewer than two nodes."""
    _check(nodes)
    if len(nodes) < 2:
        return []
    found = []
    for node in nodes:
        found.append(Route(node.site_netns, node.pod_cidr, node.lan_ip, node.router_interface))
        for network in (node.site_pods, node.site_lan):
            found.append(Route(node.netns, network, node.lan_gateway, node.lan_interface))
    return found


def wan_hops(nodes: Sequence[RealNodePlan]) -> tuple[tuple[str, ipaddress.IPv4Address], ...]:
    """Where the site's traffic for other sites (site_link.py) goes before its first node, which
    holds the site's end of the WAN: (namespace, next hop) for the router (the first node's end
    of its link) and for every other node (the router's end of that node's link)."""
    _check(nodes)
    if len(nodes) < 2:
        return ()
    first = nodes[0]
    return ((first.site_netns, first.lan_ip), *((n.netns, n.lan_gateway) for n in nodes[1:]))


def _netns_exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def _link_exists(netns: str, name: str) -> bool:
    return run("ip", "-n", netns, "link", "show", "dev", name, check=False).returncode == 0


def ensure(nodes: Sequence[RealNodePlan]) -> str:
    """Creates what is missing of the site's router, links and routes (idempotent); says what it
    did. Every node's namespace must exist (node_network.ensure). With one node the router (if a
    larger site left one) goes."""
    _check(nodes)
    if len(nodes) < 2:
        for node in nodes:
            remove(node)
        return "site network: none (one real node)"
    missing = [n.netns for n in nodes if not _netns_exists(n.netns)]
    if missing:
        raise NetworkError(f"site network: node namespaces missing: {', '.join(missing)}")
    router = nodes[0].site_netns
    if not _netns_exists(router):
        run("ip", "netns", "add", router)
    run("ip", "-n", router, "link", "set", "lo", "up")
    run("nsenter", f"--net={NETNS_DIR / router}", "--", "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
    # Links of nodes the site no longer has (a profile that went from 3 to 2) go: their routes too.
    wanted = {n.router_interface for n in nodes}
    listed = run("ip", "-n", router, "-o", "link", "show", check=False).stdout.splitlines()
    for line in listed:
        name = line.split(":")[1].strip().split("@")[0] if ":" in line else ""
        if name.startswith("snnode") and name not in wanted:
            run("ip", "-n", router, "link", "del", "dev", name)
    for node in nodes:
        if not (_link_exists(router, node.router_interface) and _link_exists(node.netns, node.lan_interface)):
            # Half a pair (a node namespace made anew, an interrupted start) goes first.
            for netns, name in ((router, node.router_interface), (node.netns, node.lan_interface)):
                if _link_exists(netns, name):
                    run("ip", "-n", netns, "link", "del", "dev", name)
            run("ip", "-n", router, "link", "add", node.router_interface, "type", "veth",
                "peer", "name", node.lan_interface, "netns", node.netns)  # fmt: skip
        prefix = node.lan_link.prefixlen
        run("ip", "-n", router, "addr", "replace", f"{node.lan_gateway}/{prefix}", "dev", node.router_interface)
        run("ip", "-n", router, "link", "set", node.router_interface, "up")
        run("ip", "-n", node.netns, "addr", "replace", f"{node.lan_ip}/{prefix}", "dev", node.lan_interface)
        run("ip", "-n", node.netns, "link", "set", node.lan_interface, "up")
    for route in routes(nodes):
        run(*route.argv())
    return f"site network: {len(nodes)} real nodes through namespace {router}"


def remove(node: RealNodePlan) -> None:
    """Deletes the site's router namespace (its veth pairs, the nodes' ends and their routes go
    with it), and a node end an interrupted start left behind."""
    if _netns_exists(node.site_netns):
        run("ip", "netns", "del", node.site_netns)
    if _netns_exists(node.netns) and _link_exists(node.netns, node.lan_interface):
        # The router's namespace may be on its way out, taking this end with it meanwhile.
        run("ip", "-n", node.netns, "link", "del", "dev", node.lan_interface, check=False)


def status(nodes: Sequence[RealNodePlan]) -> str:
    _check(nodes)
    if len(nodes) < 2:
        return "none (one real node)" if nodes else "none"
    router = nodes[0].site_netns
    if not _netns_exists(router):
        return "absent"
    down = [n.name for n in nodes if not (_netns_exists(n.netns) and _link_exists(router, n.router_interface))]
    return f"degraded (no link to {', '.join(down)})" if down else f"up ({router})"
