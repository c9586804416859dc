"""What a real node's runtime leaves outside its own directories, and how to find it again.

containerd 1.6, the CNI library and the kubelet write a few things to fixed host paths:
- each shim's socket in /run/containerd/s/<sha256(containerd address, namespace, sandbox id)>,
  removed by the shim on a clean exit but left behind when it is killed;
- the CNI result cache in /var/lib/cni/results/<network>-<sandbox id>-<interface>;
- a link per container log in /var/log/containers, pointing into the node's Pod logs;
- mounts (root file systems, shm, the Pods' network namespaces, volumes) under the node's
  directories, which stay when the processes that made them are killed.
All are found from the node's own directories (the sandbox ids are the names of containerd's
per-sandbox folders), so nothing of another node or of the host is touched.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

from smartnation.tooling.local_clusters.node_plan import RealNodePlan

SHIM_SOCKETS = Path("/run/containerd/s")
CNI_RESULTS = Path("/var/lib/cni/results")
CONTAINER_LOG_LINKS = Path("/var/log/containers")


def sandbox_ids(plan: RealNodePlan) -> set[str]:
    cri = plan.node_dir / "containerd" / "io.containerd.grpc.v1.cri"
    found: set[str] = set()
    for kind in ("sandboxes", "containers"):
        if (cri / kind).is_dir():
            found.update(p.name for p in (cri / kind).iterdir())
    return found


def shim_socket(plan: RealNodePlan, sandbox_id: str, namespace: str = "k8s.io") -> Path:
    """Where containerd 1.6 puts a shim's socket (runtime/v2/shim SocketAddress)."""
    digest = hashlib.sha256(os.path.join(str(plan.containerd_socket), namespace, sandbox_id).encode()).hexdigest()
    return SHIM_SOCKETS / digest


def remove_shim_sockets(plan: RealNodePlan) -> int:
    removed = 0
    for sandbox in sandbox_ids(plan):
        sock = shim_socket(plan, sandbox)
        if sock.exists():
            sock.unlink()
            removed += 1
    return removed


def remove_cni_results(plan: RealNodePlan, results: Path = CNI_RESULTS) -> int:
    if not results.is_dir():
        return 0
    ids = sandbox_ids(plan)
    removed = 0
    for entry in results.iterdir():
        if any(f"-{i}-" in entry.name for i in ids):
            entry.unlink()
            removed += 1
    return removed


def remove_container_log_links(plan: RealNodePlan, links: Path = CONTAINER_LOG_LINKS) -> int:
    if not links.is_dir():
        return 0
    removed = 0
    for link in links.iterdir():
        if link.is_symlink() and os.readlink(link).startswith(str(plan.node_dir) + "/"):
            link.unlink()
            removed += 1
    return removed


def mounts_under(*roots: Path, mountinfo: Path = Path("/proc/self/mountinfo")) -> list[str]:
    """Mount points at or below the given directories, deepest first."""
    prefixes = [str(r.resolve()) if r.exists() else str(r) for r in roots]
    found = set()
    for line in mountinfo.read_text().splitlines():
        # Field 5 is the mount point, with space, tab, newline and backslash written in octal.
        point = line.split()[4].encode().decode("unicode_escape")
        if any(point == p or point.startswith(p + "/") for p in prefixes):
            found.add(point)
    return sorted(found, key=lambda p: p.count("/"), reverse=True)


def unmount_under(*roots: Path) -> None:
    for _ in range(3):  # stacked mounts come off one layer per pass
        points = mounts_under(*roots)
        if not points:
            return
        for point in points:
            subprocess.run(["umount", "-l", point], capture_output=True)
