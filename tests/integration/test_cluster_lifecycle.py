"""Starting and stopping the local clusters: data survives, bad starts fail clearly or recover.

The port and half-start cases use a scratch cluster of their own (a copy of the Monaco profile
on another port, with its own kubeconfig), so the two real stand-ins are never disturbed by them.
"""

from __future__ import annotations

import socket
import uuid
from pathlib import Path

import pytest
import yaml

from smartnation.tooling.local_clusters.lifecycle import ClusterError, LocalClusters
from smartnation.tooling.toolchain.cache import layout

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
SCRATCH_PORT = 16459


@pytest.fixture()
def scratch(tmp_path: Path):
    """A third, throwaway cluster profile and the LocalClusters that manages only it."""
    profile = yaml.safe_load((REPO / "environments" / "clusters" / "monaco-onprem.yaml").read_text())
    name = "lifecycle-probe"
    profile.update(name=name, context=name)
    profile["simulation"]["apiserver_port"] = SCRATCH_PORT
    for pool in profile["node_pools"]:
        pool["count"] = 1
    (tmp_path / "clusters").mkdir()
    (tmp_path / "clusters" / f"{name}.yaml").write_text(yaml.safe_dump(profile))
    local = LocalClusters(layout(), profiles_dir=tmp_path / "clusters", kubeconfig=tmp_path / "kubeconfig")
    yield local, local.profiles()[0]
    local.reset(local.profiles()[0])


def test_data_survives_clusters_down_and_up(tools, clusters):
    monaco = next(c for c in clusters.profiles() if c.name == "monaco-onprem")
    marker = f"survivor-{uuid.uuid4().hex[:8]}"
    tools.run("kubectl", "--context", monaco.context, "create", "configmap", marker, "--from-literal=city=monaco")
    try:
        clusters.down(monaco)
        assert clusters.status(monaco) == "stopped"
        down = tools.run(
            "kubectl", "--context", monaco.context, "get", "--raw=/readyz", "--request-timeout=3s", check=False
        )
        assert down.returncode != 0
        took = clusters.up(monaco)
        assert took < 60, f"restart took {took:.0f}s"
        kept = tools.kubectl_json(monaco.context, "get", "configmap", marker)
        assert kept["data"] == {"city": "monaco"}
        nodes = tools.kubectl_json(monaco.context, "get", "nodes")["items"]
        assert all({c["type"]: c["status"] for c in n["status"]["conditions"]}["Ready"] == "True" for n in nodes)
    finally:
        tools.run("kubectl", "--context", monaco.context, "delete", "configmap", marker, check=False)


def test_a_taken_port_is_a_clear_error_naming_the_profile_key(scratch):
    local, cluster = scratch
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", SCRATCH_PORT))
        squatter.listen()
        with pytest.raises(ClusterError) as err:
            local.up(cluster)
    message = str(err.value)
    assert f"port {SCRATCH_PORT}" in message
    assert "simulation.apiserver_port" in message and str(cluster.source) in message
    assert not local.cluster_dir(cluster.name).exists()  # nothing was created


def test_a_half_created_cluster_is_cleaned_up_and_created_again(scratch, tools):
    local, cluster = scratch
    leftover = local.cluster_dir(cluster.name)
    leftover.mkdir(parents=True)
    (leftover / "kwok.yaml").write_text("half: written\n")
    local.up(cluster)
    assert local.status(cluster) == "running"
    nodes = tools.run(
        "kubectl", "--kubeconfig", str(local.kubeconfig), "--context", cluster.context, "get", "nodes", "-o", "name"
    ).stdout.split()
    assert len(nodes) == sum(p.count for p in cluster.node_pools)
