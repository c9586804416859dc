"""The rules added by the security review (issue 11, item 4): a violating and a passing input each.

Validators are called as in test_policy.py, with the engine's own argument classes and the props
wrapped in pulumi_policy's unknown-checking proxy; the builders come from there too, so a
"passing" pod here is the same pod that passes every older rule.
"""

from __future__ import annotations

import base64
import copy
from typing import Any

import pytest
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE

from smartnation.settings import load_cluster_profile
from smartnation_policy import rules
from smartnation_policy.residency import PRODUCTION_COUNTRIES
from tests.unit.test_policy import (
    DEPLOYMENT,
    NAMESPACE,
    NETPOL,
    PVC,
    STATEFULSET,
    WORKLOAD_TYPES_UNDER_TEST,
    check,
    container,
    pod,
    resource_args,
    target_config,
    workload,
)

pytestmark = pytest.mark.unit

CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
SERVICE = "kubernetes:core/v1:Service"
PV = "kubernetes:core/v1:PersistentVolume"


def with_context(name: str = "api", **context: Any) -> dict[str, Any]:
    """A passing container whose securityContext has ``context`` merged in (None removes a key)."""
    spec = container(name)
    merged = copy.deepcopy(spec["securityContext"])
    for key, value in context.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    spec["securityContext"] = merged
    return spec


def deployment_args(spec: dict[str, Any], resource_type: str = DEPLOYMENT):
    return resource_args(resource_type, workload(resource_type, spec))


# --- no-added-capabilities ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pod_spec", "expected"),
    [
        (pod(with_context(capabilities={"drop": ["ALL"], "add": ["NET_ADMIN"]})), ["container 'api'", "NET_ADMIN"]),
        (pod(with_context(capabilities={"drop": ["ALL"], "add": ["CAP_SYS_PTRACE"]})), ["SYS_PTRACE"]),
        (pod(with_context(capabilities=None)), ["container 'api'", "does not drop ALL"]),
        (pod(with_context(capabilities={"drop": ["NET_RAW"]})), ["does not drop ALL"]),
        (
            pod(container("api"), init=[with_context("chown", capabilities={"drop": ["ALL"], "add": ["CHOWN"]})]),
            ["init container 'chown'", "CHOWN"],
        ),
    ],
    ids=["net-admin", "cap-prefixed", "no-capabilities", "drops-some", "init-container"],
)
def test_no_added_capabilities_rejects_added_or_kept_capabilities(pod_spec, expected):
    violations = check(rules.no_added_capabilities_validator, deployment_args(pod_spec))
    assert len(violations) == 1
    assert all(part in violations.messages[0] for part in ["Deployment 'api'", *expected]), violations.messages


@pytest.mark.parametrize("resource_type", WORKLOAD_TYPES_UNDER_TEST)
def test_no_added_capabilities_accepts_drop_all_with_at_most_net_bind_service(resource_type):
    spec = pod(
        container("api"),
        with_context("proxy", capabilities={"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}),
        init=[container("migrate")],
    )
    assert check(rules.no_added_capabilities_validator, deployment_args(spec, resource_type)) == []


# --- require-seccomp-profile --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pod_spec", "expected"),
    [
        (pod(with_context(seccompProfile=None)), "no seccompProfile"),
        (
            pod(
                with_context(seccompProfile={"type": "Unconfined"}),
                securityContext={"seccompProfile": {"type": "RuntimeDefault"}},
            ),
            "seccompProfile Unconfined",
        ),
        (
            pod(with_context(seccompProfile=None), securityContext={"seccompProfile": {"type": "Unconfined"}}),
            "Unconfined",
        ),
    ],
    ids=["none", "container-unconfined-overrides-pod", "pod-unconfined"],
)
def test_require_seccomp_profile_rejects_unconfined_containers(pod_spec, expected):
    violations = check(rules.require_seccomp_profile_validator, deployment_args(pod_spec))
    assert len(violations) == 1
    assert "container 'api'" in violations.messages[0] and expected in violations.messages[0]


@pytest.mark.parametrize("resource_type", WORKLOAD_TYPES_UNDER_TEST)
def test_require_seccomp_profile_accepts_pod_or_container_profiles(resource_type):
    spec = pod(
        with_context("api", seccompProfile=None),
        with_context("agent", seccompProfile={"type": "Localhost", "localhostProfile": "profiles/agent.json"}),
        securityContext={"seccompProfile": {"type": "RuntimeDefault"}},
    )
    assert check(rules.require_seccomp_profile_validator, deployment_args(spec, resource_type)) == []


# --- read-only-root-filesystem ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pod_spec", "expected"),
    [
        (pod(with_context(readOnlyRootFilesystem=None)), "container 'api'"),
        (pod(with_context(readOnlyRootFilesystem=False)), "container 'api'"),
        (
            pod(container("api"), init=[with_context("migrate", readOnlyRootFilesystem=False)]),
            "init container 'migrate'",
        ),
    ],
    ids=["unset", "false", "init-container"],
)
def test_read_only_root_filesystem_rejects_writable_roots(pod_spec, expected):
    violations = check(rules.read_only_root_filesystem_validator, deployment_args(pod_spec))
    assert len(violations) == 1
    assert expected in violations.messages[0] and "writable root filesystem" in violations.messages[0]


@pytest.mark.parametrize("resource_type", WORKLOAD_TYPES_UNDER_TEST)
def test_read_only_root_filesystem_accepts_read_only_containers(resource_type):
    spec = pod(container("api"), container("sidecar"), init=[container("migrate")])
    assert check(rules.read_only_root_filesystem_validator, deployment_args(spec, resource_type)) == []


# --- no-plaintext-secrets -----------------------------------------------------------------------

LEAKED = "Hunter2-leaked-value"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"name": "POSTGRES_PASSWORD", "value": LEAKED}, "POSTGRES_PASSWORD"),
        ({"name": "PGPASSWORD", "value": LEAKED}, "PGPASSWORD"),
        ({"name": "apiToken", "value": LEAKED}, "apiToken"),
        ({"name": "DATABASE_URL", "value": f"postgres://app:{LEAKED}@db:5432/app"}, "URL"),
        ({"name": "MINIO_ROOT_PASSWORD", "value": UNKNOWN_STRING_VALUE}, "MINIO_ROOT_PASSWORD"),
    ],
    ids=["password", "libpq", "camel-case-token", "url-userinfo", "unknown-during-preview"],
)
def test_no_plaintext_secrets_rejects_credentials_in_env_values(env, expected):
    spec = pod(container("api", env=[{"name": "PORT", "value": "8080"}, env]))
    violations = check(rules.no_plaintext_secrets_validator, deployment_args(spec))
    assert len(violations) == 1
    message = violations.messages[0]
    assert "container 'api'" in message and expected in message and "secretKeyRef" in message
    assert LEAKED not in message  # the report must not leak the value a second time


@pytest.mark.parametrize("resource_type", WORKLOAD_TYPES_UNDER_TEST)
def test_no_plaintext_secrets_accepts_env_that_references_secrets(resource_type):
    env = [
        {"name": "POSTGRES_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
        {"name": "MQTT_PASSWORD_FILE", "value": "/run/secrets/mqtt/password"},
        {"name": "PGPASSWORD", "value": "$(POSTGRES_PASSWORD)"},
        {"name": "S3_ENDPOINT", "value": "http://object-storage.smartnation-dev.svc.cluster.local:9000"},
        {"name": "MQTT_URL", "value": "mqtt://broker-internal:1883"},
        {"name": "EMPTY_SECRET", "value": ""},
    ]
    spec = pod(container("api", env=env, envFrom=[{"secretRef": {"name": "api-credentials"}}]))
    assert check(rules.no_plaintext_secrets_validator, deployment_args(spec, resource_type)) == []


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"data": {"DB_PASSWORD": LEAKED}}, "data.DB_PASSWORD"),
        ({"data": {"app.ini": f"[db]\nhost = db\npassword = {LEAKED}\n"}}, "data.app.ini line 3"),
        ({"data": {"settings.json": f'{{\n  "token": "{LEAKED}",\n  "port": 8080\n}}'}}, "line 2"),
        ({"data": {"init.sql": f"ALTER ROLE app WITH LOGIN PASSWORD '{LEAKED}';"}}, "SQL password"),
        ({"data": {"env": f"export API_TOKEN={LEAKED}\n"}}, "'API_TOKEN'"),
        ({"data": {"conn": f"postgresql://app:{LEAKED}@db/app"}}, "URL"),
        (
            {"data": {"tls.key": "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\n"}},
            "private key",
        ),
        ({"binaryData": {"app.ini": base64.b64encode(f"password={LEAKED}\n".encode()).decode()}}, "binaryData"),
        ({"data": {"SECRET_KEY": UNKNOWN_STRING_VALUE}}, "data.SECRET_KEY"),
    ],
    ids=["key", "ini", "json", "sql", "shell", "url", "pem", "binary", "unknown-during-preview"],
)
def test_no_plaintext_secrets_rejects_credentials_in_config_maps(data, expected):
    args = resource_args(CONFIG_MAP, {"metadata": {"name": "api-config"}, **data}, name="api-config")
    violations = check(rules.no_plaintext_secrets_validator, args)
    assert len(violations) == 1, violations.messages
    message = violations.messages[0]
    assert "ConfigMap 'api-config'" in message and expected in message and "Secret" in message
    assert LEAKED not in message


def test_no_plaintext_secrets_accepts_config_that_only_refers_to_credentials():
    # The kinds of text the platform's own ConfigMaps hold (the Mosquitto config, the database's
    # init SQL and scripts, the MinIO setup script): references to credentials, never values.
    data = {
        "mosquitto.conf": "per_listener_settings false\npassword_file /mosquitto/passwords/passwd\n",
        "postgresql.conf": "password_encryption = scram-sha-256\n",
        "init.sql": "SELECT format('ALTER ROLE %I PASSWORD %L', :'role', :'pw') \\gexec\n"
        "ALTER ROLE replicator WITH LOGIN REPLICATION PASSWORD :'replication_password';\n",
        "setup.sh": 'mc alias set store "$S3_ENDPOINT" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"\n'
        'PGPASSWORD="${POSTGRES_PASSWORD}" psql -c "select 1"\n'
        "# password = see the Secret, never here\n",
        "PGHOST": "production-database-primary.smartnation-production.svc.cluster.local",
        "S3_ENDPOINT": "http://production-object-storage.smartnation-production.svc.cluster.local:9000",
        "SECRET_NAME": "production-database-credentials",
    }
    args = resource_args(CONFIG_MAP, {"metadata": {"name": "config"}, "data": data})
    assert check(rules.no_plaintext_secrets_validator, args) == []


def test_no_plaintext_secrets_leaves_secrets_alone():
    secret = {"metadata": {"name": "db"}, "stringData": {"password": LEAKED}, "data": {"PASSWORD": "aHVudGVy"}}
    assert check(rules.no_plaintext_secrets_validator, resource_args("kubernetes:core/v1:Secret", secret)) == []


# --- no-allow-all-network-policy ----------------------------------------------------------------


def netpol_args(**spec: Any):
    props = {"metadata": {"name": "api", "namespace": "smartnation-dev"}, "spec": {"podSelector": {}, **spec}}
    return resource_args(NETPOL, props, name="api-policy")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"policyTypes": ["Ingress"], "ingress": [{}]}, "ingress[0]"),
        ({"policyTypes": ["Egress"], "egress": [{"to": []}]}, "egress[0]"),
        ({"egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]}, "egress[0]"),
        ({"ingress": [{"from": [{"ipBlock": {"cidr": "::/0"}}]}]}, "ingress[0]"),
        (
            {
                "ingress": [
                    {"from": [{"podSelector": {"matchLabels": {"a": "b"}}}]},
                    {"from": [{"namespaceSelector": {}}]},
                ]
            },
            "ingress[1]",
        ),
    ],
    ids=["empty-ingress-rule", "empty-egress-peers", "egress-anywhere", "ingress-anywhere-v6", "all-namespaces"],
)
def test_no_allow_all_network_policy_rejects_rules_open_to_everything(spec, expected):
    violations = check(rules.no_allow_all_network_policy_validator, netpol_args(**spec))
    assert len(violations) == 1
    assert "NetworkPolicy 'api-policy'" in violations.messages[0] and expected in violations.messages[0]


@pytest.mark.parametrize(
    "spec",
    [
        {"policyTypes": ["Ingress", "Egress"]},
        {"ingress": [{"from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"port": 8883, "protocol": "TCP"}]}]},
        {
            "egress": [
                {
                    "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}],
                    "ports": [{"port": 53, "protocol": "UDP"}],
                }
            ]
        },
        {"ingress": [{"from": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}]}]},
        {"ingress": [{"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "ingress"}}}]}]},
    ],
    ids=["default-deny", "one-port-from-anywhere", "dns-egress", "anywhere-but", "labelled-pods-anywhere"],
)
def test_no_allow_all_network_policy_accepts_rules_with_peers_or_ports(spec):
    assert check(rules.no_allow_all_network_policy_validator, netpol_args(**spec)) == []


# --- no-public-data-services --------------------------------------------------------------------


def service_args(service_type: str | None, ports: list[dict[str, Any]], selector: dict[str, str] | None = None):
    spec: dict[str, Any] = {"ports": ports, "selector": selector or {"app.kubernetes.io/name": "api"}}
    if service_type:
        spec["type"] = service_type
    return resource_args(SERVICE, {"metadata": {"name": "db"}, "spec": spec}, name="db-public", config=target_config())


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (service_args("LoadBalancer", [{"port": 5432.0, "targetPort": "postgres"}]), "port 5432"),
        (service_args("NodePort", [{"port": 80.0, "targetPort": "s3"}]), "targetPort 's3'"),
        (service_args("NodePort", [{"port": 443.0, "targetPort": 9001.0}]), "console"),
        (
            service_args("LoadBalancer", [{"port": 8080.0}], {"app.kubernetes.io/name": "object-storage"}),
            "app.kubernetes.io/name=object-storage",
        ),
        (service_args("LoadBalancer", [{"port": 15432.0}], {"app": "postgresql"}), "the database"),
    ],
    ids=["postgres-lb", "s3-nodeport", "console-nodeport", "selects-object-storage", "selects-postgres"],
)
def test_no_public_data_services_rejects_exposed_databases_and_object_storage(args, expected):
    violations = check(rules.no_public_data_services_validator, args)
    assert len(violations) == 1
    message = violations.messages[0]
    assert "Service 'db-public'" in message and expected in message and "ClusterIP" in message


@pytest.mark.parametrize(
    "args",
    [
        service_args(None, [{"port": 5432.0, "targetPort": "postgres"}], {"app.kubernetes.io/name": "database"}),
        service_args("ClusterIP", [{"port": 9000.0, "targetPort": "s3"}], {"app.kubernetes.io/name": "object-storage"}),
        service_args("LoadBalancer", [{"port": 8883.0, "targetPort": "mqtts"}], {"app.kubernetes.io/name": "broker"}),
    ],
    ids=["database-cluster-ip-by-default", "object-storage-cluster-ip", "broker-load-balancer"],
)
def test_no_public_data_services_accepts_internal_data_services_and_the_broker(args):
    assert check(rules.no_public_data_services_validator, args) == []


# --- retain-production-claims -------------------------------------------------------------------


def statefulset_with_retention(**policy: str) -> dict[str, Any]:
    props = workload(STATEFULSET, pod())
    if policy:
        props["spec"]["persistentVolumeClaimRetentionPolicy"] = policy
    return props


@pytest.mark.parametrize(
    ("resource_type", "props", "expected"),
    [
        (STATEFULSET, statefulset_with_retention(whenDeleted="Delete", whenScaled="Retain"), "whenDeleted: Delete"),
        (STATEFULSET, statefulset_with_retention(whenScaled="Delete"), "whenScaled: Delete"),
        (PV, {"spec": {"persistentVolumeReclaimPolicy": "Delete", "storageClassName": "local"}}, "Delete"),
    ],
    ids=["deleted", "scaled", "persistent-volume"],
)
def test_retain_production_claims_rejects_volumes_deleted_with_their_owner(resource_type, props, expected):
    args = resource_args(resource_type, props, name="postgres", config=target_config("production"), protect=True)
    violations = check(rules.retain_production_claims_validator, args)
    assert len(violations) == 1
    assert "'postgres'" in violations.messages[0] and expected in violations.messages[0]


@pytest.mark.parametrize(
    ("environment", "props"),
    [
        ("production", statefulset_with_retention()),
        ("production", statefulset_with_retention(whenDeleted="Retain", whenScaled="Retain")),
        ("staging", statefulset_with_retention(whenDeleted="Delete", whenScaled="Delete")),
    ],
    ids=["production-default", "production-retain", "staging-may-delete"],
)
def test_retain_production_claims_accepts_retained_claims_and_other_environments(environment, props):
    args = resource_args(STATEFULSET, props, config=target_config(environment), protect=True)
    assert check(rules.retain_production_claims_validator, args) == []
    pvc = resource_args(PVC, {"spec": {}}, config=target_config(environment))
    assert check(rules.retain_production_claims_validator, pvc) == []


# --- namespace-pod-security ---------------------------------------------------------------------


RESTRICTED = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "audit", "warn")}


def without(labels: dict[str, str], key: str) -> dict[str, str]:
    return {k: v for k, v in labels.items() if k != key}


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        (None, "no 'pod-security.kubernetes.io/enforce' label"),
        ({"pod-security.kubernetes.io/warn": "restricted"}, "no 'pod-security.kubernetes.io/enforce' label"),
        ({**RESTRICTED, "pod-security.kubernetes.io/enforce": "baseline"}, "enforce: baseline"),
        ({**RESTRICTED, "pod-security.kubernetes.io/enforce": "privileged"}, "enforce: privileged"),
        (without(RESTRICTED, "pod-security.kubernetes.io/audit"), "no 'pod-security.kubernetes.io/audit' label"),
        ({**RESTRICTED, "pod-security.kubernetes.io/warn": "baseline"}, "warn: baseline"),
    ],
    ids=["no-labels", "warn-only", "baseline", "privileged", "no-audit", "warn-baseline"],
)
def test_namespace_pod_security_rejects_namespaces_not_enforcing_restricted(labels, expected):
    metadata: dict[str, Any] = {"name": "smartnation-dev"}
    if labels is not None:
        metadata["labels"] = labels
    violations = check(
        rules.namespace_pod_security_validator, resource_args(NAMESPACE, {"metadata": metadata}, name="ns")
    )
    assert len(violations) == 1
    assert "Namespace 'ns'" in violations.messages[0] and expected in violations.messages[0]


def test_namespace_pod_security_accepts_restricted_and_ignores_other_kinds():
    labels = {**RESTRICTED, "pod-security.kubernetes.io/enforce-version": "latest"}
    args = resource_args(NAMESPACE, {"metadata": {"name": "smartnation-dev", "labels": labels}})
    assert check(rules.namespace_pod_security_validator, args) == []
    assert check(rules.namespace_pod_security_validator, deployment_args(pod())) == []


# --- data-residency: the one list -----------------------------------------------------------------


@pytest.mark.parametrize("cluster", ["dusseldorf-test", "monaco-onprem"])
def test_data_residency_names_the_allowed_countries_from_the_shared_list(cluster):
    profile = load_cluster_profile(cluster)
    # A country outside the shared list, on a real profile: the message lists exactly that list.
    config = target_config("production", profile, country="FR")
    violations = check(rules.data_residency_validator, resource_args(STATEFULSET, {}, name="postgres", config=config))
    assert len(violations) == 1
    assert f"production may run only in {list(PRODUCTION_COUNTRIES)}" in violations.messages[0]
    assert "country FR" in violations.messages[0]


def test_the_pack_and_the_program_read_the_same_production_countries():
    from smartnation.program import preflight
    from smartnation_policy import residency, target

    assert target.PRODUCTION_COUNTRIES is residency.PRODUCTION_COUNTRIES
    assert preflight.PRODUCTION_COUNTRIES is residency.PRODUCTION_COUNTRIES
