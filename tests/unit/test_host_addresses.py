"""`make clusters` refuses a load-balancer pool that holds an address this host uses: routing it
into a real node would cut the host off that address (its package registries, here)."""

from __future__ import annotations

import ipaddress
import types
from pathlib import Path

import pytest

from smartnation.tooling.local_clusters import host_addresses
from smartnation.tooling.local_clusters.host_addresses import (
    UsedAddress,
    from_hosts_file,
    from_ip_output,
    from_resolv_conf,
    shadowed,
)
from smartnation.tooling.local_clusters.lifecycle import LocalClusters
from smartnation.tooling.local_clusters.simulation import ClusterError

pytestmark = pytest.mark.unit

HOSTS = "127.0.0.1 localhost\n203.0.113.80    deb.debian.org proxy.golang.org  # registries\n::1 ip6-localhost\n"
ADDR = (
    "1: lo    inet 127.0.0.1/8 scope host lo\n"
    "2: eth0    inet 192.0.2.2/24 brd 192.0.2.255 scope global eth0\n"
    "5: snveth0x0    inet 10.213.0.1/30 scope global snveth0x0\n"
)
ROUTES = "default via 192.0.2.1 dev eth0\n10.214.0.0/24 via 10.213.0.2 dev snveth0x0\n"


def test_the_hosts_file_the_name_servers_interfaces_and_gateways_are_read():
    used = from_hosts_file(HOSTS) + from_resolv_conf("nameserver 192.0.2.53\nnameserver 127.0.0.53\n")
    used += from_ip_output(ADDR, ROUTES)
    assert {str(u.address): u.why for u in used} == {
        "203.0.113.80": "/etc/hosts: deb.debian.org proxy.golang.org",
        "192.0.2.53": "/etc/resolv.conf: name server",
        "192.0.2.2": "eth0's address",
        "192.0.2.1": "gateway of the route `default via 192.0.2.1 dev eth0`",
    }  # loopback and the project's own links are not the host's to lose


def test_a_pool_holding_a_used_address_is_found_and_a_free_one_is_not():
    used = from_hosts_file(HOSTS)
    assert shadowed(ipaddress.IPv4Network("203.0.113.0/24"), used) == used
    assert shadowed(ipaddress.IPv4Network("10.215.1.0/24"), used) == []


def test_make_clusters_refuses_the_pool_naming_the_profile_key(monkeypatch):
    monkeypatch.setattr(
        host_addresses,
        "addresses_in_use",
        lambda: [UsedAddress(ipaddress.IPv4Address("203.0.113.80"), "/etc/hosts: pypi.org")],
    )
    simulation = types.SimpleNamespace(
        load_balancer_pool=ipaddress.IPv4Network("203.0.113.0/24"),
        ingress_address=ipaddress.IPv4Address("203.0.113.250"),
    )
    cluster = types.SimpleNamespace(source="environments/clusters/monaco-onprem.yaml", simulation=simulation)
    clusters = LocalClusters.__new__(LocalClusters)
    with pytest.raises(ClusterError) as refused:
        clusters.check_routes_shadow_nothing(cluster)
    assert str(refused.value).startswith(
        "environments/clusters/monaco-onprem.yaml: simulation.load_balancer_pool: 203.0.113.0/24 holds "
        "addresses this host uses: 203.0.113.80 (/etc/hosts: pypi.org)"
    )
    simulation.load_balancer_pool = ipaddress.IPv4Network("10.215.1.0/24")
    simulation.ingress_address = ipaddress.IPv4Address("10.215.1.250")
    clusters.check_routes_shadow_nothing(cluster)  # nothing the host uses: accepted


def test_the_profiles_pools_shadow_nothing_this_host_uses():
    from smartnation.settings import list_clusters, load_cluster_profile

    used = host_addresses.addresses_in_use()
    for name in list_clusters():
        local = load_cluster_profile(name).simulation
        assert shadowed(local.load_balancer_pool, used) == [], name
        assert shadowed(ipaddress.IPv4Network(local.ingress_address), used) == [], name
    assert Path("/etc/hosts").exists()
