"""Starting, finding and stopping a real node's processes by PID.

Each process is started detached, joined to the node's cgroup before it runs, with its output
in the cluster's logs folder; its PID and kernel start time go into the node's state file, so a
PID the kernel has since reused for something else is never taken for ours.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from smartnation.tooling.local_clusters import node_cgroups


@dataclass(frozen=True)
class Running:
    """A started process: its PID and its start time in clock ticks since boot (/proc/PID/stat)."""

    pid: int
    start: int

    def to_json(self) -> dict:
        return {"pid": self.pid, "start": self.start}

    @classmethod
    def from_json(cls, data: dict) -> Running:
        return cls(int(data["pid"]), int(data["start"]))


def start_time(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":
        return None  # exited, waiting to be reaped
    return int(fields[19])


def alive(proc: Running) -> bool:
    return start_time(proc.pid) == proc.start


def start(argv: list[str], log: Path, cgroup: str | None, cwd: Path) -> Running:
    """Starts ``argv`` detached, in ``cgroup`` (a node's; None: the caller's own, for a host
    process such as the volume provisioner), its output appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        out.write(f"\n--- {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {' '.join(argv)}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,  # outlives the command that started it, like a daemon
            close_fds=True,
            preexec_fn=(lambda: node_cgroups.join_system(cgroup)) if cgroup else None,
        )
    for _ in range(50):
        began = start_time(proc.pid)
        if began is not None:
            return Running(proc.pid, began)
        if proc.poll() is not None:
            break
        time.sleep(0.01)
    raise RuntimeError(f"{argv[0]} exited at once (exit code {proc.poll()}); see {log}")


def stop(pids: set[int], timeout: float = 15) -> set[int]:
    """SIGTERM, then SIGKILL after `timeout`; returns the PIDs that still exist afterwards."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            pids = {p for p in pids if start_time(p) is not None}
            if not pids:
                return set()
            time.sleep(0.1)
    return pids
