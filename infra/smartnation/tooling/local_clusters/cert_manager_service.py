"""Starting, stopping and removing a cluster's cert-manager controller (cert_manager.py).

One host process per local cluster, recorded by PID and start time like the volume provisioner
and the real nodes' processes (node_processes.py), its log in the cluster's logs folder. `make
clusters` starts it (again, if it died or its command line changed), `make clusters-down` stops it
(the CA stays), `make clusters-reset` removes it with the CA.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from smartnation.tooling.local_clusters import node_processes
from smartnation.tooling.local_clusters.cert_manager import (
    CertificateAuthority,
    ca_subject,
    controller_argv,
    crd_documents,
    issuer_documents,
)
from smartnation.tooling.local_clusters.simulation import ClusterError, LocalCluster
from smartnation.tooling.toolchain.cache import CacheLayout
from smartnation.tooling.toolchain.versions import load_pins

BINARY = "cert-manager-controller"


class CertManagerService:
    """The cert-manager controller and CA of one cluster."""

    def __init__(self, cache: CacheLayout, cluster: LocalCluster, admin_kubeconfig: Path) -> None:
        self.cluster = cluster
        self.admin_kubeconfig = admin_kubeconfig
        tool_dir = cache.tool_dir("cert-manager", load_pins()["cert-manager"].version)
        self.binary = tool_dir / "bin" / BINARY
        self.crd_dir = tool_dir / "crds"
        # The cluster's folder (beside its real nodes and volumes): reset removes it whole.
        self.base = cache.clusters / "real-nodes" / cluster.name
        self.ca = CertificateAuthority(self.base / "cert-manager", ca_subject(cluster))
        self.state_file = self.base / "cert-manager-controller.json"
        self.log_file = self.base / "logs" / "cert-manager-controller.log"

    def crds(self) -> list[dict]:
        return crd_documents(self.crd_dir)

    def issuer(self) -> tuple[list[dict], bool]:
        """The issuer's manifests, with the CA made on the first call; the flag says it was new."""
        cert, key, made = self.ca.ensure()
        return issuer_documents(self.cluster, cert, key), made

    def argv(self) -> list[str]:
        return controller_argv(self.binary, self.admin_kubeconfig)

    def _recorded(self) -> dict | None:
        if not self.state_file.exists():
            return None
        return json.loads(self.state_file.read_text())

    def running(self) -> node_processes.Running | None:
        state = self._recorded()
        if state is None:
            return None
        known = node_processes.Running.from_json(state)
        return known if node_processes.alive(known) else None

    def up(self) -> str:
        """Starts the controller unless it runs with the current command line; says what it did."""
        if not self.binary.exists():
            raise ClusterError(f"{self.binary} is missing: run `make bootstrap`")
        argv = self.argv()
        current = self.running()
        changed = (self._recorded() or {}).get("argv") != argv
        if current and not changed:
            return f"cert-manager controller running (pid {current.pid})"
        if current:
            node_processes.stop({current.pid})
        started = node_processes.start(argv, self.log_file, None, self.base)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({**started.to_json(), "argv": argv}))
        os.replace(tmp, self.state_file)
        what = "restarted with a new command line" if current else "started"
        return f"cert-manager controller {what} (pid {started.pid}, log {self.log_file})"

    def down(self) -> str:
        current = self.running()
        self.state_file.unlink(missing_ok=True)
        if current is None:
            return "cert-manager controller not running"
        left = node_processes.stop({current.pid})
        return "cert-manager controller stopped" + (f" (pid {current.pid} still alive)" if left else "")

    def reset(self) -> None:
        """Stops it and removes its files and the CA (the cluster's certificates go with it)."""
        self.down()
        shutil.rmtree(self.ca.directory, ignore_errors=True)
        self.log_file.unlink(missing_ok=True)

    def status(self) -> str:
        current = self.running()
        return f"running (pid {current.pid})" if current else "stopped"
