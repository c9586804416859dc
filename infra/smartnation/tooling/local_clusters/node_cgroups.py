"""The cgroups of one real node: /smartnation/<node> in every cgroup hierarchy of the host.

Its daemons (containerd and the shims it starts, kubelet, kube-proxy, socat) join
<node>/system before they run; the kubelet puts its Pods under <node>/kubepods (its
cgroupRoot). So every process the node ever started is found by reading its subtree's
cgroup.procs, `stop` ends them by PID, and `reset` removes the subtree, leaving the host's
hierarchy as it was. The hierarchy itself is never remounted or reconfigured.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

CGROUP_FS = Path("/sys/fs/cgroup")
SYSTEM = "system"


def hierarchies(root: Path = CGROUP_FS) -> list[Path]:
    """Every mounted hierarchy (cpu, memory, pids, name=systemd..., and the hybrid mode's v2
    mount `unified`, where runc and the kubelet also make their groups); on a pure cgroup v2
    host, the unified root alone."""
    if (root / "cgroup.controllers").exists():
        return [root]
    found = []
    for entry in sorted(root.iterdir()):
        if entry.is_symlink() or not entry.is_dir():
            continue  # cpu,cpuacct style links
        if (entry / "cgroup.procs").exists():
            found.append(entry)
    return found


def _prepare_cpuset(directory: Path) -> None:
    """A new v1 cpuset group starts with no CPUs and no memory nodes: copy its parent's."""
    for name in ("cpuset.cpus", "cpuset.mems"):
        own = directory / name
        if own.exists() and not own.read_text().strip():
            own.write_text((directory.parent / name).read_text())


def create(cgroup: str, root: Path = CGROUP_FS) -> list[Path]:
    """Creates <cgroup> and <cgroup>/system in every hierarchy; returns the directories made."""
    made = []
    for hierarchy in hierarchies(root):
        current = hierarchy
        for part in [*cgroup.strip("/").split("/"), SYSTEM]:
            current = current / part
            if not current.exists():
                current.mkdir()
                made.append(current)
            _prepare_cpuset(current)
    return made


def join_system(cgroup: str, pid: int | None = None, root: Path = CGROUP_FS) -> None:
    """Moves a process (default: the caller) into <cgroup>/system in every hierarchy."""
    pid = pid or os.getpid()
    for hierarchy in hierarchies(root):
        (hierarchy / cgroup.strip("/") / SYSTEM / "cgroup.procs").write_text(f"{pid}\n")


def pids(cgroup: str, root: Path = CGROUP_FS) -> set[int]:
    """Every process in the node's subtree, across all hierarchies."""
    found: set[int] = set()
    for hierarchy in hierarchies(root):
        base = hierarchy / cgroup.strip("/")
        if not base.is_dir():
            continue
        # os.walk skips a group removed while it walks (the kubelet removes a Pod's as it goes);
        # Path.rglob raised FileNotFoundError from its directory scan and stopped a reset.
        for folder, _, files in os.walk(base):
            if "cgroup.procs" not in files:
                continue
            try:
                found.update(int(line) for line in Path(folder, "cgroup.procs").read_text().split())
            except OSError:
                continue  # removed while walking
    return found


def remove(cgroup: str, root: Path = CGROUP_FS, timeout: float = 10) -> list[str]:
    """Removes the node's subtree in every hierarchy, deepest first; returns what stayed (a
    group keeps existing while a process is in it, or a moment after its last one exited)."""
    left: list[str] = []
    for hierarchy in hierarchies(root):
        base = hierarchy / cgroup.strip("/")
        if not base.is_dir():
            continue
        found = [Path(folder) for folder, _, _ in os.walk(base)]  # skips groups removed meanwhile
        dirs = sorted(found, key=lambda d: len(d.parts), reverse=True)
        for d in dirs:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        left.append(str(d))
                        break
                    time.sleep(0.1)
    return left


def remove_parent_if_empty(parent: str, root: Path = CGROUP_FS) -> None:
    """Removes /<parent> (smartnation) once no node is left under it."""
    for hierarchy in hierarchies(root):
        d = hierarchy / parent.strip("/")
        if d.is_dir() and not any(p.is_dir() for p in d.iterdir()):
            with contextlib.suppress(OSError):
                d.rmdir()
