"""The site link's address plan and its place in the clusters' lifecycle: `make clusters` sets it
up after every cluster is up, `make clusters-reset` removes it before any node goes, `status`
reports it. (The link itself is shown on real namespaces in tests/integration/test_site_link.py.)"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from smartnation.tooling.local_clusters import lifecycle, site_link
from smartnation.tooling.local_clusters.node_network import NetworkError
from smartnation.tooling.local_clusters.node_plan import LINK_BASE, MAX_NODES_PER_SITE, MAX_SITES, RealNodePlan

pytestmark = pytest.mark.unit

POOL = (ipaddress.IPv4Network("10.215.0.0/24"),)


def test_each_sites_link_is_its_own_and_overlaps_no_node_link_or_pod_range():
    ends = [site_link.SiteEnd(f"c{s}", s, f"sn-c{s}-0", POOL) for s in range(MAX_SITES)]
    links = [e.link for e in ends]
    assert all(link.subnet_of(LINK_BASE) for link in links)
    assert len({*links}) == MAX_SITES
    nodes = [RealNodePlan(f"c{s}", s, i, Path("/x")) for s in range(MAX_SITES) for i in range(MAX_NODES_PER_SITE)]
    for link in links:
        assert not any(link.overlaps(n.link) or link.overlaps(n.pod_cidr) for n in nodes), link
    assert {e.wan_ip for e in ends}.isdisjoint({e.node_ip for e in ends})
    assert len({e.wan_interface for e in ends}) == MAX_SITES
    assert all(len(e.wan_interface) <= 15 for e in ends)  # the kernel's interface name limit


def test_two_sites_with_one_number_are_refused():
    with pytest.raises(NetworkError, match="share a number"):
        site_link.SiteLink([site_link.SiteEnd("a", 1, "sn-a-0", POOL), site_link.SiteEnd("b", 1, "sn-b-0", POOL)])


class Recorder:
    """Stands in for LocalClusters and the link: records the order of what main does."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    # LocalClusters
    def profiles(self, names=()):
        return [type("C", (), {"name": n, "context": n})() for n in ("dus", "mco")]

    def check_toolchain(self):
        self.calls.append("check")

    def up(self, cluster):
        self.calls.append(f"up {cluster.name}")

    def down(self, cluster):
        self.calls.append(f"down {cluster.name}")

    def reset(self, cluster):
        self.calls.append(f"reset {cluster.name}")

    kubeconfig = "kubeconfig"

    # SiteLink
    def ensure(self):
        self.calls.append("link ensure")
        return "site link: up"

    def remove(self):
        self.calls.append("link remove")

    def status(self):
        return "up"


@pytest.fixture
def recorder(monkeypatch):
    rec = Recorder()
    monkeypatch.setattr(lifecycle, "LocalClusters", lambda cache: rec)
    monkeypatch.setattr(lifecycle, "layout", lambda: None)
    monkeypatch.setattr(site_link, "for_local_clusters", lambda clusters: rec)
    return rec


def test_up_links_the_sites_once_every_cluster_is_up(recorder):
    assert lifecycle.main(["up"]) == 0
    assert recorder.calls == ["check", "up dus", "up mco", "link ensure"]


def test_reset_removes_the_link_before_any_cluster(recorder):
    assert lifecycle.main(["reset"]) == 0
    assert recorder.calls == ["link remove", "reset dus", "reset mco"]


def test_down_keeps_the_link(recorder):
    assert lifecycle.main(["down"]) == 0
    assert "link remove" not in recorder.calls
