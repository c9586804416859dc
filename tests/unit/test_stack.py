"""The whole stack under Pulumi mocks: security, wiring, per-cluster differences and HA.

Expected values come from the settings and profiles the stack was built from, never from
literals copied out of the components.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from smartnation.paths import images_lock_file
from smartnation.program.city_platform import build
from smartnation.program.components.city_apis import CHART_PATH
from smartnation.settings import SettingsError, load_cluster_profile, load_settings
from smartnation.settings.stack_secrets import MissingSecretsError, required_secrets
from smartnation.settings.validation import parse_quantity
from smartnation.tooling.images.lock import read_lock
from tests.unit.harness import (
    CLUSTERS,
    ENVIRONMENTS,
    BuiltStack,
    Registered,
    environments_copy,
    fake_secret,
    plain_strings,
    reveal,
    run,
    secrets_for,
    set_secrets,
)

pytestmark = pytest.mark.unit

STATEFULSET = "kubernetes:apps/v1:StatefulSet"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
JOB = "kubernetes:batch/v1:Job"
CRONJOB = "kubernetes:batch/v1:CronJob"
WORKLOADS = (STATEFULSET, DEPLOYMENT, JOB, CRONJOB)
LONG_RUNNING = (STATEFULSET, DEPLOYMENT)
SECRET = "kubernetes:core/v1:Secret"
CONFIGMAP = "kubernetes:core/v1:ConfigMap"
SERVICE = "kubernetes:core/v1:Service"
PDB = "kubernetes:policy/v1:PodDisruptionBudget"
NETPOL = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
CHART = "kubernetes:helm.sh/v4:Chart"
NAMESPACE = "kubernetes:core/v1:Namespace"
ZONE = "topology.kubernetes.io/zone"

MATRIX = [(env, cluster) for env in ENVIRONMENTS for cluster in CLUSTERS]


@pytest.fixture(params=MATRIX, ids=[f"{e}@{c}" for e, c in MATRIX])
def built(request: pytest.FixtureRequest, build_stack) -> BuiltStack:
    environment, cluster = request.param
    return build_stack(environment, cluster)


def pod_template(r: Registered) -> dict[str, Any]:
    spec = r.plain["spec"]
    if r.type == CRONJOB:
        return spec["jobTemplate"]["spec"]["template"]
    return spec["template"]


def containers(r: Registered, *, init: bool = True) -> Iterator[dict[str, Any]]:
    spec = pod_template(r)["spec"]
    yield from spec["containers"]
    if init:
        yield from spec.get("initContainers", [])


def chart_values(stack: BuiltStack) -> dict[str, dict[str, Any]]:
    return {r.plain["name"]: r.plain["values"] for r in stack.of_type(CHART)}


def by_name(stack: BuiltStack, type_: str, fragment: str) -> list[Registered]:
    return [r for r in stack.of_type(type_) if fragment in r.name]


# --- It builds, on every cluster, through explicit providers ------------------------------


def test_every_environment_builds_on_every_cluster(built: BuiltStack) -> None:
    settings = built.settings
    assert built.outputs["cluster"] == (settings.cluster.name, False)
    assert built.outputs["namespace"][0] == f"smartnation-{settings.environment}"
    tokens = {r.type for r in built.resources if r.type.startswith("smartnation:")}
    assert tokens == {
        "smartnation:guardrails:Guardrails",
        "smartnation:broker:Broker",
        "smartnation:database:Database",
        "smartnation:object_storage:ObjectStorage",
        "smartnation:city_apis:CityApis",
    }
    assert len(built.of_type(CHART)) == 3
    assert {"mqtt_endpoint", "api_urls", "s3_endpoint", "deployed_releases"} <= set(built.outputs)


def test_every_kubernetes_resource_uses_the_target_clusters_provider(built: BuiltStack) -> None:
    cluster = built.settings.cluster.name
    providers = built.of_type("pulumi:providers:kubernetes")
    assert [p.name for p in providers] == [f"k8s-{cluster}"]
    assert providers[0].inputs["context"] == built.settings.cluster.context
    for r in built.kubernetes():
        assert f"pulumi:providers:kubernetes::k8s-{cluster}::" in r.provider, f"{r.type} {r.name}: {r.provider!r}"
        assert "default" not in r.provider.split("::")[-2]


def test_default_kubernetes_provider_is_disabled_for_the_project() -> None:
    project = yaml.safe_load((CHART_PATH.parents[1] / "Pulumi.yaml").read_text(encoding="utf-8"))
    setting = project["config"]["pulumi:disable-default-providers"]
    assert "kubernetes" in (setting["value"] if isinstance(setting, dict) else setting)


def test_children_are_named_after_their_component(built: BuiltStack) -> None:
    components = [r.name for r in built.resources if r.type.startswith("smartnation:")]
    for r in built.kubernetes():
        assert any(r.name.startswith(f"{c}-") for c in components), r.name


def test_every_kubernetes_resource_is_a_child_of_a_platform_component(built: BuiltStack) -> None:
    """URNs follow the parent chain: a child that lost its parent would be a new resource."""
    components = {r.urn for r in built.resources if r.type.startswith("smartnation:")}
    for r in built.kubernetes():
        assert r.parent in components, f"{r.type} {r.name}: parent {r.parent!r}"


# --- State survives updates where the environment says so ---------------------------------


def holds_state(stack: BuiltStack) -> list[Registered]:
    """What loses data when deleted: the namespace (its deletion takes everything in it) and
    every object that owns PersistentVolumeClaims."""
    owners = [r for r in stack.kubernetes() if (r.plain.get("spec") or {}).get("volumeClaimTemplates")]
    return stack.of_type(NAMESPACE) + owners


@pytest.mark.parametrize("cluster", CLUSTERS)
def test_production_state_is_protected_and_dev_state_is_not(build_stack, cluster: str) -> None:
    production, dev = build_stack("production", cluster), build_stack("dev", cluster)
    for stack in (production, dev):
        held = holds_state(stack)
        assert {r.type for r in held} == {NAMESPACE, STATEFULSET}
        # Every StatefulSet of the platform keeps data; none may slip out of the check above.
        assert {r.urn for r in stack.of_type(STATEFULSET)} <= {r.urn for r in held}
    assert [r.name for r in holds_state(production) if r.protect is not True] == []
    assert [r.name for r in holds_state(dev) if r.protect] == []


# --- Pod security -----------------------------------------------------------------------


def test_no_privileged_or_root_containers(built: BuiltStack) -> None:
    for r in built.of_type(*WORKLOADS):
        pod = pod_template(r)["spec"]
        pod_ctx = pod.get("securityContext", {})
        assert pod_ctx.get("runAsNonRoot") is True, r.name
        assert pod_ctx.get("runAsUser", 1) != 0, r.name
        assert not any(pod.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")), r.name
        assert not any("hostPath" in v for v in pod.get("volumes", [])), r.name
        for c in containers(r):
            ctx = c.get("securityContext", {})
            where = f"{r.name}/{c['name']}"
            assert ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot")) is True, where
            assert ctx.get("runAsUser", 1) != 0, where
            assert ctx.get("allowPrivilegeEscalation") is False, where
            assert ctx.get("privileged") is not True, where
            assert ctx.get("capabilities", {}).get("drop") == ["ALL"], where
            assert not ctx.get("capabilities", {}).get("add"), where
            seccomp = ctx.get("seccompProfile") or pod_ctx.get("seccompProfile")
            assert seccomp == {"type": "RuntimeDefault"}, where


def test_every_container_has_requests_and_limits(built: BuiltStack) -> None:
    for r in built.of_type(*WORKLOADS):
        for c in containers(r):
            for kind in ("requests", "limits"):
                assert set(c.get("resources", {}).get(kind, {})) >= {"cpu", "memory"}, f"{r.name}/{c['name']} {kind}"
    for name, values in chart_values(built).items():
        assert set(values["resources"]["requests"]) >= {"cpu", "memory"}, name
        assert set(values["resources"]["limits"]) >= {"cpu", "memory"}, name


def test_long_running_containers_have_probes(built: BuiltStack) -> None:
    for r in built.of_type(*LONG_RUNNING):
        for c in containers(r, init=False):
            assert "livenessProbe" in c and "readinessProbe" in c, f"{r.name}/{c['name']}"


def test_images_are_the_built_digests_from_the_target_registry(built: BuiltStack) -> None:
    registry = built.settings.cluster.registry.default
    images = [c["image"] for r in built.of_type(*WORKLOADS) for c in containers(r)]
    images += [f"{v['image']['repository']}@{v['image']['digest']}" for v in chart_values(built).values()]
    assert images
    # What the image build wrote: repository -> the digests it made under that repository.
    built_digests: dict[str, set[str]] = {}
    for key, digest in read_lock(images_lock_file()).items():
        built_digests.setdefault(key.rpartition(":")[0], set()).add(digest)
    for image in images:
        assert image.startswith(f"{registry}/"), image
        repository, _, digest = image[len(registry) + 1 :].partition("@")
        assert digest in built_digests.get(repository, set()), f"{image} is not an image the build made"


def test_persistent_volumes_use_the_profiles_storage_class(built: BuiltStack) -> None:
    expected = built.settings.cluster.storage.default_class
    claims = [t for r in built.of_type(STATEFULSET) for t in r.plain["spec"].get("volumeClaimTemplates", [])]
    assert claims
    assert {c["spec"]["storageClassName"] for c in claims} == {expected}


def test_every_pod_selects_its_nodes(built: BuiltStack) -> None:
    """No Pod without a node selector: on a local stand-in it could land on a real node (and
    run for real, or fail to pull) or on a simulated one (and prove nothing) by chance."""
    for r in built.of_type(*WORKLOADS):
        assert pod_template(r)["spec"].get("nodeSelector"), r.name
    for name, values in chart_values(built).items():
        assert values.get("nodeSelector"), name


@pytest.mark.parametrize(
    ("environment", "cluster"), [("production", "monaco-onprem"), ("production", "dusseldorf-test")]
)
def test_production_runs_on_the_profiles_node_pools(build_stack, environment: str, cluster: str) -> None:
    built = build_stack(environment, cluster)
    selectors = built.settings.cluster.workload_node_selector
    for r in built.of_type(*WORKLOADS):
        assert pod_template(r)["spec"]["nodeSelector"] == dict(selectors.stateful), r.name
    for values in chart_values(built).values():
        assert values["nodeSelector"] == dict(selectors.stateless)


@pytest.mark.parametrize("environment", ["dev", "staging"])
@pytest.mark.parametrize("cluster", CLUSTERS)
def test_dev_and_staging_run_on_the_stand_ins_real_nodes(build_stack, environment: str, cluster: str) -> None:
    """The local profiles' `simulation.real_node_environments` puts every Pod of dev and staging,
    Jobs and APIs included, on the real nodes (`smartnation.mc/node-kind: real`)."""
    built = build_stack(environment, cluster)
    workloads = built.of_type(*WORKLOADS)
    assert workloads
    for r in workloads:
        assert pod_template(r)["spec"]["nodeSelector"] == {"smartnation.mc/node-kind": "real"}, r.name
    for name, values in chart_values(built).items():
        assert values["nodeSelector"] == {"smartnation.mc/node-kind": "real"}, name


def test_a_cluster_without_a_local_section_uses_its_node_pools(envdir, recorder) -> None:
    """The real Düsseldorf and Monaco clusters have no `simulation` section: staging there runs
    on the profile's node pools, whatever the stand-in does."""
    profile = envdir / "clusters" / "dusseldorf-test.yaml"
    data = yaml.safe_load(profile.read_text())
    del data["simulation"]
    profile.write_text(yaml.safe_dump(data))
    settings = load_settings("staging", envdir)
    set_secrets(secrets_for(settings))
    run(recorder, lambda: build(settings))
    built = BuiltStack(settings, list(recorder.resources), {})
    pools = settings.cluster.workload_node_selector
    for r in built.of_type(*WORKLOADS):
        assert pod_template(r)["spec"]["nodeSelector"] == dict(pools.stateful), r.name
    for values in chart_values(built).values():
        assert values["nodeSelector"] == dict(pools.stateless)


# --- Secrets ------------------------------------------------------------------------------


def test_no_secret_value_in_plain_text_anywhere(built: BuiltStack) -> None:
    values = set(secrets_for(built.settings).values())
    for r in built.resources:
        for path, text in plain_strings(r.inputs):
            leaked = [v for v in values if v in text]
            assert not leaked, f"{r.type} {r.name}{path} holds a secret in plain text"
    rendered = json.dumps({k: v for k, (v, _) in built.outputs.items()})
    assert not [v for v in values if v in rendered]


def test_secrets_are_kubernetes_secrets_marked_secret(built: BuiltStack) -> None:
    values = set(secrets_for(built.settings).values())
    holders = [r for r in built.resources if any(v in json.dumps(reveal(r.inputs)) for v in values)]
    assert holders
    for r in holders:
        assert r.type == SECRET, f"{r.type} {r.name} holds a secret"
        assert "value" in r.inputs["stringData"] and "4dabf18193072939515e22adb298388d" in r.inputs["stringData"]


def test_outputs_hold_no_secret(built: BuiltStack) -> None:
    assert [k for k, (_, secret) in built.outputs.items() if secret] == []


def test_broker_password_file_holds_only_hashes(built: BuiltStack) -> None:
    (secret,) = by_name(built, SECRET, "broker-passwords")
    lines = secret.plain["stringData"]["passwords"].splitlines()
    # Only the in-cluster clients have passwords; devices log in with their own certificates.
    classes = {c.name for c in built.settings.broker.device_classes if c.internal}
    assert classes and {line.split(":", 1)[0] for line in lines} == classes
    assert all(re.fullmatch(r"[^:]+:\$7\$\d+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+", line) for line in lines)


def test_apis_get_credentials_only_by_secret_reference(built: BuiltStack) -> None:
    secret_names = {r.plain["metadata"]["name"] for r in built.of_type(SECRET)}
    configmap_names = {r.plain["metadata"]["name"] for r in built.of_type(CONFIGMAP)}
    apis = {api.app: api for api in built.settings.city_apis.values()}
    for release, values in chart_values(built).items():
        api = apis[values["component"]]
        wanted = sum(x is not None for x in (api.database, api.broker_client, api.storage_user))
        wanted += bool(api.operator_clients)  # its operator clients' tokens, a Secret of their own
        assert len(values["envFromSecrets"]) == wanted, release
        assert set(values["envFromSecrets"]) <= secret_names
        assert set(values["envFromConfigMaps"]) <= configmap_names
        for entry in values["extraEnv"]:
            assert "valueFrom" in entry or not re.search(r"PASSWORD|SECRET", entry["name"]), entry


def test_missing_secret_names_stack_file_and_key_and_registers_nothing(recorder) -> None:
    from smartnation.program.city_platform import build
    from smartnation.settings import load_settings

    settings = load_settings("staging")
    values = secrets_for(settings)
    missing = sorted(values)[0]
    del values[missing]
    set_secrets(values)
    with pytest.raises(MissingSecretsError) as caught:
        run(recorder, lambda: build(settings))
    message = str(caught.value)
    assert message.startswith("environments/stacks/Pulumi.staging.yaml: ")
    assert f"smartnation:{missing}" in message
    assert recorder.resources == []


def test_settings_errors_register_nothing(recorder, tmp_path: Path) -> None:
    from smartnation.program.city_platform import build
    from smartnation.settings import load_settings

    root = environments_copy(tmp_path, "dev", "dusseldorf-test")
    text = re.sub(r"chart_version: \S+", "chart_version: 9.9.9", (root / "dev.yaml").read_text(encoding="utf-8"))
    (root / "dev.yaml").write_text(text, encoding="utf-8")
    settings = load_settings("dev", root)
    set_secrets(secrets_for(settings))
    with pytest.raises(SettingsError, match=r"^environments/dev\.yaml: releases\.chart_version: expected the version"):
        run(recorder, lambda: build(settings))
    assert recorder.resources == []


def test_required_secrets_cover_every_role_class_and_user() -> None:
    from smartnation.settings import load_settings
    from smartnation.settings.stack_secrets import generate_missing

    for environment in ENVIRONMENTS:
        settings = load_settings(environment)
        keys = required_secrets(settings)
        text = " ".join(keys)
        for name in [r.name.replace("_", "-") for r in settings.database.roles]:
            assert f"database-password-{name}" in text
        for device_class in settings.broker.device_classes:
            assert (f"broker-password-{device_class.name}" in keys) == device_class.internal
        for name in [u.name for u in settings.object_storage.users]:
            assert f"object-storage-secret-key-{name}" in text
        generated = generate_missing(settings)
        assert set(generated) == set(keys)
        assert len(set(generated.values())) == len(generated) and min(map(len, generated.values())) >= 16
        some = sorted(keys)[:2]
        assert set(generate_missing(settings, [f"smartnation:{some[0]}", some[1]])) == set(keys) - set(some)


# --- Network policy -------------------------------------------------------------------------


class Network:
    """Evaluates the recorded NetworkPolicies of one namespace (pod selectors by matchLabels)."""

    def __init__(self, stack: BuiltStack) -> None:
        self.policies = [r.plain["spec"] for r in stack.of_type(NETPOL)]

    @staticmethod
    def _selects(selector: dict, labels: dict) -> bool:
        return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())

    def _isolated(self, labels: dict, direction: str) -> list[dict]:
        return [p for p in self.policies if self._selects(p["podSelector"], labels) and direction in p["policyTypes"]]

    @staticmethod
    def _port_ok(rule: dict, port: int) -> bool:
        return not rule.get("ports") or any(p["port"] == port for p in rule["ports"])

    def _peer_ok(self, peers: list[dict] | None, other: tuple[str, Any]) -> bool:
        if not peers:
            return True
        kind, value = other
        for peer in peers:
            in_namespace = "podSelector" in peer and "namespaceSelector" not in peer
            if kind == "pod" and in_namespace and self._selects(peer["podSelector"], value):
                return True
            namespace = peer.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name")
            if kind == "namespace" and namespace == value:
                return True
            if kind == "ip" and "ipBlock" in peer:
                block = peer["ipBlock"]
                address = ipaddress.ip_address(value)
                inside = address in ipaddress.ip_network(block["cidr"])
                if inside and not any(address in ipaddress.ip_network(c) for c in block.get("except", [])):
                    return True
        return False

    def allows(self, source: tuple[str, Any], target: tuple[str, Any], port: int) -> bool:
        if target[0] == "pod":
            policies = self._isolated(target[1], "Ingress")
            if policies and not any(
                self._port_ok(rule, port) and self._peer_ok(rule.get("from"), source)
                for p in policies
                for rule in p.get("ingress", [])
            ):
                return False
        if source[0] == "pod":
            policies = self._isolated(source[1], "Egress")
            if policies and not any(
                self._port_ok(rule, port) and self._peer_ok(rule.get("to"), target)
                for p in policies
                for rule in p.get("egress", [])
            ):
                return False
        return True


def pod_labels(stack: BuiltStack) -> dict[str, dict[str, str]]:
    """Every pod template in the stack by a short role name, the APIs from their chart values."""
    labels: dict[str, dict[str, str]] = {}
    for r in stack.of_type(*WORKLOADS):
        tpl = pod_template(r)["metadata"]["labels"]
        labels[f"{tpl['app.kubernetes.io/name']}/{tpl['app.kubernetes.io/component']}"] = tpl
    for values in chart_values(stack).values():
        labels[f"api/{values['component']}"] = {"app.kubernetes.io/name": "city-api", **values["podLabels"]}
    return labels


def test_namespace_is_default_deny_and_every_pod_has_an_allow_policy(built: BuiltStack) -> None:
    policies = [r.plain["spec"] for r in built.of_type(NETPOL)]
    assert {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]} in policies
    specific = [p for p in policies if p["podSelector"].get("matchLabels")]
    for role, labels in pod_labels(built).items():
        assert any(Network._selects(p["podSelector"], labels) for p in specific), f"{role} has no policy of its own"


def test_exactly_the_needed_flows(built: BuiltStack) -> None:
    net = Network(built)
    pods = pod_labels(built)
    ingress_ns = built.settings.cluster.ingress.controller_namespace

    def pod(name: str) -> tuple[str, Any]:
        return ("pod", pods[name])

    apis = [k for k in pods if k.startswith("api/")]
    broker, primary, storage = pod("broker/server"), pod("database/primary"), pod("object-storage/server")
    backup, storage_setup, db_setup = pod("database/backup"), pod("object-storage/setup"), pod("database/setup")
    # A device inside the environment's device networks; one outside them gets nowhere.
    ranges = [ipaddress.ip_network(cidr) for cidr in built.settings.broker.device_source_ranges]
    device = ("ip", str(next(ranges[0].hosts())))
    elsewhere = ipaddress.ip_address("198.51.100.7")
    allowed = [
        (device, broker, 8883),
        *[(("namespace", ingress_ns), pod(a), 8080) for a in apis],
        *[(pod(a), primary, 5432) for a in apis],
        *[(pod(a), broker, 1883) for a in apis],
        *[(pod(a), storage, 9000) for a in apis],
        (backup, primary, 5432),
        (backup, storage, 9000),
        (db_setup, primary, 5432),
        (storage_setup, storage, 9000),
        (storage, storage, 9000),
        *[(pod(p), ("namespace", "kube-system"), 53) for p in pods],
    ]
    if built.settings.database.replicas:
        allowed.append((pod("database/replica"), primary, 5432))
    denied = [
        (device, broker, 1883),
        (device, primary, 5432),
        (device, storage, 9000),
        (device, pod(apis[0]), 8080),
        (("namespace", "default"), pod(apis[0]), 8080),
        (broker, primary, 5432),
        (broker, storage, 9000),
        (broker, ("namespace", "kube-system"), 443),
        (primary, storage, 9000),
        (storage, primary, 5432),
        (backup, broker, 1883),
        (pod(apis[0]), pod(apis[1]), 8080),
        (pod(apis[0]), ("namespace", "kube-system"), 443),
        (storage_setup, primary, 5432),
    ]
    if not any(elsewhere in network for network in ranges):
        denied.append((("ip", str(elsewhere)), broker, 8883))
    for source, target, port in allowed:
        assert net.allows(source, target, port), f"{source} -> {target}:{port} should be allowed"
    for source, target, port in denied:
        assert not net.allows(source, target, port), f"{source} -> {target}:{port} should be denied"


# --- Broker exposure ----------------------------------------------------------------------


def test_only_mqtt_over_tls_is_exposed_with_the_profiles_annotations(built: BuiltStack) -> None:
    services = [r.plain for r in built.of_type(SERVICE)]
    public = [s for s in services if s["spec"].get("type") in ("LoadBalancer", "NodePort")]
    assert len(public) == 1
    (lb,) = public
    assert [p["port"] for p in lb["spec"]["ports"]] == [8883]
    assert lb["metadata"]["annotations"] == dict(built.settings.cluster.load_balancer.service_annotations)
    plain = [s for s in services if any(p["port"] == 1883 for p in s["spec"]["ports"])]
    assert plain and all(s["spec"].get("type", "ClusterIP") == "ClusterIP" for s in plain)


def test_ingress_follows_the_profile(built: BuiltStack) -> None:
    ingress = built.settings.cluster.ingress
    for values in chart_values(built).values():
        assert values["ingress"]["className"] == ingress.ingress_class
        assert values["ingress"]["annotations"] == dict(ingress.annotations)
        assert values["ingress"]["host"].endswith(f".{ingress.base_domain}")
        assert values["ingress"]["tlsSecretName"]
    for url in built.outputs["api_urls"][0].values():
        assert url.startswith("https://") and url.endswith(ingress.base_domain)


CERTIFICATE = "kubernetes:cert-manager.io/v1:Certificate"


def test_every_served_or_mounted_key_pair_is_certified_by_the_profiles_issuer(built: BuiltStack) -> None:
    """The broker's TLS listener and every API's Ingress get their key pair from a Certificate
    signed by the cluster's issuer, for the names clients dial."""
    issuer = built.settings.cluster.ingress.tls_issuer
    certificates = {r.plain["spec"]["secretName"]: r.plain["spec"] for r in built.of_type(CERTIFICATE)}
    assert all(
        spec["issuerRef"] == {"group": "cert-manager.io", "kind": "ClusterIssuer", "name": issuer}
        for spec in certificates.values()
    )
    for values in chart_values(built).values():
        spec = certificates[values["ingress"]["tlsSecretName"]]
        assert values["ingress"]["host"] in spec["dnsNames"]
    broker = by_name(built, STATEFULSET, "broker")[0]
    mounted = [
        v["secret"]["secretName"]
        for v in pod_template(broker)["spec"]["volumes"]
        if "secret" in v and v["secret"]["secretName"].endswith("-tls")
    ]
    assert len(mounted) == 1
    mqtt_host = built.outputs["mqtt_endpoint"][0].removeprefix("mqtts://").rsplit(":", 1)[0]
    assert mqtt_host in certificates[mounted[0]]["dnsNames"]
    # The database's key pair, for the primary's and the replicas' Service names clients dial.
    primary = by_name(built, STATEFULSET, "database-primary")[0]
    database_tls = [v["secret"]["secretName"] for v in pod_template(primary)["spec"]["volumes"] if "secret" in v]
    assert database_tls == [f"{built.settings.environment}-database-tls"]
    namespace = f"smartnation-{built.settings.environment}"
    assert certificates[database_tls[0]]["dnsNames"] == [
        f"{built.settings.environment}-database-{role}.{namespace}.svc.cluster.local"
        for role in ("primary", "replicas")
    ]
    # The broker's, the database's and MinIO's (tests/unit/test_in_cluster_tls.py), one per API.
    assert len(certificates) == 3 + len(chart_values(built))


def merged_with_chart_defaults(values: dict[str, Any]) -> dict[str, Any]:
    """What helm validates: the chart's values.yaml with ``values`` merged over it."""

    def merge(base: Any, over: Any) -> Any:
        if isinstance(base, dict) and isinstance(over, dict):
            return {**base, **{k: merge(base.get(k), v) for k, v in over.items()}}
        return over

    defaults = yaml.safe_load((CHART_PATH / "values.yaml").read_text(encoding="utf-8"))
    # The wire format carries every number as a float; the chart receives integers.
    return merge(defaults, json.loads(json.dumps(values), parse_float=lambda f: int(float(f))))


def test_chart_values_satisfy_the_chart_schema(built: BuiltStack) -> None:
    schema = json.loads((CHART_PATH / "values.schema.json").read_text(encoding="utf-8"))
    for values in chart_values(built).values():
        jsonschema.validate(merged_with_chart_defaults(values), schema)


def test_the_same_environment_differs_only_where_the_clusters_do(build_stack) -> None:
    a, b = (build_stack("staging", cluster) for cluster in CLUSTERS)
    for stack in (a, b):
        profile = load_cluster_profile(stack.settings.cluster.name)
        assert stack.settings.cluster == profile
    pa, pb = a.settings.cluster, b.settings.cluster
    assert pa.storage.default_class != pb.storage.default_class
    images_a = sorted(c["image"] for r in a.of_type(*WORKLOADS) for c in containers(r))
    images_b = sorted(c["image"] for r in b.of_type(*WORKLOADS) for c in containers(r))
    assert [i.replace(pa.registry.default, "") for i in images_a] == [
        i.replace(pb.registry.default, "") for i in images_b
    ]
    assert sorted(r.name.split("-", 2)[-1] for r in a.kubernetes()) == sorted(
        r.name.split("-", 2)[-1] for r in b.kubernetes()
    )


def test_everything_fits_the_namespace_quota_at_full_scale(built: BuiltStack) -> None:
    """Every pod at its maximum (APIs at their HPA ceiling, one run of each job) fits the quota."""
    totals = {"requests.cpu": 0.0, "requests.memory": 0.0, "limits.cpu": 0.0, "limits.memory": 0.0, "pods": 0.0}
    storage, claims = 0.0, 0

    def add(resources: dict[str, Any], count: float) -> None:
        for kind in ("requests", "limits"):
            for what in ("cpu", "memory"):
                totals[f"{kind}.{what}"] += count * parse_quantity(str(resources[kind][what]))

    for r in built.of_type(*WORKLOADS):
        count = r.plain["spec"].get("replicas", 1) if r.type in LONG_RUNNING else 1
        totals["pods"] += count
        spec = pod_template(r)["spec"]
        # Init containers run before the others: the pod needs the larger of the two.
        main = [c["resources"] for c in spec["containers"]]
        init = [c["resources"] for c in spec.get("initContainers", [])]
        for resources in main:
            add(resources, count)
        for resources in init:
            for kind in ("requests", "limits"):
                for what in ("cpu", "memory"):
                    extra = parse_quantity(str(resources[kind][what])) - sum(
                        parse_quantity(str(m[kind][what])) for m in main
                    )
                    totals[f"{kind}.{what}"] += count * max(extra, 0)
        for claim in r.plain["spec"].get("volumeClaimTemplates", []):
            storage += count * parse_quantity(claim["spec"]["resources"]["requests"]["storage"])
            claims += int(count)
    for values in chart_values(built).values():
        ceiling = values["autoscaling"]["maxReplicas"]
        totals["pods"] += ceiling
        add(values["resources"], ceiling)
    quota = built.settings.guardrails.quota
    hard = {
        "requests.cpu": quota.requests_cpu,
        "requests.memory": quota.requests_memory,
        "limits.cpu": quota.limits_cpu,
        "limits.memory": quota.limits_memory,
        "pods": str(quota.pods),
    }
    for key, total in totals.items():
        assert total <= parse_quantity(hard[key]), f"{key}: {total} exceeds the quota {hard[key]}"
    assert storage <= parse_quantity(quota.requests_storage)
    assert claims <= quota.persistent_volume_claims


# --- Production is highly available -------------------------------------------------------


@pytest.mark.parametrize("cluster", CLUSTERS)
def test_production_is_highly_available(build_stack, cluster: str) -> None:
    stack = build_stack("production", cluster)

    def spread_is_hard(r: Registered) -> bool:
        return any(
            t["topologyKey"] == ZONE and t["whenUnsatisfiable"] == "DoNotSchedule"
            for t in pod_template(r)["spec"]["topologySpreadConstraints"]
        )

    (broker,) = by_name(stack, STATEFULSET, "broker")
    replicas = broker.plain["spec"]["replicas"]
    assert replicas >= 3 and spread_is_hard(broker)
    (broker_pdb,) = by_name(stack, PDB, "broker")
    assert broker_pdb.plain["spec"]["minAvailable"] == replicas - 1 >= 2

    (replica,) = by_name(stack, STATEFULSET, "database-replica")
    assert replica.plain["spec"]["replicas"] >= 1
    (clone,) = pod_template(replica)["spec"]["initContainers"]
    assert "pg_basebackup" in " ".join(clone["command"]) and "standby.signal" in " ".join(clone["command"])
    env = {e["name"]: e.get("value") for e in clone["env"]}
    assert env["PRIMARY_HOST"].startswith("production-database-primary.")

    (minio,) = by_name(stack, STATEFULSET, "object-storage")
    servers = int(minio.plain["spec"]["replicas"])  # numbers cross the wire as floats
    assert servers >= 4 and spread_is_hard(minio)
    (volumes,) = [a for a in pod_template(minio)["spec"]["containers"][0]["args"] if a.startswith("https://")]
    assert f"{{0...{servers - 1}}}" in volumes

    for name, values in chart_values(stack).items():
        assert values["autoscaling"]["enabled"] and values["autoscaling"]["minReplicas"] >= 2, name
        assert values["podDisruptionBudget"]["enabled"] and values["podDisruptionBudget"]["minAvailable"] >= 1, name
        assert values["zoneSpread"]["whenUnsatisfiable"] == "DoNotSchedule", name


def test_dev_stays_small(build_stack) -> None:
    stack = build_stack("dev")
    assert not by_name(stack, STATEFULSET, "database-replica")
    (minio,) = by_name(stack, STATEFULSET, "object-storage")
    assert minio.plain["spec"]["replicas"] == 1


# --- What the components configure --------------------------------------------------------


def test_database_init_comes_from_settings_without_secrets(built: BuiltStack) -> None:
    (init,) = by_name(built, CONFIGMAP, "database-init")
    sql = init.plain["data"]["init.sql"]
    for role in built.settings.database.roles:
        assert role.name in sql
    for database in built.settings.database.databases:
        assert database.name in sql
    role_secrets = {r.plain["metadata"]["name"] for r in by_name(built, SECRET, "database-role-")}
    assert len(role_secrets) == len([r for r in built.settings.database.roles if r.login])


def test_backup_runs_on_schedule_with_credentials_by_reference(built: BuiltStack) -> None:
    (cron,) = built.of_type(CRONJOB)
    assert cron.plain["spec"]["schedule"] == built.settings.database.backup.schedule
    for c in containers(cron):
        for e in c.get("env", []):
            if re.search(r"PASSWORD|SECRET", e["name"]):
                assert "valueFrom" in e, e
    upload = next(containers(cron, init=False))
    assert upload["envFrom"][0]["secretRef"]["name"].endswith(built.settings.database.backup.storage_user)


def test_object_storage_setup_creates_every_bucket_and_user(built: BuiltStack) -> None:
    (setup,) = by_name(built, CONFIGMAP, "object-storage-setup")
    script = setup.plain["data"]["setup.sh"]
    for bucket in built.settings.object_storage.buckets:
        assert f"mc mb --ignore-existing store/{bucket.name}" in script
    for user in built.settings.object_storage.users:
        assert f"mc admin user add store {user.name} " in script
        policy = json.loads(setup.plain["data"][f"policy-{user.name}.json"])
        resources = {res for s in policy["Statement"] for res in s["Resource"]}
        assert resources == {f"arn:aws:s3:::{b}{suffix}" for b in user.buckets for suffix in ("", "/*")}


def test_stack_outputs_describe_the_deployment(built: BuiltStack) -> None:
    outputs = {k: v for k, (v, _) in built.outputs.items()}
    assert outputs["mqtt_endpoint"].startswith("mqtts://") and outputs["mqtt_endpoint"].endswith(":8883")
    assert set(outputs["api_urls"]) == {api.app for api in built.settings.city_apis.values()}
    assert outputs["s3_endpoint"].startswith("https://")
    releases = outputs["deployed_releases"]
    assert releases["chart_version"] == built.settings.releases.chart_version
    assert set(releases["helm_releases"].values()) == {r.plain["name"] for r in built.of_type(CHART)}


def test_fake_secrets_are_distinct() -> None:
    # The leak tests above are only as good as the fakes are recognisable.
    keys = ["database-superuser-password", "broker-password-a", "broker-password-b"]
    assert len({fake_secret(k) for k in keys}) == len(keys)
