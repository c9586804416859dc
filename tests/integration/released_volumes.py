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
from tests.integration.platform_project import PROJECT

# Every project name an integration test or the benchmark deploys under (namespaces
# <project>-<env>), plus the scratch namespaces of the node and certificate tests. The session's
# prefix covers the projects derived from it (<PROJECT>-flt, -4th, -rst, -mv, -st, -cmp, -co, -rot).
TEST_PROJECTS = (PROJECT, "smartnation-it", "smartnation-delivery", "smartnation-bench")
TEST_NAMESPACE_PREFIXES = (*(f"{p}-" for p in TEST_PROJECTS), "demo-", "probe-")


def is_test_namespace(namespace: str) -> bool:
    return namespace.startswith(TEST_NAMESPACE_PREFIXES)


def volume_directory(volume: dict) -> Path | None:
    path = (volume["spec"].get("local") or volume["spec"].get("hostPath") or {}).get("path")
    return Path(path) if path else None


def reclaim(tools, context: str, settle: float = 30) -> list[str]:
    """Deletes the Released volumes of gone test namespaces on ``context`` and their directories
    (only under the real nodes' volume folders of the cache); returns their names. Waits up to
    ``settle`` seconds for volumes still Bound to a gone test namespace to become Released."""
    nodes_root = layout().clusters / "real-nodes"
    reclaimed: list[str] = []
    deadline = time.monotonic() + settle
    while True:
        namespaces = {n["metadata"]["name"] for n in tools.kubectl_json(context, "get", "namespaces")["items"]}
        orphaned = [
            v
            for v in tools.kubectl_json(context, "get", "pv")["items"]
            if is_test_namespace(claimed := v["spec"].get("claimRef", {}).get("namespace", ""))
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
