"""Starting, stopping and removing a cluster's volume provisioner (volume_provisioner.py).

One host process per local cluster, recorded by PID and start time like the real nodes'
processes (node_processes.py), its log in the cluster's logs folder. `make clusters` starts it
(again, if it died or its configuration changed), `make clusters-down` stops it (the volumes'
directories stay), `make clusters-reset` removes it with every volume directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

from smartnation.settings.yaml_files import read_yaml
from smartnation.tooling.local_clusters import local_volumes, node_processes, volume_provisioner
from smartnation.tooling.local_clusters.local_volumes import ClassPolicy, ProvisionerConfig
from smartnation.tooling.local_clusters.simulation import ClusterError, LocalCluster
from smartnation.tooling.toolchain.cache import CacheLayout

MODULE = "smartnation.tooling.local_clusters.volume_provisioner"


def fingerprint(config: str) -> str:
    """The configuration and the provisioner's own code: either changing means a restart, so
    `make clusters` after an update never leaves the old provisioner running."""
    digest = hashlib.sha256(config.encode())
    for module in (local_volumes, volume_provisioner):
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()


def provisioner_config(cluster: LocalCluster, admin_kubeconfig: Path, volumes_dir: Path) -> ProvisionerConfig:
    """The provisioner's configuration: the profile's classes and the cluster's admin credentials
    (kwokctl's kubeconfig names its certificate files)."""
    kubeconfig = read_yaml(admin_kubeconfig)
    try:
        server = kubeconfig["clusters"][0]["cluster"]
        user = kubeconfig["users"][0]["user"]
        files = (server["certificate-authority"], user["client-certificate"], user["client-key"])
    except (KeyError, IndexError, TypeError) as exc:
        raise ClusterError(
            f"{admin_kubeconfig}: expected kwokctl's kubeconfig with certificate-authority, client-certificate "
            f"and client-key files (missing {exc})"
        ) from None
    pool = cluster.simulation.volume_pool
    return ProvisionerConfig(
        cluster=cluster.name,
        server=server["server"],
        ca_file=files[0],
        cert_file=files[1],
        key_file=files[2],
        volumes_dir=str(volumes_dir),
        classes=tuple(
            ClassPolicy(sc.name, sc.provisioner, sc.binding_mode, sc.reclaim_policy)
            for sc in cluster.profile.storage.classes
        ),
        static_size=pool.size,
        static_count=pool.count,
    )


class VolumeProvisionerService:
    """The volume provisioner process of one cluster."""

    def __init__(self, cache: CacheLayout, cluster: LocalCluster, admin_kubeconfig: Path) -> None:
        self.cluster = cluster
        self.admin_kubeconfig = admin_kubeconfig
        # The real nodes' folder of the cluster: the volumes sit beside the nodes that mount them,
        # and its logs folder is the cluster's.
        self.base = cache.clusters / "real-nodes" / cluster.name
        self.volumes_dir = self.base / "volumes"
        self.config_file = self.base / "volume-provisioner.config.json"
        self.state_file = self.base / "volume-provisioner.json"
        self.log_file = self.base / "logs" / "volume-provisioner.log"

    def recorded(self) -> dict:
        return json.loads(self.state_file.read_text()) if self.state_file.exists() else {}

    def running(self) -> node_processes.Running | None:
        state = self.recorded()
        if not state:
            return None
        known = node_processes.Running.from_json(state)
        return known if node_processes.alive(known) else None

    def up(self) -> str:
        """Starts the provisioner unless it runs with the current configuration; says what it did."""
        config = provisioner_config(self.cluster, self.admin_kubeconfig, self.volumes_dir).to_json()
        self.volumes_dir.mkdir(parents=True, exist_ok=True)
        changed = self.recorded().get("fingerprint") != fingerprint(config)
        current = self.running()
        if current and not changed:
            return f"volume provisioner running (pid {current.pid})"
        if current:
            node_processes.stop({current.pid})
        tmp = self.config_file.with_suffix(".tmp")
        tmp.write_text(config)
        os.replace(tmp, self.config_file)
        started = node_processes.start(
            [sys.executable, "-m", MODULE, str(self.config_file)], self.log_file, None, self.base
        )
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({**started.to_json(), "fingerprint": fingerprint(config)}))
        os.replace(tmp, self.state_file)
        what = "restarted (its configuration or code changed)" if current else "started"
        return f"volume provisioner {what} (pid {started.pid}, log {self.log_file})"

    def down(self) -> str:
        current = self.running()
        self.state_file.unlink(missing_ok=True)
        if current is None:
            return "volume provisioner not running"
        left = node_processes.stop({current.pid})
        return "volume provisioner stopped" + (f" (pid {current.pid} still alive)" if left else "")

    def reset(self) -> None:
        """Stops it and removes its files and every volume directory (the cluster's data goes)."""
        self.down()
        shutil.rmtree(self.volumes_dir, ignore_errors=True)
        for path in (self.config_file, self.state_file, self.log_file):
            path.unlink(missing_ok=True)

    def status(self) -> str:
        current = self.running()
        return f"running (pid {current.pid})" if current else "stopped"
