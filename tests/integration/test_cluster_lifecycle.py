"""Starting and stopping the local clusters: data survives, bad starts fail clearly or recover.

Every case uses a scratch cluster of its own (a copy of the Monaco profile on another port, with
its own kubeconfig), so the two stand-ins that `make up` deployed to are never disturbed.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import uuid
from pathlib import Path

import pytest
import yaml

from smartnation.tooling.local_clusters.lifecycle import ClusterError, LocalClusters
from smartnation.tooling.local_clusters.node_processes import alive, start_time
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
    profile["simulation"]["real_nodes"] = 0  # its addresses would be the first real cluster's
    profile["simulation"].pop("real_node_environments", None)  # no real nodes to run them on
    for pool in profile["node_pools"]:
        pool["count"] = 1
    (tmp_path / "clusters").mkdir()
    (tmp_path / "clusters" / f"{name}.yaml").write_text(yaml.safe_dump(profile))
    local = LocalClusters(layout(), profiles_dir=tmp_path / "clusters", kubeconfig=tmp_path / "kubeconfig")
    yield local, local.profiles()[0]
    issuer = local.cert_manager(local.profiles()[0])
    controller = issuer.running()
    local.reset(local.profiles()[0])
    # Nothing of the issuer outlives a reset: no process, no CA.
    assert controller is None or not alive(controller)
    assert not issuer.ca.directory.exists()


def test_data_survives_clusters_down_and_up(scratch, tools):
    """On the scratch cluster: the shared stand-ins that `make up` deployed to are never restarted."""
    local, cluster = scratch
    local.up(cluster)
    kubectl = ("kubectl", "--kubeconfig", str(local.kubeconfig), "--context", cluster.context)
    marker = f"survivor-{uuid.uuid4().hex[:8]}"
    tools.run(*kubectl, "create", "configmap", marker, "--from-literal=city=monaco")
    issuer = local.cert_manager(cluster)
    controller, ca = issuer.running(), issuer.ca.cert_file.read_bytes()
    assert controller is not None
    local.down(cluster)
    assert local.status(cluster) == "stopped"
    assert issuer.running() is None and not alive(controller)
    down = tools.run(*kubectl, "get", "--raw=/readyz", "--request-timeout=3s", check=False)
    assert down.returncode != 0
    took = local.up(cluster)
    assert took < 60, f"restart took {took:.0f}s"
    kept = json.loads(tools.run(*kubectl, "get", "configmap", marker, "-o", "json").stdout)
    assert kept["data"] == {"city": "monaco"}
    # The issuer comes back with the same CA: certificates issued before the restart stay valid.
    assert issuer.running() is not None and issuer.ca.cert_file.read_bytes() == ca
    nodes = json.loads(tools.run(*kubectl, "get", "nodes", "-o", "json").stdout)["items"]
    assert nodes
    assert all({c["type"]: c["status"] for c in n["status"]["conditions"]}["Ready"] == "True" for n in nodes)


def test_a_taken_port_is_a_clear_error_naming_the_profile_key(scratch):
    local, cluster = scratch
    with socket.socket() as squatter:
        # The previous test's scratch API server may leave connections in TIME_WAIT on the port.
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
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
    assert len(nodes) == sum(p.count for p in cluster.profile.node_pools)


def test_a_dead_controller_manager_is_restarted_by_make_clusters(scratch, tools):
    """The API server alone answering is not a running cluster: a killed kube-controller-manager
    (Deployments would never roll) is noticed and the control plane restarted, data kept."""
    local, cluster = scratch
    local.up(cluster)
    kubectl = ("kubectl", "--kubeconfig", str(local.kubeconfig), "--context", cluster.context)
    marker = f"kept-{uuid.uuid4().hex[:8]}"
    tools.run(*kubectl, "create", "configmap", marker, "--from-literal=city=monaco")
    pid_file = local.cluster_dir(cluster.name) / "pids" / "kube-controller-manager.pid"
    victim = int(pid_file.read_text())
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while start_time(victim) is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert local.healthy(cluster), "the API server should still answer: the case this test is about"
    assert local.stopped_components(cluster) == ["kube-controller-manager"]

    local.up(cluster)
    assert local.stopped_components(cluster) == []
    assert int(pid_file.read_text()) != victim
    kept = json.loads(tools.run(*kubectl, "get", "configmap", marker, "-o", "json").stdout)
    assert kept["data"] == {"city": "monaco"}
    # The controller manager works again: a Deployment gets its ReplicaSet.
    tools.run(*kubectl, "create", "deployment", marker, "--image=registry.invalid/none@sha256:" + "0" * 64)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        sets = tools.run(*kubectl, "get", "replicasets", "-l", f"app={marker}", "-o", "name").stdout.split()
        if sets:
            break
        time.sleep(1)
    assert sets, "no ReplicaSet made: the controller manager is not running"
