"""The real engine and provider deploy a small program to each local cluster and clean up."""

from __future__ import annotations

import ipaddress
import json
import shutil
from pathlib import Path

import pytest
import yaml

from tests.integration.platform_project import PROJECT

pytestmark = pytest.mark.integration
PROGRAM = Path(__file__).parent / "demo_program"
REPO = Path(__file__).resolve().parents[2]
# Under the session's project prefix (SMARTNATION_IT_PROJECT): the clusters fixture clears only
# that prefix's leftovers, so a session never deletes another's demo namespace mid-test.
NAMESPACE = f"{PROJECT}-demo"


@pytest.fixture()
def program(tmp_path: Path) -> Path:
    """A copy of the demo program: its stack files go there, never into the source tree."""
    copy = tmp_path / "demo_program"
    shutil.copytree(PROGRAM, copy, ignore=shutil.ignore_patterns("Pulumi.*-*.yaml", "__pycache__"))
    project = yaml.safe_load((copy / "Pulumi.yaml").read_text())
    project["runtime"]["options"]["virtualenv"] = str(REPO / ".venv")
    (copy / "Pulumi.yaml").write_text(yaml.safe_dump(project, sort_keys=False))
    return copy


@pytest.fixture(params=["dusseldorf-test", "monaco-onprem"])
def target(request, clusters):
    return next(c for c in clusters.profiles() if c.name == request.param)


def _stack(tools, program: Path, backend, cluster, namespace: str) -> dict[str, str]:
    env = dict(backend)
    tools.run("pulumi", "stack", "init", cluster.name, "--non-interactive", cwd=program, env=env)
    for key, value in (
        ("kubeContext", cluster.context),
        ("storageClass", cluster.profile.storage.default_class),
        ("namespace", namespace),
    ):
        tools.run("pulumi", "config", "set", key, value, "--stack", cluster.name, cwd=program, env=env)
    return env


def test_up_ready_no_changes_then_destroy_leaves_nothing(tools, program, pulumi_backend, target):
    namespace = f"{NAMESPACE}-it"
    env = _stack(tools, program, pulumi_backend, target, namespace)
    stack = ("--stack", target.name, "--non-interactive")
    try:
        tools.run("pulumi", "up", "--yes", "--skip-preview", *stack, cwd=program, env=env)
        outputs = json.loads(tools.run("pulumi", "stack", "output", "--json", *stack, cwd=program, env=env).stdout)
        assert outputs["readyReplicas"] == 2
        assert outputs["statefulSetReady"] == 1
        assert ipaddress.ip_address(outputs["loadBalancerAddress"]) in target.simulation.load_balancer_pool
        pvc = tools.kubectl_json(target.context, "-n", namespace, "get", "pvc", "data-db-0")
        assert pvc["status"]["phase"] == "Bound"
        assert pvc["spec"]["storageClassName"] == target.profile.storage.default_class

        tools.run("pulumi", "preview", "--expect-no-changes", *stack, cwd=program, env=env)
    finally:
        tools.run("pulumi", "destroy", "--yes", "--skip-preview", *stack, cwd=program, env=env)
    gone = tools.run("kubectl", "--context", target.context, "get", "namespace", namespace, check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr
    state = json.loads(tools.run("pulumi", "stack", "export", *stack, cwd=program, env=env).stdout)
    leftovers = [r["urn"] for r in state["deployment"].get("resources", []) if not r["type"].startswith("pulumi:")]
    assert leftovers == []
    tools.run("pulumi", "stack", "rm", "--yes", *stack, cwd=program, env=env)


def test_preview_needs_no_network(tools, program, pulumi_backend, clusters):
    """Every internet request would go to a closed local port; the preview must not care.

    Loopback is exempt (NO_PROXY), as on any proxied site: the local API servers and the
    engine's own gRPC connections to its plugins stay reachable, while anything bound for the
    internet (plugin downloads, update checks, registry look-ups) fails at once.
    """
    cluster = next(c for c in clusters.profiles() if c.name == "monaco-onprem")
    offline = {
        **pulumi_backend,
        "HTTP_PROXY": "http://127.0.0.1:9",
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "http_proxy": "http://127.0.0.1:9",
        "https_proxy": "http://127.0.0.1:9",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        "PULUMI_SKIP_UPDATE_CHECK": "true",
    }
    env = _stack(tools, program, offline, cluster, f"{NAMESPACE}-offline")
    proc = tools.run("pulumi", "preview", "--stack", cluster.name, "--non-interactive", cwd=program, env=env)
    # The stack, the provider, the namespace, the Deployment, the Service, the StatefulSet.
    assert "+ 6 to create" in proc.stdout, proc.stdout
    tools.run("pulumi", "stack", "rm", "--yes", "--stack", cluster.name, cwd=program, env=env)
