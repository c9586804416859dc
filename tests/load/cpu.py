"""Where this machine's CPU went during a load run, read from /proc (the local clusters' real
nodes run their Pods as processes of this host; on a remote site this part is left out).

Each process is named by what it is: a Pod of the environment (by the Pod UID in its cgroup path,
so ``staging-broker-1``), another Pod, or the process's own name (kube-apiserver, containerd, the
generator itself)."""

from __future__ import annotations

import os
import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

_POD_UID = re.compile(r"/pod([0-9a-f-]{36})/")
HZ = os.sysconf("SC_CLK_TCK")


def _ticks(pid: str) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime + stime of every thread


def _name(pid: str, pods: Mapping[str, str]) -> str | None:
    try:
        cgroup = Path(f"/proc/{pid}/cgroup").read_text()
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None
    match = _POD_UID.search(cgroup)
    if match:
        return pods.get(match.group(1), "other Pods")
    if pid == str(os.getpid()):
        return "load generator"
    if comm.startswith("python"):
        return _python_name(pid, comm)
    return comm


def _python_name(pid: str, comm: str) -> str:
    """``python -m <module>`` or ``python <script>``: which Python program it is."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return comm
    for i, arg in enumerate(argv[1:], start=1):
        if arg == "-m" and i + 1 < len(argv):
            return f"python -m {argv[i + 1]}"
        if arg == "-c":
            code = argv[i + 1] if i + 1 < len(argv) else ""
            return "python multiprocessing worker" if "multiprocessing" in code else "python -c"
        if not arg.startswith("-"):
            return f"python {Path(arg).name}"
    return comm


def _busy_and_total() -> tuple[int, int]:
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


@dataclass
class CpuWindow:
    """Started before the load, read after it: share of one core per process group."""

    pods: Mapping[str, str]
    """Pod UID -> Pod name, for the environment's Pods."""

    def __post_init__(self) -> None:
        self._names = {pid: name for pid in self._pids() if (name := _name(pid, self.pods))}
        self._start = {pid: _ticks(pid) for pid in self._names}
        self._host = _busy_and_total()
        self._wall = os.times().elapsed

    @staticmethod
    def _pids() -> list[str]:
        return [p.name for p in Path("/proc").iterdir() if p.name.isdigit()]

    def read(self) -> dict[str, object]:
        """{"host_busy_percent": share of all cores busy, "cores": n, "by_process": {name: % of one
        core}} (groups under 1 % left out), largest first."""
        seconds = os.times().elapsed - self._wall
        used: dict[str, int] = defaultdict(int)
        for pid, name in self._names.items():
            used[name] += max(_ticks(pid) - self._start[pid], 0)
        busy, total = _busy_and_total()
        host = 100 * (busy - self._host[0]) / max(total - self._host[1], 1)
        shares = {name: round(100 * t / HZ / seconds, 1) for name, t in used.items() if seconds > 0}
        return {
            "seconds": round(seconds, 1),
            "cores": os.cpu_count(),
            "host_busy_percent": round(host, 1),
            "by_process": dict(sorted(((n, s) for n, s in shares.items() if s >= 1.0), key=lambda kv: -kv[1])),
        }
