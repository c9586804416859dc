"""A real node pulls images from its own site's registry, and only from there.

Each cluster profile names its site registry in ``registry.default`` (Düsseldorf: the cloud's
SWR, Monaco: the on-prem mirror); locally a docker-registry per site stands for it on the
profile's ``simulation.registry_port``, and the node's containerd maps the site registry's host to
it through the node's forwarder. A Pod referencing ``<registry.default>/<repository>@<digest>``
(the digest `make images` built) runs; a Pod on the same node referencing the other site's
registry path for the same digest never gets its image.

Needs what `make test` starts: both clusters with their real nodes (`make clusters`) and the
site registries with the images pushed (`make images`).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid

import pytest

from smartnation.tooling.images.cache import image_cache
from smartnation.tooling.images.registry import site_registries
from smartnation.tooling.local_clusters.node_plan import REAL_NODE_LABEL

pytestmark = pytest.mark.integration

BROKER = "broker"  # the release whose image the Pods run: Mosquitto, which stays up on its own


@pytest.fixture
def namespace(tools, cluster):
    name = f"node-registry-it-{uuid.uuid4().hex[:6]}"
    tools.run("kubectl", "--context", cluster.context, "create", "namespace", name)
    yield name
    tools.run("kubectl", "--context", cluster.context, "delete", "namespace", name, "--wait=true", "--timeout=120s")


@pytest.fixture(scope="module")
def broker_reference() -> tuple[str, str]:
    """(repository, digest) of the broker image as the last build made it: the digests come from
    the build (`python -m smartnation.tooling.images digests`), never typed here."""
    proc = subprocess.run(
        [sys.executable, "-m", "smartnation.tooling.images", "digests"], capture_output=True, text=True
    )
    assert proc.returncode == 0, f"no image digests ({proc.stderr.strip()}): run `make images`"
    repository, _, digest = json.loads(proc.stdout)[BROKER].partition("@")
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest), digest
    return repository, digest


@pytest.fixture(scope="module")
def registries(broker_reference):
    """Every site registry answers and serves the broker under its profile's path."""
    repository, digest = broker_reference
    found = {r.cluster: r for r in site_registries(image_cache())}
    for registry in found.values():
        assert registry.running(), f"{registry.describe()}: run `make images` (it starts and fills them)"
        assert registry.manifest_digest(repository, digest) == digest, (registry.cluster, repository)
    return found


def _real_node(tools, cluster) -> str:
    nodes = tools.kubectl_json(cluster.context, "get", "nodes", "-l", f"{REAL_NODE_LABEL}=real")["items"]
    assert nodes, f"{cluster.name} has no real node: `make clusters` starts them"
    return nodes[0]["metadata"]["name"]


def _broker_pod(name: str, node: str, image: str, pull: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": node},
            "terminationGracePeriodSeconds": 1,
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "broker",
                    "image": image,
                    "imagePullPolicy": pull,
                    # The image's own entrypoint and config: Mosquitto listens and stays Running.
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


def _events(tools, cluster, namespace: str, pod: str) -> list[dict]:
    return tools.kubectl_json(
        cluster.context, "-n", namespace, "get", "events", "--field-selector", f"involvedObject.name={pod}"
    )["items"]


def test_a_real_node_runs_an_image_from_its_site_registry_by_digest(
    tools, cluster, namespace, broker_reference, registries
):
    repository, digest = broker_reference
    image = f"{cluster.profile.registry.default}/{repository}@{digest}"
    node = _real_node(tools, cluster)
    # Always: the node asks its registry on every run, even when an earlier run left the image.
    _apply(tools, cluster, namespace, _broker_pod("own-site", node, image, "Always"))
    tools.run("kubectl", "--context", cluster.context, "-n", namespace, "wait", "--for=condition=Ready",
              "pod/own-site", "--timeout=90s")  # fmt: skip
    pod = tools.kubectl_json(cluster.context, "-n", namespace, "get", "pod", "own-site")
    assert pod["spec"]["nodeName"] == node
    status = pod["status"]["containerStatuses"][0]
    assert status["state"].get("running"), status
    assert status["imageID"].endswith(digest), status["imageID"]
    pulled = [e["message"] for e in _events(tools, cluster, namespace, "own-site") if e["reason"] == "Pulled"]
    assert any(image in m for m in pulled), pulled
    print(f"{cluster.name}: {pulled[0]}")  # the pull time, for the notes


def test_a_real_node_cannot_pull_the_other_sites_registry(tools, cluster, clusters, namespace, broker_reference):
    """The same image, by the same digest, under the other site's registry name: refused, even
    when the node already holds the content under its own site's name (the reference resolves
    only through a registry the node may reach, and it may reach only its own)."""
    repository, digest = broker_reference
    other = next(c for c in clusters.profiles() if c.name != cluster.name)
    assert other.profile.registry.default.split("/")[0] != cluster.profile.registry.default.split("/")[0]
    node = _real_node(tools, cluster)
    own = f"{cluster.profile.registry.default}/{repository}@{digest}"
    _apply(tools, cluster, namespace, _broker_pod("own-site", node, own, "IfNotPresent"))
    tools.run("kubectl", "--context", cluster.context, "-n", namespace, "wait", "--for=condition=Ready",
              "pod/own-site", "--timeout=90s")  # fmt: skip
    foreign = f"{other.profile.registry.default}/{repository}@{digest}"
    _apply(tools, cluster, namespace, _broker_pod("other-site", node, foreign, "IfNotPresent"))
    reasons: set[str] = set()
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline and not reasons & {"ErrImagePull", "ImagePullBackOff"}:
        pod = tools.kubectl_json(cluster.context, "-n", namespace, "get", "pod", "other-site")
        assert pod["status"].get("phase") != "Running", pod["status"]
        for status in pod["status"].get("containerStatuses", []):
            reasons.add((status.get("state", {}).get("waiting") or {}).get("reason"))
        time.sleep(1)
    assert reasons & {"ErrImagePull", "ImagePullBackOff"}, reasons
    failed = [e["message"] for e in _events(tools, cluster, namespace, "other-site") if e["reason"] == "Failed"]
    # Refused inside the node (its catch-all registry host is a closed port of its own
    # loopback): neither the other site's local registry nor the real host was asked.
    assert any("127.0.0.1:9" in m and "connection refused" in m for m in failed), failed
    other_port = other.simulation.registry_port
    assert not any(f"127.0.0.1:{other_port}" in m for m in failed), failed
