"""Which real nodes of a cluster are on the host (real_nodes.node_present), for `up` to remove
those beyond the profile's count and `reset` to remove them all: only by what carries the
cluster's name, never by the site-numbered host link another cluster may hold."""

from __future__ import annotations

from pathlib import Path

import pytest

from smartnation.tooling.local_clusters import node_network, real_nodes
from smartnation.tooling.local_clusters.node_plan import RealNodePlan

pytestmark = pytest.mark.unit


@pytest.fixture
def plan(tmp_path: Path, monkeypatch) -> RealNodePlan:
    monkeypatch.setattr(node_network, "NETNS_DIR", tmp_path / "netns")
    (tmp_path / "netns").mkdir()
    # Another cluster of the same site number runs: its host link has this plan's name.
    monkeypatch.setattr(node_network, "link_exists", lambda name, netns=None: True)
    return RealNodePlan("lifecycle-probe", 0, 1, tmp_path / "real-nodes" / "lifecycle-probe")


def test_a_host_link_of_the_same_site_number_is_not_the_nodes(plan):
    assert not real_nodes.node_present(plan)


def test_the_nodes_state_file_or_namespace_makes_it_present(plan, tmp_path):
    (tmp_path / "netns" / plan.netns).touch()
    assert real_nodes.node_present(plan)
    (tmp_path / "netns" / plan.netns).unlink()
    plan.state_file.parent.mkdir(parents=True)
    plan.state_file.write_text("{}")
    assert real_nodes.node_present(plan)
