"""The network between a site's real nodes (site_network.py): its address plan, and which routes
make every node's Pods reach every other node's. (Shown on real nodes, Pods and a NetworkPolicy
in tests/integration/test_two_real_nodes.py.)"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from smartnation.tooling.local_clusters import site_link, site_network
from smartnation.tooling.local_clusters.node_network import NetworkError
from smartnation.tooling.local_clusters.node_plan import MAX_NODES_PER_SITE, MAX_SITES, RealNodePlan, plans

pytestmark = pytest.mark.unit


def _site(site: int, count: int, cluster: str | None = None) -> list[RealNodePlan]:
    return plans(cluster or f"c{site}", site, count, Path("/x"))


def test_router_links_are_each_nodes_own_and_overlap_nothing_else_of_the_plan():
    every = [n for s in range(MAX_SITES) for n in _site(s, MAX_NODES_PER_SITE)]
    lans = [n.lan_link for n in every]
    assert len(set(lans)) == len(lans)
    wan_links = [site_link.SiteEnd(f"c{s}", s, f"sn-c{s}-0", ()).link for s in range(MAX_SITES)]
    for node in every:
        assert node.lan_link.subnet_of(node.site_lan)
        assert node.pod_cidr.subnet_of(node.site_pods)
        others = [n.link for n in every] + [n.pod_cidr for n in every] + wan_links
        assert not any(node.lan_link.overlaps(o) for o in others), node.name
        assert {node.lan_ip, node.lan_gateway} <= set(node.lan_link.hosts())
        assert len(node.router_interface) <= 15 and len(node.lan_interface) <= 15  # the kernel's limit
    # One site's blocks hold only its own nodes' networks.
    for s in range(MAX_SITES):
        site = _site(s, MAX_NODES_PER_SITE)
        others = [n for n in every if n.site != s]
        assert not any(o.pod_cidr.overlaps(site[0].site_pods) or o.lan_link.overlaps(site[0].site_lan) for o in others)


def test_one_node_needs_no_router():
    assert site_network.routes(_site(0, 1)) == []
    assert site_network.wan_hops(_site(0, 1)) == ()


def test_every_nodes_pods_are_routed_to_it_and_every_node_routes_the_sites_pods_to_the_router():
    nodes = _site(2, 3)
    routes = site_network.routes(nodes)
    router = nodes[0].site_netns
    assert {r.netns for r in routes} == {router, *(n.netns for n in nodes)}
    for node in nodes:
        # The router sends the node's /24 over the node's own link, to its end of it.
        to_node = [r for r in routes if r.netns == router and r.network == node.pod_cidr]
        assert [(r.via, r.dev) for r in to_node] == [(node.lan_ip, node.router_interface)]
        # The node sends every other node's Pods, and the nodes' router links (where a node
        # forwarding a load-balancer address's traffic masquerades from), to the router.
        own = {r.network: r for r in routes if r.netns == node.netns}
        for other in nodes:
            if other is not node:
                covering = [n for n in own if other.pod_cidr.subnet_of(n)]
                assert covering, f"{node.name} has no route to {other.name}'s Pods"
                assert other.lan_ip in own[node.site_lan].network
        assert {(r.via, r.dev) for r in own.values()} == {(node.lan_gateway, node.lan_interface)}
        # Its own /24 stays on its bridge: the longer prefix wins over the site's block.
        assert node.pod_cidr.prefixlen > node.site_pods.prefixlen
    assert all(r.argv()[:4] == ["ip", "-n", r.netns, "route"] for r in routes)


def test_the_wan_is_reached_through_the_first_node():
    nodes = _site(1, 3)
    hops = dict(site_network.wan_hops(nodes))
    assert hops == {nodes[0].site_netns: nodes[0].lan_ip, nodes[1].netns: nodes[1].lan_gateway,
                    nodes[2].netns: nodes[2].lan_gateway}  # fmt: skip
    assert nodes[0].netns not in hops  # the first node holds the site's end of the WAN itself


def test_nodes_of_two_sites_are_refused():
    with pytest.raises(NetworkError, match="one site's nodes"):
        site_network.routes([*_site(0, 1, "a"), *_site(1, 1, "b")])


def test_site_link_routes_the_answers_for_every_nodes_pods():
    """for_local_clusters hands the link every node's /24 and the site's hops (not only the first)."""
    nodes = _site(0, 2, "dus")

    class Clusters:
        def profiles(self):
            sim = type("S", (), {"real_nodes": 2})()
            return [type("C", (), {"name": "dus", "simulation": sim})()]

        def access(self, cluster):
            pool = ipaddress.IPv4Network("10.215.0.0/24")
            return type("A", (), {"site": 0, "load_balancer_routes": (pool,)})()

        def real_nodes(self, cluster):
            return type("R", (), {"nodes": nodes})()

    (end,) = site_link.for_local_clusters(Clusters()).ends
    assert end.node_netns == nodes[0].netns
    assert set(end.inside) == {n.pod_cidr for n in nodes}
    assert end.lan == site_network.wan_hops(nodes)
