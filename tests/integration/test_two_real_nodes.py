"""A site of two real nodes works as one cluster, and `make clusters-reset` still leaves the host
as it found it.

A scratch cluster with two real nodes of its own (site number 3: beside the reset probe's site 2,
so each has its own addresses, links and Pod networks) is started; a Pod on each node (nodeName)
shows Pod to Pod both ways, a Pod to a Service whose only backend is on the other node (its
ClusterIP, and its name through the node's DNS), the host to that Service's load-balancer
address (which enters at the first node), and a NetworkPolicy on the second node's Pod refusing
a Pod of the first node while admitting another by its labels. Then the cluster is reset and the
host's namespaces, links, routes, iptables rules, mounts, cgroups and processes that name it are
as before. The two stand-ins that `make up` deployed to are never touched.
"""

from __future__ import annotations

import ipaddress
import shutil
import socket
import subprocess
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from smartnation.tooling.local_clusters import site_link, site_network
from smartnation.tooling.local_clusters.lifecycle import LocalClusters
from smartnation.tooling.local_clusters.node_network import run
from smartnation.tooling.toolchain.cache import layout
from tests.integration import node_pods
from tests.integration.conftest import Tools
from tests.integration.host_state import host_state

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
NAME = "zz-two-nodes-probe"  # sorts after the stand-ins and the reset probe: site number 3
SPACER = "zz-reset-probe"  # tests/integration/test_cluster_reset_host_state.py's probe: site 2
PORT, REGISTRY_PORT = 16463, 15003
WITHIN = 30
"""Seconds a node's kube-proxy or kube-router may take to program a new Service or policy."""


def _profile(name: str, port: int, registry_port: int, site: int, real_nodes: int) -> dict:
    profile = yaml.safe_load((REPO / "environments" / "clusters" / "monaco-onprem.yaml").read_text())
    profile.update(name=name, context=name)
    sim = profile["simulation"]
    sim.update(apiserver_port=port, registry_port=registry_port, real_nodes=real_nodes,
               load_balancer_pool=f"10.215.{site}.0/24", ingress_address=f"10.215.{site}.250")  # fmt: skip
    sim.pop("real_node_environments", None)
    for pool in profile["node_pools"]:
        pool["count"] = 1
    return profile


@pytest.fixture()
def probe(tmp_path: Path):
    profiles = tmp_path / "clusters"
    profiles.mkdir()
    for real in ("dusseldorf-test", "monaco-onprem"):  # for the site numbering only; never started here
        shutil.copy(REPO / "environments" / "clusters" / f"{real}.yaml", profiles)
    # The reset probe, for the numbering only (never started here): its site 2 stays its own.
    (profiles / f"{SPACER}.yaml").write_text(yaml.safe_dump(_profile(SPACER, 16461, 15002, 2, 1)))
    (profiles / f"{NAME}.yaml").write_text(yaml.safe_dump(_profile(NAME, PORT, REGISTRY_PORT, 3, 2)))
    local = LocalClusters(layout(), profiles_dir=profiles, kubeconfig=tmp_path / "kubeconfig")
    cluster = next(c for c in local.profiles() if c.name == NAME)
    yield local, cluster
    local.reset(cluster)  # again, if the test failed half-way; a no-op after a passing run


def _until(check, what: str, seconds: float = WITHIN) -> float:
    began = time.monotonic()
    while not check():
        assert time.monotonic() - began < seconds, f"{what}: not within {seconds:.0f}s"
        time.sleep(1)
    return time.monotonic() - began


def _on(pod: dict, node: str) -> dict:
    """The Pod bound to ``node`` by name, past the scheduler."""
    del pod["spec"]["nodeSelector"]
    pod["spec"]["nodeName"] = node
    return pod


def _load_balancer_address(kube: Tools, namespace: str, name: str) -> str:
    found: list[str] = []

    def assigned() -> bool:
        status = kube.kubectl_json(NAME, "-n", namespace, "get", "service", name)["status"]
        found[:] = [i["ip"] for i in status.get("loadBalancer", {}).get("ingress") or [] if i.get("ip")]
        return bool(found)

    _until(assigned, f"Service {name} gets a load-balancer address")
    return found[0]


OTHER_SITE_NETNS = f"sn-{NAME}-peer"
OTHER_SITE_ADDRESS, OTHER_SITE_PORT = "10.215.4.10", 8080
OTHER_SITE_MARKER = "other-site-" + uuid.uuid4().hex


@contextmanager
def _other_site(local: LocalClusters, cluster, nodes):
    """A namespace standing for another site's node (site 4) that publishes 10.215.4.0/24 and
    answers on OTHER_SITE_ADDRESS, linked with the probe on a scratch WAN namespace."""
    access = local.access(cluster)
    run("ip", "netns", "add", OTHER_SITE_NETNS)
    listener = None
    link = site_link.SiteLink(
        [
            site_link.SiteEnd(NAME, access.site, nodes[0].netns, access.load_balancer_routes,
                              tuple(n.pod_cidr for n in nodes), site_network.wan_hops(nodes)),
            site_link.SiteEnd("peer", 4, OTHER_SITE_NETNS, (ipaddress.IPv4Network("10.215.4.0/24"),)),
        ],
        netns=f"sn-{NAME}-wan",
    )  # fmt: skip
    try:
        run("ip", "-n", OTHER_SITE_NETNS, "link", "set", "lo", "up")
        run("ip", "-n", OTHER_SITE_NETNS, "addr", "add", f"{OTHER_SITE_ADDRESS}/32", "dev", "lo")
        link.ensure()
        listener = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{OTHER_SITE_NETNS}", "--", "socat",
             f"TCP-LISTEN:{OTHER_SITE_PORT},bind={OTHER_SITE_ADDRESS},fork,reuseaddr",
             f"SYSTEM:echo {OTHER_SITE_MARKER}"],
        )  # fmt: skip
        yield (OTHER_SITE_ADDRESS, OTHER_SITE_PORT), link
    finally:
        if listener is not None:
            listener.kill()
            listener.wait()
        link.remove()
        run("ip", "netns", "del", OTHER_SITE_NETNS, check=False)


def _from_namespace(netns: str, address: str, port: int) -> str:
    proc = subprocess.run(
        ["nsenter", f"--net=/run/netns/{netns}", "--", "socat", "-u", f"TCP:{address}:{port},connect-timeout=3", "-"],
        capture_output=True, text=True, timeout=10,
    )  # fmt: skip
    return proc.stdout + proc.stderr


def _from_host(address: str, port: int) -> str:
    try:
        with socket.create_connection((address, port), timeout=3) as conn:
            return conn.recv(4096).decode(errors="replace")
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"


def test_pods_on_two_real_nodes_reach_each_other_under_policy_and_reset_leaves_the_host_as_found(tools, probe):
    local, cluster = probe
    nodes = local.real_nodes(cluster).nodes
    assert [n.site for n in nodes] == [3, 3] and len(nodes) == 2, "the probe would share addresses with another"
    markers = [
        NAME, nodes[0].site_netns, *(n.netns for n in nodes), *(n.host_veth for n in nodes),
        *(n.node_veth for n in nodes), *(str(n.pod_cidr.network_address)[:-1] for n in nodes),
        "10.213.3.", "10.215.3.", str(local.cluster_dir(NAME)),
    ]  # fmt: skip
    before = host_state(markers)
    assert not any(before.values()), f"the probe's traces exist before it started: {before}"

    began = time.monotonic()
    local.up(cluster)
    print(f"\n{NAME}: cluster with 2 real nodes up in {time.monotonic() - began:.1f}s")
    during = host_state(markers)
    for where in ("netns", "links", "routes", "cgroups", "processes"):
        assert during[where], f"no {where} of the probe's nodes seen while they run: {during}"
    assert any(nodes[0].site_netns in line for line in during["netns"]), during["netns"]
    # The host still forwards nothing: the nodes meet in the site's router, not on the host.
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == "0"

    kube = Tools(env={**tools.env, "KUBECONFIG": str(local.kubeconfig)})
    first, second = (n.name for n in nodes)
    marker = {first: uuid.uuid4().hex, second: uuid.uuid4().hex}
    with node_pods.scratch_namespace(kube, NAME, "two-nodes-it") as ns:
        lb = node_pods.service("backend-lb", {"app": "backend"})
        lb["spec"]["type"] = "LoadBalancer"
        node_pods.apply(
            kube, NAME, ns,
            _on(node_pods.server_pod("server-0", first, {"app": "frontend"}, marker[first]), first),
            _on(node_pods.server_pod("server-1", second, {"app": "backend"}, marker[second]), second),
            _on(node_pods.client_pod("client-0", first, {"role": "client"}), first),
            _on(node_pods.client_pod("client-1", second, {"role": "client"}), second),
            _on(node_pods.client_pod("other-0", first, {"role": "other"}), first),
            node_pods.service("backend", {"app": "backend"}),
            lb,
        )  # fmt: skip
        node_pods.wait_ready(kube, NAME, ns, "server-0", "server-1", "client-0", "client-1", "other-0")
        placed = {p: kube.kubectl_json(NAME, "-n", ns, "get", "pod", p)["spec"]["nodeName"]
                  for p in ("server-0", "server-1", "client-0", "client-1", "other-0")}  # fmt: skip
        assert placed["server-1"] == placed["client-1"] == second and placed["client-0"] == first, placed
        ip = {p: node_pods.pod_ip(kube, NAME, ns, p) for p in ("server-0", "server-1")}
        # Each Pod has its node's address, so what follows crosses from one node to the other.
        assert ipaddress.IPv4Address(ip["server-0"]) in nodes[0].pod_cidr, ip
        assert ipaddress.IPv4Address(ip["server-1"]) in nodes[1].pod_cidr, ip

        def reaches(client: str, address: str, port: int, server_node: str) -> bool:
            code, out, _ = node_pods.fetch(kube, NAME, ns, client, address, port)
            return code == 0 and marker.get(server_node, server_node) in out

        # Pod to Pod, across the nodes, both ways.
        assert reaches("client-0", ip["server-1"], node_pods.SERVER_PORT, second), "first node's Pod -> second's"
        assert reaches("client-1", ip["server-0"], node_pods.SERVER_PORT, first), "second node's Pod -> first's"

        # Pod to Service: the ClusterIP (first node's kube-proxy) and the name (first node's DNS),
        # the only backend on the second node.
        cluster_ip = kube.kubectl_json(NAME, "-n", ns, "get", "service", "backend")["spec"]["clusterIP"]
        _until(lambda: reaches("client-0", cluster_ip, 80, second), "first node's Pod -> Service on the second")
        answers, printed, _ = node_pods.resolve(kube, NAME, ns, "client-0", "backend")
        assert cluster_ip in [a for addrs in answers.values() for a in addrs], printed

        # The host to the load-balancer address: it enters at the first node, the Pod is on the second.
        address = _load_balancer_address(kube, ns, "backend-lb")
        assert address.startswith("10.215.3."), address
        _until(lambda: marker[second] in _from_host(address, 80), f"host -> {address}:80 (backend on {second})")

        # The site link, with a stand-in for another site (a namespace publishing 10.215.4.0/24
        # on a scratch WAN): the second node's Pod reaches it through the first node, and it
        # reaches the load-balancer address whose Pod is on the second node.
        with _other_site(local, cluster, nodes) as (other, link):
            assert link.status() == "up"
            _until(lambda: reaches("client-1", *other, OTHER_SITE_MARKER), "second node's Pod -> other site")
            _until(lambda: marker[second] in _from_namespace(OTHER_SITE_NETNS, address, 80), "other site -> LB")
            # The WAN carries what a site publishes only: not the Pod's own address.
            assert marker[second] not in _from_namespace(OTHER_SITE_NETNS, ip["server-1"], node_pods.SERVER_PORT)
        assert not link.leftovers(), link.leftovers()

        # A NetworkPolicy on the second node's Pod: a Pod of the first node without the label is
        # refused, one with it still gets through (its own address crossed the router).
        assert reaches("other-0", ip["server-1"], node_pods.SERVER_PORT, second), "before any policy"
        policy = {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "backend-from-clients"},
            "spec": {
                "podSelector": {"matchLabels": {"app": "backend"}},
                "policyTypes": ["Ingress"],
                "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}]}],
            },
        }
        node_pods.apply(kube, NAME, ns, policy)
        _until(lambda: not reaches("other-0", ip["server-1"], node_pods.SERVER_PORT, second), "policy enforced")
        code, out, took = node_pods.fetch(kube, NAME, ns, "other-0", ip["server-1"], node_pods.SERVER_PORT)
        assert code != 0 and marker[second] not in out and took < 5, (code, out, took)
        assert not reaches("other-0", cluster_ip, 80, second), "through the ClusterIP the policy holds too"
        assert reaches("client-0", ip["server-1"], node_pods.SERVER_PORT, second), "the labelled Pod is admitted"

    local.reset(cluster)
    after = host_state(markers)
    assert after == before, f"left on the host after reset: { {k: v for k, v in after.items() if v} }"
    assert not run("ip", "netns", "list").stdout.count(NAME)
    assert not local.cluster_dir(NAME).exists()
