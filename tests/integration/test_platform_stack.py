"""The whole platform on the local clusters with the real engine, provider and API servers.

One scenario, in order, because each step builds on the last (and a cold `pulumi up` of an
environment is the expensive part): staging on Düsseldorf, production on Monaco, no drift on
either, staging's plain change of `cluster:` to Monaco refused (it has data: the move is the way), then
everything destroyed.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.integration.platform_project import PROJECT, REPO, PlatformProject

pytestmark = pytest.mark.integration


def _namespace(environment: str) -> str:
    return f"{PROJECT}-{environment}"


def _assert_workloads_ready(tools, context: str, namespace: str) -> None:
    # `pulumi up` awaited each rollout; a Pod whose readiness asks its dependencies (the APIs) may
    # still flap for a moment on the busy real node: every Pod gets 90 s to be Ready together.
    tools.run(
        "kubectl", "--context", context, "-n", namespace, "wait", "--for=condition=Ready", "pod",
        "--field-selector=status.phase=Running", "--all", "--timeout=90s", check=False,
    )  # fmt: skip
    pods = tools.kubectl_json(context, "-n", namespace, "get", "pods")["items"]
    assert pods, f"no pods in {namespace} on {context}"
    for pod in pods:
        phase = pod["status"].get("phase")
        if phase == "Succeeded":  # Job pods (bucket and key setup) run to completion
            continue
        conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
        assert phase == "Running" and conditions.get("Ready") == "True", f"{pod['metadata']['name']}: {phase}"
    # A Deployment still scaling out (kwok's simulated nodes start Pods with a delay) is given up to
    # 120 s to have every replica Ready; CI once saw 1 of 3 right after `pulumi up` returned.
    deadline = time.monotonic() + 120
    while True:
        unready = [
            f"{kind}/{item['metadata']['name']}: {item['status'].get('readyReplicas', 0)} Ready"
            for kind in ("deployments", "statefulsets")
            for item in tools.kubectl_json(context, "-n", namespace, "get", kind)["items"]
            if item["status"].get("readyReplicas", 0) != item["spec"].get("replicas", 1)
        ]
        if not unready or time.monotonic() > deadline:
            break
        time.sleep(5)
    assert not unready, unready
    for pvc in tools.kubectl_json(context, "-n", namespace, "get", "pvc")["items"]:
        assert pvc["status"]["phase"] == "Bound", pvc["metadata"]["name"]


def _node_kinds(tools, context: str, namespace: str) -> set[str]:
    """The kinds of node (`real` or `simulated`) the namespace's Pods run on."""
    kinds = {
        n["metadata"]["name"]: n["metadata"]["labels"].get("smartnation.mc/node-kind")
        for n in tools.kubectl_json(context, "get", "nodes")["items"]
    }
    return {kinds[p["spec"]["nodeName"]] for p in tools.kubectl_json(context, "-n", namespace, "get", "pods")["items"]}


@pytest.fixture(scope="module")
def project(tmp_path_factory, tools, clusters):
    backend_dir = tmp_path_factory.mktemp("state")
    backend = {"PULUMI_BACKEND_URL": f"file://{backend_dir}", "PULUMI_CONFIG_PASSPHRASE": "integration-tests"}
    proj = PlatformProject.create(tmp_path_factory.mktemp("platform"), tools, backend)
    yield proj
    # Whatever happened, leave the clusters clean for the next test run.
    for environment in proj.stacks:
        proj.destroy(environment, unprotect=True)


def test_staging_on_dusseldorf_then_production_on_monaco(project, tools):
    for environment, context in (("staging", "dusseldorf-test"), ("production", "monaco-onprem")):
        project.init_stack(environment)
        project.pulumi("up", "--yes", "--skip-preview", "--stack", environment)
        _assert_workloads_ready(tools, context, _namespace(environment))
        # Staging runs for real on the stand-in's real nodes; production's full size on the
        # simulated pools (the profiles' simulation.real_node_environments).
        expected = {"real"} if environment == "staging" else {"simulated"}
        assert _node_kinds(tools, context, _namespace(environment)) == expected
        if environment == "staging":
            # The operator's post-deploy smoke suite, on the real Pods (production's are simulated).
            verified = tools.run(
                str(REPO / ".venv" / "bin" / "smartnation"), "verify", "staging", "--no-record",
                env={**project.backend, "SMARTNATION_PROJECT_DIR": str(project.root)}, check=False, timeout=600,
            )  # fmt: skip
            assert verified.returncode == 0, verified.stdout + verified.stderr[-3000:]
        outputs = project.outputs(environment)
        assert outputs["cluster"] == context
        assert outputs["environment"] == environment
        # No secret leaves the stack in plain text.
        rendered = json.dumps(outputs)
        state = project.pulumi("stack", "export", "--stack", environment).stdout
        secrets = json.loads(project.pulumi("config", "--show-secrets", "--json", "--stack", environment).stdout)
        for key, entry in secrets.items():
            if entry.get("secret"):
                assert entry["value"] not in rendered, f"{key} appears in the stack outputs"
                assert entry["value"] not in state, f"{key} appears in plain text in the state"
        project.pulumi("preview", "--expect-no-changes", "--stack", environment)


def test_a_plain_cluster_change_of_deployed_staging_is_refused_pointing_to_the_move(project, tools):
    # Alone, the `cluster:` line would create an empty staging on Monaco and delete Düsseldorf's
    # namespace, volumes and backups in one update: the program refuses it before registering
    # anything and names the move (program/move_guard.py, docs/move.md).
    before = project.resources("staging")
    project.set_cluster("staging", "monaco-onprem")
    try:
        proc = project.pulumi("preview", "--stack", "staging", check=False)
    finally:
        project.set_cluster("staging", "dusseldorf-test")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-4000:]
    refusal = "environments/staging.yaml: cluster: staging is deployed on dusseldorf-test with its data"
    assert refusal in out, out[-4000:]
    assert "move: {to: monaco-onprem, phase: replicate}" in out
    assert project.resources("staging") == before


def test_production_state_is_protected_and_staging_is_not(project):
    for environment, expected in (("staging", False), ("production", True)):
        stateful = [
            r
            for r in project.resources(environment)
            if r["type"] in ("kubernetes:apps/v1:StatefulSet", "kubernetes:core/v1:Namespace")
        ]
        assert stateful
        assert {r["urn"]: bool(r.get("protect")) for r in stateful} == {r["urn"]: expected for r in stateful}
    refused = project.pulumi("destroy", "--yes", "--skip-preview", "--stack", "production", check=False)
    assert refused.returncode != 0 and "protected" in refused.stdout + refused.stderr


def test_destroy_leaves_nothing_behind(project, tools):
    for environment, context in (("staging", "dusseldorf-test"), ("production", "monaco-onprem")):
        # Production's data is protected: taking it down is a deliberate, separate step.
        project.pulumi("state", "unprotect", "--all", "--yes", "--stack", environment)
        project.pulumi("destroy", "--yes", "--skip-preview", "--stack", environment)
        assert [r for r in project.resources(environment) if not r["type"].startswith("pulumi:")] == []
        gone = tools.run("kubectl", "--context", context, "get", "namespace", _namespace(environment), check=False)
        assert gone.returncode != 0 and "NotFound" in gone.stderr
        pvs = tools.kubectl_json(context, "get", "pv")["items"]
        left = [
            pv["metadata"]["name"]
            for pv in pvs
            if (pv["spec"].get("claimRef") or {}).get("namespace") == _namespace(environment)
            and pv["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
        ]
        assert left == []
    project.stacks.clear()
