"""Real nodes run containers for real: a restricted Pod runs on a real node of each local
cluster, with its process, logs and exec reached through the kubelet, and a Pod that cannot
start is reported as not running (kwok's controller must not play the real nodes' Pods).

Needs what `make test` starts: both clusters with their real nodes (`make clusters`).
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import time
import uuid

import pytest

from smartnation.tooling.local_clusters import node_processes
from smartnation.tooling.local_clusters.node_images import BUSYBOX_IMAGE, NONROOT_UID
from smartnation.tooling.local_clusters.node_plan import POD_BASE, REAL_NODE_LABEL

pytestmark = pytest.mark.integration


@pytest.fixture
def namespace(tools, cluster):
    """A namespace enforcing Pod Security `restricted`, removed with its Pods afterwards."""
    name = f"real-node-it-{uuid.uuid4().hex[:6]}"
    manifest = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {"pod-security.kubernetes.io/enforce": "restricted"}},
    }
    tools.run("kubectl", "--context", cluster.context, "apply", "-f", "-", input=json.dumps(manifest))
    yield name
    tools.run("kubectl", "--context", cluster.context, "delete", "namespace", name, "--wait=true", "--timeout=120s")


def _real_node(tools, cluster) -> dict:
    nodes = tools.kubectl_json(cluster.context, "get", "nodes", "-l", f"{REAL_NODE_LABEL}=real")["items"]
    assert nodes, f"{cluster.name} has no node labelled {REAL_NODE_LABEL}=real: `make clusters` starts them"
    return nodes[0]


def _pod(name: str, node: str, image: str, command: list[str]) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": node},
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 1,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": NONROOT_UID,
                "runAsGroup": NONROOT_UID,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "main",
                    "image": image,
                    # Images are imported into the node's containerd; no registry is asked.
                    "imagePullPolicy": "Never",
                    "command": command,
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }


def _apply(tools, cluster, namespace: str, manifest: dict) -> None:
    tools.run("kubectl", "--context", cluster.context, "-n", namespace, "apply", "-f", "-", input=json.dumps(manifest))


def _get_pod(tools, cluster, namespace: str, name: str) -> dict:
    return tools.kubectl_json(cluster.context, "-n", namespace, "get", "pod", name)


def test_the_real_node_is_ready_and_tells_itself_apart_from_simulated_ones(tools, cluster):
    node = _real_node(tools, cluster)
    ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
    assert ready == "True"
    # A kubelet reports its runtime and versions; kwok's nodes carry its annotation and fake ones.
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://")
    assert node["status"]["nodeInfo"]["kubeletVersion"].startswith("v1.")
    assert "kwok.x-k8s.io/node" not in node["metadata"].get("annotations", {})
    simulated = tools.kubectl_json(cluster.context, "get", "nodes", "-l", f"{REAL_NODE_LABEL}!=real")["items"]
    assert simulated and all("kwok.x-k8s.io/node" in n["metadata"]["annotations"] for n in simulated)


def test_a_restricted_pod_runs_for_real_with_logs_and_exec(tools, cluster, namespace):
    node = _real_node(tools, cluster)["metadata"]["name"]
    marker = uuid.uuid4().hex
    _apply(tools, cluster, namespace, _pod("restricted", node, BUSYBOX_IMAGE,
                                           ["/bin/sh", "-c", f"echo {marker}; id -u; exec sleep 3600"]))  # fmt: skip
    tools.run("kubectl", "--context", cluster.context, "-n", namespace, "wait", "--for=condition=Ready",
              "pod/restricted", "--timeout=90s")  # fmt: skip
    pod = _get_pod(tools, cluster, namespace, "restricted")
    assert pod["status"]["phase"] == "Running"
    assert pod["spec"]["nodeName"] == node
    # An address from the node's own Pod range, handed out by its CNI bridge, not a made-up one.
    assert ipaddress.ip_address(pod["status"]["podIP"]) in POD_BASE
    assert pod["status"]["containerStatuses"][0]["containerID"].startswith("containerd://")
    # Logs and exec go from the API server to the kubelet on the node's address.
    logs = tools.run("kubectl", "--context", cluster.context, "-n", namespace, "logs", "restricted").stdout
    assert marker in logs and str(NONROOT_UID) in logs
    exec_ = tools.run("kubectl", "--context", cluster.context, "-n", namespace, "exec", "restricted", "--",
                      "/bin/sh", "-c", "id -u; touch /probe 2>&1; cat /proc/1/status", check=False)  # fmt: skip
    assert exec_.returncode == 0, exec_.stderr
    assert exec_.stdout.splitlines()[0] == str(NONROOT_UID)
    assert "Read-only file system" in exec_.stdout
    cap_eff = next(line for line in exec_.stdout.splitlines() if line.startswith("CapEff:"))
    assert int(cap_eff.split()[1], 16) == 0  # every capability dropped
    seccomp = next(line for line in exec_.stdout.splitlines() if line.startswith("Seccomp:"))
    assert seccomp.split()[1] == "2"  # filter mode: RuntimeDefault applied


def test_a_pod_that_cannot_start_on_a_real_node_is_not_reported_running(tools, cluster, namespace):
    node = _real_node(tools, cluster)["metadata"]["name"]
    # An image no node holds, with pulls forbidden: the sandbox may come up, the container never.
    _apply(tools, cluster, namespace, _pod("cannot-start", node, "smartnation.local/absent:never", ["/bin/true"]))
    reasons = set()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pod = _get_pod(tools, cluster, namespace, "cannot-start")
        assert pod["status"].get("phase") != "Running", pod["status"]
        assert not any(c.get("ready") for c in pod["status"].get("containerStatuses", []))
        for status in pod["status"].get("containerStatuses", []):
            reasons.add((status.get("state", {}).get("waiting") or {}).get("reason"))
        time.sleep(2)
    # The kubelet said why: it never tried a registry.
    assert "ErrImageNeverPull" in reasons, reasons


def test_a_killed_real_node_comes_back_with_make_clusters(tools, cluster, clusters):
    """What CI met on a machine whose clusters had been killed with it: containerd's socket file
    was left behind, and the restart dialled it before the new containerd listened. Kill the
    node's processes as a crash does (by the PIDs the node recorded), start it as `make clusters`
    does, and it is Ready again by a live kubelet, its old socket replaced."""
    nodes = clusters.real_nodes(cluster)
    for plan in nodes.nodes:
        for known in nodes.read_state(plan)["processes"].values():
            running = node_processes.Running.from_json(known)
            if node_processes.alive(running):
                os.kill(running.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while any(node_processes.alive(node_processes.Running.from_json(p))
                  for p in nodes.read_state(plan)["processes"].values()):  # fmt: skip
            assert time.monotonic() < deadline, "killed processes did not exit"
            time.sleep(0.1)
        assert plan.containerd_socket.exists(), "the killed containerd's socket file is the case under test"
    took = nodes.up()
    assert took < 120
    node = _real_node(tools, cluster)
    ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"
