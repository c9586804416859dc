"""The policy pack, run by the real engine with the real program: violations stop a preview."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from smartnation.settings import load_cluster_profile
from smartnation_policy.target import policy_config_for
from tests.integration.platform_project import PlatformProject

pytestmark = pytest.mark.integration
POLICY_PACK = Path(__file__).resolve().parents[2] / "policy"


@pytest.fixture(scope="module")
def project(tmp_path_factory, tools, clusters):
    backend_dir = tmp_path_factory.mktemp("policy-state")
    backend = {"PULUMI_BACKEND_URL": f"file://{backend_dir}", "PULUMI_CONFIG_PASSPHRASE": "integration-tests"}
    proj = PlatformProject.create(tmp_path_factory.mktemp("policy"), tools, backend)
    proj.init_stack("production")
    return proj


def _preview_with_policy(project: PlatformProject, cluster: str, **overrides):
    profile = load_cluster_profile(cluster, project.root / "environments")
    config = project.root / f"policy-{cluster}.json"
    config.write_text(json.dumps(policy_config_for("production", profile, **overrides)))
    return project.pulumi(
        "preview",
        "--stack",
        "production",
        "--policy-pack",
        str(POLICY_PACK),
        "--policy-pack-config",
        str(config),
        check=False,
    )


def test_production_as_written_passes_every_mandatory_rule(project):
    proc = _preview_with_policy(project, "monaco-onprem")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "smartnation-guardrails" in proc.stdout  # the pack really ran


def test_unprotected_production_state_fails_the_preview(project):
    path = project.root / "environments" / "production.yaml"
    original = path.read_text()
    path.write_text(original.replace("protect_state: true", "protect_state: false"))
    try:
        proc = _preview_with_policy(project, "monaco-onprem")
    finally:
        path.write_text(original)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "protect-production-state" in out
    assert "holds production data but is not protected" in out


def test_production_outside_the_allowed_countries_fails_the_preview(project):
    project.set_cluster("production", "dusseldorf-test")
    try:
        proc = _preview_with_policy(project, "dusseldorf-test", production_countries=("MC",))
    finally:
        project.set_cluster("production", "monaco-onprem")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "data-residency" in out
    assert "production must not deploy to cluster 'dusseldorf-test' in country DE" in out
