"""`make clusters-reset` leaves the host as it found it.

A scratch cluster with one real node of its own (site number 2, so its addresses, links and pod
network are its own) is started and reset; the host's network namespaces, links, routes, iptables
rules, mounts, cgroups and processes that name it are compared before, during and after. The
snapshot during the run must show the node's traces: a filter that saw nothing could not fail.
The two stand-ins that `make up` deployed to are never touched.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from smartnation.tooling.local_clusters.lifecycle import LocalClusters
from smartnation.tooling.local_clusters.node_plan import RealNodePlan
from smartnation.tooling.toolchain.cache import layout
from tests.integration.host_state import host_state

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
NAME = "zz-reset-probe"  # sorts after the two stand-ins: site number 2
PORT = 16461


@pytest.fixture()
def probe(tmp_path: Path):
    profiles = tmp_path / "clusters"
    profiles.mkdir()
    for real in ("dusseldorf-test", "monaco-onprem"):  # for the site numbering only; never started here
        shutil.copy(REPO / "environments" / "clusters" / f"{real}.yaml", profiles)
    profile = yaml.safe_load((REPO / "environments" / "clusters" / "monaco-onprem.yaml").read_text())
    profile.update(name=NAME, context=NAME)
    sim = profile["simulation"]
    sim.update(apiserver_port=PORT, registry_port=15002, real_nodes=1,
               load_balancer_pool="10.215.2.0/24", ingress_address="10.215.2.250")  # fmt: skip
    sim.pop("real_node_environments", None)
    for pool in profile["node_pools"]:
        pool["count"] = 1
    (profiles / f"{NAME}.yaml").write_text(yaml.safe_dump(profile))
    local = LocalClusters(layout(), profiles_dir=profiles, kubeconfig=tmp_path / "kubeconfig")
    cluster = next(c for c in local.profiles() if c.name == NAME)
    yield local, cluster
    local.reset(cluster)  # again, if the test failed half-way; a no-op after a passing run


def test_reset_removes_every_trace_of_a_cluster_and_its_real_node(probe):
    local, cluster = probe
    node: RealNodePlan = local.real_nodes(cluster).nodes[0]
    assert node.site == 2, "the probe would share addresses with a stand-in"
    markers = [
        NAME, node.netns, node.host_veth, node.node_veth,
        str(node.node_ip), str(node.pod_cidr.network_address)[:-1], "10.215.2.",
        str(local.cluster_dir(NAME)),
    ]  # fmt: skip
    before = host_state(markers)
    assert not any(before.values()), f"the probe's traces exist before it started: {before}"

    local.up(cluster)
    during = host_state(markers)
    # The filter must see what a real node puts on the host, or an empty "after" proves nothing.
    for where in ("netns", "links", "routes", "cgroups", "processes"):
        assert during[where], f"no {where} of the probe's node seen while it runs: {during}"

    local.reset(cluster)
    after = host_state(markers)
    assert after == before, f"left on the host after reset: { {k: v for k, v in after.items() if v} }"
    assert not local.cluster_dir(NAME).exists()
    left_in_cache = [str(p) for p in local.cache.clusters.rglob(f"*{NAME}*")]
    assert not left_in_cache, f"left in the cache after reset: {left_in_cache}"
