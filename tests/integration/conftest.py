"""Integration fixtures: the real toolchain, the real local clusters, the real Pulumi engine.

Nothing here skips. A missing toolchain or a cluster that will not start fails the test with
what to run; `make test` builds and starts both before pytest runs.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from smartnation.tooling.local_clusters.lifecycle import LocalClusters
from smartnation.tooling.toolchain.cache import layout
from smartnation.tooling.toolchain.env import exports
from tests.integration import released_volumes, session_leftovers

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Tools:
    """Runs our toolchain's commands with the environment `make env` prints."""

    env: dict[str, str]

    def run(
        self,
        *args: str,
        cwd: Path | None = None,
        check: bool = True,
        env: dict[str, str] | None = None,
        input: str | None = None,
        timeout: float = 900,
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            list(args),
            cwd=cwd,
            env={**self.env, **(env or {})},
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"`{' '.join(args)}` exited {proc.returncode}\n--- stdout ---\n{proc.stdout[-6000:]}\n"
                f"--- stderr ---\n{proc.stderr[-6000:]}"
            )
        return proc

    def kubectl_json(self, context: str, *args: str) -> dict:
        return json.loads(self.run("kubectl", "--context", context, *args, "-o", "json").stdout)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``runs_last`` end the session (they destroy what session fixtures share)."""
    items.sort(key=lambda item: item.get_closest_marker("runs_last") is not None)


@pytest.fixture(scope="session")
def tools() -> Tools:
    cache = layout()
    missing = [b for b in ("pulumi", "kubectl", "kwokctl", "helm") if not (cache.bin / b).exists()]
    assert not missing, f"toolchain incomplete ({', '.join(missing)} missing in {cache.bin}): run `make bootstrap`"
    return Tools(env={**os.environ, **exports()})


@pytest.fixture(scope="session")
def clusters(tools: Tools) -> LocalClusters:
    """Both local clusters, started if they are not running (`make test` starts them first)."""
    local = LocalClusters(layout())
    for cluster in local.profiles():
        if not local.healthy(cluster):
            local.up(cluster)
        # A test run that was killed half-way leaves its namespaces and cluster-wide objects
        # behind while its private state backend is gone: clear those of this session's prefix
        # (session_leftovers.py says which are; another session's are live).
        stale = session_leftovers.clear(tools, cluster.context)
        # Their volumes, and those of any earlier test environment, where the class retains them.
        released_volumes.reclaim(tools, cluster.context, settle=30 if stale else 0)
    return local


@pytest.fixture(scope="session", autouse=True)
def _reclaim_test_volumes_when_the_session_ends(tools: Tools) -> Iterator[None]:
    """After every other fixture's teardown (destroys included): a class that retains volumes
    (Monaco's) would otherwise keep every destroyed test environment's data on the real node."""
    yield
    for context in ("dusseldorf-test", "monaco-onprem"):
        if tools.run("kubectl", "--context", context, "get", "--raw=/readyz", check=False, timeout=30).returncode == 0:
            released_volumes.reclaim(tools, context)


@pytest.fixture(params=["dusseldorf-test", "monaco-onprem"])
def cluster(request, clusters: LocalClusters):
    """Each local cluster in turn (its LocalCluster view), for tests that hold on both."""
    return next(c for c in clusters.profiles() if c.name == request.param)


@pytest.fixture()
def pulumi_backend(tmp_path: Path, tools: Tools) -> Iterator[dict[str, str]]:
    """A private file state backend, so a test never touches the developer's stacks."""
    state = tmp_path / "state"
    state.mkdir()
    yield {"PULUMI_BACKEND_URL": f"file://{state}", "PULUMI_CONFIG_PASSPHRASE": "integration-tests"}


@pytest.fixture(scope="session")
def dev_on_monaco(tmp_path_factory, tools: Tools, clusters: LocalClusters):
    """dev deployed once with `pulumi up` on Monaco's real node (namespace smartnation-it-dev), for
    every test that checks or verifies running Pods; destroyed when the session ends. One deploy
    shared, since each costs minutes of the CI budget."""
    from tests.integration.platform_project import PlatformProject

    state = tmp_path_factory.mktemp("dev-state")
    backend = {"PULUMI_BACKEND_URL": f"file://{state}", "PULUMI_CONFIG_PASSPHRASE": "integration-tests"}
    project = PlatformProject.create(tmp_path_factory.mktemp("dev-on-monaco"), tools, backend)
    project.set_cluster("dev", "monaco-onprem")
    project.init_stack("dev")
    try:
        project.pulumi("up", "--yes", "--skip-preview", "--stack", "dev")
        yield project
    finally:
        project.destroy("dev")
