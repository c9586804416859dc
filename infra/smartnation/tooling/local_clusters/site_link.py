"""The WAN between the local sites: one site's Pods reach the other sites' load-balancer addresses.

Moving an environment from one cluster to another (docs/move.md) needs the sites to talk: the
new site's database replicates from the old one, `mc mirror` copies buckets, a broker bridge
carries device topics. Between the real sites that is a WAN on which each site publishes only
its load-balancer addresses. Here each site's first real node lives in its own network namespace
with a veth to the host, and the host does not forward (node_network.py), so nothing crosses.

The link is a network namespace of ours, ``sn-wan``, standing for the WAN router:

- one veth pair per site between ``sn-wan`` (``snsite<s>``, address .253 of 10.213.<s>.252/30,
  beyond the node links of node_plan.py) and the site's first node (``snwan0``, address .254);
- in each node's namespace, a route for every *other* site's load-balancer addresses (its
  ``simulation.load_balancer_pool`` and ingress address) through ``snwan0``; in ``sn-wan``, a
  route for each site's addresses to that site's node, and a route back to the site's Pods for
  the answers to their connections; its firewall lets a new connection through only to a
  published address (a WAN carries only what a site publishes: no site reaches another's Pods);
- in ``sn-wan``, a masquerade on each site's veth: the receiving site sees the connection come
  from ``sn-wan``'s address on its own link, which it reaches directly, so no site needs a route
  to another site's Pods. The node's kube-proxy sends the load-balancer address to the Service's
  Pods exactly as it does for the host's connections (on another node of its site through the
  site's router, site_network.py);
- a site of two or more real nodes reaches the WAN through its first node, as a site reaches it
  through its edge router: its other nodes and its router route the other sites' addresses to
  the first node (site_network.wan_hops), and ``sn-wan`` routes the answers for every node's Pods
  back to the first node, which the site's router passes on.

Nothing is created on the host itself: no host link, no host route, no host iptables rule, and
the host's forwarding stays off. Deleting ``sn-wan`` takes the veth pairs (and so the node ends
and their routes) and its iptables rules with it. `make clusters` ensures the link once every
site's node namespace exists (it survives `make clusters-down`, like the node namespaces);
`make clusters-reset` removes it.

    python -m smartnation.tooling.local_clusters.site_link up|status|reset
"""

from __future__ import annotations

import argparse
import ipaddress
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from smartnation.tooling.local_clusters import site_network
from smartnation.tooling.local_clusters.node_network import NETNS_DIR, NetworkError, run
from smartnation.tooling.local_clusters.node_plan import LINK_BASE, MAX_SITES

WAN_NETNS = "sn-wan"
NODE_INTERFACE = "snwan0"
"""The site's end inside its node's namespace (unique in there, so one name for every site)."""


@dataclass(frozen=True)
class SiteEnd:
    """One site on the link: its first real node's namespace and the addresses it publishes."""

    cluster: str
    site: int
    """The cluster's number on this host (node_plan.py): picks the link's addresses."""
    node_netns: str
    published: tuple[ipaddress.IPv4Network, ...]
    """The site's load-balancer addresses (node_network.load_balancer_routes): all it shows the WAN."""
    inside: tuple[ipaddress.IPv4Network, ...] = ()
    """Where the site's own connections come from (its nodes' Pods): the WAN router routes the
    answers back there, through the first node; a new connection to them is dropped, and no other
    site routes them."""
    lan: tuple[tuple[str, ipaddress.IPv4Address], ...] = ()
    """(namespace, next hop) of the site's other nodes and its router (site_network.wan_hops):
    each routes the other sites' published addresses that way, towards the first node."""

    def __post_init__(self) -> None:
        if not 0 <= self.site < MAX_SITES:
            raise NetworkError(f"site number {self.site} of {self.cluster} is outside 0..{MAX_SITES - 1}")

    @property
    def link(self) -> ipaddress.IPv4Network:
        """10.213.<site>.252/30: in the site's block of node links, past its 16 nodes' /30s."""
        return ipaddress.IPv4Network((int(LINK_BASE.network_address) + self.site * 256 + 252, 30))

    @property
    def wan_ip(self) -> ipaddress.IPv4Address:
        return self.link.network_address + 1

    @property
    def node_ip(self) -> ipaddress.IPv4Address:
        return self.link.network_address + 2

    @property
    def wan_interface(self) -> str:
        """The WAN router's end for this site, inside ``sn-wan``."""
        return f"snsite{self.site}"


def _netns_exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def _link_exists(netns: str, name: str) -> bool:
    return run("ip", "-n", netns, "link", "show", "dev", name, check=False).returncode == 0


def _masquerade_rule(end: SiteEnd) -> list[str]:
    return ["POSTROUTING", "-o", end.wan_interface, "-j", "MASQUERADE",
            "-m", "comment", "--comment", f"smartnation site link to {end.cluster}"]  # fmt: skip


class SiteLink:
    """The link between ``ends`` through the namespace ``netns`` (``sn-wan`` on this host; tests
    use scratch namespaces and names of their own)."""

    def __init__(self, ends: Sequence[SiteEnd], netns: str = WAN_NETNS) -> None:
        sites = [e.site for e in ends]
        if len(set(sites)) != len(sites):
            raise NetworkError(f"two sites share a number on the link: {sites}")
        self.ends = tuple(ends)
        self.netns = netns

    def iptables(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run("nsenter", f"--net={NETNS_DIR / self.netns}", "--", "iptables", "-w", *args, check=check)

    def append_once(self, table: str, rule: list[str]) -> None:
        if self.iptables("-t", table, "-C", *rule, check=False).returncode != 0:
            self.iptables("-t", table, "-A", *rule)

    def missing_nodes(self) -> list[str]:
        return [f"{e.cluster} ({e.node_netns})" for e in self.ends if not _netns_exists(e.node_netns)]

    def ensure(self) -> str:
        """Creates what is missing of the link (idempotent); says what it did. With fewer than two
        sites, or a site whose node is not there yet, there is nothing to link: the link's own
        namespace goes, so no half-link is left."""
        missing = self.missing_nodes()
        if len(self.ends) < 2 or missing:
            self.remove()
            why = f"node namespace missing: {', '.join(missing)}" if missing else "fewer than two sites with real nodes"
            return f"site link: not set up ({why})"
        if not _netns_exists(self.netns):
            run("ip", "netns", "add", self.netns)
        wan = self.netns
        run("ip", "-n", wan, "link", "set", "lo", "up")
        # The WAN router forwards, inside its own namespace only (the host's setting is untouched).
        run("nsenter", f"--net={NETNS_DIR / wan}", "--", "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
        for end in self.ends:
            node = end.node_netns
            if not (_link_exists(node, NODE_INTERFACE) and _link_exists(wan, end.wan_interface)):
                # Half a pair (a node namespace made anew after `make clusters-reset` of one
                # cluster, an interrupted start) goes first; deleting either end deletes both.
                for netns, name in ((wan, end.wan_interface), (node, NODE_INTERFACE)):
                    if _link_exists(netns, name):
                        run("ip", "-n", netns, "link", "del", "dev", name)
                run("ip", "-n", wan, "link", "add", end.wan_interface, "type", "veth",
                    "peer", "name", NODE_INTERFACE, "netns", node)  # fmt: skip
            run("ip", "-n", wan, "addr", "replace", f"{end.wan_ip}/{end.link.prefixlen}", "dev", end.wan_interface)
            run("ip", "-n", wan, "link", "set", end.wan_interface, "up")
            run("ip", "-n", node, "addr", "replace", f"{end.node_ip}/{end.link.prefixlen}", "dev", NODE_INTERFACE)
            run("ip", "-n", node, "link", "set", NODE_INTERFACE, "up")
            for network in (*end.published, *end.inside):
                run("ip", "-n", wan, "route", "replace", str(network),
                    "via", str(end.node_ip), "dev", end.wan_interface)  # fmt: skip
            for other in self.ends:
                if other is not end:
                    for network in other.published:
                        run("ip", "-n", node, "route", "replace", str(network),
                            "via", str(end.wan_ip), "dev", NODE_INTERFACE)  # fmt: skip
                        for netns, via in end.lan:
                            run("ip", "-n", netns, "route", "replace", str(network), "via", str(via))
            self.append_once("nat", _masquerade_rule(end))
            for network in end.published:
                self.append_once("filter", ["FORWARD", "-m", "conntrack", "--ctstate", "NEW", "-d", str(network),
                                            "-o", end.wan_interface, "-j", "ACCEPT"])  # fmt: skip
        # Only connections to a published address cross; their answers come back; nothing else.
        self.append_once("filter", ["FORWARD", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"])
        self.iptables("-P", "FORWARD", "DROP")
        linked = ", ".join(f"{e.cluster} ({' '.join(map(str, e.published))})" for e in self.ends)
        return f"site link: {linked} through namespace {self.netns}"

    def remove(self) -> None:
        """Deletes the link's namespace: with it go its veth pairs (so the node ends and the
        routes through them) and its iptables rules. Node ends left by an interrupted start go too."""
        if _netns_exists(self.netns):
            run("ip", "netns", "del", self.netns)
        for end in self.ends:
            if _netns_exists(end.node_netns) and _link_exists(end.node_netns, NODE_INTERFACE):
                run("ip", "-n", end.node_netns, "link", "del", "dev", NODE_INTERFACE)
        for netns, network, via in self._lan_routes():
            run("ip", "-n", netns, "route", "del", str(network), "via", str(via), check=False)

    def _lan_routes(self) -> list[tuple[str, ipaddress.IPv4Network, ipaddress.IPv4Address]]:
        """The routes towards the WAN inside the sites (``SiteEnd.lan``) that are on the host now."""
        found = []
        for end in self.ends:
            others = {net for other in self.ends if other is not end for net in other.published}
            for netns, via in end.lan:
                if not _netns_exists(netns):
                    continue
                shown = run("ip", "-n", netns, "-4", "route", "show", "via", str(via), check=False).stdout
                # The first word is the destination: "10.215.1.0/24", or "10.215.1.250" for a /32.
                routed = {ipaddress.IPv4Network(line.split()[0]) for line in shown.splitlines() if line.strip()}
                found += [(netns, network, via) for network in sorted(routed & others)]
        return found

    def leftovers(self) -> list[str]:
        """What of the link is still there (empty after ``remove``)."""
        found = [f"network namespace {self.netns}"] if _netns_exists(self.netns) else []
        for end in self.ends:
            if _netns_exists(end.node_netns) and _link_exists(end.node_netns, NODE_INTERFACE):
                found.append(f"link {NODE_INTERFACE} in {end.node_netns}")
        found += [f"route {network} via {via} in {netns}" for netns, network, via in self._lan_routes()]
        return found

    def status(self) -> str:
        if not _netns_exists(self.netns):
            return "absent"
        down = [
            e.cluster
            for e in self.ends
            if not (_netns_exists(e.node_netns) and _link_exists(self.netns, e.wan_interface))
        ]
        return f"degraded (no link to {', '.join(down)})" if down else "up"


def for_local_clusters(clusters) -> SiteLink:
    """The link between the first real nodes of every local cluster that has real nodes
    (``clusters``: lifecycle.LocalClusters); a site's other nodes reach it through the first."""
    ends = []
    for cluster in clusters.profiles():
        if cluster.simulation.real_nodes:
            access = clusters.access(cluster)
            nodes = clusters.real_nodes(cluster).nodes
            inside = tuple(n.pod_cidr for n in nodes)
            lan = site_network.wan_hops(nodes)
            ends.append(SiteEnd(cluster.name, access.site, nodes[0].netns, access.load_balancer_routes, inside, lan))
    return SiteLink(ends)


def main(argv: list[str] | None = None) -> int:
    # Imported here: lifecycle calls this module's functions.
    from smartnation.tooling.local_clusters.lifecycle import LocalClusters
    from smartnation.tooling.toolchain.cache import layout

    parser = argparse.ArgumentParser(prog="site_link", description="The WAN between the local clusters' sites")
    parser.add_argument("action", choices=["up", "status", "reset"])
    args = parser.parse_args(argv)
    try:
        link = for_local_clusters(LocalClusters(layout()))
        if args.action == "up":
            print(link.ensure())
        elif args.action == "reset":
            link.remove()
            left = link.leftovers()
            print(f"site link: removed{'; still there: ' + ', '.join(left) if left else ''}")
            return 1 if left else 0
        else:
            print(f"site link: {link.status()}")
    except NetworkError as exc:
        print(f"site link {args.action} failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
