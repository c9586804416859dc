"""The load section of the benchmarks (`run.py --only-load`): the bounded load generator
(tests/load) against staging, at a few rates, and its BENCHMARKS.md lines.

By default it deploys its own staging (the staging sizing) on monaco-onprem's real node in a
private project (namespace smartnation-load-staging), measures it with telemetry-ingest writing
one batch at a time (INGEST_WRITERS=1, through the API's extra_env) and pipelined (the default,
2), and destroys it. `--load-environment ENV` measures an environment already deployed instead,
as it is (it publishes readings of `load-<time>-*` devices and reads them back, nothing else).
Each step runs in its own process, so one step's threads and connections never overlap the next.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
GOAL_RATE = 2000
GOAL_P99_MS = 1000
STEPS: tuple[tuple[float, float], ...] = ((1000, 30), (2000, 30), (3000, 30))
"""(readings/s, seconds): below, at and above issue 9's goal of 2,000 readings/s."""
DEVICES = 50
"""Each its own TLS connection (a paho network thread in the generator) and identity."""
THREADS = 4
"""Publishing threads: few cost the generator less CPU on two cores."""


OWN_PROJECT = "smartnation-load"
"""The private project of the benchmark's own staging: namespace smartnation-load-staging."""
OWN_CLUSTER = "monaco-onprem"
WRITER_VARIANTS = (1, 2)


def bench_load(env: Mapping[str, str], workdir: Path, environment: str | None = None) -> dict:
    """Load figures: against ``environment`` as deployed, or (None) against an own staging."""
    if environment is not None:
        series = [{"label": f"{environment} as deployed", "runs": load_steps(env, environment)}]
        where = f"`{environment}` as deployed (read-only use)"
    else:
        series = []
        with own_staging(env, workdir) as project:
            for writers in WRITER_VARIANTS:
                project.set_writers(writers)
                series.append({"label": f"INGEST_WRITERS={writers}", "runs": load_steps(project.env, "staging")})
        where = f"its own staging on {OWN_CLUSTER}'s real node (namespace {OWN_PROJECT}-staging)"
    return {
        "where": where,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "devices": DEVICES,
        "threads": THREADS,
        "series": series,
    }


class _OwnStaging:
    """staging deployed from this checkout in a private project and state backend."""

    def __init__(self, env: Mapping[str, str], root: Path) -> None:
        from tests.integration.conftest import Tools
        from tests.integration.platform_project import PlatformProject

        state = root / "state"
        state.mkdir(parents=True)
        backend = {"PULUMI_BACKEND_URL": f"file://{state}", "PULUMI_CONFIG_PASSPHRASE": "load-benchmark"}
        self.project = PlatformProject.create(root / "project", Tools(env=dict(env)), backend, name=OWN_PROJECT)
        self.project.set_cluster("staging", OWN_CLUSTER)
        self.project.init_stack("staging")
        self.env = {**env, **self.project.env, "SMARTNATION_PROJECT_DIR": str(self.project.root)}

    def set_writers(self, writers: int) -> None:
        """telemetry-ingest's INGEST_WRITERS through its extra_env, then `pulumi up` (which waits for
        the rollout)."""
        path = self.project.root / "environments" / "staging.yaml"
        data = yaml.safe_load(path.read_text())
        ingest = data.setdefault("city_apis", {}).setdefault("telemetry_ingest", {})
        ingest.setdefault("extra_env", {})["INGEST_WRITERS"] = str(writers)
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        self.project.pulumi("up", "--yes", "--skip-preview", "--stack", "staging", timeout=1200)


@contextmanager
def own_staging(env: Mapping[str, str], workdir: Path) -> Iterator[_OwnStaging]:
    staging = _OwnStaging(env, workdir / "load-staging")
    try:
        yield staging
    finally:
        # Checked (a second try, then the namespace must be gone): a failed destroy is reported,
        # not left on Monaco's real node for the next run to trip over.
        staging.project.destroy("staging")


def load_steps(env: Mapping[str, str], environment: str, steps: Sequence[tuple[float, float]] = STEPS) -> list:
    runs = []
    for rate, seconds in steps:
        load_before = os.getloadavg()[0]
        proc = subprocess.run(
            [sys.executable, "-m", "tests.load", environment, "--rate", str(rate), "--duration", str(seconds),
             "--devices", str(DEVICES), "--threads", str(THREADS)],
            cwd=REPO, env=dict(env), capture_output=True, text=True, timeout=seconds + 300,
        )  # fmt: skip
        # 1 with a report: readings were lost (the report says how many); without one: a crash.
        if proc.returncode not in (0, 1) or not proc.stdout.strip():
            raise SystemExit(f"load run at {rate}/s failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        report = json.loads(proc.stdout)
        report["load_average_before"] = round(load_before, 1)
        runs.append(report)
        print(proc.stderr, file=sys.stderr, end="")
    return runs


def _role_figure(values: Mapping[str, float], role: str) -> str:
    value = values.get(role)
    return "-" if value is None else f"{value:.0f}"


def _short(name: str) -> str:
    """A process group's name for the table (Python workers of other runs were named by their code)."""
    if name.startswith("python from multiprocessing"):
        return "python multiprocessing worker"
    return name


def _top(cpu: Mapping[str, object], count: int = 6) -> str:
    shares = cpu.get("by_process") or {}
    assert isinstance(shares, Mapping)
    largest = sorted(shares.items(), key=lambda kv: -kv[1])[:count]  # the JSON keeps keys sorted by name
    return ", ".join(f"{_short(name)} {share:.0f} %" for name, share in largest)


def _span(values: Sequence[float], unit: str = "") -> str:
    low, high = min(values), max(values)
    return f"{low:.0f}{unit}" if round(low) == round(high) else f"{low:.0f}-{high:.0f}{unit}"


def _bounds(runs: Sequence[Mapping]) -> str:
    """What the figures were bounded by, from the runs' own CPU readings."""
    shares = [r["cpu"]["by_process"] for r in runs]
    busy = [r["cpu"]["host_busy_percent"] for r in runs]
    loads = [r["load_average_before"] for r in runs]
    generator = [s.get("load generator", 0.0) for s in shares]
    ingest = [v for s in shares for name, v in s.items() if "telemetry-ingest" in name] or [0.0]
    pods = [(v, name) for s in shares for name, v in s.items() if name.startswith("staging-")] or [(0.0, "none")]
    late = sum(_not_stored(r) for r in runs)
    return (
        f"What bounds these figures: the host's {runs[0]['cpu']['cores']} cores were {_span(busy, ' %')} busy "
        f"in the steps, with a load average of {min(loads):g}-{max(loads):g} before each (other sessions' "
        "tests ran beside); the generator itself (Python, TLS, one network thread a device) took "
        f"{_span(generator, ' %')} of a core, each telemetry-ingest replica {_span(ingest, ' %')}, and no Pod "
        f"of the environment more than {max(pods)[0]:.0f} % ({max(pods)[1]}). Acknowledged readings not stored "
        f"within 120 s of the last publish, all steps: {late} (whether they came later was not checked)."
    )


def _not_stored(run: Mapping) -> int:
    """Readings the broker acknowledged that the hypertable did not hold when the drain ended."""
    return max(run["acked"] - run["stored"], 0)


def _runs(load: Mapping) -> list[tuple[str, Mapping]]:
    return [(series["label"], run) for series in load["series"] for run in series["runs"]]


def _summary(label: str, run: Mapping) -> str:
    p99 = run["visible_p99_ms"].get("replica", run["visible_p99_ms"].get("primary"))
    return (
        f"{label} at {run['rate_per_s']:,.0f}/s stored {run['stored_per_s']:,.0f}/s, {_not_stored(run)} not stored "
        f"within 120 s, visible p99 {p99:,.0f} ms (load average {run['load_average_before']})"
    )


def render_load(load: Mapping | None) -> list[str]:
    if not load:
        return ["## Load", "", "Not measured yet: `python -m tests.benchmarks.run --only-load`.", ""]
    lines = [
        f"## Load: readings from devices to the hypertable ({load['date']})",
        "",
        f"`python -m tests.benchmarks.run --only-load`, against {load['where']}: "
        f"{load['devices']} simulated devices, each its own MQTT connection and identity (as "
        "`smartnation verify` connects), publish at QoS 1 over TLS through the broker's load balancer, "
        "30 s a step; figures read back from the telemetry database "
        "(as its superuser, through a port-forward: the one role admitted on the Pod's loopback). "
        "Latency is from the device's publish to the reading being visible (sampled "
        "every 10th reading, polled every 50 ms through a port-forward): on the primary, and on the read "
        "replica open-data-api reads. Goal (issue 9): "
        f"{GOAL_RATE:,} readings/s sustained with p99 under {GOAL_P99_MS / 1000:g} s.",
        "",
        "| offered (readings/s) | stored, steady (readings/s) | not stored within 120 s | PUBACK p50 / p99 (ms) "
        "| visible on primary p50 / p99 (ms) | visible on replica p50 / p99 (ms) | host busy | load avg before |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    runs = _runs(load)
    for label, run in runs:
        p50, p99 = run["visible_p50_ms"], run["visible_p99_ms"]
        lines.append(
            f"| {label}: {run['rate_per_s']:,.0f} | {run['stored_per_s']:,.0f} | {_not_stored(run)} | "
            f"{run['puback_p50_ms']:.0f} / {run['puback_p99_ms']:.0f} | "
            f"{_role_figure(p50, 'primary')} / {_role_figure(p99, 'primary')} | "
            f"{_role_figure(p50, 'replica')} / {_role_figure(p99, 'replica')} | "
            f"{run['cpu']['host_busy_percent']:.0f} % of {run['cpu']['cores']} cores | "
            f"{run['load_average_before']} |"
        )
    lines += ["", "Largest CPU users during each step (share of one core):", ""]
    lines += [f"- {label}, {run['rate_per_s']:,.0f}/s: {_top(run['cpu'])}" for label, run in runs]
    lines += ["", _bounds([run for _label, run in runs]), ""]
    for earlier in load.get("earlier", []):
        lines += [
            f"An earlier run ({earlier['date']}): " + "; ".join(_summary(label, run) for label, run in _runs(earlier)),
            "",
        ]
    return lines
