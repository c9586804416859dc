"""charts/city-api against the real helm: lint, render with each environment's values, schema.

The values are exactly what the Pulumi program passes (``city_apis.chart_values``), for every
environment on every cluster, with placeholder names where the program passes Secret and
ConfigMap names. helm comes from PATH (``make bootstrap`` builds it into the tool cache and
the Makefile puts that on PATH); a missing helm fails, it never skips.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from smartnation.program.components.city_apis import CHART_PATH, chart_values
from smartnation.program.placement import Placement
from smartnation.settings import list_clusters, list_environments, load_cluster_profile, load_settings

pytestmark = pytest.mark.contract

CASES = [(env, cluster) for env in list_environments() for cluster in list_clusters()]
# Render for the Kubernetes the clusters run (helm built without version stamps assumes 1.20).
VERSIONS = Path(__file__).resolve().parents[2] / "infra" / "smartnation" / "tooling" / "toolchain" / "versions.yaml"
KUBE_VERSION = yaml.safe_load(VERSIONS.read_text(encoding="utf-8"))["kubernetes"]["version"]
# Every API the environments deploy (their Kubernetes names), from the shared defaults.
APPS = tuple(api.app for api in load_settings("dev").city_apis.values())


@pytest.fixture(scope="module")
def helm() -> str:
    path = shutil.which("helm")
    if path is None:
        pytest.fail(
            "helm is not on PATH. Run `make bootstrap` (it builds helm into $HOME/.cache/smartnation/bin) "
            "and run the tests through make, or put that directory on PATH."
        )
    return path


def values_for(environment: str, cluster: str, app: str) -> dict[str, Any]:
    settings = load_settings(environment)
    profile = load_cluster_profile(cluster)
    api = {api.app: api for api in settings.city_apis.values()}[app]
    return chart_values(
        placement=Placement.of(environment, profile, protect_state=False),
        api=api,
        releases=settings.releases,
        config_maps=[f"{environment}-{app}-connections"],
        secrets=[f"{environment}-{app}-credentials"],
    )


def run_helm(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([helm, *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"helm {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def write_values(tmp_path: Path, values: dict[str, Any]) -> Path:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return path


def test_chart_lints_with_its_defaults(helm: str) -> None:
    run_helm(helm, "lint", "--strict", "--kube-version", KUBE_VERSION, str(CHART_PATH))


@pytest.mark.parametrize(("environment", "cluster"), CASES)
@pytest.mark.parametrize("app", APPS)
def test_chart_lints_and_renders_with_environment_values(
    helm: str, tmp_path: Path, environment: str, cluster: str, app: str
) -> None:
    values = values_for(environment, cluster, app)
    values_file = write_values(tmp_path, values)
    release = f"{environment}-{app}"
    run_helm(helm, "lint", "--strict", "--kube-version", KUBE_VERSION, str(CHART_PATH), "-f", str(values_file))
    rendered = run_helm(
        helm,
        "template",
        release,
        str(CHART_PATH),
        "-f",
        str(values_file),
        "--namespace",
        f"smartnation-{environment}",
        "--kube-version",
        KUBE_VERSION,
    ).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    kinds = {d["kind"]: d for d in docs}
    assert set(kinds) == {
        "Deployment",
        "Service",
        "Ingress",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ServiceAccount",
    }
    for doc in docs:
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == release
        assert {"app.kubernetes.io/name", "app.kubernetes.io/version", "app.kubernetes.io/managed-by"} <= set(labels)

    profile = load_cluster_profile(cluster)
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    # By the digest the image build made, never by tag (policy images-by-digest).
    settings = load_settings(environment)
    built = settings.releases.components[{api.app: name for name, api in settings.city_apis.items()}[app]]
    assert container["image"] == f"{profile.registry.default}/{built.repository}@{built.digest}"
    assert kinds["Deployment"]["metadata"]["labels"]["app.kubernetes.io/version"] == built.tag
    ctx = container["securityContext"]
    assert ctx["runAsNonRoot"] and not ctx["allowPrivilegeEscalation"] and ctx["capabilities"]["drop"] == ["ALL"]
    assert ctx["readOnlyRootFilesystem"] and pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert {"requests", "limits"} <= set(container["resources"])
    assert "livenessProbe" in container and "readinessProbe" in container
    # The chart renders the placement's node selector: the real nodes where the stand-in's
    # profile runs this environment for real, the profile's stateless pool otherwise.
    assert pod["nodeSelector"] == Placement.of(environment, profile, protect_state=False).node_selector("stateless")
    assert pod["nodeSelector"] == values["nodeSelector"]
    assert pod["automountServiceAccountToken"] is False
    # Credentials only by reference.
    assert {"secretRef": {"name": f"{environment}-{app}-credentials"}} in container["envFrom"]
    assert all("value" not in e or "PASSWORD" not in e["name"] for e in container.get("env", []))
    # The pods carry the labels the NetworkPolicies select on.
    assert values["podLabels"].items() <= kinds["Deployment"]["spec"]["template"]["metadata"]["labels"].items()

    ingress = kinds["Ingress"]
    assert ingress["spec"]["ingressClassName"] == profile.ingress.ingress_class
    assert (ingress["metadata"].get("annotations") or {}) == dict(profile.ingress.annotations)
    assert ingress["spec"]["tls"][0]["hosts"] == [ingress["spec"]["rules"][0]["host"]]
    hpa = kinds["HorizontalPodAutoscaler"]["spec"]
    assert hpa["minReplicas"] == values["autoscaling"]["minReplicas"] <= hpa["maxReplicas"]
    assert "replicas" not in kinds["Deployment"]["spec"], "the HPA owns the replica count"


@pytest.mark.parametrize(("environment", "cluster"), CASES)
def test_environment_values_validate_against_the_schema(environment: str, cluster: str) -> None:
    schema = json.loads((CHART_PATH / "values.schema.json").read_text(encoding="utf-8"))
    defaults = yaml.safe_load((CHART_PATH / "values.yaml").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(defaults, schema)
    for app in APPS:
        values = values_for(environment, cluster, app)
        jsonschema.validate({**defaults, **values}, schema)


def test_schema_rejects_what_it_should(helm: str, tmp_path: Path) -> None:
    values = values_for("production", "monaco-onprem", "open-data-api")
    for bad in (
        {**values, "image": {**values["image"], "tag": "latest"}},
        {**values, "image": {**values["image"], "digest": "1.4.2"}},
        {**values, "unknownKnob": True},
        # helm merges over values.yaml, so a missing key is filled in; a wrong one is not.
        {**values, "containerPort": 80},
        {**values, "autoscaling": {**values["autoscaling"], "minReplicas": 0}},
    ):
        path = write_values(tmp_path, bad)
        result = subprocess.run(
            [helm, "template", "x", str(CHART_PATH), "-f", str(path), "--kube-version", KUBE_VERSION],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode != 0 and "schema" in result.stderr.lower(), result.stderr
