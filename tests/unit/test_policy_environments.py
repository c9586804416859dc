"""Every rule of the pack over every environment × cluster build: no mandatory violation.

The builds are the real program under the harness's mocks (tests/unit/harness.py), each resource
handed to the validators the way the engine's analyzer hands it over: its inputs in Kubernetes'
shape, its options (protect), its provider and dependencies for the stack policies, and the
target the CLI would write for that environment on that cluster. A real preview does the same
with the real engine in tests/integration/test_policy_enforcement.py, where the city APIs' chart
is rendered too (under mocks a `helm.sh/v4:Chart` stays one resource).

The second half breaks one real resource of a production build per rule and shows the sweep
reports that rule, so a sweep that judged nothing could not pass.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from pulumi_policy import (
    EnforcementLevel,
)

from smartnation.cli import policy_sweep
from smartnation_policy import rules
from tests.unit.harness import CLUSTERS, ENVIRONMENTS, BuiltStack, Registered

pytestmark = pytest.mark.unit

BUILDS = [(environment, cluster) for environment in ENVIRONMENTS for cluster in CLUSTERS]
MANDATORY = {p.name for p in rules.POLICIES if p.enforcement_level == EnforcementLevel.MANDATORY}


def judge(stack: BuiltStack, resources: list[Registered] | None = None) -> list[tuple[str, str]]:
    """(policy name, message) for every violation of every policy over the build's resources: the
    same sweep `smartnation preview --redacted` runs (smartnation.cli.policy_sweep)."""
    assert stack.settings is not None
    found = policy_sweep.judge(stack.resources if resources is None else resources, stack.settings)
    return [(violation.policy, violation.message) for violation in found]


@pytest.mark.parametrize(("environment", "cluster"), BUILDS, ids=[f"{e}@{c}" for e, c in BUILDS])
def test_every_build_passes_every_mandatory_rule(build_stack, environment, cluster):
    stack = build_stack(environment, cluster)
    kinds = {r.kind for r in stack.kubernetes()}
    # What the rules judge is there: pods, config, Services, policies, the namespace.
    assert {"StatefulSet", "CronJob", "Job", "ConfigMap", "Service", "NetworkPolicy", "Namespace"} <= kinds
    mandatory = [(name, message) for name, message in judge(stack) if name in MANDATORY]
    assert mandatory == []


# --- the sweep has teeth: one broken real resource per rule ------------------------------------


def _first(resources: list[Registered], kind: str, name_part: str = "") -> Registered:
    return next(r for r in resources if r.kind == kind and name_part in r.name)


def _pod_spec(resource: Registered) -> dict[str, Any]:
    spec = resource.inputs["spec"]
    if resource.kind == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]["spec"]


def _first_container(resources: list[Registered]) -> dict[str, Any]:
    return _pod_spec(_first(resources, "StatefulSet"))["containers"][0]


def _first_container_by_tag(resources: list[Registered]) -> None:
    container = _first_container(resources)
    container["image"] = container["image"].partition("@")[0] + ":2.0.11-1.2-deb12u2"


def _add_capability(resources: list[Registered]) -> None:
    _first_container(resources)["securityContext"]["capabilities"]["add"] = ["NET_ADMIN"]


def _unconfine(resources: list[Registered]) -> None:
    statefulset = _first(resources, "StatefulSet")
    del _pod_spec(statefulset)["securityContext"]["seccompProfile"]
    del _pod_spec(statefulset)["containers"][0]["securityContext"]["seccompProfile"]


def _writable_root(resources: list[Registered]) -> None:
    _first_container(resources)["securityContext"]["readOnlyRootFilesystem"] = False


def _password_in_config_map(resources: list[Registered]) -> None:
    _first(resources, "ConfigMap", "connections").inputs["data"]["PGPASSWORD"] = "not-in-a-secret"


def _password_in_env(resources: list[Registered]) -> None:
    cronjob = _first(resources, "CronJob")
    _pod_spec(cronjob)["containers"][0].setdefault("env", []).append({"name": "PGPASSWORD", "value": "plain"})


def _allow_all(resources: list[Registered]) -> None:
    _first(resources, "NetworkPolicy", "database-primary").inputs["spec"]["ingress"].append({})


def _expose_database(resources: list[Registered]) -> None:
    _first(resources, "Service", "database-primary").inputs["spec"]["type"] = "LoadBalancer"


def _expose_object_storage(resources: list[Registered]) -> None:
    _first(resources, "Service", "object-storage-api").inputs["spec"]["type"] = "NodePort"


def _delete_claims(resources: list[Registered]) -> None:
    _first(resources, "StatefulSet", "database").inputs["spec"]["persistentVolumeClaimRetentionPolicy"] = {
        "whenDeleted": "Delete",
        "whenScaled": "Retain",
    }


def _unprotect(resources: list[Registered]) -> None:
    _first(resources, "StatefulSet", "object-storage").protect = False


def _no_pod_security(resources: list[Registered]) -> None:
    labels = _first(resources, "Namespace").inputs["metadata"]["labels"]
    for key in [k for k in labels if k.startswith("pod-security.kubernetes.io/")]:
        del labels[key]


def _tag_only_image(resources: list[Registered]) -> None:
    container = _pod_spec(_first(resources, "CronJob"))["containers"][0]
    container["image"] = container["image"].partition("@")[0] + ":2.17.2-pg15"


BREAKS: dict[str, list[Callable[[list[Registered]], None]]] = {
    "images-by-digest": [_first_container_by_tag, _tag_only_image],
    "no-added-capabilities": [_add_capability],
    "require-seccomp-profile": [_unconfine],
    "read-only-root-filesystem": [_writable_root],
    "no-plaintext-secrets": [_password_in_config_map, _password_in_env],
    "no-allow-all-network-policy": [_allow_all],
    "no-public-data-services": [_expose_database, _expose_object_storage],
    "retain-production-claims": [_delete_claims],
    "protect-production-state": [_unprotect],
    "namespace-pod-security": [_no_pod_security],
}
CASES = [(name, brk) for name, breaks in BREAKS.items() for brk in breaks]


@pytest.mark.parametrize(("policy", "brk"), CASES, ids=[brk.__name__.strip("_") for _, brk in CASES])
def test_the_sweep_reports_a_real_resource_broken_against_a_rule(build_stack, policy, brk):
    stack = build_stack("production", "monaco-onprem")
    resources = copy.deepcopy(stack.resources)  # the shared build stays as it was
    brk(resources)
    reported = {name for name, _ in judge(stack, resources) if name in MANDATORY}
    assert reported == {policy}


def test_every_new_rule_has_a_break_the_sweep_catches():
    added = {
        "images-by-digest",
        "no-added-capabilities",
        "require-seccomp-profile",
        "read-only-root-filesystem",
        "no-plaintext-secrets",
        "no-allow-all-network-policy",
        "no-public-data-services",
        "retain-production-claims",
        "namespace-pod-security",
    }
    assert added <= set(BREAKS) and added <= MANDATORY
