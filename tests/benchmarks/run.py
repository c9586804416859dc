"""`make bench`: measures the toolchain, the clusters and the platform, and rewrites BENCHMARKS.md.

`--cold` also builds the whole toolchain into an empty cache (about half an hour on two cores);
without it the last cold measurement in BENCHMARKS.json is kept.

Numbers come from real runs on this machine; nothing here is asserted (speed targets are read
from BENCHMARKS.md, never enforced by timed tests). Runs with a private state backend so it
never touches the developer's stacks.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from smartnation.settings import load_settings
from smartnation.settings.stack_secrets import CONFIG_NAMESPACE, generate_missing
from smartnation.tooling.local_clusters.lifecycle import LocalClusters
from smartnation.tooling.toolchain.cache import layout
from smartnation.tooling.toolchain.env import exports
from tests.benchmarks.load import bench_load, render_load
from tests.benchmarks.make_up import NotCold, read_run, render_cold_make_up, run_cold
from tests.benchmarks.move import bench_move, render_move
from tests.benchmarks.mutation_figures import read_mutation, render_mutation

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "BENCHMARKS.json"
BENCH_PROJECT = "smartnation-bench"
NAMESPACE = f"{BENCH_PROJECT}-production"
DEMO = REPO / "tests" / "integration" / "demo_program"


def timed(fn: Callable[[], object]) -> float:
    began = time.monotonic()
    fn()
    return time.monotonic() - began


def run(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, input: str | None = None) -> str:
    proc = subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True, input=input)
    if proc.returncode != 0:
        raise SystemExit(f"`{' '.join(args)}` failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout


def du(path: Path) -> str:
    return run("du", "-sh", str(path)).split()[0] if path.exists() else "0"


def bench_toolchain(env: dict[str, str]) -> dict:
    cache = layout()
    warm = timed(
        lambda: run(
            sys.executable, "-m", "smartnation.tooling.toolchain.bootstrap", "--python", sys.executable, env=env
        )
    )
    times_file = cache.logs / "build-times.json"
    builds = json.loads(times_file.read_text())["tools"] if times_file.exists() else {}
    return {
        "warm_bootstrap_s": round(warm, 1),
        "builds": builds,
        "disk": {name: du(cache.root / name) for name in ("tools", "go", "pulumi-home", "clusters", "work")},
        "disk_total": du(cache.root),
    }


def bench_cold_bootstrap(env: dict[str, str], root: Path) -> dict:
    """The whole toolchain from nothing: an empty cache, so empty Go module and build caches too."""
    # Without the warm toolchain on PATH, or bootstrap would rightly take those binaries.
    warm_bin = str(layout().bin)
    path = os.pathsep.join(d for d in env["PATH"].split(os.pathsep) if d != warm_bin)
    cold_env = {**env, "SMARTNATION_CACHE": str(root), "PATH": path}
    total = timed(
        lambda: run(
            sys.executable, "-m", "smartnation.tooling.toolchain.bootstrap", "--python", sys.executable, env=cold_env
        )
    )
    times = json.loads((root / "logs" / "build-times.json").read_text())
    return {"total_s": round(total, 1), "tools": times["tools"], "disk_total": du(root)}


def bench_clusters(env: dict[str, str]) -> dict:
    local = LocalClusters(layout())
    out = {}
    for cluster in local.profiles():
        local.up(cluster)
        local.down(cluster)
        out[cluster.name] = round(local.up(cluster), 1)
    return out


def bench_demo(env: dict[str, str], state: Path) -> dict:
    local = LocalClusters(layout())
    out = {}
    for cluster in local.profiles():
        e = {**env, "PULUMI_BACKEND_URL": f"file://{state}", "PULUMI_CONFIG_PASSPHRASE": "bench"}
        stack = ("--stack", f"bench-{cluster.name}", "--non-interactive")
        run("pulumi", "stack", "init", *stack, cwd=DEMO, env=e)
        for k, v in (
            ("kubeContext", cluster.context),
            ("storageClass", cluster.profile.storage.default_class),
            ("namespace", "demo-bench"),
        ):
            run("pulumi", "config", "set", k, v, *stack, cwd=DEMO, env=e)
        up = timed(lambda s=stack, e=e: run("pulumi", "up", "--yes", "--skip-preview", *s, cwd=DEMO, env=e))
        destroy = timed(lambda s=stack, e=e: run("pulumi", "destroy", "--yes", "--skip-preview", *s, cwd=DEMO, env=e))
        run("pulumi", "stack", "rm", "--yes", *stack, cwd=DEMO, env=e)
        out[cluster.name] = {"up_s": round(up, 1), "destroy_s": round(destroy, 1)}
    return out


def bench_platform(env: dict[str, str], workdir: Path) -> dict:
    """Production on the local Monaco cluster, and `kubectl apply --server-side` as the floor."""
    project = workdir / "platform"
    shutil.copytree(REPO / "environments", project / "environments", ignore=shutil.ignore_patterns("stacks"))
    (project / "environments" / "stacks").mkdir()
    spec = yaml.safe_load((REPO / "Pulumi.yaml").read_text())
    spec["name"] = BENCH_PROJECT  # its own namespaces, apart from anything `make up` deployed
    spec["main"] = str(REPO / "infra")
    spec["runtime"]["options"]["virtualenv"] = str(REPO / ".venv")
    (project / "Pulumi.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    # What a failed earlier run left behind belongs to the benchmark's own project: clear it.
    run(
        "kubectl",
        "--context",
        "monaco-onprem",
        "delete",
        "namespace",
        NAMESPACE,
        "--ignore-not-found",
        "--wait=true",
        env={**env},
    )
    state = workdir / "platform-state"
    state.mkdir()
    e = {
        **env,
        "PULUMI_BACKEND_URL": f"file://{state}",
        "PULUMI_CONFIG_PASSPHRASE": "bench",
        "SMARTNATION_ENVIRONMENTS_DIR": str(project / "environments"),
    }
    stack = ("--stack", "production", "--non-interactive")
    run("pulumi", "stack", "init", *stack, cwd=project, env=e)
    secrets = generate_missing(load_settings("production", project / "environments"))
    run(
        "pulumi",
        "config",
        "set-all",
        *stack,
        *[x for k, v in secrets.items() for x in ("--secret", f"{CONFIG_NAMESPACE}:{k}={v}")],
        cwd=project,
        env=e,
    )
    result: dict = {}
    result["preview_s"] = round(timed(lambda: run("pulumi", "preview", *stack, cwd=project, env=e)), 1)
    result["up_from_empty_s"] = round(
        timed(lambda: run("pulumi", "up", "--yes", "--skip-preview", *stack, cwd=project, env=e)), 1
    )
    result["noop_up_s"] = round(
        timed(lambda: run("pulumi", "up", "--yes", "--skip-preview", *stack, cwd=project, env=e)), 1
    )
    exported = json.loads(run("pulumi", "stack", "export", *stack, cwd=project, env=e))
    resources = exported["deployment"]["resources"]
    kube = [
        r
        for r in resources
        if r["type"].startswith("kubernetes:")
        and "outputs" in r
        and r["type"] != "kubernetes:helm.sh/v4:Chart"
        and not r["type"].startswith("pulumi:providers")
    ]
    result["resources_total"] = len(resources)
    result["kubernetes_objects"] = len(kube)
    # The floor: the same objects, as the API server holds them, applied server-side to a fresh namespace set.
    live = json.loads(
        run(
            "kubectl",
            "--context",
            "monaco-onprem",
            "get",
            "all,cm,secret,pvc,networkpolicy,"
            "resourcequota,limitrange,pdb,ingress,serviceaccount,role,rolebinding,hpa,cronjob",
            "-n",
            NAMESPACE,
            "-o",
            "json",
            env=e,
        )
    )
    result["destroy_s"] = round(
        timed(
            lambda: (
                run("pulumi", "state", "unprotect", "--all", "--yes", *stack, cwd=project, env=e),
                run("pulumi", "destroy", "--yes", "--skip-preview", *stack, cwd=project, env=e),
            )
        ),
        1,
    )
    cleaned = []
    for item in live["items"]:
        made_by_cluster = (
            # PVCs come from the StatefulSets' claim templates, made by the StatefulSet controller.
            item["kind"] in ("Pod", "ReplicaSet", "Endpoints", "EndpointSlice", "Job", "PersistentVolumeClaim")
            or item["metadata"].get("ownerReferences")
            or (item["kind"] == "ServiceAccount" and item["metadata"]["name"] == "default")
            or (item["kind"] == "ConfigMap" and item["metadata"]["name"] == "kube-root-ca.crt")
            or "cert-manager.io/certificate-name" in (item["metadata"].get("annotations") or {})
        )
        if made_by_cluster:
            continue  # made by controllers or the issuer, not by the program
        meta = item["metadata"]
        item["metadata"] = {k: meta[k] for k in ("name", "namespace", "labels", "annotations") if k in meta}
        item.pop("status", None)
        if item["kind"] == "Service":
            for key in ("clusterIP", "clusterIPs"):
                item["spec"].pop(key, None)
        cleaned.append(item)
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
    docs = {"apiVersion": "v1", "kind": "List", "items": [ns, *cleaned]}
    result["kubectl_apply_objects"] = len(cleaned) + 1
    result["kubectl_apply_server_side_s"] = round(
        timed(
            lambda: run(
                "kubectl",
                "--context",
                "monaco-onprem",
                "apply",
                "--server-side",
                "--force-conflicts",
                "-f",
                "-",
                env=e,
                input=json.dumps(docs),
            )
        ),
        1,
    )
    run("kubectl", "--context", "monaco-onprem", "delete", "namespace", NAMESPACE, "--wait=true", env=e)
    return result


def bench_images(env: dict[str, str]) -> dict:
    """Warm `make images` (nothing to build) and the last cold build of each image."""
    warm = timed(lambda: run(sys.executable, "-m", "smartnation.tooling.images", "build", env=env))
    times = layout().root / "images" / "logs" / "build-times.json"
    builds = json.loads(times.read_text()) if times.exists() else {}
    return {"warm_s": round(warm, 1), "last_builds": builds}


def bench_real_nodes(env: dict[str, str]) -> dict:
    """Each cluster's real nodes stopped and started again (containers and data kept)."""
    local = LocalClusters(layout())
    out = {}
    for cluster in local.profiles():
        nodes = local.real_nodes(cluster)
        nodes.down()
        out[cluster.name] = round(nodes.up(), 1)
    return out


def _ours(pid: str, cache_root: str) -> bool:
    """A process of the local clusters: a control plane or host helper started from the cache or
    our modules, or anything in the real nodes' cgroup subtree (their daemons and every Pod)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        cgroup = Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return False
    if "smartnation.benchmarks" in cmdline or "tests.benchmarks" in cmdline:
        return False
    return cache_root in cmdline or "smartnation.tooling" in cmdline or "/smartnation/" in cgroup


def _cpu_ticks(pid: str) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime + stime


NODES_CPUACCT = Path("/sys/fs/cgroup/cpuacct/smartnation/cpuacct.usage")


def _nodes_cpu_ns() -> int:
    """CPU time of everything the real nodes ever ran (their cgroup subtree), exited processes
    included: an exec probe's runc and the process it runs live a few milliseconds, so summing
    the live processes' ticks misses them."""
    try:
        return int(NODES_CPUACCT.read_text())
    except (OSError, ValueError):
        return 0


def idle_usage(seconds: float = 60) -> dict:
    """CPU (share of one core) and memory (sum of RSS) of every process of the local clusters:
    the real nodes by their cgroup's accounting, the control planes and host helpers by process."""
    root = str(layout().root)
    pids = [p.name for p in Path("/proc").iterdir() if p.name.isdigit() and _ours(p.name, root)]
    host_side = [pid for pid in pids if not _in_nodes_cgroup(pid)]
    before = {pid: _cpu_ticks(pid) for pid in host_side}
    nodes_before = _nodes_cpu_ns()
    time.sleep(seconds)
    ticks = sum(max(_cpu_ticks(pid) - start, 0) for pid, start in before.items())
    nodes_s = (_nodes_cpu_ns() - nodes_before) / 1e9
    rss = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        rss += next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    hz = os.sysconf("SC_CLK_TCK")
    host_s = ticks / hz
    return {
        "seconds": seconds,
        "processes": len(pids),
        "cpu_percent_of_one_core": round(100 * (host_s + nodes_s) / seconds, 1),
        "control_planes_and_helpers_percent": round(100 * host_s / seconds, 1),
        "real_nodes_percent": round(100 * nodes_s / seconds, 1),
        "rss_gib": round(rss / 2**20, 2),
    }


def _in_nodes_cgroup(pid: str) -> bool:
    try:
        return "/smartnation/" in Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return False


def bench_staging_real(env: dict[str, str], workdir: Path) -> dict:
    """Staging from empty to every Pod Ready on dusseldorf-test's real node, a no-op up, the
    clusters' idle use with it deployed, and destroy (its own project: namespace smartnation-bench-staging)."""
    project = workdir / "staging"
    shutil.copytree(REPO / "environments", project / "environments", ignore=shutil.ignore_patterns("stacks"))
    (project / "environments" / "stacks").mkdir()
    spec = yaml.safe_load((REPO / "Pulumi.yaml").read_text())
    spec["name"] = BENCH_PROJECT
    spec["main"] = str(REPO / "infra")
    spec["runtime"]["options"]["virtualenv"] = str(REPO / ".venv")
    (project / "Pulumi.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    namespace = f"{BENCH_PROJECT}-staging"
    run("kubectl", "--context", "dusseldorf-test", "delete", "namespace", namespace, "--ignore-not-found",
        "--wait=true", env=env)  # fmt: skip
    state = workdir / "staging-state"
    state.mkdir()
    e = {
        **env,
        "PULUMI_BACKEND_URL": f"file://{state}",
        "PULUMI_CONFIG_PASSPHRASE": "bench",
        "SMARTNATION_ENVIRONMENTS_DIR": str(project / "environments"),
    }
    stack = ("--stack", "staging", "--non-interactive")
    run("pulumi", "stack", "init", *stack, cwd=project, env=e)
    secrets = generate_missing(load_settings("staging", project / "environments"))
    pairs = [x for k, v in secrets.items() for x in ("--secret", f"{CONFIG_NAMESPACE}:{k}={v}")]
    run("pulumi", "config", "set-all", *stack, *pairs, cwd=project, env=e)
    result: dict = {}
    result["up_from_empty_s"] = round(
        timed(lambda: run("pulumi", "up", "--yes", "--skip-preview", *stack, cwd=project, env=e)), 1
    )
    pods = json.loads(run("kubectl", "--context", "dusseldorf-test", "-n", namespace, "get", "pods", "-o", "json",
                          env=e))["items"]  # fmt: skip
    nodes = {p["spec"]["nodeName"] for p in pods}
    result["pods"] = len(pods)
    result["pods_on_real_nodes"] = sum(1 for p in pods if "-real-" in p["spec"]["nodeName"])
    result["nodes"] = sorted(nodes)
    result["noop_up_s"] = round(
        timed(lambda: run("pulumi", "up", "--yes", "--skip-preview", *stack, cwd=project, env=e)), 1
    )
    result["idle_with_two_stagings"] = idle_usage()
    result["destroy_s"] = round(
        timed(lambda: run("pulumi", "destroy", "--yes", "--skip-preview", *stack, cwd=project, env=e)), 1
    )
    return result


def bench_real(env: dict[str, str], workdir: Path, restart_nodes: bool = True) -> dict:
    return {
        "images": bench_images(env),
        # Restarting the nodes disturbs whatever else runs on them (skip it beside other work).
        "real_node_restart_s": bench_real_nodes(env) if restart_nodes else {},
        "staging_dusseldorf": bench_staging_real(env, workdir),
    }


def bench_unit(env: dict[str, str]) -> float:
    return round(
        timed(
            lambda: run(sys.executable, "-m", "pytest", "-m", "unit", "-q", "-p", "no:cacheprovider", cwd=REPO, env=env)
        ),
        1,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold", action="store_true", help="also build the whole toolchain into an empty cache")
    parser.add_argument(
        "--only-real",
        action="store_true",
        help="only the real-node measures (images, node restart, staging on the real node, idle use); "
        "the other numbers are kept from BENCHMARKS.json",
    )
    parser.add_argument("--no-node-restart", action="store_true", help="do not stop and start the real nodes")
    parser.add_argument(
        "--cold-make-up",
        action="store_true",
        help="only run `make up` from an empty cache, timed (a fresh machine: refused when the cache holds anything)",
    )
    parser.add_argument(
        "--cold-make-up-log",
        type=Path,
        help="only record a cold `make up` timed outside this script, from its output (with --started, --ended)",
    )
    parser.add_argument(
        "--started", type=float, help="with --cold-make-up-log: when it started (seconds since the epoch)"
    )
    parser.add_argument("--ended", type=float, help="with --cold-make-up-log: when it ended (seconds since the epoch)")
    parser.add_argument(
        "--only-load",
        action="store_true",
        help="only the load figures (tests/benchmarks/load.py) against a deployed environment; the rest is kept",
    )
    parser.add_argument(
        "--load-environment",
        help="with --only-load: load this deployed environment as it is (default: deploy an own staging)",
    )
    parser.add_argument(
        "--only-move",
        action="store_true",
        help="only the move figures (tests/benchmarks/move.py: a seeded dev moved to Monaco beside "
        "backup and restore, in private projects); the rest is kept",
    )
    args = parser.parse_args()
    if args.cold_make_up or args.cold_make_up_log:
        return record_cold_make_up(parser, args)
    env = {**os.environ, **exports()}
    os.environ.update(env)
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    if args.only_load:
        with tempfile.TemporaryDirectory(prefix="smartnation-bench-") as tmp:
            load = bench_load(env, Path(tmp), args.load_environment)
        # Read again: the run takes minutes and the file may have gained other figures meanwhile.
        results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        # The last earlier run stays beside the new one: on a shared machine one run is one sample.
        if results.get("load"):
            load["earlier"] = [{k: v for k, v in results["load"].items() if k != "earlier"}]
        results["load"] = load
        RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
        (REPO / "BENCHMARKS.md").write_text(render(results))
        print(render(results))
        return 0
    if args.only_move:
        with tempfile.TemporaryDirectory(prefix="smartnation-bench-") as tmp:
            move = bench_move(env, Path(tmp))
        record("move", move)
        print("\n".join(render_move(move)))
        return 0
    if args.only_real:
        with tempfile.TemporaryDirectory(prefix="smartnation-bench-") as tmp:
            results = {**previous, "real": bench_real(env, Path(tmp), restart_nodes=not args.no_node_restart)}
        results["real"]["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
        (REPO / "BENCHMARKS.md").write_text(render(results))
        print(render(results))
        return 0
    with tempfile.TemporaryDirectory(prefix="smartnation-bench-") as tmp:
        work = Path(tmp)
        (work / "demo-state").mkdir()
        cold = previous.get("cold_bootstrap")
        if args.cold:
            cold = bench_cold_bootstrap(env, work / "cold-cache")
            # Kept at once: half an hour of measurement must survive a failure further on.
            RESULTS.write_text(json.dumps({**previous, "cold_bootstrap": cold}, indent=2, sort_keys=True) + "\n")
        results = {
            "notes": previous.get("notes", []),
            "cold_bootstrap": cold,
            # Only a fresh machine measures it (--cold-make-up): kept as it is.
            "cold_make_up": previous.get("cold_make_up"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
            f"{round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30)} GiB",
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "toolchain": bench_toolchain(env),
            "clusters_start_s": bench_clusters(env),
            "demo": bench_demo(env, work / "demo-state"),
            "platform_production_monaco": bench_platform(env, work),
            "unit_suite_s": bench_unit(env),
            "real": bench_real(env, work),
            # Measured against a deployed environment (`make up`'s staging): --only-load.
            "load": previous.get("load"),
            # Measured by --only-move (two deployments and a million readings): kept as it is.
            "move": previous.get("move"),
            # Written by `make mutation` (tests/tools/mutation.py), kept here as it is.
            "mutation": read_mutation(),
        }
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    (REPO / "BENCHMARKS.md").write_text(render(results))
    print(render(results))
    return 0


def record_cold_make_up(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """--cold-make-up and --cold-make-up-log: the figures go to BENCHMARKS.json and .md, the rest is kept."""
    if args.cold_make_up_log:
        if args.started is None or args.ended is None or args.ended <= args.started:
            parser.error(
                "--cold-make-up-log needs --started and --ended (seconds since the epoch, ended after started)"
            )
        log = args.cold_make_up_log.read_text(encoding="utf-8", errors="replace")
        figures = read_run(log, args.ended - args.started, args.started, layout().root)
    else:
        try:
            figures = run_cold()
        except NotCold as refused:
            print(f"run.py --cold-make-up: {refused}", file=sys.stderr)
            return 2
    record("cold_make_up", figures)
    print("\n".join(render_cold_make_up(figures)))
    return 0


def record(section: str, figures: dict) -> None:
    """``figures`` as BENCHMARKS.json's ``section``, the rest kept, and BENCHMARKS.md rendered anew.
    The file is read here, not at the start: a measurement takes minutes to hours, and the file
    may have gained other figures meanwhile."""
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results[section] = figures
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    (REPO / "BENCHMARKS.md").write_text(render(results))


def render(r: dict) -> str:
    """BENCHMARKS.md from the measured results (BENCHMARKS.json holds the same numbers)."""
    tc, p = r["toolchain"], r["platform_production_monaco"]
    lines = [
        "# Benchmarks",
        "",
        f"Measured by `make bench` (`tests/benchmarks/run.py`) on {r['date']}, on this project's machine size "
        f"({r['machine']}). Raw numbers: `BENCHMARKS.json`. Nothing here is a timed test.",
        "",
        "## Cold `make up` (issue 8)",
        "",
        *render_cold_make_up(r.get("cold_make_up")),
        "## Toolchain (`make bootstrap`)",
        "",
    ]
    cold = r.get("cold_bootstrap")
    if cold:
        lines += [
            f"Cold: an empty cache (no Go module or build cache either), `make bench --cold`: "
            f"**{cold['total_s'] / 60:.1f} min** in total, cache {cold['disk_total']} afterwards.",
            "",
            "| tool | wall time from start of its download to its rename into place (s) | compiling alone (s) |",
            "| --- | ---: | ---: |",
        ]
        for tool, t in sorted(cold["tools"].items()):
            lines.append(f"| {tool} | {t['seconds']:.0f} | {t.get('compile_seconds', t['seconds']):.0f} |")
        lines += [
            "",
            "Downloads overlap the compiles and compiles run one at a time (two cores), so a tool's wall "
            "time includes waiting for the compile slot; the compile column is the slot held.",
            "",
        ]
    else:
        lines += ["No cold run recorded by the script yet: `python -m tests.benchmarks.run --cold`.", ""]
    for note in r.get("notes", []):
        lines += [f"> Observed by hand, not by this script: {note}", ""]
    lines += [
        f"Warm (every tool found finished in the cache, nothing built): **{tc['warm_bootstrap_s']} s**.",
        "",
        f"Cache on disk: {tc['disk_total']} in total — "
        + ", ".join(f"{k} {v}" for k, v in tc["disk"].items())
        + " (`go` holds the Go module and build caches; deleting it costs the next cold build).",
        "",
        "## Local clusters",
        "",
        "| cluster | start from stopped, data kept (s) |",
        "| --- | ---: |",
        *[f"| {k} | {v} |" for k, v in r["clusters_start_s"].items()],
        "",
        "## The toolchain demo program (Deployment, LoadBalancer Service, StatefulSet with a PVC)",
        "",
        "| cluster | `pulumi up` (s) | `pulumi destroy` (s) |",
        "| --- | ---: | ---: |",
        *[f"| {k} | {v['up_s']} | {v['destroy_s']} |" for k, v in r["demo"].items()],
        "",
        "## The platform: production on the local Monaco cluster",
        "",
        f"{p['resources_total']} resources in the stack ({p['kubernetes_objects']} Kubernetes objects; the rest "
        "are components, the provider and the stack).",
        "",
        "| operation | time (s) |",
        "| --- | ---: |",
        f"| `pulumi preview` (empty stack) | {p['preview_s']} |",
        f"| `pulumi up` from empty | {p['up_from_empty_s']} |",
        f"| `pulumi up` with nothing to change | {p['noop_up_s']} |",
        f"| `pulumi destroy` (after `state unprotect`) | {p['destroy_s']} |",
        f"| floor: `kubectl apply --server-side` of the same {p['kubectl_apply_objects']} objects | "
        f"{p['kubectl_apply_server_side_s']} |",
        "",
        f"Unit suite (`make test-unit`): {r['unit_suite_s']} s.",
        "",
        *render_real(r.get("real")),
        "",
        *render_load(r.get("load")),
        "",
        *render_move(r.get("move")),
        *render_mutation(read_mutation() or r.get("mutation")),
        "",
        "### Where the time goes",
        "",
        f"- A no-op `up` ({p['noop_up_s']} s) is the fixed cost of every operation: starting the engine, the "
        "language host and the Python program (which imports pulumi and pulumi_kubernetes and renders the three "
        "Helm releases locally), loading the provider, and one diff per resource. The preview from empty "
        f"({p['preview_s']} s) costs about the same.",
        f"- `up` from empty takes {p['up_from_empty_s']} s against {p['kubectl_apply_server_side_s']} s for "
        "the floor: the difference is the engine creating objects in dependency order rather than all at once, "
        "and its await logic: every Deployment, StatefulSet, Job, Service and Ingress is watched until it is "
        "ready (rollouts, PVCs bound, load-balancer addresses, Jobs complete), which `kubectl apply` does not do.",
        "- Destroy waits for each deletion to finish (namespaced objects, then the namespace) in reverse "
        "dependency order.",
        "",
    ]
    return "\n".join(lines)


def render_real(real: dict | None) -> list[str]:
    if not real:
        return ["## Real nodes", "", "Not measured yet: `python -m tests.benchmarks.run --only-real`.", ""]
    images, st, idle = real["images"], real["staging_dusseldorf"], real["staging_dusseldorf"]["idle_with_two_stagings"]
    lines = [
        f"## Real nodes: staging running for real ({real['date']})",
        "",
        "| measure | value | goal (issue 8) |",
        "| --- | ---: | --- |",
        f"| warm `make images` (nothing to build) | {images['warm_s']} s | does nothing |",
        *[
            f"| real node restart, {name} (stopped -> Ready by a live kubelet) | {t} s | |"
            for name, t in real["real_node_restart_s"].items()
        ],
        f"| staging `pulumi up` from empty to every Pod Ready on the real node | {st['up_from_empty_s']} s "
        f"({st['pods_on_real_nodes']} of {st['pods']} Pods on real nodes) | under 180 s |",
        f"| staging `pulumi up` with nothing to change | {st['noop_up_s']} s | |",
        f"| staging `pulumi destroy` | {st['destroy_s']} s | |",
        f"| idle CPU of both clusters, two stagings deployed ({idle['processes']} processes, "
        f"{idle['seconds']:.0f} s) | {idle['cpu_percent_of_one_core']} % of one core | under 25 % |",
        f"| memory of the same (sum of RSS, shared pages counted in each) | {idle['rss_gib']} GiB | |",
        "",
    ]
    builds = images.get("last_builds") or {}
    if builds:
        lines += ["Last build of each image (seconds, from the image cache's log; a cold build when it ran):", ""]
        lines += [
            f"- {name} {data.get('tag', '')}: {data.get('seconds')} s, {data.get('bytes', 0) / 2**20:.1f} MiB "
            f"compressed, built {data.get('when', '?')}"
            for name, data in sorted(builds.items())
        ]
        lines.append("")
    return lines


if __name__ == "__main__":
    sys.exit(main())
