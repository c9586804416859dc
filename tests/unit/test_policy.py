"""The smartnation-guardrails policy pack: every rule with a violating and a passing input.

Validators are called directly with the engine's own argument classes from pulumi_policy, built
the way its analyzer builds them (props wrapped in the unknown-checking proxy), and a recorder in
place of `report_violation`. The last tests start the real pack process and talk to it over the
analyzer gRPC protocol, as the Pulumi engine does.

`smartnation_policy` imports from the project's install (pyproject.toml lists policy/ as a
package root); the targets are built from cluster profiles as the settings loader reads them.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import jsonschema
import pytest
import yaml
from google.protobuf import empty_pb2, json_format, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc
from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyProviderResource,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, unknown_checking_proxy

from smartnation.settings import SettingsError, load_cluster_profile
from smartnation.settings.models import ClusterProfile
from smartnation_policy import rules
from smartnation_policy.target import (
    PRODUCTION_COUNTRIES,
    TARGET_CONFIG_SCHEMA,
    TARGET_KEYS,
    Target,
    TargetConfigError,
    policy_config_for,
    target_for,
)
from smartnation_policy.workloads import WORKLOAD_TYPES, parse_image

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
POLICY_DIR = REPO / "policy"
CLUSTERS = REPO / "environments" / "clusters"


# --- fixtures and builders ----------------------------------------------------------------------


@pytest.fixture(params=sorted(p.stem for p in CLUSTERS.glob("*.yaml")))
def profile(request: pytest.FixtureRequest) -> ClusterProfile:
    """Each real cluster profile of the repository."""
    return load_cluster_profile(request.param)


ONPREM = load_cluster_profile("monaco-onprem")
MIRROR = ONPREM.registry.allowed[0]
GOOD_CLASS = ONPREM.storage.classes[0].name


def target_config(environment: str = "dev", profile: ClusterProfile | None = None, **overrides: Any) -> dict:
    """The config a targeted policy receives, as the CLI's file hands it over."""
    config = target_for(environment, profile or ONPREM).as_config()
    config.update(overrides)
    return config


class Violations(list):
    """Records `report_violation(message, urn)` calls."""

    def __call__(self, message: str, urn: str | None = None) -> None:
        self.append((message, urn))

    @property
    def messages(self) -> list[str]:
        return [message for message, _ in self]


def options(protect: bool = False) -> PolicyResourceOptions:
    return PolicyResourceOptions(protect, [], None, [], PolicyCustomTimeouts(0, 0, 0), [], None)


def urn_of(resource_type: str, name: str) -> str:
    return f"urn:pulumi:dev::smartnation::{resource_type}::{name}"


def resource_args(
    resource_type: str,
    props: dict[str, Any],
    *,
    name: str = "api",
    config: dict[str, Any] | None = None,
    protect: bool = False,
) -> ResourceValidationArgs:
    """What the engine passes a resource policy."""
    return ResourceValidationArgs(
        resource_type,
        unknown_checking_proxy(props),
        urn_of(resource_type, name),
        name,
        options(protect),
        None,
        config,
    )


def stack_resource(
    resource_type: str,
    props: dict[str, Any],
    *,
    name: str,
    provider_namespace: str | None = None,
) -> PolicyResource:
    provider = PolicyProviderResource(
        "pulumi:providers:kubernetes",
        unknown_checking_proxy({"namespace": provider_namespace} if provider_namespace else {}),
        urn_of("pulumi:providers:kubernetes", "cluster"),
        "cluster",
    )
    return PolicyResource(
        resource_type,
        unknown_checking_proxy(props),
        urn_of(resource_type, name),
        name,
        options(),
        provider,
        None,
        [],
        {},
    )


def stack_args(*resources: PolicyResource) -> StackValidationArgs:
    return StackValidationArgs(list(resources), None)


def container(name: str = "api", **overrides: Any) -> dict[str, Any]:
    """A container that passes every rule on the on-prem cluster."""
    spec = {
        "name": name,
        "image": f"{MIRROR}/{name}@sha256:{'c' * 64}",
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    spec.update(overrides)
    return spec


def pod(*containers: dict[str, Any], init: list[dict[str, Any]] | None = None, **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": list(containers) or [container()]}
    if init:
        spec["initContainers"] = init
    spec.update(overrides)
    return spec


WORKLOAD_KINDS = {
    "kubernetes:core/v1:Pod": lambda spec: {"spec": spec},
    "kubernetes:apps/v1:Deployment": lambda spec: {"spec": {"replicas": 1, "template": {"spec": spec}}},
    "kubernetes:apps/v1:StatefulSet": lambda spec: {"spec": {"replicas": 1, "template": {"spec": spec}}},
    "kubernetes:apps/v1:DaemonSet": lambda spec: {"spec": {"template": {"spec": spec}}},
    "kubernetes:batch/v1:Job": lambda spec: {"spec": {"template": {"spec": spec}}},
    "kubernetes:batch/v1:CronJob": lambda spec: {
        "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": {"spec": spec}}}}
    },
}
WORKLOAD_TYPES_UNDER_TEST = sorted(WORKLOAD_KINDS)
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
STATEFULSET = "kubernetes:apps/v1:StatefulSet"
PVC = "kubernetes:core/v1:PersistentVolumeClaim"
NAMESPACE = "kubernetes:core/v1:Namespace"
NETPOL = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
PDB = "kubernetes:policy/v1:PodDisruptionBudget"


def workload(resource_type: str, spec: dict[str, Any]) -> dict[str, Any]:
    props = WORKLOAD_KINDS[resource_type](copy.deepcopy(spec))
    props["metadata"] = {"name": "api", "namespace": "smartnation-dev"}
    return props


def deployment(replicas: int = 3, spec: dict[str, Any] | None = None, labels: dict | None = None) -> dict:
    labels = labels or {"app.kubernetes.io/name": "api"}
    return {
        "metadata": {"name": "api", "namespace": "smartnation-dev"},
        "spec": {
            # Numbers cross the engine boundary as JSON doubles.
            "replicas": float(replicas),
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": spec or pod()},
        },
    }


def check(validator: Callable[..., Any], args: Any) -> Violations:
    violations = Violations()
    validator(args, violations)
    return violations


# --- the pack -----------------------------------------------------------------------------------


def test_policy_names_are_unique_kebab_case_and_each_has_its_validator():
    names = [policy.name for policy in rules.POLICIES]
    assert len(names) == len(set(names))
    for name in names:
        assert re.fullmatch(r"[a-z]+(-[a-z]+)*", name), name
        assert callable(getattr(rules, f"{name.replace('-', '_')}_validator")), name


def test_the_mandatory_guardrails_block_and_the_judgment_calls_advise():
    levels = {policy.name: policy.enforcement_level for policy in rules.POLICIES}
    mandatory = {
        "require-resource-limits",
        "no-latest-image",
        "images-by-digest",
        "allowed-registries",
        "allowed-storage-classes",
        "no-privileged",
        "namespace-default-deny",
        "protect-production-state",
        "data-residency",
        "no-added-capabilities",
        "require-seccomp-profile",
        "read-only-root-filesystem",
        "no-plaintext-secrets",
        "no-allow-all-network-policy",
        "no-public-data-services",
        "retain-production-claims",
        "namespace-pod-security",
    }
    assert {n for n, level in levels.items() if level == EnforcementLevel.MANDATORY} == mandatory
    assert {n for n, level in levels.items() if level == EnforcementLevel.ADVISORY} == {
        "prefer-pod-disruption-budget",
        "topology-spread",
    }
    stack_policies = {p.name for p in rules.POLICIES if isinstance(p, StackValidationPolicy)}
    assert stack_policies == {"namespace-default-deny", "prefer-pod-disruption-budget"}
    assert all(isinstance(p, ResourceValidationPolicy | StackValidationPolicy) for p in rules.POLICIES)


def test_policy_pack_manifest_runs_python_in_the_repository_virtualenv():
    manifest = yaml.safe_load((POLICY_DIR / "PulumiPolicy.yaml").read_text())
    assert manifest["runtime"]["name"] == "python"
    venv = (POLICY_DIR / manifest["runtime"]["options"]["virtualenv"]).resolve()
    assert venv == (REPO / ".venv").resolve()
    assert 'name="smartnation-guardrails"' in (POLICY_DIR / "__main__.py").read_text()


# --- target / policy config ---------------------------------------------------------------------


def test_policy_config_carries_the_cluster_profile_to_every_targeted_policy(profile):
    config = policy_config_for("staging", profile)
    targeted = {p.name for p in rules.POLICIES if p.config_schema is TARGET_CONFIG_SCHEMA}
    assert set(config) == targeted
    assert {
        "allowed-registries",
        "allowed-storage-classes",
        "protect-production-state",
        "data-residency",
        "retain-production-claims",
    } <= targeted
    # What the engine does with the file: validate each policy's entry against its schema.
    schema = {
        "type": "object",
        "properties": TARGET_CONFIG_SCHEMA.properties,
        "required": TARGET_CONFIG_SCHEMA.required,
    }
    for properties in config.values():
        jsonschema.validate(properties, schema)
        assert json.loads(json.dumps(properties)) == properties
        target = Target.from_config(properties)
        assert target.cluster == profile.name
        assert target.country == profile.site.country
        assert target.allowed_registries == profile.registry.allowed
        assert target.storage_classes == tuple(c.name for c in profile.storage.classes)
        assert target.production_countries == PRODUCTION_COUNTRIES


def test_policy_config_file_keys_are_policy_names_as_the_engine_requires():
    # A top-level key that is not a policy must be an enforcement level; the target keys are not.
    config = policy_config_for("dev", ONPREM)
    names = {p.name for p in rules.POLICIES}
    assert set(config) <= names
    assert not set(config) & set(TARGET_KEYS)


@pytest.mark.parametrize(
    ("mutate", "key_path", "words"),
    [
        (lambda p: p["registry"].pop("allowed"), "registry.allowed", "required key is missing"),
        (lambda p: p["registry"].update(allowed=[]), "registry.allowed", "expected from 1 to 20 items, got 0"),
        (lambda p: p["registry"].update(default="other.example/x"), "registry.default", "not in registry.allowed"),
        (lambda p: p["storage"].update(classes=[]), "storage.classes", "expected from 1 to 20 items, got 0"),
        (lambda p: p["storage"].update(default_class="nfs"), "storage.default_class", "not one of the classes"),
        (lambda p: p["storage"]["classes"][0].pop("name"), "storage.classes.0.name", "required key is missing"),
        (lambda p: p["site"].update(country="Monaco"), "site.country", "ISO 3166 country code"),
        (lambda p: p.pop("name"), "name", "required key is missing"),
    ],
)
def test_a_profile_the_pack_cannot_judge_against_is_refused_when_read(tmp_path, mutate, key_path, words):
    # What the pack needs of a profile (a country, registries, storage classes) the settings
    # model guarantees: a profile without it never reaches policy_config_for.
    data = yaml.safe_load((CLUSTERS / "monaco-onprem.yaml").read_text())
    mutate(data)
    environments = tmp_path / "environments"
    (environments / "clusters").mkdir(parents=True)
    (environments / "clusters" / "monaco-onprem.yaml").write_text(yaml.safe_dump(data))
    expected = f"^environments/clusters/monaco-onprem.yaml: {re.escape(key_path)}: .*{words}"
    with pytest.raises(SettingsError, match=expected):
        load_cluster_profile("monaco-onprem", environments)


def test_an_unknown_environment_is_rejected():
    with pytest.raises(TargetConfigError, match="environment"):
        policy_config_for("prod", ONPREM)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (None, "needs its target"),
        ({**target_config(), "registries": ["x"]}, "unknown keys"),
        ({k: v for k, v in target_config().items() if k != "storage_classes"}, "missing keys"),
        (target_config(allowed_registries=[]), "allowed_registries"),
        (target_config(production_countries=["mc"]), "production_countries"),
    ],
)
def test_a_targeted_policy_without_a_valid_target_fails_closed(config, message):
    args = resource_args(PVC, {"spec": {"storageClassName": GOOD_CLASS}}, config=config)
    with pytest.raises(TargetConfigError, match=message):
        check(rules.allowed_storage_classes_validator, args)


# --- require-resource-limits --------------------------------------------------------------------


@pytest.mark.parametrize("resource_type", WORKLOAD_TYPES_UNDER_TEST)
def test_require_resource_limits_finds_init_containers_wherever_the_kind_nests_the_pod(resource_type):
    migrate = container("migrate")
    del migrate["resources"]["limits"]["cpu"]
    del migrate["resources"]["requests"]
    props = workload(resource_type, pod(container("api"), init=[migrate]))
    violations = check(rules.require_resource_limits_validator, resource_args(resource_type, props))
    assert len(violations) == 1
    message = violations.messages[0]
    assert "init container 'migrate'" in message
    assert "'api'" in message  # the resource
    for missing in ("requests.cpu", "requests.memory", "limits.cpu"):
        assert missing in message
    assert "limits.memory" not in message


@pytest.mark.parametrize("resource_type", WORKLOAD_TYPES_UNDER_TEST)
def test_require_resource_limits_passes_containers_with_requests_and_limits(resource_type):
    props = workload(resource_type, pod(container("api"), container("sidecar"), init=[container("migrate")]))
    assert check(rules.require_resource_limits_validator, resource_args(resource_type, props)) == []


def test_every_workload_kind_under_test_is_one_the_pack_reads():
    assert set(WORKLOAD_KINDS) <= set(WORKLOAD_TYPES)


def test_require_resource_limits_ignores_resources_without_pods():
    args = resource_args("kubernetes:core/v1:ConfigMap", {"data": {"containers": "none"}})
    assert check(rules.require_resource_limits_validator, args) == []


# --- no-latest-image ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "image",
    [
        f"{MIRROR}/api:latest",
        f"{MIRROR}/api",
        "registry.smartnation.mc:5000/api",  # the port is not a tag
    ],
)
def test_no_latest_image_rejects_latest_and_untagged_images(image):
    props = workload(DEPLOYMENT, pod(container("web", image=image)))
    violations = check(rules.no_latest_image_validator, resource_args(DEPLOYMENT, props))
    assert len(violations) == 1
    assert "container 'web'" in violations.messages[0]
    assert image in violations.messages[0]


def test_no_latest_image_checks_init_containers_of_cronjobs():
    spec = pod(container("backup"), init=[container("wait", image=f"{MIRROR}/busybox:latest")])
    props = workload("kubernetes:batch/v1:CronJob", spec)
    violations = check(rules.no_latest_image_validator, resource_args("kubernetes:batch/v1:CronJob", props))
    assert [m for m in violations.messages if "init container 'wait'" in m and ":latest" in m]


@pytest.mark.parametrize(
    "image",
    [
        f"{MIRROR}/api:1.4.2",
        "registry.smartnation.mc:5000/api:2024.06",
        f"{MIRROR}/api@sha256:{'a' * 64}",
        f"{MIRROR}/api:latest@sha256:{'b' * 64}",  # the digest is what gets pulled
    ],
)
def test_no_latest_image_accepts_pinned_images(image):
    props = workload(DEPLOYMENT, pod(container("web", image=image)))
    assert check(rules.no_latest_image_validator, resource_args(DEPLOYMENT, props)) == []


@pytest.mark.parametrize(
    "image",
    [
        f"{MIRROR}/api:1.4.2",  # a tag alone: someone can move it
        f"{MIRROR}/api",
        f"{MIRROR}/api@sha256:{'a' * 63}",  # one digit short
        f"{MIRROR}/api@sha256:{'A' * 64}",  # digests are lowercase hex
        f"{MIRROR}/api@sha512:{'a' * 128}",
        f"{MIRROR}/api@sha256:{'a' * 64}:1.4.2",  # the digest must end the reference
    ],
)
def test_images_by_digest_rejects_images_not_named_by_their_digest(image):
    spec = pod(container("web", image=image), init=[container("wait")])
    props = workload(DEPLOYMENT, spec)
    violations = check(rules.images_by_digest_validator, resource_args(DEPLOYMENT, props))
    assert len(violations) == 1
    assert "container 'web'" in violations.messages[0] and image in violations.messages[0]
    assert "environments/images.lock.yaml" in violations.messages[0]


@pytest.mark.parametrize("resource_type", WORKLOAD_TYPES_UNDER_TEST)
def test_images_by_digest_checks_init_containers_of_every_workload_kind(resource_type):
    spec = pod(container("main"), init=[container("wait", image=f"{MIRROR}/busybox:1.36")])
    violations = check(rules.images_by_digest_validator, resource_args(resource_type, workload(resource_type, spec)))
    assert len(violations) == 1 and "init container 'wait'" in violations.messages[0]


@pytest.mark.parametrize(
    "image",
    [
        f"{MIRROR}/api@sha256:{'a' * 64}",
        f"registry.smartnation.mc:5000/api:1.4.2@sha256:{'0123456789abcdef' * 4}",  # the digest is what runs
    ],
)
def test_images_by_digest_accepts_digest_references(image):
    props = workload(DEPLOYMENT, pod(container("web", image=image)))
    assert check(rules.images_by_digest_validator, resource_args(DEPLOYMENT, props)) == []


def test_image_references_split_like_the_runtime_reads_them():
    assert parse_image("host:5000/team/app").tag is None
    assert parse_image("host:5000/team/app:1.2").tag == "1.2"
    assert parse_image("app@sha256:abc").digest == "sha256:abc"


# --- allowed-registries -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "image",
    [
        "docker.io/library/nginx:1.27.0",
        "nginx:1.27.0",
        f"{MIRROR}-untrusted/api:1.0.0",  # a prefix only counts up to a path boundary
        "swr.eu-west-101.myhuaweicloud.eu/smartnation/api:1.0.0",  # Düsseldorf's registry, not on-prem's
    ],
)
def test_allowed_registries_rejects_images_from_elsewhere(image):
    props = workload(STATEFULSET, pod(container("db", image=image)))
    args = resource_args(STATEFULSET, props, config=target_config("production"))
    violations = check(rules.allowed_registries_validator, args)
    assert len(violations) == 1
    message = violations.messages[0]
    assert "container 'db'" in message and image in message and "monaco-onprem" in message


def test_allowed_registries_accepts_the_clusters_own_registry(profile):
    registry = profile.registry.allowed[0]
    props = workload(DEPLOYMENT, pod(container("api", image=f"{registry}/api:1.0.0")))
    args = resource_args(DEPLOYMENT, props, config=target_config("dev", profile))
    assert check(rules.allowed_registries_validator, args) == []


# --- allowed-storage-classes --------------------------------------------------------------------


@pytest.mark.parametrize("storage_class", ["gp2", "csi-disk", "", None])
def test_allowed_storage_classes_rejects_claims_off_the_clusters_classes(storage_class):
    spec = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}}
    if storage_class is not None:
        spec["storageClassName"] = storage_class
    args = resource_args(PVC, {"spec": spec}, name="broker-data", config=target_config())
    violations = check(rules.allowed_storage_classes_validator, args)
    assert len(violations) == 1
    assert "PersistentVolumeClaim 'broker-data'" in violations.messages[0]
    assert (storage_class or "no storageClassName") in violations.messages[0]


def test_allowed_storage_classes_checks_volume_claim_templates_and_ephemeral_volumes():
    props = workload(
        STATEFULSET,
        pod(
            volumes=[{"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {"storageClassName": "fast"}}}}]
        ),
    )
    props["spec"]["volumeClaimTemplates"] = [
        {"metadata": {"name": "data"}, "spec": {"storageClassName": GOOD_CLASS}},
        {"metadata": {"name": "wal"}, "spec": {}},
    ]
    violations = check(
        rules.allowed_storage_classes_validator, resource_args(STATEFULSET, props, config=target_config())
    )
    assert len(violations) == 2
    assert any("volumeClaimTemplate 'wal'" in m and "no storageClassName" in m for m in violations.messages)
    assert any("ephemeral volume 'scratch'" in m and "'fast'" in m for m in violations.messages)


def test_allowed_storage_classes_accepts_every_class_of_the_cluster(profile):
    config = target_config("dev", profile)
    for storage_class in profile.storage.classes:
        props = workload(STATEFULSET, pod())
        props["spec"]["volumeClaimTemplates"] = [
            {"metadata": {"name": "data"}, "spec": {"storageClassName": storage_class.name}}
        ]
        assert check(rules.allowed_storage_classes_validator, resource_args(STATEFULSET, props, config=config)) == []
        pvc = {"spec": {"storageClassName": storage_class.name}}
        assert check(rules.allowed_storage_classes_validator, resource_args(PVC, pvc, config=config)) == []


# --- no-privileged ------------------------------------------------------------------------------


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A mutation of a pod spec: `containers.0.securityContext.privileged` = value."""

    def mutate(spec: dict[str, Any]) -> None:
        node: Any = spec
        *parents, last = path.split(".")
        for key in parents:
            node = node[int(key)] if key.isdigit() else node.setdefault(key, {})
        node[last] = value

    return mutate


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (_set("containers.0.securityContext.privileged", True), ["container 'api'", "privileged: true"]),
        (
            _set("containers.0.securityContext.allowPrivilegeEscalation", True),
            ["container 'api'", "allowPrivilegeEscalation"],
        ),
        (_set("containers.0.securityContext.runAsNonRoot", False), ["container 'api'", "runAsNonRoot"]),
        (_set("containers.0.securityContext", {}), ["container 'api'", "runAsNonRoot"]),
        (_set("containers.0.securityContext.runAsUser", 0), ["container 'api'", "runAsUser is 0"]),
        (_set("containers.0.securityContext.capabilities", {"add": ["SYS_ADMIN"]}), ["container 'api'", "SYS_ADMIN"]),
        (_set("initContainers", [container("chown", securityContext={"runAsUser": 0})]), ["init container 'chown'"]),
        (_set("hostNetwork", True), ["hostNetwork"]),
        (_set("hostPID", True), ["hostPID"]),
        (_set("hostIPC", True), ["hostIPC"]),
        (_set("volumes", [{"name": "docker", "hostPath": {"path": "/var/run/docker.sock"}}]), ["'docker'", "hostPath"]),
    ],
)
def test_no_privileged_rejects_ways_to_reach_the_node(mutate, expected):
    spec = pod()
    mutate(spec)
    violations = check(rules.no_privileged_validator, resource_args(DEPLOYMENT, workload(DEPLOYMENT, spec)))
    assert violations, expected
    assert any(all(part in m and "Deployment 'api'" in m for part in expected) for m in violations.messages)


def test_no_privileged_takes_the_pod_level_user_unless_a_container_overrides_it():
    root_pod = pod(
        container("api", securityContext={}),
        container("proxy", securityContext={"runAsUser": 10001}),
        securityContext={"runAsNonRoot": True, "runAsUser": 0},
    )
    violations = check(rules.no_privileged_validator, resource_args(DEPLOYMENT, workload(DEPLOYMENT, root_pod)))
    assert len(violations) == 1
    assert "container 'api'" in violations.messages[0] and "runAsUser is 0" in violations.messages[0]


@pytest.mark.parametrize("resource_type", WORKLOAD_TYPES_UNDER_TEST)
def test_no_privileged_accepts_non_root_pods(resource_type):
    spec = pod(
        container("api", securityContext={"allowPrivilegeEscalation": False}),
        container("proxy", securityContext={"runAsNonRoot": True}),
        securityContext={"runAsNonRoot": True, "runAsUser": 10001},
        volumes=[{"name": "config", "configMap": {"name": "api"}}],
    )
    assert check(rules.no_privileged_validator, resource_args(resource_type, workload(resource_type, spec))) == []


def test_no_privileged_lets_a_container_make_itself_non_root():
    spec = pod(container("api"), securityContext={"runAsNonRoot": False})
    assert check(rules.no_privileged_validator, resource_args(DEPLOYMENT, workload(DEPLOYMENT, spec))) == []


# --- namespace-default-deny ---------------------------------------------------------------------


def namespace(name: str = "smartnation-dev") -> PolicyResource:
    return stack_resource(NAMESPACE, {"metadata": {"name": name}}, name=f"{name}-ns")


def network_policy(namespace_name: Any = "smartnation-dev", name: str = "default-deny", **spec: Any) -> PolicyResource:
    full_spec = {"podSelector": {}, "policyTypes": ["Ingress", "Egress"], **spec}
    metadata = {"name": name} if namespace_name is None else {"name": name, "namespace": namespace_name}
    return stack_resource(NETPOL, {"metadata": metadata, "spec": full_spec}, name=f"{name}-{namespace_name}")


@pytest.mark.parametrize(
    "policies",
    [
        [],
        [network_policy("smartnation-staging")],
        [network_policy(podSelector={"matchLabels": {"app": "api"}})],
        [network_policy(policyTypes=["Ingress"])],
        [network_policy(ingress=[{}])],
        [network_policy(egress=[{"to": [{"namespaceSelector": {}}]}])],
    ],
    ids=["none", "other-namespace", "selects-some-pods", "ingress-only", "allows-ingress", "allows-egress"],
)
def test_namespace_default_deny_rejects_namespaces_without_a_deny_all_policy(policies):
    ns = namespace()
    violations = check(rules.namespace_default_deny_validator, stack_args(ns, *policies))
    assert violations == [(violations.messages[0], ns.urn)]
    assert "Namespace 'smartnation-dev'" in violations.messages[0]


def test_namespace_default_deny_accepts_a_deny_all_policy_beside_allow_policies():
    allow = network_policy(name="allow-dns", policyTypes=["Egress"], egress=[{"ports": [{"port": 53}]}])
    resources = [
        namespace(),
        network_policy(),
        allow,
        namespace("smartnation-data"),
        network_policy("smartnation-data"),
    ]
    assert check(rules.namespace_default_deny_validator, stack_args(*resources)) == []


def test_namespace_default_deny_uses_the_providers_namespace_when_metadata_has_none():
    ns = namespace()
    policy = stack_resource(
        NETPOL,
        {"metadata": {"name": "default-deny"}, "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}},
        name="default-deny",
        provider_namespace="smartnation-dev",
    )
    assert check(rules.namespace_default_deny_validator, stack_args(ns, policy)) == []
    orphan = network_policy(None)  # lands in `default`
    assert len(check(rules.namespace_default_deny_validator, stack_args(ns, orphan))) == 1


def test_namespace_default_deny_matches_by_dependency_while_the_name_is_unknown():
    ns = stack_resource(NAMESPACE, {"metadata": {"name": UNKNOWN_STRING_VALUE}}, name="tenant-ns")
    policy = network_policy(UNKNOWN_STRING_VALUE)
    assert len(check(rules.namespace_default_deny_validator, stack_args(ns, policy))) == 1
    policy.property_dependencies["metadata"] = [ns]
    assert check(rules.namespace_default_deny_validator, stack_args(ns, policy)) == []


# --- protect-production-state -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resource_type", "props"),
    [
        (STATEFULSET, workload(STATEFULSET, pod())),
        (PVC, {"spec": {"storageClassName": GOOD_CLASS}}),
        ("kubernetes:core/v1:PersistentVolume", {"spec": {"storageClassName": "local-nvme"}}),
        (NAMESPACE, {"metadata": {"name": "smartnation-production"}}),
    ],
)
def test_protect_production_state_requires_protect_on_stateful_resources(resource_type, props):
    config = target_config("production")
    unprotected = resource_args(resource_type, props, name="postgres", config=config)
    violations = check(rules.protect_production_state_validator, unprotected)
    assert len(violations) == 1
    assert "'postgres'" in violations.messages[0] and "protect=True" in violations.messages[0]
    protected = resource_args(resource_type, props, name="postgres", config=config, protect=True)
    assert check(rules.protect_production_state_validator, protected) == []


@pytest.mark.parametrize("environment", ["dev", "staging"])
def test_protect_production_state_leaves_other_environments_free_to_rebuild(environment):
    args = resource_args(PVC, {"spec": {"storageClassName": GOOD_CLASS}}, config=target_config(environment))
    assert check(rules.protect_production_state_validator, args) == []


def test_protect_production_state_leaves_stateless_resources_alone():
    config = target_config("production")
    for resource_type in (DEPLOYMENT, "kubernetes:core/v1:Secret", "kubernetes:core/v1:Service"):
        assert check(rules.protect_production_state_validator, resource_args(resource_type, {}, config=config)) == []


# --- data-residency -----------------------------------------------------------------------------


def test_data_residency_refuses_production_outside_the_allowed_countries():
    dusseldorf = load_cluster_profile("dusseldorf-test")
    config = target_config("production", dusseldorf, production_countries=["MC"])
    violations = check(rules.data_residency_validator, resource_args(STATEFULSET, {}, name="postgres", config=config))
    assert len(violations) == 1
    message = violations.messages[0]
    assert "'postgres'" in message and "dusseldorf-test" in message and "DE" in message


def test_data_residency_allows_production_on_both_clusters_until_the_migration(profile):
    args = resource_args(STATEFULSET, {}, config=target_config("production", profile))
    assert check(rules.data_residency_validator, args) == []


def test_data_residency_does_not_restrict_dev_and_staging():
    config = target_config("staging", load_cluster_profile("dusseldorf-test"), production_countries=["MC"])
    assert check(rules.data_residency_validator, resource_args(DEPLOYMENT, {}, config=config)) == []


# --- prefer-pod-disruption-budget ---------------------------------------------------------------


def pdb(selector: dict[str, Any], namespace_name: str = "smartnation-dev") -> PolicyResource:
    props = {
        "metadata": {"name": "api", "namespace": namespace_name},
        "spec": {"maxUnavailable": 1, "selector": selector},
    }
    return stack_resource(PDB, props, name=f"api-pdb-{namespace_name}")


@pytest.mark.parametrize(
    "budgets",
    [
        [],
        [pdb({"matchLabels": {"app.kubernetes.io/name": "web"}})],
        [pdb({"matchLabels": {"app.kubernetes.io/name": "api"}}, namespace_name="smartnation-staging")],
    ],
    ids=["none", "selects-other-pods", "other-namespace"],
)
def test_prefer_pod_disruption_budget_flags_replicated_workloads_without_one(budgets):
    api = stack_resource(DEPLOYMENT, deployment(3), name="api")
    violations = check(rules.prefer_pod_disruption_budget_validator, stack_args(api, *budgets))
    assert violations == [(violations.messages[0], api.urn)]
    assert "Deployment 'api'" in violations.messages[0] and "3 replicas" in violations.messages[0]


@pytest.mark.parametrize(
    "selector",
    [
        {"matchLabels": {"app.kubernetes.io/name": "api"}},
        {"matchExpressions": [{"key": "app.kubernetes.io/name", "operator": "In", "values": ["api", "worker"]}]},
    ],
)
def test_prefer_pod_disruption_budget_accepts_a_budget_selecting_the_pods(selector):
    api = stack_resource(DEPLOYMENT, deployment(3), name="api")
    single = stack_resource(STATEFULSET, deployment(1, labels={"app": "singleton"}), name="singleton")
    assert check(rules.prefer_pod_disruption_budget_validator, stack_args(api, single, pdb(selector))) == []


# --- topology-spread ----------------------------------------------------------------------------

ZONE = "topology.kubernetes.io/zone"


@pytest.mark.parametrize(
    "spread",
    [{}, {"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname"}]}],
    ids=["none", "hosts-only"],
)
def test_topology_spread_flags_replicas_that_may_share_a_zone(spread):
    args = resource_args(DEPLOYMENT, deployment(3, pod(**spread)), name="api")
    violations = check(rules.topology_spread_validator, args)
    assert len(violations) == 1
    assert "Deployment 'api'" in violations.messages[0] and ZONE in violations.messages[0]


@pytest.mark.parametrize(
    ("replicas", "spread"),
    [
        (3, {"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "DoNotSchedule"}]}),
        (
            2,
            {
                "affinity": {
                    "podAntiAffinity": {
                        "preferredDuringSchedulingIgnoredDuringExecution": [
                            {"weight": 100, "podAffinityTerm": {"topologyKey": ZONE}}
                        ]
                    }
                }
            },
        ),
        (1, {}),
    ],
    ids=["spread-constraint", "anti-affinity", "single-replica"],
)
def test_topology_spread_accepts_zone_spread_or_a_single_replica(replicas, spread):
    args = resource_args(STATEFULSET, deployment(replicas, pod(**spread)))
    assert check(rules.topology_spread_validator, args) == []


# --- the real pack over the analyzer protocol ---------------------------------------------------


@pytest.fixture(scope="module")
def analyzer():
    """The pack started the way `pulumi-analyzer-policy-python` starts it, as a gRPC analyzer."""
    process = subprocess.Popen(
        [sys.executable, "-u", "-m", "pulumi.policy", "127.0.0.1:0", "."],
        cwd=POLICY_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        port = process.stdout.readline().decode().strip()
        assert port.isdigit(), process.stderr.read().decode()
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        yield analyzer_pb2_grpc.AnalyzerStub(channel)
        channel.close()
    finally:
        process.kill()
        process.wait(timeout=10)


def configure(analyzer: analyzer_pb2_grpc.AnalyzerStub, config: dict[str, dict[str, Any]]) -> None:
    """Configure the pack process as the engine does from the CLI's file: each named policy
    mandatory, with its properties."""
    request = analyzer_pb2.ConfigureAnalyzerRequest()
    for name, properties in config.items():
        entry = analyzer_pb2.PolicyConfig(enforcementLevel=analyzer_pb2.MANDATORY)
        entry.properties.update(properties)
        request.policyConfig[name].CopyFrom(entry)
    analyzer.Configure(request, timeout=30)


def test_the_pack_announces_its_policies_and_target_schema(analyzer):
    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty(), timeout=30)
    assert info.name == "smartnation-guardrails"
    assert info.supportsConfig
    announced = {p.name: p for p in info.policies}
    assert set(announced) == {p.name for p in rules.POLICIES}
    for name in policy_config_for("dev", ONPREM):
        schema = json_format.MessageToDict(announced[name].configSchema)
        assert set(schema["required"]) == set(TARGET_KEYS)


def test_the_pack_judges_a_resource_with_the_config_the_cli_writes(analyzer):
    configure(analyzer, policy_config_for("production", ONPREM))

    props = struct_pb2.Struct()
    props.update(workload(STATEFULSET, pod(container("pg", image="docker.io/postgres:16"))))
    response = analyzer.Analyze(
        analyzer_pb2.AnalyzeRequest(
            urn=urn_of(STATEFULSET, "postgres"),
            type=STATEFULSET,
            name="postgres",
            properties=props,
            options=analyzer_pb2.AnalyzerResourceOptions(protect=False),
        ),
        timeout=30,
    )
    reported = {d.policyName: d.message for d in response.diagnostics}
    assert set(reported) == {"allowed-registries", "images-by-digest", "protect-production-state"}
    assert "docker.io/postgres:16" in reported["allowed-registries"]
    assert "docker.io/postgres:16" in reported["images-by-digest"]
