"""The load-balancer addresses the local stand-ins hand out answer from the host.

kwok's stage gives a Service of type LoadBalancer an address from the profile's
``simulation.load_balancer_pool``; the host routes that pool to the cluster's real node, whose
kube-proxy sends the address to the Service's Pods. A client on the host connects to
<LB address>:<port> as a device connects to the site's load balancer, on both clusters. The
routes go only into the project's own namespaces, and removing a node's network leaves none.

Needs what `make test` starts: both clusters with their real nodes (`make clusters`).
"""

from __future__ import annotations

import ipaddress
import json
import socket
import subprocess
import time
import uuid

import pytest

from smartnation.tooling.local_clusters import node_network
from smartnation.tooling.local_clusters.node_images import BUSYBOX_IMAGE, NONROOT_UID
from smartnation.tooling.local_clusters.node_plan import REAL_NODE_LABEL, RealNodePlan

pytestmark = pytest.mark.integration

PORT = 80
TARGET_PORT = 8080


@pytest.fixture
def namespace(tools, cluster):
    name = f"lb-address-it-{uuid.uuid4().hex[:6]}"
    tools.run("kubectl", "--context", cluster.context, "create", "namespace", name)
    yield name
    tools.run("kubectl", "--context", cluster.context, "delete", "namespace", name, "--wait=true", "--timeout=120s")


def _manifests(node: str, marker: str) -> list[dict]:
    """A Pod answering every connection on TARGET_PORT with ``marker`` (busybox nc), and a
    LoadBalancer Service in front of it."""
    labels = {"app.kubernetes.io/name": "lb-echo"}
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "echo", "labels": labels},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": node},
            "terminationGracePeriodSeconds": 1,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": NONROOT_UID,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "echo",
                    "image": BUSYBOX_IMAGE,
                    "imagePullPolicy": "Never",  # imported into every real node
                    "command": ["nc", "-ll", "-p", str(TARGET_PORT), "-e", "/bin/echo", marker],
                    "ports": [{"containerPort": TARGET_PORT}],
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "echo"},
        "spec": {"type": "LoadBalancer", "selector": labels, "ports": [{"port": PORT, "targetPort": TARGET_PORT}]},
    }
    return [pod, service]


def _read(address: str, port: int) -> str:
    with socket.create_connection((address, port), timeout=3) as conn:
        conn.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := conn.recv(4096):
            data += chunk
    return data.decode().strip()


def test_a_load_balancer_service_on_the_real_node_answers_at_its_address_from_the_host(
    tools, clusters, cluster, namespace
):
    nodes = tools.kubectl_json(cluster.context, "get", "nodes", "-l", f"{REAL_NODE_LABEL}=real")["items"]
    assert nodes, f"{cluster.name} has no real node: `make clusters` starts them"
    node = nodes[0]["metadata"]["name"]
    marker = uuid.uuid4().hex
    for manifest in _manifests(node, marker):
        tools.run("kubectl", "--context", cluster.context, "-n", namespace, "apply", "-f", "-",
                  input=json.dumps(manifest))  # fmt: skip
    tools.run("kubectl", "--context", cluster.context, "-n", namespace, "wait", "--for=condition=Ready",
              "pod/echo", "--timeout=90s")  # fmt: skip
    address = None
    deadline = time.monotonic() + 30
    while address is None and time.monotonic() < deadline:
        service = tools.kubectl_json(cluster.context, "-n", namespace, "get", "service", "echo")
        ingress = service["status"].get("loadBalancer", {}).get("ingress") or []
        address = ingress[0].get("ip") if ingress else None
        time.sleep(0.5)
    assert address, "the kwok stage gave the Service no load-balancer address"
    assert ipaddress.ip_address(address) in cluster.simulation.load_balancer_pool
    # kube-proxy programs the address within its sync period; the connection then reaches the Pod.
    began = time.monotonic()
    answer, error = "", None
    while time.monotonic() - began < 30:
        try:
            answer = _read(address, PORT)
        except OSError as exc:
            error = exc
        if answer == marker:
            break
        time.sleep(0.5)
    assert answer == marker, f"{address}:{PORT} answered {answer!r} ({error})"
    print(f"{cluster.name}: {address}:{PORT} answered after {time.monotonic() - began:.1f}s")
    # The host reaches it through the real node's link, not through the machine's uplink.
    route = subprocess.run(["ip", "-4", "route", "get", address], capture_output=True, text=True, check=True)
    plan = next(p for p in clusters.real_nodes(cluster).nodes if p.name == node)
    assert f"via {plan.node_ip} dev {plan.host_veth}" in route.stdout, route.stdout


def _host_routes() -> list[str]:
    return subprocess.run(["ip", "-4", "route"], capture_output=True, text=True, check=True).stdout.splitlines()


def test_a_nodes_routes_are_gone_after_its_network_is_removed(tmp_path):
    """On a scratch node of our own (a site number no profile uses), with routes in benchmark
    ranges (RFC 2544) no one routes: ensure makes them, remove leaves nothing on the host."""
    plan = RealNodePlan("lbscratch", 15, 15, tmp_path / "real-nodes" / "lbscratch")
    pool, outside = ipaddress.IPv4Network("198.18.213.0/24"), ipaddress.IPv4Address("198.18.214.7")
    routed = node_network.load_balancer_routes(pool, outside)
    assert routed == (pool, ipaddress.IPv4Network("198.18.214.7/32"))
    try:
        node_network.ensure(plan, routed)
        through_node = {line.split()[0] for line in _host_routes() if f" via {plan.node_ip} " in line}
        assert through_node == {"198.18.213.0/24", "198.18.214.7", str(plan.pod_cidr)}
        assert len(node_network.leftovers(plan)) == 5  # three routes, the namespace, the link
    finally:
        node_network.remove(plan)
    assert node_network.leftovers(plan) == []
    assert not [line for line in _host_routes() if "198.18.21" in line or str(plan.node_ip) in line]
