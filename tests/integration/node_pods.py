"""Small busybox Pods on a cluster's real node, for the tests of what the node provides (cluster
DNS, NetworkPolicy enforcement): a namespace of the test's own, a TCP server answering a marker,
clients to exec in."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from smartnation.tooling.local_clusters.node_images import BUSYBOX_IMAGE, NONROOT_UID
from smartnation.tooling.local_clusters.node_plan import REAL_NODE_LABEL

SERVER_PORT = 8080


@contextmanager
def scratch_namespace(tools, context: str, prefix: str) -> Iterator[str]:
    """A namespace enforcing Pod Security `restricted`, removed with everything in it afterwards."""
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    manifest = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {"pod-security.kubernetes.io/enforce": "restricted"}},
    }
    tools.run("kubectl", "--context", context, "apply", "-f", "-", input=json.dumps(manifest))
    try:
        yield name
    finally:
        tools.run("kubectl", "--context", context, "delete", "namespace", name, "--wait=true", "--timeout=120s")


def real_node(tools, context: str) -> str:
    nodes = tools.kubectl_json(context, "get", "nodes", "-l", f"{REAL_NODE_LABEL}=real")["items"]
    assert nodes, f"{context} has no node labelled {REAL_NODE_LABEL}=real: `make clusters` starts them"
    return nodes[0]["metadata"]["name"]


def busybox_pod(name: str, node: str, labels: dict[str, str], script: str) -> dict:
    """A restricted busybox Pod on `node` running `script` with /bin/sh."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": node},
            "terminationGracePeriodSeconds": 0,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": NONROOT_UID,
                "runAsGroup": NONROOT_UID,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "main",
                    "image": BUSYBOX_IMAGE,
                    "imagePullPolicy": "Never",  # imported into the node's containerd
                    "command": ["/bin/sh", "-c", script],
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }


def server_pod(name: str, node: str, labels: dict[str, str], marker: str) -> dict:
    """Answers every TCP connection on SERVER_PORT with an HTTP response whose body is `marker`
    (busybox's nc, one connection at a time)."""
    response = f"HTTP/1.0 200 OK\\r\\nContent-Length: {len(marker)}\\r\\n\\r\\n{marker}"
    return busybox_pod(name, node, labels, f"while true; do printf '{response}' | nc -l -p {SERVER_PORT}; done")


def client_pod(name: str, node: str, labels: dict[str, str]) -> dict:
    return busybox_pod(name, node, labels, "exec sleep 3600")


def service(name: str, selector: dict[str, str]) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": selector, "ports": [{"name": "http", "port": 80, "targetPort": SERVER_PORT}]},
    }


def apply(tools, context: str, namespace: str, *manifests: dict) -> None:
    items = {"apiVersion": "v1", "kind": "List", "items": list(manifests)}
    tools.run("kubectl", "--context", context, "-n", namespace, "apply", "-f", "-", input=json.dumps(items))


def wait_ready(tools, context: str, namespace: str, *pods: str) -> None:
    tools.run("kubectl", "--context", context, "-n", namespace, "wait", "--for=condition=Ready",
              *(f"pod/{p}" for p in pods), "--timeout=90s")  # fmt: skip


def pod_ip(tools, context: str, namespace: str, pod: str) -> str:
    return tools.kubectl_json(context, "-n", namespace, "get", "pod", pod)["status"]["podIP"]


def fetch(tools, context: str, namespace: str, pod: str, address: str, port: int, timeout: int = 3):
    """Connects from inside `pod` to address:port with busybox's nc and returns (exit code, what
    it printed, seconds). An address, not a name: see resolve. (The image's wget crashes even
    on an address: it asks glibc's NSS for the port of "http".)"""
    began = time.monotonic()
    proc = tools.run("kubectl", "--context", context, "-n", namespace, "exec", pod, "--",
                     "nc", "-w", str(timeout), address, str(port), check=False)  # fmt: skip
    return proc.returncode, proc.stdout + proc.stderr, time.monotonic() - began


def resolve(tools, context: str, namespace: str, pod: str, name: str) -> tuple[dict[str, list[str]], str, float]:
    """busybox nslookup of `name` from inside `pod`, through the Pod's resolv.conf (the node's
    DNS, the search domains): ({answered name: [addresses]}, what it printed, seconds). nslookup
    has its own resolver; the image's nc would go through the static glibc's getaddrinfo, which
    crashes (SIGSEGV) in an image without the dynamic loader."""
    began = time.monotonic()
    proc = tools.run("kubectl", "--context", context, "-n", namespace, "exec", pod, "--", "nslookup", name,
                     check=False)  # fmt: skip
    took = time.monotonic() - began
    answers: dict[str, list[str]] = {}
    current = None
    for line in proc.stdout.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Name":
            current = value.strip()
        elif key.strip() == "Address" and current is not None:
            answers.setdefault(current, []).append(value.strip())
    return answers, proc.stdout + proc.stderr, took
