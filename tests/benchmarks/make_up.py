"""Cold `make up`: a fresh clone on a fresh machine, to staging running for real and verified.

Only a fresh machine can measure it: the local clusters use host-wide names (network namespaces,
veths, ports), so a second, empty cache beside a running one cannot start its own clusters.
`python -m tests.benchmarks.run --cold-make-up` therefore refuses when the cache folder already
holds anything, then runs `make up` itself: each line of its output is printed with the seconds
since the start, and kept as make printed it in the cache's logs/cold-make-up.log (the form
`--cold-make-up-log` reads). `--cold-make-up-log LOG --started EPOCH --ended EPOCH` records a run that was timed
outside (a plain `make up` under `/usr/bin/time` on a new machine) from its log.

Either way the figures come from what the run left: the total wall time, each tool's build time
(the toolchain's build-times.json), each image's (the image cache's), the bootstrap's own total
(its last progress stamp), whether staging was verified, and the cache's size by folder after
`make cache-trim`. Goal (issue 8): under 40 minutes, the cache under 6 GB.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

from smartnation.tooling.toolchain.cache import layout

REPO = Path(__file__).resolve().parents[2]
GOAL_MINUTES = 40
# The bootstrap prints `[  1185s] [11/11] cert-manager 1.21.2: ...`: seconds since it started.
_BOOTSTRAP_STAMP = re.compile(r"^\[\s*(\d+)s\] \[\d+/\d+\] ")
# `smartnation verify ENV` ends with `verify staging: 11/11 passed in 44.6s` (and says which failed).
_VERIFIED = re.compile(r"^verify \S+: (\d+)/(\d+) passed", re.MULTILINE)


class NotCold(Exception):
    """The cache already holds something: this run would not measure a cold `make up`."""


def cache_folders(root: Path) -> dict[str, int]:
    """Bytes on disk per top-level folder of the cache (du, so sparse and hard-linked files count once)."""
    sizes = {}
    for entry in sorted(root.iterdir()) if root.is_dir() else []:
        out = subprocess.run(["du", "-s", "-B1", str(entry)], capture_output=True, text=True, check=False).stdout
        sizes[entry.name] = int(out.split()[0]) if out.strip() else 0
    return sizes


def read_run(log: str, total_s: float, started: float, root: Path) -> dict:
    """The figures of one finished `make up` from its log and what it left in the cache at ``root``."""
    stamps = [int(m.group(1)) for line in log.splitlines() if (m := _BOOTSTRAP_STAMP.match(line))]
    tools_file = root / "logs" / "build-times.json"
    tools = json.loads(tools_file.read_text())["tools"] if tools_file.is_file() else {}
    images_file = root / "images" / "logs" / "build-times.json"
    images = json.loads(images_file.read_text()) if images_file.is_file() else {}
    verified = _VERIFIED.findall(log)
    sizes = cache_folders(root)
    return {
        "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
        "total_s": round(total_s, 1),
        "bootstrap_s": max(stamps) if stamps else None,
        "tools": {name: t["seconds"] for name, t in sorted(tools.items())},
        "images": {name: t["seconds"] for name, t in sorted(images.items())},
        "verified": f"{verified[-1][0]}/{verified[-1][1]}" if verified else None,
        "cache_bytes": sizes,
        "cache_total_bytes": sum(sizes.values()),
    }


def run_cold(root: Path | None = None) -> dict:
    """Run `make up` from an empty cache (its output shown with the seconds since the start, kept in
    the cache's logs as printed) and read it."""
    root = root or layout().root
    if root.exists() and any(root.iterdir()):
        raise NotCold(
            f"{root} is not empty: a cold `make up` needs a fresh machine (or `make clusters-reset` and the "
            "cache folder removed); nothing was run"
        )
    began = time.time()
    lines = []
    with subprocess.Popen(
        ["make", "up"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            sys.stdout.write(f"{time.time() - began:8.1f} {line}")
    ended = time.time()
    log = "".join(lines)
    log_path = root / "logs" / "cold-make-up.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_text(log)
    if proc.returncode != 0:
        raise SystemExit(f"`make up` failed (exit {proc.returncode}); its output: {log_path}")
    return read_run(log, ended - began, began, root)


def render_cold_make_up(figures: dict | None) -> list[str]:
    """BENCHMARKS.md's lines for the last cold `make up`."""
    if not figures:
        return [
            "No cold `make up` recorded yet: `python -m tests.benchmarks.run --cold-make-up` on a fresh machine.",
            "",
        ]
    minutes = figures["total_s"] / 60
    gib = figures["cache_total_bytes"] / 2**30
    lines = [
        f"Cold `make up` on a fresh machine ({figures['started']}): **{minutes:.1f} min** from a fresh clone "
        f"to staging deployed and verified ({figures['verified'] or 'verify not seen'}) "
        f"(goal under {GOAL_MINUTES} min: {'met' if minutes < GOAL_MINUTES else 'missed'}); "
        f"the toolchain's bootstrap {figures['bootstrap_s'] / 60:.1f} min of it; "
        f"cache afterwards {gib:.1f} GiB (goal under 6 GB): "
        + ", ".join(f"{name} {size / 2**30:.2f}" for name, size in figures["cache_bytes"].items())
        + " GiB.",
        "",
        "| built | wall time (s; a tool's includes waiting for the one compile slot) |",
        "| --- | ---: |",
        *[f"| tool {name} | {seconds:.0f} |" for name, seconds in figures["tools"].items()],
        *[f"| image {name} | {seconds:.0f} |" for name, seconds in figures["images"].items()],
        "",
    ]
    return lines
