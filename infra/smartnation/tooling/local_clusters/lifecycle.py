"""`make clusters` / `make clusters-down`: the two local stand-ins, driven through kwokctl.

Each stand-in is a real control plane (etcd, kube-apiserver, kube-controller-manager,
kube-scheduler) plus kwok's controller playing the nodes, all our own builds from the toolchain
cache, all on loopback. Their etcd data lives in the cache, so `clusters-down` then `clusters`
brings back what was deployed.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import yaml

from smartnation.paths import cluster_profiles_dir
from smartnation.settings.errors import SettingsError
from smartnation.settings.yaml_files import read_yaml
from smartnation.tooling.local_clusters import host_addresses, site_link
from smartnation.tooling.local_clusters.cert_manager_service import CertManagerService
from smartnation.tooling.local_clusters.node_plan import REAL_NODE_LABEL
from smartnation.tooling.local_clusters.node_processes import start_time
from smartnation.tooling.local_clusters.real_nodes import ClusterAccess, RealNodes
from smartnation.tooling.local_clusters.simulation import (
    ClusterError,
    LocalCluster,
    ingress_class,
    kwok_stage_documents,
    kwokctl_configuration,
    nodes,
    storage_classes,
)
from smartnation.tooling.local_clusters.volume_provisioner_service import VolumeProvisionerService
from smartnation.tooling.toolchain.bootstrap import tool_env
from smartnation.tooling.toolchain.cache import CacheLayout, layout
from smartnation.tooling.toolchain.versions import load_pins

# What kwokctl runs for a cluster, each with its pid file in <cluster dir>/pids.
CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok-controller")
# How long a SIGKILLed control plane may take to exit (and free its ports) on a loaded host.
STOP_TIMEOUT = 60.0


def say(cluster: str, message: str) -> None:
    print(f"[{cluster}] {message}", flush=True)


class LocalClusters:
    def __init__(self, cache: CacheLayout, profiles_dir: Path | None = None, kubeconfig: Path | None = None) -> None:
        self.cache = cache
        self.profiles_dir = profiles_dir or cluster_profiles_dir()
        self.kubeconfig = kubeconfig or cache.kubeconfig
        self.kwok_home = cache.clusters / "kwok"
        pins = load_pins()
        self.kube_version = pins["kubernetes"].version
        self.kwok_dir = cache.tool_dir("kwok", pins["kwok"].version)
        self.env = dict(os.environ, **tool_env(cache), KWOK_WORKDIR=str(self.kwok_home))

    # -- discovery ----------------------------------------------------------------------------
    def profiles(self, names: Sequence[str] = ()) -> list[LocalCluster]:
        files = sorted(self.profiles_dir.glob("*.yaml"))
        if not files:
            raise ClusterError(f"no cluster profiles in {self.profiles_dir}")
        found = [LocalCluster.read(f) for f in files]
        if names:
            known = {c.name: c for c in found}
            unknown = [n for n in names if n not in known]
            if unknown:
                raise ClusterError(
                    f"unknown cluster {unknown[0]!r}: profiles in {self.profiles_dir} are {', '.join(sorted(known))}"
                )
            return [known[n] for n in names]
        return found

    def access(self, cluster: LocalCluster) -> ClusterAccess:
        """What the real nodes of ``cluster`` need to know of its control plane (kwokctl made it)."""
        names = [c.name for c in self.profiles()]
        kwok_dir = self.cluster_dir(cluster.name)
        return ClusterAccess(
            name=cluster.name,
            # The profiles' sorted order: a stable number per cluster on this host, which picks
            # the addresses of its nodes (node_plan.py).
            site=names.index(cluster.name),
            apiserver_port=cluster.simulation.apiserver_port,
            region=cluster.profile.site.region,
            zone=cluster.profile.zones[0],
            pki=kwok_dir / "pki",
            admin_kubeconfig=kwok_dir / "kubeconfig.yaml",
            site_registry=cluster.profile.registry.default,
            registry_port=cluster.simulation.registry_port,
            load_balancer_pool=cluster.simulation.load_balancer_pool,
            ingress_address=cluster.simulation.ingress_address,
        )

    def real_nodes(self, cluster: LocalCluster) -> RealNodes:
        """The cluster's real nodes: as many as its profile's ``simulation.real_nodes``."""
        return RealNodes(self.cache, self.access(cluster), cluster.simulation.real_nodes)

    def volume_provisioner(self, cluster: LocalCluster) -> VolumeProvisionerService:
        """The cluster's stand-in for its CSI provisioner (volume_provisioner.py)."""
        return VolumeProvisionerService(self.cache, cluster, self.cluster_dir(cluster.name) / "kubeconfig.yaml")

    def cert_manager(self, cluster: LocalCluster) -> CertManagerService:
        """The cluster's certificate issuer: cert-manager's controller and its CA (cert_manager.py)."""
        return CertManagerService(self.cache, cluster, self.cluster_dir(cluster.name) / "kubeconfig.yaml")

    def cluster_dir(self, name: str) -> Path:
        return self.kwok_home / "clusters" / name

    def kwok_config(self, name: str) -> Path:
        return self.cache.clusters / f"{name}.kwok.yaml"

    def ready_marker(self, name: str) -> Path:
        return self.cache.clusters / f"{name}.created"

    def kwokctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(["kwokctl", *args], env=self.env, capture_output=True, text=True)
        if check and proc.returncode != 0:
            raise ClusterError(f"kwokctl {' '.join(args)} failed:\n{(proc.stderr or proc.stdout).strip()[-2000:]}")
        return proc

    def kubectl(self, cluster: LocalCluster, *args: str, stdin: str | None = None, check: bool = True):
        kubeconfig = self.cluster_dir(cluster.name) / "kubeconfig.yaml"
        proc = subprocess.run(
            ["kubectl", "--kubeconfig", str(kubeconfig), *args],
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
        )
        if check and proc.returncode != 0:
            raise ClusterError(f"[{cluster.name}] kubectl {' '.join(args[:3])} failed: {proc.stderr.strip()[-1500:]}")
        return proc

    def stopped_components(self, cluster: LocalCluster) -> list[str]:
        """Control-plane components of a created cluster whose recorded process is gone.

        The API server can answer while the controller manager or the scheduler is dead: Pods
        then stay Pending and Deployments never roll, so a running cluster is not taken as
        healthy by its API server alone."""
        home = self.cluster_dir(cluster.name)
        dead = []
        for component in CONTROL_PLANE:
            try:
                pid = int((home / "pids" / f"{component}.pid").read_text().strip())
                argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0].decode()
            except (OSError, ValueError):
                dead.append(component)
                continue
            # The recorded PID may have been reused by another process: its program must be ours.
            if start_time(pid) is None or argv0 != str(home / "bin" / component):
                dead.append(component)
        return dead

    def running_components(self, cluster: LocalCluster) -> dict[str, tuple[int, int]]:
        """The control plane's live processes: component -> (PID, start time), the pair that
        names a process even after its PID is reused."""
        home = self.cluster_dir(cluster.name)
        stopped = self.stopped_components(cluster)
        running = {}
        for component in (c for c in CONTROL_PLANE if c not in stopped):
            try:
                pid = int((home / "pids" / f"{component}.pid").read_text().strip())
            except (OSError, ValueError):
                continue  # exited since: nothing to wait for
            started = start_time(pid)
            if started is not None:
                running[component] = (pid, started)
        return running

    def stop_control_plane(self, cluster: LocalCluster, timeout: float = STOP_TIMEOUT) -> None:
        """``kwokctl stop``, then wait until its processes are gone.

        kwokctl sends SIGKILL and returns at once (it cannot wait for processes it did not
        fork), so a start right after it raced the dying ones for their ports: seen in CI, the
        new kube-apiserver found its port still held, exited, and the cluster never became
        ready. The start that follows (a restart, or `make clusters` after `clusters-down`)
        now finds the ports free."""
        running = self.running_components(cluster)
        self.kwokctl("stop", "cluster", "--name", cluster.name)
        deadline = time.monotonic() + timeout
        while left := [f"{c} (pid {pid})" for c, (pid, began) in running.items() if start_time(pid) == began]:
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"[{cluster.name}] still running {timeout:.0f}s after `kwokctl stop`: {', '.join(left)}; "
                    "its data is kept: run `make clusters` again once they have exited"
                )
            time.sleep(0.1)

    def healthy(self, cluster: LocalCluster) -> bool:
        if not (self.cluster_dir(cluster.name) / "kubeconfig.yaml").exists():
            return False
        return self.kubectl(cluster, "get", "--raw=/readyz", "--request-timeout=3s", check=False).returncode == 0

    # -- lifecycle ----------------------------------------------------------------------------
    def check_toolchain(self) -> None:
        missing = [
            b
            for b in ("kwokctl", "kwok", "kube-apiserver", "etcd", "kubectl", "cert-manager-controller")
            if not (self.cache.bin / b).exists()
        ]
        if missing:
            raise ClusterError(f"{', '.join(missing)} not in {self.cache.bin}: run `make bootstrap` first")

    def port_free(self, cluster: LocalCluster) -> bool:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", cluster.simulation.apiserver_port))
            except OSError:
                return False
            return True

    def check_port_free(self, cluster: LocalCluster) -> None:
        port = cluster.simulation.apiserver_port
        if not self.port_free(cluster):
            raise ClusterError(
                f"[{cluster.name}] port {port} on 127.0.0.1 is taken by another process, so "
                f"the API server cannot start ({cluster.source}: simulation.apiserver_port). "
                "Free the port or change it."
            ) from None

    def check_routes_shadow_nothing(self, cluster: LocalCluster) -> None:
        """Refuse a load-balancer pool that holds an address this host uses: its host route into
        the real node would cut the host off that address (host_addresses.py says how it happened)."""
        used = host_addresses.addresses_in_use()
        for network, key in (
            (cluster.simulation.load_balancer_pool, "simulation.load_balancer_pool"),
            (ipaddress.IPv4Network(cluster.simulation.ingress_address), "simulation.ingress_address"),
        ):
            taken = host_addresses.shadowed(network, used)
            if taken:
                listed = "; ".join(f"{u.address} ({u.why})" for u in taken)
                raise ClusterError(
                    f"{cluster.source}: {key}: {network} holds addresses this host uses: {listed}. "
                    "Routing it into the real node would cut the host off them; pick a range the host does "
                    "not use (the profiles use 10.215.<site>.0/24, beside the real nodes' own 10.213/16 and "
                    "10.214/16)"
                )

    def up(self, cluster: LocalCluster) -> float:
        began = time.monotonic()
        if self.healthy(cluster) and (stopped := self.stopped_components(cluster)):
            # kwokctl starts a whole control plane; stopping the rest first keeps one of each.
            say(cluster.name, f"{', '.join(stopped)} not running: restarting the control plane (data kept)")
            self.stop_control_plane(cluster)
            self.kwokctl("start", "cluster", "--name", cluster.name, "--timeout", "90s")
        elif self.healthy(cluster):
            say(cluster.name, "already running")
        elif self.ready_marker(cluster.name).exists() and self.cluster_dir(cluster.name).exists():
            self.check_port_free(cluster)
            say(cluster.name, "starting (existing data kept)")
            self.kwokctl("start", "cluster", "--name", cluster.name, "--timeout", "90s")
        else:
            if self.cluster_dir(cluster.name).exists():
                # Created by a run that never finished: nothing was ever deployed to it.
                say(cluster.name, "removing a half-created cluster left by an interrupted run")
                self.kwokctl("delete", "cluster", "--name", cluster.name, check=False)
                shutil.rmtree(self.cluster_dir(cluster.name), ignore_errors=True)
            self.check_port_free(cluster)
            self.create(cluster)
        self.wait_ready(cluster)
        self.apply_shape(cluster)
        self.write_kubeconfig()
        # Before the nodes: claims waiting since the last run get their volumes while they start,
        # and Pods that mount a certificate find its Secret.
        say(cluster.name, self.volume_provisioner(cluster).up())
        say(cluster.name, self.cert_manager(cluster).up())
        if cluster.simulation.real_nodes:
            self.check_routes_shadow_nothing(cluster)
            self.real_nodes(cluster).up()
        else:
            self.real_nodes(cluster).remove_surplus()  # a profile that had real nodes has none now
        took = time.monotonic() - began
        say(
            cluster.name,
            f"ready in {took:.1f}s (context {cluster.context}, API https://127.0.0.1:{cluster.simulation.apiserver_port})",
        )
        return took

    def create(self, cluster: LocalCluster) -> None:
        say(cluster.name, f"creating: Kubernetes {self.kube_version} control plane with kwok nodes")
        config = self.kwok_config(cluster.name)
        config.parent.mkdir(parents=True, exist_ok=True)
        docs = [
            kwokctl_configuration(cluster, self.kube_version, self.cluster_dir(cluster.name) / "pki"),
            *kwok_stage_documents(cluster, self.kwok_dir / "stages"),
        ]
        config.write_text(yaml.safe_dump_all(docs, sort_keys=False))
        b = self.cache.bin
        self.kwokctl(
            "create",
            "cluster",
            "--name",
            cluster.name,
            "--config",
            str(config),
            "--kube-apiserver-binary",
            str((b / "kube-apiserver").resolve()),
            "--kube-controller-manager-binary",
            str((b / "kube-controller-manager").resolve()),
            "--kube-scheduler-binary",
            str((b / "kube-scheduler").resolve()),
            "--kwok-controller-binary",
            str((b / "kwok").resolve()),
            "--etcd-binary",
            str((b / "etcd").resolve()),
            "--kubeconfig",
            str(self.cache.clusters / "kwokctl-kubeconfig"),
            "--timeout",
            "120s",
            "--wait",
            "60s",
        )
        self.ready_marker(cluster.name).write_text(f"{self.kube_version}\n")

    def wait_ready(self, cluster: LocalCluster, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not self.healthy(cluster):
            if time.monotonic() > deadline:
                stopped = self.stopped_components(cluster)
                exited = f"; exited: {', '.join(stopped)}" if stopped else ""
                raise ClusterError(
                    f"[{cluster.name}] API server not ready after {timeout:.0f}s{exited}; logs: "
                    f"{self.cluster_dir(cluster.name) / 'logs'} (or `make clusters-reset` to start over)"
                )
            time.sleep(0.5)

    def apply_shape(self, cluster: LocalCluster) -> None:
        """kwok stages, nodes, storage classes, the ingress class, cert-manager's CRDs and the
        profile's issuer, applied on every start.

        Stages first: nodes only turn Ready once the node stages exist."""
        self.kubectl(
            cluster,
            "wait",
            "--for=condition=Established",
            "crd/stages.kwok.x-k8s.io",
            "--timeout=60s",
        )
        cert_manager = self.cert_manager(cluster)
        crds = cert_manager.crds()
        self.apply(cluster, crds)
        self.kubectl(
            cluster,
            "wait",
            "--for=condition=Established",
            *(f"crd/{crd['metadata']['name']}" for crd in crds),
            "--timeout=60s",
        )
        stages = kwok_stage_documents(cluster, self.kwok_dir / "stages")
        self.apply(cluster, stages)
        # Our stages that the code no longer defines go, so a kept cluster behaves like a new one.
        current = {f"stage.kwok.x-k8s.io/{d['metadata']['name']}" for d in stages}
        listed = self.kubectl(cluster, "get", "stages.kwok.x-k8s.io", "-o", "name").stdout.split()
        stale = [n for n in listed if n.startswith("stage.kwok.x-k8s.io/smartnation-") and n not in current]
        if stale:
            self.kubectl(cluster, "delete", *stale)
        self.apply(cluster, [*nodes(cluster), *storage_classes(cluster), ingress_class(cluster)])
        issuer, made = cert_manager.issuer()
        self.apply(cluster, issuer)
        if made:
            say(cluster.name, f"made the CA of {cluster.profile.ingress.tls_issuer} in {cert_manager.ca.directory}")
        # The simulated nodes only: a real node turns Ready when its kubelet runs (real_nodes.py).
        self.kubectl(
            cluster, "wait", "--for=condition=Ready", "node", "-l", f"{REAL_NODE_LABEL}=simulated", "--timeout=60s"
        )

    def apply(self, cluster: LocalCluster, docs: list[dict]) -> None:
        self.kubectl(
            cluster,
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=smartnation-clusters",
            "-f",
            "-",
            stdin=yaml.safe_dump_all(docs, sort_keys=False),
        )

    def down(self, cluster: LocalCluster) -> None:
        if not self.cluster_dir(cluster.name).exists():
            say(cluster.name, "not created")
            return
        # The nodes first: their kubelets would otherwise retry an absent API server.
        self.real_nodes(cluster).down()  # with none in the profile, those a previous one asked for
        say(cluster.name, self.volume_provisioner(cluster).down())
        say(cluster.name, self.cert_manager(cluster).down())
        self.stop_control_plane(cluster)
        say(cluster.name, "stopped (data kept; `make clusters` starts it again)")

    def reset(self, cluster: LocalCluster) -> None:
        # The provisioner first (it would act on what goes next), then the nodes, while the API
        # server still answers (their Node objects go too).
        self.volume_provisioner(cluster).reset()
        self.cert_manager(cluster).reset()
        self.real_nodes(cluster).reset()
        self.kwokctl("delete", "cluster", "--name", cluster.name, check=False)
        shutil.rmtree(self.cluster_dir(cluster.name), ignore_errors=True)
        self.ready_marker(cluster.name).unlink(missing_ok=True)
        self.kwok_config(cluster.name).unlink(missing_ok=True)
        # kwokctl returns while the API server is still exiting: wait until its port is free, so
        # a `make clusters` right after a reset does not find it taken.
        deadline = time.monotonic() + 30
        while not self.port_free(cluster) and time.monotonic() < deadline:
            time.sleep(0.2)
        say(cluster.name, "deleted with all its data")

    def status(self, cluster: LocalCluster) -> str:
        if not self.cluster_dir(cluster.name).exists():
            return "absent"
        return "running" if self.healthy(cluster) else "stopped"

    def write_kubeconfig(self) -> None:
        """One kubeconfig with a context per cluster, named as the cluster profiles say."""
        merged: dict = {"apiVersion": "v1", "kind": "Config", "clusters": [], "users": [], "contexts": []}
        for cluster in self.profiles():
            src = self.cluster_dir(cluster.name) / "kubeconfig.yaml"
            if not src.exists():
                continue
            data = read_yaml(src)
            merged["clusters"].append({"name": cluster.context, "cluster": data["clusters"][0]["cluster"]})
            merged["users"].append({"name": cluster.context, "user": data["users"][0]["user"]})
            merged["contexts"].append(
                {"name": cluster.context, "context": {"cluster": cluster.context, "user": cluster.context}}
            )
        if merged["contexts"]:
            merged["current-context"] = merged["contexts"][0]["name"]
        tmp = self.kubeconfig.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(merged, sort_keys=False))
        tmp.chmod(0o600)
        os.replace(tmp, self.kubeconfig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clusters", description="The local Düsseldorf and Monaco stand-ins")
    parser.add_argument("action", choices=["up", "down", "status", "reset"])
    parser.add_argument("names", nargs="*", help="cluster names (default: every profile in environments/clusters)")
    args = parser.parse_args(argv)
    try:
        clusters = LocalClusters(layout())
        targets = clusters.profiles(args.names)
        if args.action in ("up",):
            clusters.check_toolchain()
        if args.action == "reset":
            # The link between the sites first, while both node namespaces still hold its ends.
            site_link.for_local_clusters(clusters).remove()
            print("site link: removed", flush=True)
        for cluster in targets:
            if args.action == "up":
                clusters.up(cluster)
            elif args.action == "down":
                clusters.down(cluster)
            elif args.action == "reset":
                clusters.reset(cluster)
            else:
                provisioner = clusters.volume_provisioner(cluster).status()
                issuer = clusters.cert_manager(cluster).status()
                print(
                    f"{cluster.name}\t{clusters.status(cluster)}\tcontext={cluster.context}\tvolumes={provisioner}"
                    f"\tcert-manager={issuer}"
                )
        if args.action == "up":
            # Once every site's node runs: the WAN between the sites (kept through `down`).
            print(site_link.for_local_clusters(clusters).ensure(), flush=True)
            print(f"kubeconfig: {clusters.kubeconfig}")
        elif args.action == "status":
            print(f"site link\t{site_link.for_local_clusters(clusters).status()}")
    except (ClusterError, SettingsError, site_link.NetworkError) as exc:
        print(f"clusters {args.action} failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
