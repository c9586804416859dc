"""Claims get real, mountable volumes on the local clusters (volume_provisioner.py): a non-root
Pod on a real node writes to its claim, a new Pod reads the data back, the claim's deletion
follows the class's reclaim policy on the object and on the host directory, and a
WaitForFirstConsumer claim stays Pending until a Pod is scheduled.

Needs what `make test` starts: both clusters with their real nodes and volume provisioners.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest

from smartnation.tooling.local_clusters.local_volumes import HOSTNAME_LABEL, NO_PROVISIONER, OWNER_LABEL, SELECTED_NODE
from smartnation.tooling.local_clusters.node_images import BUSYBOX_IMAGE, NONROOT_UID
from tests.integration.volumes import (
    apply,
    claim,
    claim_manifest,
    release_namespace_volumes,
    volume,
    volume_directory,
    wait_bound,
    wait_volume_gone,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def namespace(tools, cluster):
    """A namespace enforcing Pod Security `restricted`; its Pods, claims and volumes go afterwards."""
    name = f"volume-it-{uuid.uuid4().hex[:6]}"
    manifest = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {"pod-security.kubernetes.io/enforce": "restricted"}},
    }
    tools.run("kubectl", "--context", cluster.context, "apply", "-f", "-", input=json.dumps(manifest))
    yield name
    release_namespace_volumes(tools, cluster.context, name)
    tools.run("kubectl", "--context", cluster.context, "delete", "namespace", name, "--wait=true", "--timeout=120s")


def real_node(cluster) -> str:
    return f"{cluster.name}-real-0"


def pod(name: str, node: str, claim_name: str, command: str) -> dict:
    """A restricted Pod running as a non-root user, its claim mounted at /data (group fsGroup)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeSelector": {HOSTNAME_LABEL: node},
            "terminationGracePeriodSeconds": 1,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": NONROOT_UID,
                "runAsGroup": NONROOT_UID,
                "fsGroup": NONROOT_UID,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "main",
                    "image": BUSYBOX_IMAGE,
                    "imagePullPolicy": "Never",
                    "command": ["/bin/sh", "-c", command],
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                }
            ],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim_name}}],
        },
    }


def kubectl(tools, cluster, namespace: str, *args: str, check: bool = True):
    return tools.run("kubectl", "--context", cluster.context, "-n", namespace, *args, check=check)


def run_ready(tools, cluster, namespace: str, manifest: dict) -> None:
    apply(tools, cluster.context, namespace, manifest)
    name = manifest["metadata"]["name"]
    proc = kubectl(tools, cluster, namespace, "wait", "--for=condition=Ready", f"pod/{name}", "--timeout=90s",
                   check=False)  # fmt: skip
    if proc.returncode != 0:
        described = kubectl(tools, cluster, namespace, "describe", "pod", name, check=False).stdout
        raise AssertionError(f"pod {name} not Ready:\n{described[-3000:]}")


def test_a_non_root_pod_on_the_real_node_keeps_its_data_on_the_default_class(tools, cluster, namespace):
    marker = uuid.uuid4().hex
    began = time.monotonic()
    apply(tools, cluster.context, namespace, claim_manifest("data", None))
    bound = wait_bound(tools, cluster.context, namespace, "data")
    print(f"[{cluster.name}] default-class claim Bound in {time.monotonic() - began:.2f}s (kubectl polling included)")
    pv = volume(tools, cluster.context, bound["spec"]["volumeName"])
    assert pv is not None
    assert pv["spec"]["storageClassName"] == cluster.profile.storage.default_class
    directory = volume_directory(pv)
    assert directory.is_dir()

    run_ready(tools, cluster, namespace, pod("writer", real_node(cluster), "data",
                                             f"echo {marker} > /data/file && id -u && exec sleep 3600"))  # fmt: skip
    assert kubectl(tools, cluster, namespace, "logs", "writer").stdout.strip() == str(NONROOT_UID)
    # What the Pod wrote is on the host directory, owned by the Pod's user: a real volume.
    written = directory / "file"
    assert written.read_text().strip() == marker
    assert written.stat().st_uid == NONROOT_UID
    assert directory.stat().st_gid == NONROOT_UID  # fsGroup applied to the local volume
    kubectl(tools, cluster, namespace, "delete", "pod", "writer", "--wait=true")

    run_ready(tools, cluster, namespace, pod("reader", real_node(cluster), "data", "cat /data/file; exec sleep 3600"))
    assert kubectl(tools, cluster, namespace, "logs", "reader").stdout.strip() == marker
    kubectl(tools, cluster, namespace, "delete", "pod", "reader", "--wait=true")

    name = pv["metadata"]["name"]
    kubectl(tools, cluster, namespace, "delete", "pvc", "data", "--wait=true")
    default = next(c for c in cluster.profile.storage.classes if c.name == cluster.profile.storage.default_class)
    if default.reclaim_policy == "Retain":
        # Retain: the volume stays Released with its data, until an operator says otherwise.
        time.sleep(3)
        kept = volume(tools, cluster.context, name)
        assert kept is not None and kept["status"]["phase"] == "Released"
        assert written.read_text().strip() == marker
        release_namespace_volumes(tools, cluster.context, namespace)
    # Delete (or Retain turned into Delete): the object and the data go.
    wait_volume_gone(tools, cluster.context, name, directory)


def test_a_wait_for_first_consumer_claim_binds_only_when_its_pod_is_scheduled(tools, cluster, namespace):
    wffc = [c for c in cluster.profile.storage.classes if c.binding_mode == "WaitForFirstConsumer"]
    assert wffc, f"{cluster.source} has no WaitForFirstConsumer class: this test needs one"
    storage_class = wffc[0]
    apply(tools, cluster.context, namespace, claim_manifest("late", storage_class.name))
    time.sleep(5)
    waiting = claim(tools, cluster.context, namespace, "late")
    assert waiting["status"]["phase"] == "Pending"
    assert not waiting["spec"].get("volumeName")
    assert SELECTED_NODE not in waiting["metadata"].get("annotations", {})

    began = time.monotonic()
    command = "echo ok > /data/probe && cat /data/probe && exec sleep 3600"
    run_ready(tools, cluster, namespace, pod("consumer", real_node(cluster), "late", command))
    print(f"[{cluster.name}] {storage_class.name} claim to a Ready consumer in {time.monotonic() - began:.2f}s")
    bound = claim(tools, cluster.context, namespace, "late")
    assert bound["status"]["phase"] == "Bound"
    assert kubectl(tools, cluster, namespace, "logs", "consumer").stdout.strip() == "ok"
    pv = volume(tools, cluster.context, bound["spec"]["volumeName"])
    assert pv is not None and (volume_directory(pv) / "probe").read_text().strip() == "ok"
    if storage_class.provisioner != NO_PROVISIONER:
        # Made for this claim once the scheduler chose the node: the volume names that node.
        assert bound["metadata"]["annotations"][SELECTED_NODE] == real_node(cluster)
        assert pv["metadata"]["name"] == f"pvc-{bound['metadata']['uid']}"
        (term,) = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
        assert term["matchExpressions"] == [{"key": HOSTNAME_LABEL, "operator": "In", "values": [real_node(cluster)]}]
    else:
        # No provisioning for this class (a site's local disks): the scheduler bound a pre-made one.
        assert pv["metadata"]["labels"][OWNER_LABEL] == cluster.name
        assert pv["metadata"]["name"] != f"pvc-{bound['metadata']['uid']}"
