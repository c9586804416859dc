"""Where a real node lives on this host: its names, addresses, directories and cgroup.

Everything a real node changes on the host is derived here from (cluster, site, index), so
`reset` can find and undo all of it from the same plan, and two clusters' nodes never share a
name, an address, a directory or a cgroup.

Addresses (none routed anywhere outside this host; the host does not forward):
- the link between the host and node i of site s: 10.213.s.(4i)/30, host end .4i+1, node .4i+2;
- node i of site s hands its Pods addresses from 10.214.(16s+i).0/24, on a bridge inside the
  node's own network namespace;
- a site of two or more nodes has a router of its own (site_network.py): the link between it and
  node i is 10.213.s.(64+4i)/30, router end .64+4i+1, node .64+4i+2 (the site's nodes'
  addresses on it: 10.213.s.64/26), beside the node links above and the site link's
  10.213.s.252/30 (site_link.py).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

# One definition, also read by the program (which selects it): re-exported for the node tooling.
from smartnation.settings.models import REAL_NODE_LABEL as REAL_NODE_LABEL

MAX_SITES = 16
MAX_NODES_PER_SITE = 16
LINK_BASE = ipaddress.IPv4Network("10.213.0.0/16")
POD_BASE = ipaddress.IPv4Network("10.214.0.0/16")
LAN_OFFSET = 64
"""Where a site's router links start in its /24 of LINK_BASE: past the 16 host links' /30s."""
RUN_ROOT = Path("/run/smartnation/nodes")
"""Runtime state (sockets, containerd's state, pod network namespaces): short paths, because a
unix socket path may not exceed 107 bytes, and on tmpfs like any runtime state."""
KUBELET_ROOT = Path("/var/lib/smartnation/nodes")
"""The kubelets' root directories (Pod volumes, checkpoints, and the sockets of its pod-resources,
device-plugin and plugin-registration servers): persistent like the node's data, but on a short
path, since those sockets live below it and a cache path can be long."""
CGROUP_PARENT = "smartnation"
"""Every real node's processes and Pods live under /<this>/<node> in each cgroup hierarchy."""


class PlanError(ValueError):
    """A node cannot be placed (too many sites or nodes for the address plan)."""


@dataclass(frozen=True)
class RealNodePlan:
    """One real node: what it is called and where everything it owns lives."""

    cluster: str
    site: int
    """The cluster's number on this host (its place among the profiles), picks its addresses."""
    index: int
    cluster_dir: Path
    """<cache>/clusters/real-nodes/<cluster>: the nodes' data and the cluster's logs folder."""

    def __post_init__(self) -> None:
        if not 0 <= self.site < MAX_SITES:
            raise PlanError(f"site number {self.site} of {self.cluster} is outside 0..{MAX_SITES - 1}")
        if not 0 <= self.index < MAX_NODES_PER_SITE:
            raise PlanError(f"node index {self.index} of {self.cluster} is outside 0..{MAX_NODES_PER_SITE - 1}")

    # -- names --------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """The Node's name in the cluster."""
        return f"{self.cluster}-real-{self.index}"

    @property
    def netns(self) -> str:
        """The node's network namespace (`ip netns`): containerd, kubelet and kube-proxy run in it."""
        return f"sn-{self.cluster}-{self.index}"

    @property
    def host_veth(self) -> str:
        """The host's end of the link (interface names are limited to 15 characters)."""
        return f"snveth{self.site}x{self.index}"

    @property
    def node_veth(self) -> str:
        """The node's end, created under a temporary host-unique name, then renamed inside."""
        return f"snpeer{self.site}x{self.index}"

    node_interface = "eth0"
    bridge = "snbr0"
    """The pods' bridge inside the node's namespace; the name only needs to be unique in there."""

    @property
    def cni_network(self) -> str:
        return f"smartnation-{self.name}"

    # -- addresses ----------------------------------------------------------------------------
    @property
    def link(self) -> ipaddress.IPv4Network:
        base = int(LINK_BASE.network_address) + self.site * 256 + self.index * 4
        return ipaddress.IPv4Network((base, 30))

    @property
    def host_ip(self) -> ipaddress.IPv4Address:
        return self.link.network_address + 1

    @property
    def node_ip(self) -> ipaddress.IPv4Address:
        """The node's InternalIP: the API server reaches the kubelet here, over the veth."""
        return self.link.network_address + 2

    @property
    def pod_cidr(self) -> ipaddress.IPv4Network:
        base = int(POD_BASE.network_address) + (self.site * MAX_NODES_PER_SITE + self.index) * 256
        return ipaddress.IPv4Network((base, 24))

    @property
    def pod_gateway(self) -> ipaddress.IPv4Address:
        return self.pod_cidr.network_address + 1

    # -- the site's own network (site_network.py; only with two or more nodes) -------------------
    @property
    def site_netns(self) -> str:
        """The site's router: one namespace per cluster, which every node of it has a link into."""
        return f"sn-{self.cluster}-site"

    @property
    def site_pods(self) -> ipaddress.IPv4Network:
        """Every Pod address the site's nodes may hand out (their /24s): 10.214.(16s).0/20."""
        return ipaddress.IPv4Network((int(POD_BASE.network_address) + self.site * MAX_NODES_PER_SITE * 256, 20))

    @property
    def site_lan(self) -> ipaddress.IPv4Network:
        """Every node's link to the site's router: 10.213.s.64/26. A node sends what it forwards
        to another node's Pod (a load-balancer address's traffic) from its address in here."""
        return ipaddress.IPv4Network((int(LINK_BASE.network_address) + self.site * 256 + LAN_OFFSET, 26))

    @property
    def lan_link(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network((int(self.site_lan.network_address) + self.index * 4, 30))

    @property
    def lan_gateway(self) -> ipaddress.IPv4Address:
        """The router's end of the node's link."""
        return self.lan_link.network_address + 1

    @property
    def lan_ip(self) -> ipaddress.IPv4Address:
        """The node's end of its link to the router."""
        return self.lan_link.network_address + 2

    lan_interface = "snlan0"
    """The node's end, inside the node's namespace."""

    @property
    def router_interface(self) -> str:
        """The router's end for this node, inside the site's namespace (15 characters at most)."""
        return f"snnode{self.index}"

    # -- directories --------------------------------------------------------------------------
    @property
    def node_dir(self) -> Path:
        """Persistent data: containerd's root (images, containers), the kubelet's root, configs."""
        return self.cluster_dir / self.name

    @property
    def logs_dir(self) -> Path:
        """One logs folder per cluster; each file is named after its node and process."""
        return self.cluster_dir / "logs"

    @property
    def state_file(self) -> Path:
        """The node's processes (PIDs) and the host changes it made, for stop, status and reset."""
        return self.node_dir / "state.json"

    @property
    def run_dir(self) -> Path:
        return RUN_ROOT / self.name

    @property
    def kubelet_dir(self) -> Path:
        return KUBELET_ROOT / self.name

    @property
    def containerd_socket(self) -> Path:
        return self.run_dir / "containerd.sock"

    @property
    def api_socket(self) -> Path:
        """The host end of the node's path to its API server (socat, unix socket)."""
        return self.run_dir / "apiserver.sock"

    @property
    def registry_socket(self) -> Path:
        """The host end of the node's path to its site's local registry (socat, unix socket)."""
        return self.run_dir / "registry.sock"

    @property
    def registry_hosts_dir(self) -> Path:
        """containerd's registry ``config_path``: one ``<host>/hosts.toml`` per registry host the
        node pulls from (its own site's only)."""
        return self.node_dir / "certs.d"

    @property
    def cgroup(self) -> str:
        """The node's cgroup (cgroupfs path): its daemons in <this>/system, its Pods in <this>/kubepods."""
        return f"/{CGROUP_PARENT}/{self.name}"


def plans(cluster: str, site: int, count: int, cluster_dir: Path) -> list[RealNodePlan]:
    if count > MAX_NODES_PER_SITE:
        raise PlanError(f"{cluster}: {count} real nodes asked, the address plan holds {MAX_NODES_PER_SITE}")
    return [RealNodePlan(cluster, site, i, cluster_dir) for i in range(count)]
