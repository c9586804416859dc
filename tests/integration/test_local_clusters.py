"""Both local clusters look and behave like their real counterparts, as the profiles describe."""

from __future__ import annotations

import ipaddress
import json
import time
import uuid

import pytest

pytestmark = pytest.mark.integration


def _wait(predicate, timeout: float = 60, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


@pytest.fixture(params=["dusseldorf-test", "monaco-onprem"])
def cluster(request, clusters):
    return next(c for c in clusters.profiles() if c.name == request.param)


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
    name = f"probe-{uuid.uuid4().hex[:8]}"
    tools.run("kubectl", "--context", cluster.context, "create", "namespace", name)
    yield name
    tools.run("kubectl", "--context", cluster.context, "delete", "namespace", name, "--wait=false")


def _apply(tools, context: str, doc: dict) -> None:
    tools.run("kubectl", "--context", context, "apply", "-f", "-", input=json.dumps(doc))


def test_claims_bind_on_every_immediate_class_and_volumes_follow_the_reclaim_policy(tools, cluster, scratch_namespace):
    for sc in cluster.profile.storage.classes:
        if sc.binding_mode != "Immediate":
            continue
        claim = f"claim-{sc.name}"
        _apply(
            tools,
            cluster.context,
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": claim, "namespace": scratch_namespace},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "storageClassName": sc.name,
                    "resources": {"requests": {"storage": "3Gi"}},
                },
            },
        )

        def bound(claim=claim):
            pvc = tools.kubectl_json(cluster.context, "-n", scratch_namespace, "get", "pvc", claim)
            return pvc if pvc["status"].get("phase") == "Bound" else None

        pvc = _wait(bound)
        pv = tools.kubectl_json(cluster.context, "get", "pv", pvc["spec"]["volumeName"])
        assert pv["spec"]["storageClassName"] == sc.name
        assert pv["spec"]["capacity"]["storage"] == "3Gi"
        assert pv["spec"]["persistentVolumeReclaimPolicy"] == sc.reclaim_policy
        tools.run("kubectl", "--context", cluster.context, "-n", scratch_namespace, "delete", "pvc", claim)
        if sc.reclaim_policy == "Delete":
            _wait(
                lambda name=pv["metadata"]["name"]: (
                    tools.run("kubectl", "--context", cluster.context, "get", "pv", name, check=False).returncode != 0
                )
            )


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


def test_certificates_from_the_profiles_issuer_are_issued(tools, cluster, scratch_namespace):
    """cert-manager's part, played by a kwok stage: a key pair Secret and the Ready condition."""
    _apply(
        tools,
        cluster.context,
        {
            "apiVersion": "cert-manager.io/v1",
            "kind": "Certificate",
            "metadata": {"name": "web-tls", "namespace": scratch_namespace},
            "spec": {
                "secretName": "web-tls",
                "issuerRef": {
                    "group": "cert-manager.io",
                    "kind": "ClusterIssuer",
                    "name": cluster.profile.ingress.tls_issuer,
                },
                "dnsNames": ["web.example.test"],
            },
        },
    )

    def ready():
        cert = tools.kubectl_json(cluster.context, "-n", scratch_namespace, "get", "certificate", "web-tls")
        conditions = {c["type"]: c["status"] for c in cert.get("status", {}).get("conditions", [])}
        return cert if conditions.get("Ready") == "True" else None

    _wait(ready)
    secret = tools.kubectl_json(cluster.context, "-n", scratch_namespace, "get", "secret", "web-tls")
    assert secret["type"] == "kubernetes.io/tls"
    assert set(secret["data"]) == {"tls.crt", "tls.key"}
