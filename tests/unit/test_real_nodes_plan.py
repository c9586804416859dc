"""Real nodes: names, addresses and paths never collide, and fit the kernel's limits."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from smartnation.tooling.local_clusters.node_plan import (
    MAX_NODES_PER_SITE,
    MAX_SITES,
    PlanError,
    RealNodePlan,
    plans,
)

pytestmark = pytest.mark.unit


def _all_plans(tmp_path: Path) -> list[RealNodePlan]:
    return [
        RealNodePlan(f"cluster-{site}", site, index, tmp_path / f"cluster-{site}")
        for site, index in itertools.product(range(MAX_SITES), range(MAX_NODES_PER_SITE))
    ]


def test_every_node_of_every_site_gets_its_own_names_addresses_and_cgroup(tmp_path):
    every = _all_plans(tmp_path)
    attrs = ("name", "netns", "host_veth", "node_veth", "node_ip", "host_ip", "cgroup", "run_dir", "node_dir")
    attrs += ("kubelet_dir",)
    for attr in attrs:
        values = [getattr(p, attr) for p in every]
        assert len(set(values)) == len(values), attr
    links = [p.link for p in every]
    pods = [p.pod_cidr for p in every]
    for a, b in itertools.combinations(links + pods, 2):
        assert not a.overlaps(b), (a, b)


def test_addresses_stay_off_the_networks_the_clusters_and_the_machine_use(tmp_path):
    import ipaddress

    taken = [
        ipaddress.IPv4Network("10.0.0.0/16"),  # kwokctl's service and simulated pod ranges
        ipaddress.IPv4Network("127.0.0.0/8"),
        ipaddress.IPv4Network("198.51.100.0/24"),  # the profiles' load-balancer documentation range
        ipaddress.IPv4Network("192.0.2.0/24"),
    ]
    for plan in _all_plans(tmp_path):
        for net in (plan.link, plan.pod_cidr):
            assert not any(net.overlaps(t) for t in taken), net
        assert plan.host_ip in plan.link and plan.node_ip in plan.link
        assert plan.pod_gateway in plan.pod_cidr


def test_interface_names_and_socket_paths_fit_the_kernels_limits(tmp_path):
    for plan in _all_plans(tmp_path):
        assert len(plan.host_veth) <= 15 and len(plan.node_veth) <= 15
        # sun_path holds 108 bytes including the terminating NUL.
        assert len(str(plan.containerd_socket) + ".ttrpc") < 108
        assert len(str(plan.api_socket)) < 108
        # The kubelet serves its pod-resources API on <root-dir>/pod-resources/<10 digits>.
        assert len(str(plan.kubelet_dir / "pod-resources" / "4042708043")) < 108


def test_everything_a_node_writes_is_under_its_own_directories(tmp_path):
    plan = RealNodePlan("dusseldorf-test", 0, 0, tmp_path / "dusseldorf-test")
    assert plan.node_dir.parent == plan.cluster_dir
    assert plan.logs_dir.parent == plan.cluster_dir
    assert plan.state_file.parent == plan.node_dir
    assert plan.containerd_socket.parent == plan.run_dir
    assert plan.cgroup.startswith("/smartnation/") and plan.cgroup.endswith(plan.name)


@pytest.mark.parametrize(("site", "index"), [(MAX_SITES, 0), (0, MAX_NODES_PER_SITE), (-1, 0)])
def test_a_node_outside_the_address_plan_is_refused(tmp_path, site, index):
    with pytest.raises(PlanError, match="outside"):
        RealNodePlan("c", site, index, tmp_path)


def test_too_many_nodes_for_a_cluster_are_refused_up_front(tmp_path):
    with pytest.raises(PlanError, match="address plan holds"):
        plans("c", 0, MAX_NODES_PER_SITE + 1, tmp_path)
    assert [p.name for p in plans("c", 1, 2, tmp_path)] == ["c-real-0", "c-real-1"]
