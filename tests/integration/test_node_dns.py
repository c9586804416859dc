"""Cluster DNS on the real nodes: from a Pod on each cluster's real node, a Service's full name
and its short name resolve to its ClusterIP (the node's CoreDNS, reading the cluster through its
API), a connection through that address reaches the Pod behind it, and a name outside the cluster
fails at once (no upstream exists here).

Needs what `make test` starts: both clusters with their real nodes (`make clusters`).
"""

from __future__ import annotations

import time
import uuid

import pytest

from tests.integration import node_pods

pytestmark = pytest.mark.integration


@pytest.fixture(params=["dusseldorf-test", "monaco-onprem"])
def context(request, clusters):
    return next(c for c in clusters.profiles() if c.name == request.param).context


def test_a_service_name_resolves_to_its_cluster_ip_and_connects(tools, context):
    node = node_pods.real_node(tools, context)
    marker = uuid.uuid4().hex
    with node_pods.scratch_namespace(tools, context, "dns-it") as ns:
        node_pods.apply(
            tools, context, ns,
            node_pods.server_pod("echo", node, {"app": "echo"}, marker),
            node_pods.service("echo", {"app": "echo"}),
            node_pods.client_pod("client", node, {"app": "client"}),
        )  # fmt: skip
        node_pods.wait_ready(tools, context, ns, "echo", "client")
        cluster_ip = tools.kubectl_json(context, "-n", ns, "get", "service", "echo")["spec"]["clusterIP"]
        fqdn = f"echo.{ns}.svc.cluster.local"
        for name in (fqdn, "echo"):
            answers, out, _ = node_pods.resolve(tools, context, ns, "client", name)
            # The short name through the Pod's search domains; the Service's address, not a Pod's.
            assert answers.get(fqdn) == [cluster_ip], out
        # The Service's rules reach kube-proxy and the new Pods' ipsets reach kube-router a moment
        # after the Pods are Ready (each watches the API): a connection is given 20 s to work.
        deadline = time.monotonic() + 20
        while True:
            code, out, _ = node_pods.fetch(tools, context, ns, "client", cluster_ip, 80, timeout=3)
            if (code == 0 and marker in out) or time.monotonic() > deadline:
                break
        assert code == 0 and marker in out, out


def test_a_name_outside_the_cluster_fails_at_once(tools, context):
    node = node_pods.real_node(tools, context)
    with node_pods.scratch_namespace(tools, context, "dns-it") as ns:
        node_pods.apply(tools, context, ns, node_pods.client_pod("client", node, {"app": "client"}))
        node_pods.wait_ready(tools, context, ns, "client")
        answers, out, took = node_pods.resolve(tools, context, ns, "client", "example.com")
        assert not answers
        assert "NXDOMAIN" in out, out
        # Every search domain answered NXDOMAIN at once: no resolver timeout (5 s) was waited for.
        assert took < 4, f"took {took:.1f}s"
