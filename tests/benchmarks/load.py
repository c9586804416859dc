"""The load section of the benchmarks (`run.py --only-load`): the bounded load generator
(tests/load) against a deployed environment, at a few rates, and its BENCHMARKS.md lines.

It uses the environment as it is (by default the staging `make up` deployed on dusseldorf-test's
real node): it publishes readings of `load-<time>-*` devices through the broker's load balancer
and reads them back, nothing else. Each step runs in its own process, so one step's threads and
connections never overlap the next.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GOAL_RATE = 2000
GOAL_P99_MS = 1000
STEPS: tuple[tuple[float, float], ...] = ((1000, 30), (2000, 30), (3000, 30))
"""(readings/s, seconds): below, at and above issue 9's goal of 2,000 readings/s."""
DEVICES = 200
CONNECTIONS = 4
"""Fewer connections cost the generator less CPU (each is a paho network thread) on two cores."""


def bench_load(env: Mapping[str, str], environment: str = "staging", steps: Sequence[tuple[float, float]] = STEPS):
    runs = []
    for rate, seconds in steps:
        load_before = os.getloadavg()[0]
        proc = subprocess.run(
            [sys.executable, "-m", "tests.load", environment, "--rate", str(rate), "--duration", str(seconds),
             "--devices", str(DEVICES), "--connections", str(CONNECTIONS)],
            cwd=REPO, env=dict(env), capture_output=True, text=True, timeout=seconds + 300,
        )  # fmt: skip
        if proc.returncode not in (0, 1):
            raise SystemExit(f"load run at {rate}/s failed:\n{proc.stderr[-3000:]}")
        report = json.loads(proc.stdout)
        report["load_average_before"] = round(load_before, 1)
        runs.append(report)
        print(proc.stderr, file=sys.stderr, end="")
    return {
        "environment": environment,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "devices": DEVICES,
        "connections": CONNECTIONS,
        "runs": runs,
    }


def _role_figure(values: Mapping[str, float], role: str) -> str:
    value = values.get(role)
    return "-" if value is None else f"{value:.0f}"


def _top(cpu: Mapping[str, object], count: int = 6) -> str:
    shares = cpu.get("by_process") or {}
    assert isinstance(shares, Mapping)
    return ", ".join(f"{name} {share:.0f} %" for name, share in list(shares.items())[:count])


def render_load(load: Mapping | None) -> list[str]:
    if not load:
        return ["## Load", "", "Not measured yet: `python -m tests.benchmarks.run --only-load`.", ""]
    lines = [
        f"## Load: readings from devices to the hypertable ({load['date']}, `{load['environment']}`)",
        "",
        f"`python -m tests.benchmarks.run --only-load`: {load['devices']} simulated devices on "
        f"{load['connections']} MQTT connections publish at QoS 1 over TLS through the broker's load balancer "
        "(as `smartnation verify` connects), 30 s a step; figures read back from the telemetry database as "
        "open-data-api's role. Latency is from the device's publish to the reading being visible (sampled "
        "every 10th reading, polled every 50 ms through a port-forward): on the primary, and on the read "
        "replica open-data-api reads. Goal (issue 9): "
        f"{GOAL_RATE:,} readings/s sustained with p99 under {GOAL_P99_MS / 1000:g} s.",
        "",
        "| offered (readings/s) | stored, steady (readings/s) | lost | PUBACK p50 / p99 (ms) | visible on primary "
        "p50 / p99 (ms) | visible on replica p50 / p99 (ms) | host busy | load avg before |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for run in load["runs"]:
        p50, p99 = run["visible_p50_ms"], run["visible_p99_ms"]
        lines.append(
            f"| {run['rate_per_s']:,.0f} | {run['stored_per_s']:,.0f} | {run['missing']} | "
            f"{run['puback_p50_ms']:.0f} / {run['puback_p99_ms']:.0f} | "
            f"{_role_figure(p50, 'primary')} / {_role_figure(p99, 'primary')} | "
            f"{_role_figure(p50, 'replica')} / {_role_figure(p99, 'replica')} | "
            f"{run['cpu']['host_busy_percent']:.0f} % of {run['cpu']['cores']} cores | "
            f"{run['load_average_before']} |"
        )
    lines += ["", "Largest CPU users during each step (share of one core):", ""]
    lines += [f"- {run['rate_per_s']:,.0f}/s: {_top(run['cpu'])}" for run in load["runs"]]
    lines.append("")
    return lines
