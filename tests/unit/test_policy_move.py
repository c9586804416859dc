"""The pack during a move (docs/move.md): each object judged against the cluster it lands on, and
the one database Service the move publishes admitted exactly as the move declares it.

The validators are called as in test_policy.py (the engine's own argument classes, the props in
the unknown-checking proxy), here with the resource's Kubernetes provider handed over as the
analyzer hands it (its `context` is how the pack tells the clusters apart). The config is the one
the CLI writes (`smartnation.cli.policy.policy_config` from the environment file's `move:`), and
the last tests run the pack over the real program's replicate build under mocks
(`cli.policy_sweep`, what `smartnation preview --redacted` runs) and through the real pack process.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import struct_pb2
from pulumi.runtime.proto import analyzer_pb2
from pulumi_policy import EnforcementLevel, PolicyProviderResource, ResourceValidationArgs
from pulumi_policy.proxy import unknown_checking_proxy

from smartnation.cli import policy_sweep
from smartnation.cli.policy import policy_config
from smartnation.program import move_guard
from smartnation.program.move_guard import Deployed
from smartnation.settings import SettingsError, load_cluster_profile, load_settings
from smartnation_policy import rules
from smartnation_policy.target import Target, TargetConfigError, move_for, target_for
from tests.unit.harness import BuiltStack, Registered, build_settings, edit
from tests.unit.test_policy import (  # noqa: F401 - analyzer is a fixture
    PVC,
    STATEFULSET,
    analyzer,
    check,
    configure,
    container,
    options,
    pod,
    urn_of,
    workload,
)

pytestmark = pytest.mark.unit

SOURCE, TARGET = load_cluster_profile("dusseldorf-test"), load_cluster_profile("monaco-onprem")
LINK = "10.213.0.253/32"
PUBLISHED = "dev-database-published"
PRIMARY_SELECTOR = {
    "app.kubernetes.io/name": "database",
    "app.kubernetes.io/instance": "dev-database",
    "app.kubernetes.io/component": "primary",
}
PUBLISHED_STORAGE = "dev-object-storage-published"
STORAGE_SELECTOR = {
    "app.kubernetes.io/name": "object-storage",
    "app.kubernetes.io/instance": "dev-object-storage",
    "app.kubernetes.io/component": "server",
}
SERVICE = "kubernetes:core/v1:Service"
MANDATORY = {p.name for p in rules.POLICIES if p.enforcement_level == EnforcementLevel.MANDATORY}


def moving(environment: str = "dev", **overrides: Any) -> dict[str, Any]:
    """The targeted policies' config for ``environment`` on Düsseldorf moving to Monaco."""
    move = move_for(
        TARGET,
        phase="replicate",
        published=[(PUBLISHED, PRIMARY_SELECTOR, 5432), (PUBLISHED_STORAGE, STORAGE_SELECTOR, 9000)],
        source_ranges=[LINK],
    )
    countries = overrides.pop("production_countries", ("DE", "MC"))
    config = target_for(environment, SOURCE, move=move, production_countries=countries).as_config()
    config.update(overrides)
    return config


def staying(environment: str = "dev") -> dict[str, Any]:
    """The same environment on Düsseldorf with no move declared."""
    return target_for(environment, SOURCE).as_config()


WITHOUT_CONTEXT = "<no context>"
"""A Kubernetes provider without a `context`: it deploys to the kubeconfig's current context."""


def provider(context: str, name: str = "k8s") -> PolicyProviderResource:
    props = {} if context == WITHOUT_CONTEXT else {"context": context}
    return PolicyProviderResource(
        "pulumi:providers:kubernetes",
        unknown_checking_proxy(props),
        urn_of("pulumi:providers:kubernetes", name),
        name,
    )


def on(
    context: str | None, resource_type: str, props: dict[str, Any], config: dict[str, Any], name: str = "db"
) -> ResourceValidationArgs:
    """A resource deployed through a Kubernetes provider with ``context``, as the engine passes it."""
    return ResourceValidationArgs(
        resource_type,
        unknown_checking_proxy(copy.deepcopy(props)),
        urn_of(resource_type, name),
        name,
        options(),
        provider(context, f"k8s-{context}") if context is not None else None,
        config,
    )


def statefulset(registry: str, storage_class: str) -> dict[str, Any]:
    props = workload(STATEFULSET, pod(container("postgres", image=f"{registry}/timescaledb@sha256:{'a' * 64}")))
    props["spec"]["volumeClaimTemplates"] = [
        {"metadata": {"name": "data"}, "spec": {"storageClassName": storage_class}}
    ]
    return props


SOURCE_REGISTRY, TARGET_REGISTRY = SOURCE.registry.allowed[0], TARGET.registry.allowed[0]
SOURCE_CLASS, TARGET_CLASS = SOURCE.storage.default_class, TARGET.storage.default_class


# --- each object against the cluster it lands on ------------------------------------------------


def test_the_standby_on_the_target_is_judged_by_the_targets_registries_and_storage_classes():
    standby = statefulset(TARGET_REGISTRY, TARGET_CLASS)
    for validator in (rules.allowed_registries_validator, rules.allowed_storage_classes_validator):
        assert check(validator, on(TARGET.context, STATEFULSET, standby, moving())) == []


def test_the_source_keeps_being_judged_by_its_own_registries_and_storage_classes():
    primary = statefulset(SOURCE_REGISTRY, SOURCE_CLASS)
    for validator in (rules.allowed_registries_validator, rules.allowed_storage_classes_validator):
        assert check(validator, on(SOURCE.context, STATEFULSET, primary, moving())) == []
    # Monaco's image and class on Düsseldorf's provider: refused, naming Düsseldorf.
    misplaced = statefulset(TARGET_REGISTRY, TARGET_CLASS)
    registries = check(rules.allowed_registries_validator, on(SOURCE.context, STATEFULSET, misplaced, moving()))
    classes = check(rules.allowed_storage_classes_validator, on(SOURCE.context, STATEFULSET, misplaced, moving()))
    assert len(registries) == 1 and f"cluster '{SOURCE.name}' allows" in registries.messages[0]
    assert TARGET_REGISTRY in registries.messages[0]
    assert len(classes) == 1 and f"'{TARGET_CLASS}', which cluster '{SOURCE.name}'" in classes.messages[0]


def test_the_sources_images_and_classes_are_refused_on_the_target():
    carried_over = statefulset(SOURCE_REGISTRY, SOURCE_CLASS)
    registries = check(rules.allowed_registries_validator, on(TARGET.context, STATEFULSET, carried_over, moving()))
    classes = check(rules.allowed_storage_classes_validator, on(TARGET.context, PVC, {"spec": {}}, moving()))
    assert len(registries) == 1 and f"cluster '{TARGET.name}' allows" in registries.messages[0]
    assert str(list(TARGET.registry.allowed)) in registries.messages[0]
    assert len(classes) == 1 and "no storageClassName" in classes.messages[0]
    assert TARGET_CLASS in classes.messages[0]


@pytest.mark.parametrize(
    ("context", "config", "named"),
    [
        (TARGET.context, staying(), TARGET.context),  # no move declared: Monaco is no cluster of the stack
        ("kind-laptop", moving(), "kind-laptop"),  # neither cluster of the move
        (WITHOUT_CONTEXT, moving(), "(the current one)"),
    ],
    ids=["target-without-a-move", "another-context", "no-context"],
)
def test_an_object_on_a_cluster_the_stack_does_not_name_is_refused(context, config, named):
    standby = statefulset(TARGET_REGISTRY, TARGET_CLASS)
    for validator in (
        rules.allowed_registries_validator,
        rules.allowed_storage_classes_validator,
        rules.data_residency_validator,
    ):
        violations = check(validator, on(context, STATEFULSET, standby, config))
        assert len(violations) == 1, (validator, violations)
        message = violations.messages[0]
        assert f"kubeconfig context '{named}'" in message and "not a cluster of this stack" in message
        assert f"'{SOURCE.context}' (cluster '{SOURCE.name}')" in message


def test_an_object_without_a_kubernetes_provider_is_judged_against_the_environments_own_cluster():
    primary = statefulset(SOURCE_REGISTRY, SOURCE_CLASS)
    assert check(rules.allowed_registries_validator, on(None, STATEFULSET, primary, moving())) == []
    standby = statefulset(TARGET_REGISTRY, TARGET_CLASS)
    assert len(check(rules.allowed_registries_validator, on(None, STATEFULSET, standby, moving()))) == 1


def test_data_residency_judges_each_object_by_the_country_of_its_cluster():
    # An allowed list with Düsseldorf's country only, so that the two sides differ.
    config = moving("production", production_countries=["DE"])
    refused = check(rules.data_residency_validator, on(TARGET.context, STATEFULSET, {}, config))
    assert len(refused) == 1
    assert f"cluster '{TARGET.name}' in country {TARGET.site.country}" in refused.messages[0]
    assert check(rules.data_residency_validator, on(SOURCE.context, STATEFULSET, {}, config)) == []


# --- the database published by the move ---------------------------------------------------------


def published(**changes: Any) -> dict[str, Any]:
    """The published primary Service as the program builds it (components/database.py), changed."""
    spec: dict[str, Any] = {
        "type": "LoadBalancer",
        "externalTrafficPolicy": "Local",
        "loadBalancerSourceRanges": [LINK],
        "selector": dict(PRIMARY_SELECTOR),
        "ports": [{"name": "postgres", "port": 5432.0, "targetPort": "postgres", "protocol": "TCP"}],
    }
    spec.update(changes)
    return {"metadata": {"name": PUBLISHED, "namespace": "smartnation-dev"}, "spec": spec}


def test_the_moves_published_database_service_is_admitted_on_the_source():
    args = on(SOURCE.context, SERVICE, published(), moving(), name=f"{SOURCE.name}-database-published")
    assert check(rules.no_public_data_services_validator, args) == []
    # Handed over without a provider, it is judged as on the environment's own cluster (the source).
    assert check(rules.no_public_data_services_validator, on(None, SERVICE, published(), moving())) == []


def published_storage(**changes: Any) -> dict[str, Any]:
    """The published MinIO Service as the program builds it (components/object_storage.py), changed."""
    spec: dict[str, Any] = {
        "type": "LoadBalancer",
        "externalTrafficPolicy": "Local",
        "loadBalancerSourceRanges": [LINK],
        "selector": dict(STORAGE_SELECTOR),
        "ports": [{"name": "s3", "port": 9000.0, "targetPort": "s3", "protocol": "TCP"}],
    }
    spec.update(changes)
    return {"metadata": {"name": PUBLISHED_STORAGE, "namespace": "smartnation-dev"}, "spec": spec}


def test_the_moves_published_object_storage_is_admitted_on_its_one_port_alone():
    assert (
        check(rules.no_public_data_services_validator, on(SOURCE.context, SERVICE, published_storage(), moving())) == []
    )
    for props, why in (
        (
            published_storage(ports=[{"port": 9000.0, "targetPort": "s3"}, {"port": 9001.0, "targetPort": "console"}]),
            "its ports are [9000.0, 9001.0], not object storage (S3)'s 9000 alone",
        ),
        (published_storage(ports=[{"port": 5432.0, "targetPort": "s3"}]), "not object storage (S3)'s 9000 alone"),
        # Each name with its own selector: MinIO's Service may not select the database primary.
        (published_storage(selector=dict(PRIMARY_SELECTOR)), f"not {STORAGE_SELECTOR}"),
    ):
        violations = check(rules.no_public_data_services_validator, on(SOURCE.context, SERVICE, props, moving()))
        assert len(violations) == 1, violations
        assert f"and '{PUBLISHED_STORAGE}' breaks that: " in violations.messages[0]
        assert why in violations.messages[0], violations.messages[0]
    # The database's Service under MinIO's selector and port is not the database's as declared.
    swapped = published(selector=dict(STORAGE_SELECTOR), ports=[{"port": 9000.0, "targetPort": "s3"}])
    (message,) = check(rules.no_public_data_services_validator, on(SOURCE.context, SERVICE, swapped, moving())).messages
    assert "not PostgreSQL's 5432 alone" in message and f"not {PRIMARY_SELECTOR}" in message


def test_without_a_move_the_published_service_is_refused_with_the_rules_message():
    violations = check(rules.no_public_data_services_validator, on(SOURCE.context, SERVICE, published(), staying()))
    assert len(violations) == 1
    message = violations.messages[0]
    assert "exposes a data service outside the cluster" in message and "port 5432 (PostgreSQL)" in message
    assert "make it type ClusterIP" in message and "During the move" not in message


@pytest.mark.parametrize(
    ("context", "props", "why"),
    [
        (
            SOURCE.context,
            published(loadBalancerSourceRanges=["0.0.0.0/0"]),
            "loadBalancerSourceRanges are ['0.0.0.0/0']",
        ),
        (SOURCE.context, published(loadBalancerSourceRanges=[LINK, "10.213.1.253/32"]), "not exactly the move's"),
        (SOURCE.context, published(loadBalancerSourceRanges=["10.213.0.0/24"]), "not exactly the move's"),
        (SOURCE.context, published(loadBalancerSourceRanges=[]), "loadBalancerSourceRanges are []"),
        (SOURCE.context, published(loadBalancerSourceRanges=["not-a-cidr"]), "['not-a-cidr']"),
        (SOURCE.context, {**published(), "spec": {**published()["spec"], "loadBalancerSourceRanges": None}}, "are []"),
        (SOURCE.context, published(type="NodePort"), "its type is NodePort, not LoadBalancer"),
        (SOURCE.context, published(selector={"app.kubernetes.io/name": "database"}), "its selector is"),
        (
            SOURCE.context,
            published(selector={**PRIMARY_SELECTOR, "app.kubernetes.io/component": "replica"}),
            "its selector is",
        ),
        (
            SOURCE.context,
            published(ports=[{"port": 5432.0, "targetPort": "postgres"}, {"port": 9000.0, "targetPort": "s3"}]),
            "not PostgreSQL's 5432 alone",
        ),
        (TARGET.context, published(), f"not on the source cluster '{SOURCE.name}'"),
    ],
    ids=[
        "open-to-everyone",
        "one-range-more",
        "wider-range",
        "no-ranges",
        "not-a-cidr",
        "ranges-absent",
        "node-port",
        "selects-every-database-pod",
        "selects-the-replicas",
        "object-storage-port-too",
        "on-the-target",
    ],
)
def test_the_moves_service_not_as_the_move_declares_it_is_refused_saying_why(context, props, why):
    violations = check(rules.no_public_data_services_validator, on(context, SERVICE, props, moving()))
    assert len(violations) == 1, violations
    message = violations.messages[0]
    assert "exposes a data service outside the cluster" in message and "make it type ClusterIP" in message
    assert (
        f"During the move to '{TARGET.name}' only the published Services '{PUBLISHED}', '{PUBLISHED_STORAGE}' "
        f"as the move declares them are admitted, and '{PUBLISHED}' breaks that: "
    ) in message
    assert why in message, message


def test_the_published_service_must_carry_every_link_address_the_move_declares():
    # Exactly the move's addresses: a Service missing one is not the one the program builds.
    config = _with("move.source_ranges", [LINK, "10.213.1.253/32"])
    violations = check(rules.no_public_data_services_validator, on(SOURCE.context, SERVICE, published(), config))
    assert len(violations) == 1 and "not exactly the move's link addresses" in violations.messages[0]
    both = published(loadBalancerSourceRanges=["10.213.1.253/32", LINK])
    assert check(rules.no_public_data_services_validator, on(SOURCE.context, SERVICE, both, config)) == []


def test_another_data_service_stays_refused_during_the_move():
    other = published()
    other["metadata"]["name"] = "dev-database-primary"
    violations = check(rules.no_public_data_services_validator, on(SOURCE.context, SERVICE, other, moving()))
    assert len(violations) == 1
    assert "port 5432 (PostgreSQL)" in violations.messages[0] and "During the move" not in violations.messages[0]


# --- the move section of the config ---------------------------------------------------------


_DROP = object()
"""`_with`'s value that removes the key."""


def _with(path: str, value: Any) -> dict[str, Any]:
    """The moving config with the dotted ``path`` set to ``value``."""
    config = moving()
    node = config
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node[key]
    last: Any = int(keys[-1]) if isinstance(node, list) else keys[-1]
    if value is _DROP:
        del node[last]
    else:
        node[last] = value
    return config


@pytest.mark.parametrize(
    ("config", "key"),
    [
        (_with("move.source_ranges", ["10.213.0.253/24"]), r"move\.source_ranges\[0\]: expected a CIDR"),
        (_with("move.source_ranges", []), r"move\.source_ranges: expected a non-empty list"),
        (_with("move.to.country", "Monaco"), r"move\.to\.country: expected an ISO 3166-1"),
        (_with("move.to.storage_classes", "ceph-block"), r"move\.to\.storage_classes: expected a non-empty list"),
        (_with("move.to.context", ""), r"move\.to\.context: expected a non-empty string"),
        (_with("move.to.context", SOURCE.context), r"move\.to: the move goes to cluster 'monaco-onprem'"),
        (
            _with("move.published_services.0.selector", {}),
            r"move\.published_services\[0\]\.selector: expected a non-empty",
        ),
        (
            _with("move.published_services.1.name", 5),
            r"move\.published_services\[1\]\.name: expected a non-empty string",
        ),
        (
            _with("move.published_services.1.port", "9000"),
            r"move\.published_services\[1\]\.port: expected a port number \(1-65535\), got '9000'",
        ),
        (_with("move.published_services.0.port", 0), r"move\.published_services\[0\]\.port: expected a port"),
        (_with("move.published_services.0.port", True), r"move\.published_services\[0\]\.port: expected a port"),
        (_with("move.published_services", []), r"move\.published_services: expected a non-empty list, got \[\]"),
        (_with("move.phase", _DROP), r"move: missing keys \['phase'\]"),
        (_with("move.to.registry", "x"), r"move\.to: unknown keys \['registry'\]"),
        (_with("move", ["monaco-onprem"]), r"move: expected a mapping"),
        (_with("context", _DROP), r"missing keys \['context'\]"),
    ],
    ids=[
        "not-a-network-address",
        "no-ranges",
        "country",
        "classes-not-a-list",
        "empty-context",
        "same-context",
        "empty-selector",
        "name-not-a-string",
        "port-not-a-number",
        "port-zero",
        "port-a-bool",
        "no-published-services",
        "missing-phase",
        "unknown-key",
        "not-a-mapping",
        "no-context",
    ],
)
def test_a_bad_move_section_fails_closed_naming_its_key(config, key):
    with pytest.raises(TargetConfigError, match=f"^policy config: {key}"):
        Target.from_config(config)
    args = on(SOURCE.context, SERVICE, published(), config)
    with pytest.raises(TargetConfigError, match=key):
        check(rules.no_public_data_services_validator, args)


def test_every_targeted_policy_carries_the_move_and_no_public_data_services_is_one():
    config = moving()
    assert Target.from_config(config).as_config() == config
    targeted = {p.name for p in rules.POLICIES if p.config_schema is not None}
    assert "no-public-data-services" in targeted


# --- the config the CLI writes, and the real program's replicate build ------------------------------


def _build(envdir: Path, monkeypatch: pytest.MonkeyPatch) -> BuiltStack:
    monkeypatch.setenv("SMARTNATION_ENVIRONMENTS_DIR", str(envdir))
    monkeypatch.setattr(move_guard, "deployed_by_engine", lambda: Deployed(SOURCE.name))
    settings = load_settings("dev", envdir)
    return build_settings(settings)


@pytest.fixture
def replicating(envdir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[BuiltStack]:
    """dev on Düsseldorf with ``move: {to: monaco-onprem, phase: replicate}``, built under mocks."""
    edit(envdir, "dev.yaml", "cluster", SOURCE.name)
    edit(envdir, "dev.yaml", "move", {"to": TARGET.name, "phase": "replicate"})
    yield _build(envdir, monkeypatch)


def _judge(stack: BuiltStack, resources: list[Registered] | None = None) -> dict[str, list[str]]:
    assert stack.settings is not None
    found: dict[str, list[str]] = {}
    for violation in policy_sweep.judge(stack.resources if resources is None else resources, stack.settings):
        if violation.policy in MANDATORY:
            found.setdefault(violation.policy, []).append(violation.message)
    return found


def test_the_cli_writes_the_move_as_the_program_builds_it(replicating):
    settings = replicating.settings
    assert settings is not None
    move = Target.from_config(policy_config(settings)["no-public-data-services"]).move
    assert move is not None and (move.phase, move.to.cluster, move.to.context) == (
        "replicate",
        TARGET.name,
        "monaco-onprem",
    )
    service = next(r for r in replicating.resources if r.name == f"{SOURCE.name}-database-published")
    storage = next(r for r in replicating.resources if r.name == f"{SOURCE.name}-object-storage-published")
    broker = next(r for r in replicating.resources if r.name == f"{SOURCE.name}-broker-published-0")
    assert [(p.name, dict(p.selector), p.port) for p in move.published] == [
        (service.plain["metadata"]["name"], service.plain["spec"]["selector"], 5432),
        (storage.plain["metadata"]["name"], storage.plain["spec"]["selector"], 9000),
        (broker.plain["metadata"]["name"], broker.plain["spec"]["selector"], 1883),
    ]
    assert broker.plain["spec"]["loadBalancerSourceRanges"] == [LINK]
    assert [port["port"] for port in storage.plain["spec"]["ports"]] == [9000]
    assert service.plain["spec"]["loadBalancerSourceRanges"] == list(move.source_ranges) == [LINK]
    assert storage.plain["spec"]["loadBalancerSourceRanges"] == [LINK]
    assert replicating.outputs["move"][0]["replication_sources"] == list(move.source_ranges)


def test_the_replicate_build_passes_every_mandatory_rule(replicating):
    kinds_on_target = {r.kind for r in replicating.kubernetes() if r.provider.split("::")[-2] == f"k8s-{TARGET.name}"}
    assert {"StatefulSet", "Namespace", "NetworkPolicy"} <= kinds_on_target, "the standby is judged too"
    assert _judge(replicating) == {}


def test_the_replicate_build_judged_without_the_move_is_refused_as_before(replicating, monkeypatch):
    # What the pack did before it knew of moves: the published Service and Monaco's objects refused.
    monkeypatch.setattr(policy_sweep, "policy_config", lambda settings: _without_move(policy_config(settings)))
    found = _judge(replicating)
    assert set(found) == {"no-public-data-services", "allowed-registries", "allowed-storage-classes", "data-residency"}
    assert all("not a cluster of this stack" in m for m in found["allowed-registries"])
    assert any(f"{SOURCE.name}-database-published" in m for m in found["no-public-data-services"])


def _without_move(config: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: {k: v for k, v in properties.items() if k != "move"} for name, properties in config.items()}


@pytest.mark.parametrize(
    ("where", "value", "rule"),
    [
        ("loadBalancerSourceRanges", ["0.0.0.0/0"], "no-public-data-services"),
        ("selector", {"app.kubernetes.io/name": "database"}, "no-public-data-services"),
    ],
)
def test_a_published_service_opened_wider_than_the_move_is_refused(replicating, where, value, rule):
    resources = copy.deepcopy(replicating.resources)
    service = next(r for r in resources if r.name == f"{SOURCE.name}-database-published")
    service.inputs["spec"][where] = value
    found = _judge(replicating, resources)
    assert set(found) == {rule}, found


def test_the_standby_on_the_sources_registry_is_refused(replicating):
    resources = copy.deepcopy(replicating.resources)
    standby = next(
        r
        for r in resources
        if r.kind == "StatefulSet"
        and r.name.startswith(TARGET.name)
        and r.provider.split("::")[-2] == f"k8s-{TARGET.name}"
    )
    template = standby.inputs["spec"]["template"]["spec"]
    template["containers"][0]["image"] = f"{SOURCE_REGISTRY}/timescaledb@sha256:{'b' * 64}"
    standby.inputs["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"] = SOURCE_CLASS
    found = _judge(replicating, resources)
    assert set(found) == {"allowed-registries", "allowed-storage-classes"}, found
    assert all(f"cluster '{TARGET.name}'" in m for messages in found.values() for m in messages)


def test_a_move_from_a_real_cluster_is_refused_naming_the_environment_files_move(replicating):
    # A real cluster's profile has no simulation section: where the other site arrives from is unknown.
    settings = replicating.settings
    assert settings is not None
    real = dataclasses.replace(settings, cluster=dataclasses.replace(settings.cluster, simulation=None))
    with pytest.raises(SettingsError, match=r"dev\.yaml: move: dusseldorf-test is a real cluster"):
        policy_config(real)


# --- the real pack process ----------------------------------------------------------------------


def test_the_pack_process_judges_the_standby_by_its_providers_context(analyzer):  # noqa: F811
    configure(analyzer, {p.name: moving() for p in rules.POLICIES if p.config_schema is not None})

    def analyze(context: str, props: dict[str, Any]) -> dict[str, str]:
        properties, provider_props = struct_pb2.Struct(), struct_pb2.Struct()
        properties.update(props)
        provider_props.update({"context": context})
        response = analyzer.Analyze(
            analyzer_pb2.AnalyzeRequest(
                urn=urn_of(STATEFULSET, "standby"),
                type=STATEFULSET,
                name="standby",
                properties=properties,
                options=analyzer_pb2.AnalyzerResourceOptions(protect=False),
                provider=analyzer_pb2.AnalyzerProviderResource(
                    type="pulumi:providers:kubernetes",
                    properties=provider_props,
                    urn=urn_of("pulumi:providers:kubernetes", f"k8s-{context}"),
                    name=f"k8s-{context}",
                ),
            ),
            timeout=30,
        )
        return {d.policyName: d.message for d in response.diagnostics}

    standby = statefulset(TARGET_REGISTRY, TARGET_CLASS)
    assert analyze(TARGET.context, standby) == {}
    refused = analyze(SOURCE.context, standby)
    assert set(refused) == {"allowed-registries", "allowed-storage-classes"}
    assert f"cluster '{SOURCE.name}'" in refused["allowed-registries"]


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        # Top-level keys: the path is the key alone, with no prefix or separator before it.
        ("context", "", r"context: expected a non-empty string"),
        ("allowed_registries", [], r"allowed_registries: expected a non-empty list of non-empty strings"),
        ("country", "Germany", r"country: expected an ISO 3166-1 alpha-2 code"),
        # The move's keys: the full dotted path to the one that is wrong.
        ("move.phase", 5, r"move\.phase: expected a non-empty string"),
        ("move.to.cluster", "", r"move\.to\.cluster: expected a non-empty string"),
        ("move.to.allowed_registries", ["registry.mc", ""], r"move\.to\.allowed_registries: expected a non-empty list"),
        ("move.published_services.0", "dev-database-published", r"move\.published_services\[0\]: expected a mapping"),
        ("move.published_services.0.selector", {"app": ""}, r"move\.published_services\[0\]\.selector: expected a"),
        ("move.published_services.0.selector", {"app": 5}, r"move\.published_services\[0\]\.selector: expected a"),
        ("move.published_services.1.selector", {"": "x"}, r"move\.published_services\[1\]\.selector: expected a"),
    ],
    ids=[
        "context",
        "registries",
        "country",
        "phase",
        "to-cluster",
        "to-registries-empty-entry",
        "published-not-a-mapping",
        "selector-empty-value",
        "selector-value-not-a-string",
        "selector-empty-key",
    ],
)
def test_a_bad_value_names_its_full_key_path(path, value, message):
    with pytest.raises(TargetConfigError, match=f"^policy config: {message}"):
        Target.from_config(_with(path, value))


def test_an_empty_config_says_how_the_pack_gets_its_target():
    with pytest.raises(TargetConfigError) as raised:
        Target.from_config({})
    assert str(raised.value) == (
        "smartnation-guardrails needs its target in the policy config; run it through the "
        "smartnation CLI or pass --policy-pack-config with the file policy_config_for() writes"
    )


def test_the_engines_enforcement_level_key_is_no_unknown_key():
    # Pulumi may put `enforcementLevel` beside a policy's own config: the target reads as without it.
    assert Target.from_config({**moving(), "enforcementLevel": "mandatory"}) == Target.from_config(moving())


def test_the_policy_config_carries_the_production_countries_it_is_given():
    from smartnation_policy.target import policy_config_for

    config = policy_config_for("production", SOURCE, production_countries=("MC",))
    assert {tuple(c["production_countries"]) for c in config.values()} == {("MC",)}
    assert policy_config_for("production", SOURCE)["allowed-registries"]["production_countries"] != ["MC"]


def test_every_way_the_moves_service_differs_is_said_in_one_sentence():
    props = published(type="NodePort", selector={"app": "x"})
    (message,) = check(rules.no_public_data_services_validator, on(SOURCE.context, SERVICE, props, moving())).messages
    assert message.endswith(
        f"as the move declares them are admitted, and '{PUBLISHED}' breaks that: its type is NodePort, "
        f"not LoadBalancer; its selector is {{'app': 'x'}}, not {dict(PRIMARY_SELECTOR)}."
    ), message


def test_another_data_service_gets_the_rules_message_alone():
    other = published()
    other["metadata"]["name"] = "dev-database-primary"
    (message,) = check(rules.no_public_data_services_validator, on(SOURCE.context, SERVICE, other, moving())).messages
    assert message.endswith("make it type ClusterIP and let the NetworkPolicies admit its clients."), message


def test_a_source_range_with_host_bits_is_no_cidr_even_where_its_network_is_the_moves():
    # 10.213.0.7/24 is an address, not a network: read loosely it would be the move's 10.213.0.0/24.
    config = _with("move.source_ranges", ["10.213.0.0/24"])
    loose = published(loadBalancerSourceRanges=["10.213.0.7/24"])
    violations = check(rules.no_public_data_services_validator, on(SOURCE.context, SERVICE, loose, config))
    assert len(violations) == 1 and "its loadBalancerSourceRanges are ['10.213.0.7/24']" in violations.messages[0]
    exact = published(loadBalancerSourceRanges=["10.213.0.0/24"])
    assert check(rules.no_public_data_services_validator, on(SOURCE.context, SERVICE, exact, config)) == []


def test_a_selector_that_is_not_a_mapping_is_quoted_as_it_came():
    props = published(selector="database")
    (message,) = check(rules.no_public_data_services_validator, on(SOURCE.context, SERVICE, props, moving())).messages
    assert message.endswith(f"its selector is 'database', not {dict(PRIMARY_SELECTOR)}."), message
