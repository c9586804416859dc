"""What the host looked like before the first real node started, so `reset` can put it back.

Recorded once, when no real node exists yet; restored and deleted when the last one is reset:
- the kernel settings the kubelet changes on start (it sets vm.overcommit_memory,
  kernel.panic and kernel.panic_on_oops to its own values when they differ);
- whether /run/netns was a mount point (`ip netns add` bind-mounts it on first use) and which
  host directories existed that the nodes' tools create when missing.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

KUBELET_SYSCTLS = (
    "vm/overcommit_memory",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)
HOST_PATHS = ("/run/netns", "/run/containerd", "/var/lib/cni", "/var/log/containers", "/run/xtables.lock")


def is_mount_point(path: str, mountinfo: Path = Path("/proc/self/mountinfo")) -> bool:
    """From the mount table: os.path.ismount misses a bind mount of a directory onto itself on
    the same file system, which is what `ip netns add` makes of /run/netns."""
    return any(line.split()[4] == path for line in mountinfo.read_text().splitlines())


def record(file: Path) -> dict:
    if file.exists():
        return json.loads(file.read_text())
    data = {
        "sysctls": {k: Path("/proc/sys", k).read_text().strip() for k in KUBELET_SYSCTLS},
        "run_netns_mounted": is_mount_point("/run/netns"),
        "existed": {p: os.path.lexists(p) for p in HOST_PATHS},
    }
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(json.dumps(data, indent=2))
    return data


def restore(file: Path) -> list[str]:
    """Puts back what was recorded; returns what it did, for the reset's report."""
    if not file.exists():
        return []
    data = json.loads(file.read_text())
    done = []
    for key, value in data["sysctls"].items():
        path = Path("/proc/sys", key)
        if path.read_text().strip() != value:
            path.write_text(value)
            done.append(f"{key.replace('/', '.')}={value}")
    netns = Path("/run/netns")
    if not data["run_netns_mounted"] and is_mount_point(str(netns)) and not any(netns.iterdir()):
        subprocess.run(["umount", str(netns)], check=False)
        done.append("unmounted /run/netns")
    for path, existed in data["existed"].items():
        p = Path(path)
        if existed or not os.path.lexists(p):
            continue
        if p.is_dir() and not p.is_symlink():
            if _remove_empty_tree(p):
                done.append(f"removed {p}")
        else:
            p.unlink()
            done.append(f"removed {p}")
    file.unlink()
    return done


def _remove_empty_tree(top: Path) -> bool:
    """Removes top and its subfolders if no file is left in them (a file means someone else's)."""
    for d in sorted((d for d in [top, *top.rglob("*")] if d.is_dir()), key=lambda d: len(d.parts), reverse=True):
        try:
            d.rmdir()
        except OSError:
            return False
    return True
