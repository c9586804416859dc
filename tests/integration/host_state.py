"""What of the host names a scratch cluster: the tests of `make clusters-reset` compare it before,
during and after a scratch cluster's life."""

from __future__ import annotations

import subprocess
from pathlib import Path


def host_state(markers: list[str]) -> dict[str, list[str]]:
    """Every line of the host's state that names one of ``markers``, by where it was read."""

    def lines(*argv: str) -> list[str]:
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.splitlines()

    sources = {
        "netns": lines("ip", "netns", "list"),
        "links": lines("ip", "-o", "link", "show"),
        "routes": lines("ip", "-4", "route", "show", "table", "all"),
        "iptables": lines("iptables-save"),
        "mounts": Path("/proc/self/mountinfo").read_text().splitlines(),
        "cgroups": [str(p) for p in Path("/sys/fs/cgroup").glob("*/smartnation/*")],
        "processes": [
            p.joinpath("cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            for p in Path("/proc").iterdir()
            if p.name.isdigit() and p.joinpath("cmdline").exists()
        ],
    }
    return {where: sorted(x for x in found if any(m in x for m in markers)) for where, found in sources.items()}
