"""Reclaiming the volumes that the tests' destroyed environments leave Released.

Monaco's storage classes retain a volume when its claim goes (the data vault keeps data until an
operator says otherwise), so every destroyed test environment on it leaves Released volumes and
their directories on the real node: 128 of them, 1.1 GB, had piled up before this existed. A
Released volume whose claim's namespace is gone and was a test namespace is the tests' own to
remove; nothing else is touched (make up's environments, a live test's claims, another class).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from smartnation.tooling.toolchain.cache import layout
from tests.integration import session_leftovers
from tests.integration.platform_project import PROJECT

# The projects the benchmarks deploy under (tests/benchmarks: run.py, load.py, move.py; namespaces
# <project>-<env>) and the benchmark's demo namespace: no test session owns them, so every one
# reclaims what they leave.
BENCHMARK_PROJECTS = ("smartnation-bench", "smartnation-load", "smartnation-movebench", "smartnation-movebr")
BENCHMARK_NAMESPACES = ("demo-bench",)
SCRATCH_PREFIX = "probe-"
"""test_local_clusters' scratch namespaces as runs before session 8 named them (a random name each):
their volumes are still reclaimed. They are now `<prefix>-probe-<hex>`, a session's own."""


def is_test_namespace(namespace: str, prefix: str = PROJECT, real: frozenset[str] = frozenset()) -> bool:
    """A namespace whose Released volumes this session may reclaim once it is gone: one of its
    own prefix (the projects derived from it included: <prefix>-flt, -4th, -rst, -dlv...), a
    benchmark's or a scratch one. Not another session's prefix: its test of what a destroy
    retains (test_dev_destroy_leaves_nothing) looks at them between destroy and reclaim."""
    if namespace in real:
        return False
    return (
        session_leftovers.owned_by(namespace, prefix)
        or any(session_leftovers.owned_by(namespace, p) for p in BENCHMARK_PROJECTS)
        or namespace in BENCHMARK_NAMESPACES
        or namespace.startswith(SCRATCH_PREFIX)
    )


def volume_directory(volume: dict) -> Path | None:
    path = (volume["spec"].get("local") or volume["spec"].get("hostPath") or {}).get("path")
    return Path(path) if path else None


def reclaim(tools, context: str, settle: float = 30) -> list[str]:
    """Deletes the Released volumes of gone test namespaces on ``context`` and their directories
    (only under the real nodes' volume folders of the cache); returns their names. Waits up to
    ``settle`` seconds for volumes still Bound to a gone test namespace to become Released."""
    nodes_root = layout().clusters / "real-nodes"
    reclaimed: list[str] = []
    real = session_leftovers.real_project_namespaces()
    deadline = time.monotonic() + settle
    while True:
        namespaces = {n["metadata"]["name"] for n in tools.kubectl_json(context, "get", "namespaces")["items"]}
        orphaned = [
            v
            for v in tools.kubectl_json(context, "get", "pv")["items"]
            if is_test_namespace(claimed := v["spec"].get("claimRef", {}).get("namespace", ""), real=real)
            and claimed not in namespaces
        ]
        released = [v for v in orphaned if v["status"].get("phase") == "Released"]
        for volume in released:
            name = volume["metadata"]["name"]
            tools.run("kubectl", "--context", context, "delete", "pv", name, "--ignore-not-found", "--wait=false")
            directory = volume_directory(volume)
            if directory is not None and directory.is_relative_to(nodes_root) and directory.exists():
                shutil.rmtree(directory)
            reclaimed.append(name)
        if len(released) == len(orphaned) or time.monotonic() > deadline:
            return reclaimed
        time.sleep(2)
