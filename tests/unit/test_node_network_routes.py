"""A real node's host routes: its Pods' /24 and the cluster's load-balancer addresses go to the
node, and removing the node's network takes every one of them away (checked by `leftovers`).

`ip` is played by a small fake that keeps namespaces, links and routes like the kernel would
(a route through a deleted link disappears with it), so each step's effect is asserted."""

from __future__ import annotations

import ipaddress
import subprocess
from pathlib import Path

import pytest

from smartnation.tooling.local_clusters import node_network
from smartnation.tooling.local_clusters.node_plan import RealNodePlan

pytestmark = pytest.mark.unit

POOL = ipaddress.IPv4Network("198.51.100.0/24")


class FakeIp:
    """Namespaces (files under a temporary /run/netns), host links and host routes."""

    def __init__(self, netns_dir: Path) -> None:
        self.netns_dir = netns_dir
        self.links: set[str] = set()
        self.node_links: set[str] = set()  # inside the node's namespace
        self.routes: dict[str, tuple[str, str]] = {}  # destination -> (via, dev)
        self.calls: list[list[str]] = []

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = list(args)
        self.calls.append(argv)
        ok = subprocess.CompletedProcess(argv, 0, "", "")
        if argv[0] == "nsenter":
            return ok
        if argv[1] == "-n":  # inside the node's namespace
            match argv[3:]:
                case ["link", "show", "dev", name]:
                    return subprocess.CompletedProcess(argv, 0 if name in self.node_links else 1, "", "")
                case ["link", "set", _, "name", name]:
                    self.node_links.add(name)
            return ok
        match argv[1:]:
            case ["netns", "add", name]:
                (self.netns_dir / name).touch()
            case ["netns", "del", name]:
                (self.netns_dir / name).unlink()
                self.node_links.clear()  # with the namespace goes the node's end of the link
                self.links = {link for link in self.links if not link.startswith("snveth")}
                self.routes = {d: r for d, r in self.routes.items() if r[1] in self.links}
            case ["link", "show", "dev", name]:
                return subprocess.CompletedProcess(argv, 0 if name in self.links else 1, "", "")
            case ["link", "add", host, "type", "veth", "peer", "name", peer]:
                self.links |= {host, peer}
            case ["link", "set", peer, "netns", _]:
                self.links.discard(peer)
            case ["link", "del", "dev", name]:
                self.links.discard(name)
                self.routes = {d: r for d, r in self.routes.items() if r[1] != name}
            case ["route", "replace", dest, "via", via, "dev", dev]:
                assert dev in self.links, f"no link {dev}"
                self.routes[str(ipaddress.ip_network(dest))] = (via, dev)
            case ["-4", "route", "show", "via", via]:
                lines = [f"{d.removesuffix('/32')} dev {dev}" for d, (v, dev) in self.routes.items() if v == via]
                return subprocess.CompletedProcess(argv, 0, "\n".join(lines) + "\n", "")
            case ["route", "del", dest, "via", via]:
                key = str(ipaddress.ip_network(dest))
                if self.routes.get(key, ("",))[0] != via:
                    return subprocess.CompletedProcess(argv, 2, "", "RTNETLINK answers: No such process")
                del self.routes[key]
            case ["link", "set", _, "up"] | ["addr", "replace", _, "dev", _]:
                pass
            case _:
                raise AssertionError(f"unexpected command {argv}")
        return ok


@pytest.fixture
def fake_ip(tmp_path, monkeypatch) -> FakeIp:
    netns_dir = tmp_path / "netns"
    netns_dir.mkdir()
    fake = FakeIp(netns_dir)
    monkeypatch.setattr(node_network, "NETNS_DIR", netns_dir)
    monkeypatch.setattr(node_network, "run", fake)
    return fake


@pytest.fixture
def plan(tmp_path) -> RealNodePlan:
    return RealNodePlan("dusseldorf-test", 0, 0, tmp_path / "real-nodes" / "dusseldorf-test")


def test_the_ingress_address_gets_its_own_route_only_outside_the_pool():
    assert node_network.load_balancer_routes(POOL, ipaddress.IPv4Address("198.51.100.250")) == (POOL,)
    outside = ipaddress.IPv4Address("192.0.2.80")
    assert node_network.load_balancer_routes(POOL, outside) == (POOL, ipaddress.IPv4Network("192.0.2.80/32"))


def test_the_load_balancer_addresses_are_routed_to_the_node_over_its_link(fake_ip, plan):
    routed = node_network.load_balancer_routes(POOL, ipaddress.IPv4Address("192.0.2.80"))
    node_network.ensure(plan, routed)
    via = (str(plan.node_ip), plan.host_veth)
    assert fake_ip.routes == {str(plan.pod_cidr): via, str(POOL): via, "192.0.2.80/32": via}
    assert sorted(node_network.leftovers(plan)) == sorted(
        [f"route {POOL} dev {plan.host_veth}", f"route {plan.pod_cidr} dev {plan.host_veth}",
         f"route 192.0.2.80 dev {plan.host_veth}", f"network namespace {plan.netns}", f"link {plan.host_veth}"]
    )  # fmt: skip
    # Idempotent: a second start replaces the same routes.
    node_network.ensure(plan, routed)
    assert len(fake_ip.routes) == 3


def test_removal_deletes_every_route_through_the_node_and_leaves_nothing(fake_ip, plan):
    node_network.ensure(plan, node_network.load_balancer_routes(POOL, ipaddress.IPv4Address("192.0.2.80")))
    node_network.remove(plan)
    deleted = [call[3] for call in fake_ip.calls if call[1:3] == ["route", "del"]]
    assert sorted(deleted) == sorted([str(POOL), str(plan.pod_cidr), "192.0.2.80"])
    assert fake_ip.routes == {} and node_network.leftovers(plan) == []


def test_a_route_left_without_its_link_is_still_found_and_removed(fake_ip, plan):
    """A route through the node's address on another link (made by hand, say) does not vanish
    with the node's link: remove finds it by the node's address and deletes it; routes through
    other addresses are not touched."""
    fake_ip.links |= {"other0"}
    fake_ip.routes = {str(POOL): (str(plan.node_ip), "other0"), "203.0.113.0/24": ("10.213.1.2", "other0")}
    assert node_network.leftovers(plan) == [f"route {POOL.network_address}/24 dev other0"]
    node_network.remove(plan)
    assert fake_ip.routes == {"203.0.113.0/24": ("10.213.1.2", "other0")}
    assert node_network.leftovers(plan) == []


def test_a_pool_the_profile_moved_loses_its_old_route_on_the_next_start(fake_ip, plan):
    """The old pool's route through the node would keep swallowing the host's traffic to those
    addresses (on this machine kind, every package registry's)."""
    node_network.ensure(plan, node_network.load_balancer_routes(POOL, ipaddress.IPv4Address("192.0.2.80")))
    moved = ipaddress.IPv4Network("10.215.0.0/24")
    node_network.ensure(plan, node_network.load_balancer_routes(moved, ipaddress.IPv4Address("10.215.0.250")))
    via = (str(plan.node_ip), plan.host_veth)
    assert fake_ip.routes == {str(plan.pod_cidr): via, str(moved): via}
