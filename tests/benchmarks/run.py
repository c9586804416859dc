"""`make bench`: measures the toolchain, the clusters and the platform, and rewrites BENCHMARKS.md.

Numbers come from real runs on this machine; nothing here is asserted (speed targets are read
from BENCHMARKS.md, never enforced by timed tests). Runs with a private state backend so it
never touches the developer's stacks.
"""

from __future__ import annotations

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

from smartnation.clusters.local import LocalClusters
from smartnation.settings.secrets import CONFIG_NAMESPACE, generate_missing
from smartnation.toolchain.cache import layout
from smartnation.toolchain.env import exports

REPO = Path(__file__).resolve().parents[2]
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
        lambda: run(sys.executable, "-m", "smartnation.toolchain.bootstrap", "--python", sys.executable, env=env)
    )
    times_file = cache.logs / "build-times.json"
    builds = json.loads(times_file.read_text())["tools"] if times_file.exists() else {}
    return {
        "warm_bootstrap_s": round(warm, 1),
        "builds": builds,
        "disk": {name: du(cache.root / name) for name in ("tools", "go", "pulumi-home", "clusters", "work")},
        "disk_total": du(cache.root),
    }


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
            ("storageClass", cluster.default_storage_class),
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
    spec["main"] = str(REPO / "infra")
    spec["runtime"]["options"]["virtualenv"] = str(REPO / ".venv")
    (project / "Pulumi.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
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
    secrets = generate_missing("production", root=project / "environments")
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
            "smartnation-production",
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
        if item["kind"] in ("Pod", "ReplicaSet", "Endpoints", "EndpointSlice", "Job") or item["metadata"].get(
            "ownerReferences"
        ):
            continue  # made by controllers, not by the program
        meta = item["metadata"]
        item["metadata"] = {k: meta[k] for k in ("name", "namespace", "labels", "annotations") if k in meta}
        item.pop("status", None)
        if item["kind"] == "Service":
            for key in ("clusterIP", "clusterIPs"):
                item["spec"].pop(key, None)
        cleaned.append(item)
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "smartnation-production"}}
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
                "-f",
                "-",
                env=e,
                input=json.dumps(docs),
            )
        ),
        1,
    )
    run("kubectl", "--context", "monaco-onprem", "delete", "namespace", "smartnation-production", "--wait=true", env=e)
    return result


def bench_unit(env: dict[str, str]) -> float:
    return round(
        timed(
            lambda: run(sys.executable, "-m", "pytest", "-m", "unit", "-q", "-p", "no:cacheprovider", cwd=REPO, env=env)
        ),
        1,
    )


def main() -> int:
    env = {**os.environ, **exports()}
    os.environ.update(env)
    with tempfile.TemporaryDirectory(prefix="smartnation-bench-") as tmp:
        work = Path(tmp)
        (work / "demo-state").mkdir()
        results = {
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
            f"{round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30)} GiB",
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "toolchain": bench_toolchain(env),
            "clusters_start_s": bench_clusters(env),
            "demo": bench_demo(env, work / "demo-state"),
            "platform_production_monaco": bench_platform(env, work),
            "unit_suite_s": bench_unit(env),
        }
    (REPO / "BENCHMARKS.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(json.dumps(results, indent=2, sort_keys=True))
    print("wrote BENCHMARKS.json; BENCHMARKS.md quotes it", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
