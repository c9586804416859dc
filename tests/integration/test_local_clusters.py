"""Both local clusters look and behave like their real counterparts, as the profiles describe."""

from __future__ import annotations

import ipaddress
import json
import time
import uuid

import pytest

from smartnation.tooling.local_clusters.local_volumes import NO_PROVISIONER
from smartnation.tooling.local_clusters.node_plan import REAL_NODE_LABEL
from tests.integration.platform_project import PROJECT
from tests.integration.volumes import (
    apply,
    claim,
    claim_manifest,
    release_namespace_volumes,
    volume,
    volume_directory,
    wait_bound,
    wait_for,
    wait_volume_gone,
)

pytestmark = pytest.mark.integration


def _wait(predicate, timeout: float = 60, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def test_context_per_cluster_in_one_kubeconfig(tools, clusters):
    contexts = tools.run("kubectl", "config", "get-contexts", "-o", "name").stdout.split()
    assert sorted(contexts) == sorted(c.context for c in clusters.profiles())


def test_ready_nodes_over_zones_and_pools(tools, cluster):
    every = tools.kubectl_json(cluster.context, "get", "nodes")["items"]
    kinds = [n["metadata"]["labels"].get("smartnation.mc/node-kind") for n in every]
    # Real and simulated nodes tell themselves apart at a glance (kubectl get nodes -L ...).
    assert kinds.count("real") == cluster.simulation.real_nodes
    assert kinds.count("simulated") + kinds.count("real") == len(every)
    nodes = [n for n in every if n["metadata"]["labels"]["smartnation.mc/node-kind"] == "simulated"]
    assert len(nodes) == sum(p.count for p in cluster.profile.node_pools)
    for node in nodes:
        ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
        assert ready == "True", node["metadata"]["name"]
        assert int(node["status"]["allocatable"]["pods"]) >= 100
    zones = {n["metadata"]["labels"]["topology.kubernetes.io/zone"] for n in nodes}
    assert zones == set(cluster.profile.zones)
    for pool in cluster.profile.node_pools:
        ((key, value),) = pool.label.items()
        members = [n for n in nodes if n["metadata"]["labels"].get(key) == value]
        assert len(members) == pool.count
        assert len({n["metadata"]["labels"]["topology.kubernetes.io/zone"] for n in members}) == min(
            pool.count, len(cluster.profile.zones)
        )


def test_storage_classes_of_the_real_cluster(tools, cluster):
    classes = tools.kubectl_json(cluster.context, "get", "storageclass")["items"]
    assert {c["metadata"]["name"] for c in classes} == {s.name for s in cluster.profile.storage.classes}
    defaults = [
        c["metadata"]["name"]
        for c in classes
        if c["metadata"].get("annotations", {}).get("storageclass.kubernetes.io/is-default-class") == "true"
    ]
    assert defaults == [cluster.profile.storage.default_class]


@pytest.fixture()
def scratch_namespace(tools, cluster):
    # Under the session's prefix: a killed run's namespace is cleared when a session with the same
    # prefix starts (session_leftovers.clear), and its volumes reclaimed (released_volumes).
    name = f"{PROJECT}-probe-{uuid.uuid4().hex[:8]}"
    tools.run("kubectl", "--context", cluster.context, "create", "namespace", name)
    yield name
    tools.run("kubectl", "--context", cluster.context, "delete", "namespace", name, "--wait=false")


def _apply(tools, context: str, doc: dict) -> None:
    tools.run("kubectl", "--context", context, "apply", "-f", "-", input=json.dumps(doc))


def test_claims_bind_on_every_class_in_its_binding_mode_and_volumes_follow_the_reclaim_policy(
    tools, cluster, scratch_namespace
):
    """Every class of the profile, both binding modes: Immediate binds at once, WaitForFirstConsumer
    only once a Pod using the claim is scheduled (on a simulated node here: binding is the control
    plane's and the provisioner's business; test_real_node_volumes.py mounts them for real)."""
    context = cluster.context
    try:
        for sc in cluster.profile.storage.classes:
            name = f"claim-{sc.name}"
            apply(tools, context, scratch_namespace, claim_manifest(name, sc.name, "3Gi"))
            if sc.binding_mode == "WaitForFirstConsumer":
                time.sleep(3)
                assert claim(tools, context, scratch_namespace, name)["status"]["phase"] == "Pending", sc.name
                apply(tools, context, scratch_namespace, _consumer(f"use-{sc.name}", name))
            pvc = wait_bound(tools, context, scratch_namespace, name)
            pv = volume(tools, context, pvc["spec"]["volumeName"])
            assert pv is not None
            assert pv["spec"]["storageClassName"] == sc.name
            assert pv["spec"]["persistentVolumeReclaimPolicy"] == sc.reclaim_policy
            # A volume made for the claim has its size; a pre-made one (no provisioner) is the site's.
            expected = "3Gi" if sc.provisioner != NO_PROVISIONER else cluster.simulation.volume_pool.size
            assert pv["spec"]["capacity"]["storage"] == expected
            directory = volume_directory(pv)
            assert directory.is_dir()
            if sc.binding_mode == "WaitForFirstConsumer":
                tools.run("kubectl", "--context", context, "-n", scratch_namespace, "delete", "pod", f"use-{sc.name}",
                          "--wait=true")  # fmt: skip
            tools.run("kubectl", "--context", context, "-n", scratch_namespace, "delete", "pvc", name, "--wait=true")
            if sc.reclaim_policy == "Delete":
                wait_volume_gone(tools, context, pv["metadata"]["name"], directory)
            else:
                wait_for(lambda n=pv["metadata"]["name"]: (volume(tools, context, n) or {}).get("status", {}).get(
                    "phase") == "Released")  # fmt: skip
                assert directory.is_dir(), "a Retain volume keeps its data"
    finally:
        release_namespace_volumes(tools, context, scratch_namespace)


def _consumer(name: str, claim_name: str) -> dict:
    """A Pod using the claim, on a simulated node (kwok plays it; nothing is mounted)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeSelector": {REAL_NODE_LABEL: "simulated"},
            "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim_name}}],
        },
    }


def test_load_balancer_services_and_ingresses_get_addresses(tools, cluster, scratch_namespace):
    _apply(
        tools,
        cluster.context,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "lb", "namespace": scratch_namespace},
            "spec": {"type": "LoadBalancer", "selector": {"app": "x"}, "ports": [{"port": 8883}]},
        },
    )
    svc = _wait(
        lambda: (lambda s: s if s["status"].get("loadBalancer", {}).get("ingress") else None)(
            tools.kubectl_json(cluster.context, "-n", scratch_namespace, "get", "svc", "lb")
        )
    )
    address = ipaddress.ip_address(svc["status"]["loadBalancer"]["ingress"][0]["ip"])
    assert address in cluster.simulation.load_balancer_pool
    _apply(
        tools,
        cluster.context,
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {"name": "web", "namespace": scratch_namespace},
            "spec": {
                "ingressClassName": cluster.profile.ingress.ingress_class,
                "rules": [
                    {
                        "host": "x.test",
                        "http": {
                            "paths": [
                                {
                                    "path": "/",
                                    "pathType": "Prefix",
                                    "backend": {"service": {"name": "lb", "port": {"number": 8883}}},
                                }
                            ]
                        },
                    }
                ],
            },
        },
    )
    ing = _wait(
        lambda: (lambda i: i if i["status"].get("loadBalancer", {}).get("ingress") else None)(
            tools.kubectl_json(cluster.context, "-n", scratch_namespace, "get", "ingress", "web")
        )
    )
    assert ing["status"]["loadBalancer"]["ingress"][0]["ip"] == str(cluster.simulation.ingress_address)


def test_pod_security_admission_is_enforced(tools, cluster, scratch_namespace):
    tools.run(
        "kubectl",
        "--context",
        cluster.context,
        "label",
        "namespace",
        scratch_namespace,
        "pod-security.kubernetes.io/enforce=restricted",
    )
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "root", "namespace": scratch_namespace},
        "spec": {
            "containers": [
                {"name": "c", "image": "registry.k8s.io/pause:3.10", "securityContext": {"privileged": True}}
            ]
        },
    }
    proc = tools.run("kubectl", "--context", cluster.context, "apply", "-f", "-", input=json.dumps(pod), check=False)
    assert proc.returncode != 0
    assert "violates PodSecurity" in proc.stderr
