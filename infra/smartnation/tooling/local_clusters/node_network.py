"""A real node's network: its own namespace, a veth to the host, and its path to the API server.

- `ip netns add sn-<cluster>-<i>`: containerd, the kubelet and kube-proxy run in it (through
  `nsenter --net`, which keeps the host's mount namespace so the kubelet's volume mounts and
  containerd's root file systems see each other); the Pods' bridge, their veths and kube-proxy's
  iptables rules live only in there;
- a veth pair, host end snveth<s>x<i> with .1 of the node's /30, node end eth0 with .2: the API
  server on the host reaches the kubelet at the node's address over it (logs, exec), and a host
  route sends the node's Pod /24 the same way. The host does not forward: nothing goes further;
- the API server listens on the host's loopback only. A socat on the host listens on a unix
  socket and connects to 127.0.0.1:<port>; a socat in the node's namespace listens on that
  namespace's 127.0.0.1:<port> and connects to the socket. The kubelet and kube-proxy use
  https://127.0.0.1:<port>, the address the API server's certificate names;
- the site's local registry (tooling/images/registry.py) is reached the same way, on the port of
  the profile's ``simulation.registry_port``: containerd pulls from 127.0.0.1:<that port> in the
  node's namespace (containerd_config.py), and nothing else of the host is reachable from there;
- the cluster's load-balancer addresses (the profile's ``simulation.load_balancer_pool``, and its
  ``ingress_address``) are routed from the host to the cluster's first real node, whose
  kube-proxy sends a Service's address to its Pods: a client on the host reaches
  <LB address>:<port> as a device reaches the site's load balancer. Only routes into the
  project's own namespaces; the host still forwards nothing.
"""

from __future__ import annotations

import ipaddress
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from smartnation.tooling.local_clusters.node_plan import RealNodePlan

NETNS_DIR = Path("/run/netns")


class NetworkError(RuntimeError):
    pass


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(args), capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise NetworkError(f"`{' '.join(args)}` failed: {(proc.stderr or proc.stdout).strip()}")
    return proc


def netns_path(plan: RealNodePlan) -> Path:
    return NETNS_DIR / plan.netns


def in_netns(plan: RealNodePlan, argv: list[str]) -> list[str]:
    """argv run inside the node's network namespace, in the host's mount namespace."""
    return ["nsenter", f"--net={netns_path(plan)}", "--", *argv]


def link_exists(name: str, netns: str | None = None) -> bool:
    args = ["ip", *(["-n", netns] if netns else []), "link", "show", "dev", name]
    return run(*args, check=False).returncode == 0


def load_balancer_routes(
    pool: ipaddress.IPv4Network, ingress_address: ipaddress.IPv4Address
) -> tuple[ipaddress.IPv4Network, ...]:
    """The host routes that make a cluster's load-balancer addresses answer: its pool, and the
    ingress address when it lies outside the pool."""
    if ingress_address in pool:
        return (pool,)
    return (pool, ipaddress.IPv4Network(ingress_address))


def ensure(plan: RealNodePlan, routed: Sequence[ipaddress.IPv4Network] = ()) -> None:
    """Creates what is missing of the node's namespace, link, addresses and routes (idempotent).

    ``routed``: further networks the host sends to this node (the cluster's load-balancer
    addresses, load_balancer_routes), replacing any route to them the host had."""
    if not netns_path(plan).exists():
        run("ip", "netns", "add", plan.netns)
    ns = plan.netns
    if not link_exists(plan.node_interface, ns):
        # A half-made link from an interrupted start goes first.
        if link_exists(plan.host_veth):
            run("ip", "link", "del", "dev", plan.host_veth)
        run("ip", "link", "add", plan.host_veth, "type", "veth", "peer", "name", plan.node_veth)
        run("ip", "link", "set", plan.node_veth, "netns", ns)
        run("ip", "-n", ns, "link", "set", plan.node_veth, "name", plan.node_interface)
    run("ip", "link", "set", plan.host_veth, "up")
    run("ip", "addr", "replace", f"{plan.host_ip}/{plan.link.prefixlen}", "dev", plan.host_veth)
    run("ip", "-n", ns, "link", "set", "lo", "up")
    run("ip", "-n", ns, "addr", "replace", f"{plan.node_ip}/{plan.link.prefixlen}", "dev", plan.node_interface)
    run("ip", "-n", ns, "link", "set", plan.node_interface, "up")
    # From the node: everything through the host end (ClusterIPs need a route before kube-proxy's
    # DNAT). The host does not forward, so nothing leaves the machine this way.
    run("ip", "-n", ns, "route", "replace", "default", "via", str(plan.host_ip))
    run("ip", "route", "replace", str(plan.pod_cidr), "via", str(plan.node_ip), "dev", plan.host_veth)
    for network in routed:
        run("ip", "route", "replace", str(network), "via", str(plan.node_ip), "dev", plan.host_veth)
    # A route through this node that is no longer wanted (a pool the profile moved) goes: left
    # behind, it would keep swallowing traffic for addresses that are not the cluster's any more.
    wanted = {plan.pod_cidr, *routed}
    for line in host_routes(plan):
        destination = line.split()[0]  # "10.215.0.0/24", or "10.215.0.250" for a /32
        if destination != "default" and ipaddress.IPv4Network(destination) not in wanted:
            run("ip", "route", "del", destination, "via", str(plan.node_ip), check=False)
    # Inside the node only: Pods on the bridge reach the node's address and each other through it.
    run(*in_netns(plan, ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]))


def host_routes(plan: RealNodePlan) -> list[str]:
    """The host's routes through this node (``ip route`` lines naming its address), whatever
    network they are for: the Pods' /24 and the load-balancer addresses."""
    proc = run("ip", "-4", "route", "show", "via", str(plan.node_ip), check=False)
    return [line.strip() for line in proc.stdout.splitlines() if line.strip()]


def remove(plan: RealNodePlan) -> None:
    """Deletes the host's routes through the node, the namespace (and with it the node end, the
    Pods' bridge and every iptables rule in it) and the host end, if still there."""
    for route in host_routes(plan):
        # The first word is the destination ("198.51.100.0/24", "default" never: not ours).
        run("ip", "route", "del", route.split()[0], "via", str(plan.node_ip), check=False)
    if netns_path(plan).exists():
        run("ip", "netns", "del", plan.netns)
    # The kernel destroys a deleted namespace, and the host end of a veth whose other end was in
    # it, a moment later: the link may go between the check and the delete (then the delete
    # fails with "Cannot find device", and the link is gone as wanted). `leftovers` tells the rest.
    deadline = time.monotonic() + 5
    while link_exists(plan.host_veth) and time.monotonic() < deadline:
        if run("ip", "link", "del", "dev", plan.host_veth, check=False).returncode != 0:
            time.sleep(0.1)


def leftovers(plan: RealNodePlan) -> list[str]:
    """What of the node's network is still on the host (empty after ``remove``)."""
    found = [f"route {route}" for route in host_routes(plan)]
    if netns_path(plan).exists():
        found.append(f"network namespace {plan.netns}")
    if link_exists(plan.host_veth):
        found.append(f"link {plan.host_veth}")
    return found


def _forwarders(plan: RealNodePlan, role: str, sock: Path, port: int) -> dict[str, list[str]]:
    """A socat pair: on the host, unix socket -> 127.0.0.1:<port>; in the node's namespace,
    127.0.0.1:<port> -> the socket. Names ``<role>-forward-host`` and ``<role>-forward-node``."""
    return {
        f"{role}-forward-host": [
            "socat",
            f"UNIX-LISTEN:{sock},fork,unlink-early,mode=600",
            f"TCP:127.0.0.1:{port}",
        ],
        f"{role}-forward-node": in_netns(
            plan,
            ["socat", f"TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr", f"UNIX-CONNECT:{sock}"],
        ),
    }


def api_forwarders(plan: RealNodePlan, apiserver_port: int) -> dict[str, list[str]]:
    """The two socat processes of the node's path to its API server: name -> argv."""
    return _forwarders(plan, "api", plan.api_socket, apiserver_port)


def registry_forwarders(plan: RealNodePlan, registry_port: int) -> dict[str, list[str]]:
    """The two socat processes of the node's path to its site's local registry: name -> argv.
    Only the port of the node's own site: another site's registry is not reachable from it."""
    return _forwarders(plan, "registry", plan.registry_socket, registry_port)
