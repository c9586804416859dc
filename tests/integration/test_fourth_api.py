"""A fourth city API added as data only is deployed for real: dev on Monaco's real node.

The scratch project's dev.yaml gets ``street_lighting`` under ``city_apis`` and its release (the
open-data API's image) from tests/added_api.py, the same edit the unit tests build under mocks;
the program is this checkout's, unchanged. `pulumi up` must bring the fourth Deployment's Pods to
Ready on the real node (its readiness probe asks the database and the object storage it is
wired to), the API answers on its port, and a second preview has nothing to change.

The project is the session's prefix with ``-4th`` (namespace ``<SMARTNATION_IT_PROJECT>-4th-dev``),
so this test shares no namespace with the other integration tests, nor with another session.
"""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from smartnation.settings import load_settings
from tests.added_api import APP, IMAGE_OF, NAME, add_api
from tests.integration.platform_project import PROJECT as SESSION_PROJECT
from tests.integration.platform_project import PlatformProject
from tests.integration.running_pods import container_process, port_forward

pytestmark = pytest.mark.integration

PROJECT = f"{SESSION_PROJECT}-4th"
ENVIRONMENT = "dev"
CLUSTER = "monaco-onprem"
NAMESPACE = f"{PROJECT}-{ENVIRONMENT}"
REAL = "smartnation.mc/node-kind"
READY_WITHIN = 300.0
"""Seconds the Pods get after `pulumi up` returns (it already waits for the Deployment)."""


@pytest.fixture(scope="module")
def deployed(tmp_path_factory, tools, clusters):
    # A killed run of this test leaves its namespace behind with its state backend gone.
    stale = tools.run("kubectl", "--context", CLUSTER, "get", "namespace", NAMESPACE, check=False)
    if stale.returncode == 0:
        tools.run("kubectl", "--context", CLUSTER, "delete", "--wait=true", "namespace", NAMESPACE, timeout=600)
    backend_dir = tmp_path_factory.mktemp("state")
    backend = {"PULUMI_BACKEND_URL": f"file://{backend_dir}", "PULUMI_CONFIG_PASSPHRASE": "integration-tests"}
    project = PlatformProject.create(tmp_path_factory.mktemp("platform"), tools, backend, name=PROJECT)
    project.set_cluster(ENVIRONMENT, CLUSTER)
    add_api(project.root / "environments", ENVIRONMENT)
    project.init_stack(ENVIRONMENT)
    try:
        project.pulumi("up", "--yes", "--skip-preview", "--stack", ENVIRONMENT)
        yield project
    finally:
        project.destroy(ENVIRONMENT)


def _api_pods(tools) -> list[dict]:
    selector = f"app.kubernetes.io/instance={ENVIRONMENT}-{APP}"
    return tools.kubectl_json(CLUSTER, "-n", NAMESPACE, "get", "pods", "-l", selector)["items"]


def _ready(pod: dict) -> bool:
    conditions = pod["status"].get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


@pytest.fixture(scope="module")
def ready_pods(deployed, tools) -> list[dict]:
    deadline = time.monotonic() + READY_WITHIN
    while True:
        pods = _api_pods(tools)
        if pods and all(_ready(p) for p in pods):
            return pods
        if time.monotonic() > deadline:
            states = {p["metadata"]["name"]: p["status"] for p in pods}
            raise AssertionError(f"{APP} Pods not Ready in {READY_WITHIN:.0f} s: {json.dumps(states)[-3000:]}")
        time.sleep(5)


def test_the_fourth_apis_pods_are_ready_on_the_real_node_running_the_released_image(deployed, tools, ready_pods):
    settings = load_settings(ENVIRONMENT, deployed.root / "environments")
    assert len(settings.city_apis) == 4 and NAME in settings.city_apis
    release = settings.releases.components[NAME]
    assert release.digest == settings.releases.components[IMAGE_OF].digest
    nodes = {n["metadata"]["name"]: n for n in tools.kubectl_json(CLUSTER, "get", "nodes")["items"]}
    deployment = tools.kubectl_json(CLUSTER, "-n", NAMESPACE, "get", "deployment", f"{ENVIRONMENT}-{APP}")
    assert deployment["status"].get("readyReplicas", 0) >= settings.city_apis[NAME].replicas
    for pod in ready_pods:
        name, node = pod["metadata"]["name"], pod["spec"]["nodeName"]
        assert nodes[node]["metadata"]["labels"].get(REAL) == "real", f"{name} is on {node}, a simulated node"
        (container,) = pod["spec"]["containers"]
        assert container["image"].endswith(f"/{release.repository}@{release.digest}"), container["image"]
        # A real container: a process on this host, not a kwok stand-in.
        assert container_process(pod, container["name"]).pid > 1


def test_the_fourth_api_answers_ready_and_is_in_the_stack_outputs(deployed, tools, ready_pods):
    outputs = deployed.outputs(ENVIRONMENT)
    assert APP in outputs["api_urls"] and outputs["deployed_releases"]["helm_releases"][APP] == f"{ENVIRONMENT}-{APP}"
    pod = ready_pods[0]
    port = next(p["containerPort"] for p in pod["spec"]["containers"][0]["ports"])
    with (
        port_forward(tools, CLUSTER, NAMESPACE, pod["metadata"]["name"], port) as local,
        urllib.request.urlopen(f"http://127.0.0.1:{local}/readyz", timeout=15) as response,
    ):
        assert response.status == 200


def test_a_second_preview_changes_nothing(deployed, ready_pods):
    deployed.pulumi("preview", "--expect-no-changes", "--stack", ENVIRONMENT)
