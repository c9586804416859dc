"""The WAN between the local sites (site_link.py): a Pod on one site's real node reaches a
LoadBalancer Service address of the other site, both ways, and nothing else of it (not its Pods);
removing the link leaves nothing on the host, whose forwarding stays off.

Needs what `make clusters` starts: both clusters, their real nodes and the link.
"""

from __future__ import annotations

import ipaddress
import subprocess
import time
import uuid

import pytest

from smartnation.tooling.local_clusters import site_link
from smartnation.tooling.local_clusters.node_network import run
from tests.integration import node_pods

pytestmark = pytest.mark.integration

SITES = ("dusseldorf-test", "monaco-onprem")


def _load_balancer_address(tools, context: str, namespace: str, name: str) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        service = tools.kubectl_json(context, "-n", namespace, "get", "service", name)
        ingress = service["status"].get("loadBalancer", {}).get("ingress") or []
        if ingress and ingress[0].get("ip"):
            return ingress[0]["ip"]
        time.sleep(0.5)
    raise AssertionError(f"{context}: Service {namespace}/{name} got no load-balancer address in 30 s")


def _fetch_until(tools, context, namespace, pod, address, port, marker, seconds=30.0):
    """The other site's kube-proxy programs a new address within its sync period: retry."""
    began, out = time.monotonic(), ""
    while time.monotonic() - began < seconds:
        code, out, _ = node_pods.fetch(tools, context, namespace, pod, address, port)
        if marker in out:
            return time.monotonic() - began
        time.sleep(1)
    raise AssertionError(f"{context}/{pod} -> {address}:{port}: no {marker!r} in {seconds:.0f} s; last: {out!r}")


@pytest.mark.parametrize("client_site", SITES, ids=[f"from-{s}" for s in SITES])
def test_a_pod_reaches_the_other_sites_load_balancer_address_and_not_its_pods(tools, clusters, client_site):
    server_site = next(s for s in SITES if s != client_site)
    profiles = {c.name: c for c in clusters.profiles()}
    server, client = profiles[server_site], profiles[client_site]
    assert site_link.for_local_clusters(clusters).status() == "up", "`make clusters` sets up the site link"
    marker = uuid.uuid4().hex
    labels = {"app.kubernetes.io/name": "site-link-echo"}
    with (
        node_pods.scratch_namespace(tools, server.context, "site-link-it") as server_ns,
        node_pods.scratch_namespace(tools, client.context, "site-link-it") as client_ns,
    ):
        lb = node_pods.service("echo", labels)
        lb["spec"]["type"] = "LoadBalancer"
        server_node, client_node = (
            node_pods.real_node(tools, server.context),
            node_pods.real_node(tools, client.context),
        )
        node_pods.apply(tools, server.context, server_ns, node_pods.server_pod("echo", server_node, labels, marker), lb)
        node_pods.apply(tools, client.context, client_ns, node_pods.client_pod("client", client_node, {"app": "c"}))
        node_pods.wait_ready(tools, server.context, server_ns, "echo")
        node_pods.wait_ready(tools, client.context, client_ns, "client")
        address = _load_balancer_address(tools, server.context, server_ns, "echo")
        assert ipaddress.ip_address(address) in server.simulation.load_balancer_pool
        took = _fetch_until(tools, client.context, client_ns, "client", address, 80, marker)
        print(f"{client_site} Pod -> {server_site} {address}:80 answered after {took:.1f}s")
        # A WAN carries only what a site publishes: the server Pod's own address is not reachable.
        pod_address = node_pods.pod_ip(tools, server.context, server_ns, "echo")
        code, out, _ = node_pods.fetch(tools, client.context, client_ns, "client", pod_address, node_pods.SERVER_PORT)
        assert marker not in out, f"{client_site} reached {server_site}'s Pod {pod_address} directly: {out!r}"
    assert _host_forwarding() == "0", "the host's IP forwarding was turned on"


def _host_forwarding() -> str:
    return open("/proc/sys/net/ipv4/ip_forward").read().strip()


def _host_view() -> dict[str, str]:
    """What the host shows of its network: links, routes, every iptables rule, namespaces."""

    def out(*argv: str) -> str:
        return subprocess.run(list(argv), capture_output=True, text=True, check=True).stdout

    return {
        "links": "\n".join(line.split("@")[0] for line in out("ip", "-o", "link").splitlines()),
        "routes": out("ip", "-4", "route"),
        "iptables": "\n".join(line for line in out("iptables-save").splitlines() if not line.startswith("#")),
        "netns": out("ip", "netns", "list"),
        "forwarding": _host_forwarding(),
    }


def test_the_link_carries_published_addresses_and_its_removal_leaves_nothing():
    """On scratch namespaces of our own (site numbers no profile uses, benchmark addresses no one
    routes): ensure links them, a connection reaches the other site's published address from its
    own site's address, a second ensure changes nothing, remove restores the host's view exactly."""
    net = ipaddress.IPv4Network
    ends = (
        site_link.SiteEnd("scratch-a", 14, "sn-linkit-a", (net("198.18.214.0/24"),), (net("198.18.114.0/24"),)),
        site_link.SiteEnd("scratch-b", 15, "sn-linkit-b", (net("198.18.215.0/24"),), (net("198.18.115.0/24"),)),
    )
    # Each scratch site's published address and the address its own connections come from (its
    # "Pods"), both on its loopback.
    published = {"sn-linkit-a": "198.18.214.9", "sn-linkit-b": "198.18.215.9"}
    inside = {"sn-linkit-a": "198.18.114.9", "sn-linkit-b": "198.18.115.9"}
    link = site_link.SiteLink(ends, netns="sn-linkit-wan")
    before = _host_view()
    try:
        for end in ends:
            run("ip", "netns", "add", end.node_netns)
            run("ip", "-n", end.node_netns, "link", "set", "lo", "up")
            for address in (published[end.node_netns], inside[end.node_netns]):
                run("ip", "-n", end.node_netns, "addr", "add", f"{address}/32", "dev", "lo")
        first = link.ensure()
        assert "sn-linkit-wan" in first, first
        assert link.ensure() == first and link.status() == "up"
        # From a's inside to b's published address: refused by b's kernel (no listener) proves the
        # packet arrived and the answer found its way back; a timeout would mean no path.
        probe = (
            "import socket,sys; s=socket.socket(); s.settimeout(3); s.bind((sys.argv[1], 0));"
            " print(s.connect_ex((sys.argv[2], 9)))"
        )
        for src, dst in (("sn-linkit-a", "sn-linkit-b"), ("sn-linkit-b", "sn-linkit-a")):
            proc = subprocess.run(["ip", "netns", "exec", src, "python3", "-c", probe,
                                   inside[src], published[dst]], capture_output=True, text=True)  # fmt: skip
            assert proc.stdout.strip() == "111", f"{src} -> {published[dst]}: {proc.stdout}{proc.stderr}"
        assert link.leftovers() == ["network namespace sn-linkit-wan", "link snwan0 in sn-linkit-a",
                                    "link snwan0 in sn-linkit-b"]  # fmt: skip
        assert _host_view() == {**before, "netns": _host_view()["netns"]}, "ensure changed the host itself"
    finally:
        link.remove()
        left = link.leftovers()
        for end in ends:
            run("ip", "netns", "del", end.node_netns, check=False)
    assert left == []
    assert _host_view() == before
