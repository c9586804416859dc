"""Real nodes for the local clusters: containerd, kubelet and kube-proxy in their own namespaces.

Besides kwok's simulated nodes, each local cluster gets nodes that run containers for real.
Each real node has its own network namespace, veth, Pod bridge and /24, its own containerd
(own root, state and socket), its own cgroup subtree, and a kubelet and kube-proxy built from
the pinned Kubernetes; see node_plan.py for names and addresses. A cluster of two or more real
nodes gets a router namespace that links their Pods (site_network.py). Every process is recorded
by PID in the node's state file; logs go to one folder per cluster.

    python -m smartnation.tooling.local_clusters.real_nodes up|down|status|reset CLUSTER...

`up` is idempotent and restarts what died, and removes nodes beyond the count (a profile that
asks for fewer); `down` stops every process of the nodes (containers and data kept); `reset`
removes everything the nodes put on the host, every node of the cluster found there included.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import yaml

from smartnation.settings.errors import SettingsError
from smartnation.tooling.local_clusters import (
    host_record,
    node_cgroups,
    node_dns,
    node_leftovers,
    node_network,
    node_network_policy,
    node_processes,
    site_network,
)
from smartnation.tooling.local_clusters.containerd_config import (
    cni_config,
    containerd_config,
    registry_hosts,
    stale_registry_hosts,
)
from smartnation.tooling.local_clusters.kubelet_config import (
    kube_proxy_args,
    kube_proxy_configuration,
    kubeconfig,
    kubelet_args,
    kubelet_configuration,
)
from smartnation.tooling.local_clusters.node_credentials import ClusterCA, node_credentials
from smartnation.tooling.local_clusters.node_images import import_images
from smartnation.tooling.local_clusters.node_plan import (
    CGROUP_PARENT,
    KUBELET_ROOT,
    MAX_NODES_PER_SITE,
    RUN_ROOT,
    RealNodePlan,
    plans,
)
from smartnation.tooling.toolchain.bootstrap import tool_env
from smartnation.tooling.toolchain.cache import CacheLayout, layout

# Started in this order, stopped in the reverse one.
PROCESSES = (
    "api-forward-host",
    "api-forward-node",
    "registry-forward-host",
    "registry-forward-node",
    "containerd",
    "kubelet",
    "kube-proxy",
    "coredns",
    "kube-router",
)
HOST_BINARIES = ("containerd", "containerd-shim-runc-v2", "runc", "ctr", "socat", "nsenter", "ip", "iptables",
                 "conntrack", "openssl", "ipset")  # fmt: skip
TOOL_BINARIES = ("kubelet", "kube-proxy", "kubectl", "coredns", "kube-router")


class RealNodeError(RuntimeError):
    pass


def parse_k8s_time(text: str) -> float | None:
    """Seconds since the epoch of a Kubernetes MicroTime/Time ("2026-11-29T00:50:01.123456Z")."""
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def socket_accepts(path: Path) -> bool:
    """True when a process listens on the unix socket at path."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


CRI_VERSION = "/runtime.v1.RuntimeService/Version"
"""The CRI call the kubelet validates its runtime with when it starts."""


def cri_answers(path: Path, timeout: float = 2.0) -> bool:
    """True when containerd's CRI service answers a Version call on the unix socket at path, as the
    kubelet asks at its start. containerd accepts connections (and ``ctr`` works) a moment before
    its CRI plugin has initialized; a kubelet started then exits at once with "server is not
    initialized yet" (seen when a restarted machine ran `make up` under load). An empty request
    is an empty VersionRequest: no generated stubs needed (grpcio comes with pulumi)."""
    import grpc

    with grpc.insecure_channel(f"unix://{path}") as channel:
        call = channel.unary_unary(CRI_VERSION, request_serializer=None, response_deserializer=None)
        try:
            call(b"", timeout=timeout)
        except grpc.RpcError:
            return False
    return True


def say(cluster: str, message: str) -> None:
    print(f"[{cluster}] {message}", flush=True)


@dataclass(frozen=True)
class ClusterAccess:
    """What the nodes need to know of their cluster's control plane (kwokctl made it)."""

    name: str
    site: int
    apiserver_port: int
    region: str
    zone: str
    pki: Path
    admin_kubeconfig: Path
    site_registry: str
    """The profile's registry.default (``host/path``): the only registry the nodes pull from."""
    registry_port: int
    """The profile's simulation.registry_port: where that registry's local stand-in listens."""
    load_balancer_pool: ipaddress.IPv4Network
    ingress_address: ipaddress.IPv4Address

    @property
    def load_balancer_routes(self) -> tuple[ipaddress.IPv4Network, ...]:
        return node_network.load_balancer_routes(self.load_balancer_pool, self.ingress_address)

    @property
    def ca(self) -> ClusterCA:
        return ClusterCA(self.pki / "ca.crt", self.pki / "ca.key")


def cluster_nodes(cache: CacheLayout, name: str, count: int | None = None) -> RealNodes:
    """The real nodes of the cluster profile ``name``: as many as ``count``, or as its profile's
    ``simulation.real_nodes`` says."""
    # Imported here: the lifecycle module starts real nodes itself, so it imports this one.
    from smartnation.tooling.local_clusters.lifecycle import LocalClusters

    clusters = LocalClusters(cache)
    profile = clusters.profiles([name])[0]
    return RealNodes(cache, clusters.access(profile), profile.simulation.real_nodes if count is None else count)


def node_present(plan: RealNodePlan) -> bool:
    """Whether the node is on the host, by what carries its cluster's name: its state file or its
    namespace. Never by its host link or addresses: those follow the site number, which a scratch
    profile without real nodes shares with a running cluster (test_cluster_lifecycle's probe is
    site 0, like dusseldorf-test), and removing them would cut that cluster's node off."""
    return plan.state_file.exists() or node_network.netns_path(plan).exists()


class RealNodes:
    """The real nodes of one cluster."""

    def __init__(self, cache: CacheLayout, access: ClusterAccess, count: int = 1) -> None:
        self.cache = cache
        self.access = access
        self.cluster_dir = cache.clusters / "real-nodes" / access.name
        self.nodes = plans(access.name, access.site, count, self.cluster_dir)
        self.count = count
        self.env = dict(os.environ, **tool_env(cache))
        self.host_file = cache.clusters / "real-nodes" / "host.json"

    # -- helpers ------------------------------------------------------------------------------
    def kubectl(self, *args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(self.cache.bin / "kubectl"), "--kubeconfig", str(self.access.admin_kubeconfig), *args],
            input=input,
            capture_output=True,
            text=True,
            env=self.env,
        )
        if check and proc.returncode != 0:
            raise RealNodeError(f"[{self.access.name}] kubectl {' '.join(args[:3])} failed: {proc.stderr.strip()}")
        return proc

    def read_state(self, plan: RealNodePlan) -> dict:
        if plan.state_file.exists():
            return json.loads(plan.state_file.read_text())
        return {"node": plan.name, "processes": {}}

    def write_state(self, plan: RealNodePlan, state: dict) -> None:
        plan.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = plan.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
        os.replace(tmp, plan.state_file)

    def surplus(self) -> list[RealNodePlan]:
        """Nodes of this cluster still on the host beyond the profile's count (it asked for more
        before): `up` removes them, `down` stops them, `reset` removes them with the rest."""
        every = plans(self.access.name, self.access.site, MAX_NODES_PER_SITE, self.cluster_dir)
        return [p for p in every[self.count :] if node_present(p)]

    def remove_surplus(self) -> None:
        """Removes the nodes beyond the profile's count (and the site's router with the last but one)."""
        surplus = self.surplus()
        for plan in surplus:
            say(plan.cluster, f"{plan.name}: beyond the profile's {self.count} real node(s): removing it")
            self.remove_node(plan)
        if surplus and len(self.nodes) < 2:
            site_network.remove(surplus[0])

    def check_host(self) -> None:
        missing = [b for b in HOST_BINARIES if not shutil.which(b)]
        if missing:
            raise RealNodeError(f"{', '.join(missing)} not found: run `bash .ci/node-deps.sh` (Debian packages)")
        missing = [b for b in TOOL_BINARIES if not (self.cache.bin / b).exists()]
        if missing:
            raise RealNodeError(f"{', '.join(missing)} not in {self.cache.bin}: run `make bootstrap`")
        if not self.access.ca.key.exists():
            raise RealNodeError(f"{self.access.ca.key} is missing: start the cluster first (`make clusters`)")

    # -- configuration ------------------------------------------------------------------------
    def write_configs(self, plan: RealNodePlan) -> dict[str, list[str]]:
        """Writes every config file of the node and returns the argv of each process."""
        d = plan.node_dir
        for sub in ("containerd", "cni", "cni-leases", "pod-logs", "pki", "opt"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        plan.run_dir.mkdir(parents=True, exist_ok=True)
        plan.kubelet_dir.mkdir(parents=True, exist_ok=True)
        creds = node_credentials(plan, self.access.ca)
        server = f"https://127.0.0.1:{self.access.apiserver_port}"
        kubelet_kc, proxy_kc = d / "kubelet.kubeconfig", d / "kube-proxy.kubeconfig"
        dns_kc, netpol_kc = d / "coredns.kubeconfig", d / "kube-router.kubeconfig"
        kubelet_user = f"system:node:{plan.name}"
        files = {
            d / "containerd.toml": containerd_config(plan),
            d / "cni" / "10-smartnation.conflist": json.dumps(cni_config(plan), indent=2),
            kubelet_kc: kubeconfig(server, creds["ca"], creds["kubelet_cert"], creds["kubelet_key"], kubelet_user),
            proxy_kc: kubeconfig(server, creds["ca"], creds["proxy_cert"], creds["proxy_key"], "system:kube-proxy"),
            d / "kubelet.yaml": kubelet_configuration(plan, creds["ca"]),
            d / "kube-proxy.yaml": kube_proxy_configuration(plan, proxy_kc),
            dns_kc: kubeconfig(server, creds["ca"], creds["dns_cert"], creds["dns_key"], node_dns.DNS_USER),
            netpol_kc: kubeconfig(
                server, creds["ca"], creds["netpol_cert"], creds["netpol_key"], node_network_policy.NETPOL_USER
            ),
            d / "Corefile": node_dns.corefile(plan, dns_kc),
        }
        registry_files = registry_hosts(plan, self.access.site_registry, self.access.registry_port)
        for stale in stale_registry_hosts(plan, registry_files):
            shutil.rmtree(stale)
        for path in registry_files:
            path.parent.mkdir(parents=True, exist_ok=True)
        files |= registry_files
        for path, content in files.items():
            write_if_changed(path, content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False))
        labels = {"topology.kubernetes.io/region": self.access.region, "topology.kubernetes.io/zone": self.access.zone}
        b = self.cache.bin
        return {
            **node_network.api_forwarders(plan, self.access.apiserver_port),
            **node_network.registry_forwarders(plan, self.access.registry_port),
            "containerd": node_network.in_netns(plan, ["containerd", "--config", str(d / "containerd.toml")]),
            "kubelet": node_network.in_netns(
                plan, [str((b / "kubelet").resolve()), *kubelet_args(plan, d / "kubelet.yaml", kubelet_kc, labels)]
            ),
            "kube-proxy": node_network.in_netns(
                plan, [str((b / "kube-proxy").resolve()), *kube_proxy_args(d / "kube-proxy.yaml")]
            ),
            "coredns": node_network.in_netns(
                plan, [str((b / "coredns").resolve()), *node_dns.coredns_args(d / "Corefile")]
            ),
            "kube-router": node_network.in_netns(
                plan, [str((b / "kube-router").resolve()), *node_network_policy.kube_router_args(plan, netpol_kc)]
            ),
        }

    # -- lifecycle ----------------------------------------------------------------------------
    def up(self) -> float:
        began = time.monotonic()
        since = time.time() - 1  # a lease renewed before this is the old kubelet's
        self.check_host()
        host_record.record(self.host_file)
        # What the nodes' CoreDNS and kube-router may read, before either starts.
        self.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                     "items": [*node_dns.rbac(), *node_network_policy.rbac()]}))  # fmt: skip
        self.remove_surplus()
        for plan in self.nodes:
            node_cgroups.create(plan.cgroup)
            # The load-balancer addresses go to the first node: its kube-proxy, like every node's,
            # sends a Service's address to the Service's Pods, on any node through the site's router.
            node_network.ensure(plan, self.access.load_balancer_routes if plan.index == 0 else ())
        # Before any kubelet starts: a Pod's first connection to another node's Pod finds its route.
        say(self.access.name, site_network.ensure(self.nodes))
        for plan in self.nodes:
            self.start_node(plan)
        for plan in self.nodes:
            self.wait_ready(plan, since)
            self.check_running(plan)
        took = time.monotonic() - began
        say(self.access.name, f"{len(self.nodes)} real node(s) Ready in {took:.1f}s")
        return took

    def start_node(self, plan: RealNodePlan) -> None:
        """Starts what is not running of the node (its namespace and cgroup made by `up`)."""
        argv = self.write_configs(plan)
        state = self.read_state(plan)
        state.update(
            {
                "node": plan.name,
                "cluster": plan.cluster,
                "netns": plan.netns,
                "host_veth": plan.host_veth,
                "node_ip": str(plan.node_ip),
                "pod_cidr": str(plan.pod_cidr),
                "cgroup": plan.cgroup,
                "run_dir": str(plan.run_dir),
            }
        )
        procs = state.setdefault("processes", {})
        started = []
        for name in PROCESSES:
            known = procs.get(name)
            if known and node_processes.alive(node_processes.Running.from_json(known)):
                continue
            if name == "kubelet":
                self.wait_for_socket(plan.containerd_socket, "containerd", plan)
                self.wait_for_cri(plan)
                imported = import_images(plan.containerd_socket, plan.node_dir / "images")
                if imported:
                    say(plan.cluster, f"{plan.name}: imported {', '.join(imported)}")
            if name == "kube-router":
                node_network_policy.ensure_dns_allowance(plan)
                # kube-router exits at once when its Node is not registered yet (a new cluster's
                # first start): "failed to identify the node".
                self.wait_registered(plan)
            log = plan.logs_dir / f"{plan.name}.{name}.log"
            running = node_processes.start(argv[name], log, plan.cgroup, plan.node_dir)
            procs[name] = running.to_json()
            self.write_state(plan, state)  # recorded at once: an interrupted start leaves nothing unknown
            started.append(name)
            if name == "api-forward-host":
                self.wait_for_socket(plan.api_socket, "the API forwarder", plan)
            if name == "registry-forward-host":
                self.wait_for_socket(plan.registry_socket, "the registry forwarder", plan)
        state["started_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.write_state(plan, state)
        say(plan.cluster, f"{plan.name}: {'started ' + ', '.join(started) if started else 'already running'}")

    def wait_for_socket(self, socket_path: Path, what: str, plan: RealNodePlan, timeout: float = 30) -> None:
        """Wait until the socket accepts a connection. Its file alone proves nothing: a node stopped
        by `make clusters-down` or killed with the machine leaves the file behind, and a client that
        dials it before the new process listens gets "connection refused"."""
        deadline = time.monotonic() + timeout
        while not socket_accepts(socket_path):
            if time.monotonic() > deadline:
                raise RealNodeError(
                    f"[{plan.cluster}] {plan.name}: {what} does not answer on {socket_path} after "
                    f"{timeout:.0f}s; see {plan.logs_dir}"
                )
            time.sleep(0.1)

    def wait_for_cri(self, plan: RealNodePlan, timeout: float = 30) -> None:
        """Until containerd's CRI service answers the kubelet's first call (cri_answers)."""
        deadline = time.monotonic() + timeout
        while not cri_answers(plan.containerd_socket):
            if time.monotonic() > deadline:
                raise RealNodeError(
                    f"[{plan.cluster}] {plan.name}: containerd's CRI service does not answer on "
                    f"{plan.containerd_socket} after {timeout:.0f}s; see {plan.logs_dir}"
                )
            time.sleep(0.2)

    def check_running(self, plan: RealNodePlan) -> None:
        """Every process of the node still runs: one that exited at start (kube-router once did,
        on a new cluster) would otherwise go unnoticed behind a Ready node."""
        procs = self.read_state(plan).get("processes", {})
        dead = [
            n
            for n in PROCESSES
            if n not in procs or not node_processes.alive(node_processes.Running.from_json(procs[n]))
        ]
        if dead:
            logs = ", ".join(str(plan.logs_dir / f"{plan.name}.{n}.log") for n in dead)
            raise RealNodeError(f"[{plan.cluster}] {plan.name}: {', '.join(dead)} exited after start; see {logs}")

    def wait_registered(self, plan: RealNodePlan, timeout: float = 60) -> None:
        """Until the kubelet has registered the node's Node object."""
        deadline = time.monotonic() + timeout
        while self.kubectl("get", "node", plan.name, "-o", "name", check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise RealNodeError(
                    f"[{plan.cluster}] {plan.name} not registered after {timeout:.0f}s; logs in {plan.logs_dir}"
                )
            time.sleep(0.5)

    def wait_ready(self, plan: RealNodePlan, since: float, timeout: float = 120) -> None:
        """Ready, as reported by the kubelet running now. A node's Ready condition outlives its
        kubelet (the controller marks it Unknown only 40 s later), so a just-restarted cluster shows
        the old Ready; the node's Lease, renewed every 10 s by a live kubelet, tells them apart."""
        deadline = time.monotonic() + timeout
        while True:
            ready = self.kubectl(
                "get", "node", plan.name, "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].status}", check=False
            )
            lease = self.kubectl(
                "get", "lease", "-n", "kube-node-lease", plan.name, "-o", "jsonpath={.spec.renewTime}", check=False
            )
            renewed = parse_k8s_time(lease.stdout.strip()) if lease.returncode == 0 else None
            if ready.returncode == 0 and ready.stdout.strip() == "True" and renewed is not None and renewed >= since:
                return
            if time.monotonic() > deadline:
                raise RealNodeError(
                    f"[{plan.cluster}] {plan.name} not Ready after {timeout:.0f}s; logs in {plan.logs_dir}"
                )
            time.sleep(1)

    def down(self) -> None:
        for plan in [*self.nodes, *self.surplus()]:
            left = self.stop_node(plan)
            say(
                plan.cluster,
                f"{plan.name}: stopped (containers and data kept)" + (f"; still alive: {left}" if left else ""),
            )

    def stop_node(self, plan: RealNodePlan) -> set[int]:
        state = self.read_state(plan)
        procs = state.get("processes", {})
        # The agents first, so nothing restarts a container while the rest is stopped.
        for name in ("kubelet", "kube-proxy"):
            if name in procs:
                running = node_processes.Running.from_json(procs[name])
                if node_processes.alive(running):
                    node_processes.stop({running.pid})
        recorded = {
            node_processes.Running.from_json(p).pid
            for p in procs.values()
            if node_processes.alive(node_processes.Running.from_json(p))
        }
        # The containers next, at once: a container's first process ignores SIGTERM from
        # outside its PID namespace unless it handles it, and the node is going down anyway.
        node_processes.stop(node_cgroups.pids(f"{plan.cgroup}/kubepods"), timeout=0)
        # Then every other process of the node: shims, containerd, socat. The node's cgroup
        # subtree holds them all, whoever started them.
        left = node_processes.stop(recorded | node_cgroups.pids(plan.cgroup))
        node_leftovers.unmount_under(plan.run_dir, plan.kubelet_dir, plan.node_dir)
        node_leftovers.remove_shim_sockets(plan)
        state["processes"] = {}
        if plan.state_file.parent.exists():
            self.write_state(plan, state)
        return left

    def remove_node(self, plan: RealNodePlan) -> None:
        """Stops the node and removes everything it put on the host, and its Node object."""
        self.stop_node(plan)
        if self.access.admin_kubeconfig.exists():
            self.kubectl("delete", "node", plan.name, "--ignore-not-found", "--request-timeout=10s", check=False)
        node_network.remove(plan)
        for leftover in node_network.leftovers(plan):
            say(plan.cluster, f"{plan.name}: still on the host after removal: {leftover}")
        left = node_cgroups.remove(plan.cgroup)
        node_leftovers.remove_container_log_links(plan)
        node_leftovers.remove_cni_results(plan)
        shutil.rmtree(plan.run_dir, ignore_errors=True)
        shutil.rmtree(plan.kubelet_dir, ignore_errors=True)
        shutil.rmtree(plan.node_dir, ignore_errors=True)
        say(plan.cluster, f"{plan.name}: removed" + (f" (cgroups still busy: {left})" if left else ""))

    def reset(self) -> None:
        every = plans(self.access.name, self.access.site, MAX_NODES_PER_SITE, self.cluster_dir)
        # The site's router first (its links end in the nodes' namespaces), whatever the count.
        site_network.remove(every[0])
        for plan in [*self.nodes, *self.surplus()]:
            self.remove_node(plan)
        shutil.rmtree(self.cluster_dir, ignore_errors=True)
        for root in (RUN_ROOT, KUBELET_ROOT):
            if root.exists() and not any(root.iterdir()):
                root.rmdir()
                if not any(root.parent.iterdir()):
                    root.parent.rmdir()
        node_cgroups.remove_parent_if_empty(CGROUP_PARENT)
        others = [p for p in self.host_file.parent.iterdir() if p.is_dir()] if self.host_file.parent.exists() else []
        if not others:
            for change in host_record.restore(self.host_file):
                say(self.access.name, f"host: {change}")
            if self.host_file.parent.exists() and not any(self.host_file.parent.iterdir()):
                self.host_file.parent.rmdir()

    def status(self) -> list[str]:
        lines = []
        for plan in self.nodes:
            state = self.read_state(plan)
            procs = state.get("processes", {})
            alive = {n: node_processes.alive(node_processes.Running.from_json(p)) for n, p in procs.items()}
            if not plan.state_file.exists():
                summary = "absent"
            elif alive and all(alive.values()) and set(alive) == set(PROCESSES):
                summary = "running"
            elif any(alive.values()):
                dead = [n for n in PROCESSES if not alive.get(n)]
                summary = f"degraded (not running: {', '.join(dead)})"
            else:
                summary = "stopped"
            ready = ""
            if self.access.admin_kubeconfig.exists():
                proc = self.kubectl("get", "node", plan.name, "-o",
                                    "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
                                    "--request-timeout=5s", check=False)  # fmt: skip
                ready = f"\tReady={proc.stdout.strip() or 'unknown'}" if proc.returncode == 0 else "\tnot registered"
            pids = " ".join(f"{n}={procs[n]['pid']}" for n in PROCESSES if n in procs)
            lines.append(f"{plan.name}\t{summary}{ready}\tnetns={plan.netns}\tip={plan.node_ip}\t{pids}")
        lines += [f"{p.name}\tsurplus (the profile asks for {self.count}; `up` removes it)" for p in self.surplus()]
        if self.nodes:
            lines.append(f"site network\t{site_network.status(self.nodes)}")
        return lines


def write_if_changed(path: Path, text: str) -> None:
    """Rewrites a config only when its content changes: kube-proxy exits when its config file
    is touched, and an unchanged node must keep running through `make clusters`."""
    if path.exists() and path.read_text() == text:
        return
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="real_nodes", description="The local clusters' real nodes")
    parser.add_argument("action", choices=["up", "down", "status", "reset"])
    parser.add_argument("clusters", nargs="+", help="cluster names (as in environments/clusters)")
    parser.add_argument(
        "--count", type=int, default=None, help="real nodes per cluster (default: the profile's simulation.real_nodes)"
    )
    args = parser.parse_args(argv)
    cache = layout()
    try:
        for name in args.clusters:
            nodes = cluster_nodes(cache, name, args.count)
            if args.action == "up":
                nodes.up()
            elif args.action == "down":
                nodes.down()
            elif args.action == "reset":
                nodes.reset()
            else:
                for line in nodes.status():
                    print(line)
    except (RuntimeError, SettingsError) as exc:  # RealNodeError, ClusterError and tool failures
        print(f"real nodes {args.action} failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
