"""The guardrails with the real engine and the real program on a local cluster.

Two layers stop a bad production, and each is shown stopping a real preview:
- the policy pack (`--policy-pack`, as the ops CLI runs it) stops code mistakes in what the
  program declares, including what the city APIs' chart renders;
- the program's own preflight stops the settings mistakes that must never deploy (residency,
  unprotected production state, plaintext credentials) even when `pulumi` runs without the pack.

Nothing here runs `up`: previews only, from a scratch project with its own state backend.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from pulumi_policy import EnforcementLevel

from smartnation.settings import load_cluster_profile
from smartnation_policy import rules
from smartnation_policy.residency import PRODUCTION_COUNTRIES
from smartnation_policy.target import policy_config_for
from tests.integration.platform_project import REPO, PlatformProject

pytestmark = pytest.mark.integration
POLICY_PACK = REPO / "policy"
MANDATORY = sorted(p.name for p in rules.POLICIES if p.enforcement_level == EnforcementLevel.MANDATORY)


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


def _preview_without_policy(project: PlatformProject):
    """`pulumi preview --stack production` as someone would type it, without the CLI and its pack."""
    return project.pulumi("preview", "--stack", "production", check=False)


@contextmanager
def _edited(path: Path, old: str, new: str) -> Iterator[None]:
    original = path.read_text()
    assert original.count(old) == 1, f"{path} no longer has exactly one {old!r}: update this test"
    path.write_text(original.replace(old, new))
    try:
        yield
    finally:
        path.write_text(original)


def _policy_rows(output: str) -> str:
    """The engine's policy report, for assertion messages."""
    return output[-6000:]


def test_production_as_written_passes_every_mandatory_rule(project):
    proc = _preview_with_policy(project, "monaco-onprem")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "smartnation-guardrails" in proc.stdout  # the pack really ran
    # A rule that hit a value unknown during the preview is reported as advisory "can't run policy"
    # and the preview passes without it having judged anything: that is not a pass.
    skipped = sorted({name for name in MANDATORY if f"can't run policy '{name}'" in out})
    assert skipped == [], f"mandatory rules that did not judge the preview: {skipped}\n{_policy_rows(out)}"


def test_the_pack_stops_a_code_mistake_the_settings_cannot_make(project, tmp_path):
    # A checkout with mistakes no settings file can produce: containers with a writable root
    # filesystem (in the program and in the city APIs' chart, which the engine renders for the pack)
    # and a namespace that enforces only the baseline Pod Security profile.
    checkout = tmp_path / "checkout"
    shutil.copytree(REPO / "infra", checkout / "infra", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "charts", checkout / "charts")
    shutil.copytree(REPO / "environments", checkout / "environments", ignore=shutil.ignore_patterns("stacks"))
    shutil.copy2(REPO / "Pulumi.yaml", checkout / "Pulumi.yaml")
    components = checkout / "infra" / "smartnation" / "program" / "components"
    pods, guardrails = components / "pods.py", components / "guardrails.py"
    chart_deployment = checkout / "charts" / "city-api" / "templates" / "deployment.yaml"
    for path, old, new in (
        (pods, "read_only_root: bool = True", "read_only_root: bool = False"),
        (chart_deployment, "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false"),
        (
            guardrails,
            '"pod-security.kubernetes.io/enforce": "restricted"',
            '"pod-security.kubernetes.io/enforce": "baseline"',
        ),
    ):
        text = path.read_text()
        assert text.count(old) == 1, f"{path.name} no longer has exactly one {old!r}: update this test"
        path.write_text(text.replace(old, new))

    project.use_checkout(checkout)
    try:
        proc = _preview_with_policy(project, "monaco-onprem")
    finally:
        project.use_checkout(REPO)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, _policy_rows(out)
    assert "read-only-root-filesystem" in out and "has a writable root filesystem" in out, _policy_rows(out)
    assert "namespace-pod-security" in out and "pod-security.kubernetes.io/enforce: baseline" in out
    flagged = [line for line in out.splitlines() if "read-only-root-filesystem" in line]
    assert any("kubernetes:apps/v1:StatefulSet" in line for line in flagged), _policy_rows(out)
    assert any("kubernetes:apps/v1:Deployment" in line for line in flagged), _policy_rows(out)  # the chart's
    # The mandatory level is what failed the preview, not an error of the program.
    assert "mandatory" in out.lower(), _policy_rows(out)


def test_unprotected_production_state_is_stopped_with_or_without_the_pack(project):
    path = project.root / "environments" / "production.yaml"
    with _edited(path, "protect_state: true", "protect_state: false"):
        outputs = [_preview_without_policy(project), _preview_with_policy(project, "monaco-onprem")]
    for proc in outputs:
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0, out[-4000:]
        assert "environments/production.yaml: guardrails.protect_state" in out, out[-4000:]
        assert "production's state must be protected" in out


def test_production_outside_the_allowed_countries_is_stopped_by_the_program_itself(project):
    # Düsseldorf's profile moved to a country outside PRODUCTION_COUNTRIES, production on it, no pack.
    profile = project.root / "environments" / "clusters" / "dusseldorf-test.yaml"
    project.set_cluster("production", "dusseldorf-test")
    try:
        with _edited(profile, "country: DE", "country: FR"):
            proc = _preview_without_policy(project)
    finally:
        project.set_cluster("production", "monaco-onprem")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-4000:]
    assert "environments/production.yaml: cluster: production must not deploy to cluster 'dusseldorf-test'" in out
    assert f"in country FR; production may run only in {list(PRODUCTION_COUNTRIES)}" in out


def test_production_outside_the_allowed_countries_fails_the_preview(project):
    # The pack with the list it will have after the move to Monaco: Düsseldorf (DE) is refused.
    project.set_cluster("production", "dusseldorf-test")
    try:
        proc = _preview_with_policy(project, "dusseldorf-test", production_countries=("MC",))
    finally:
        project.set_cluster("production", "monaco-onprem")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "data-residency" in out
    assert "production must not deploy to cluster 'dusseldorf-test' in country DE" in out
