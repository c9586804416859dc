"""Unit: what every stateful component writes the same way (smartnation/program/components/stateful.py).

The broker, the database and the object storage build their Secrets, Services, StatefulSets,
budgets and setup Jobs through ``Children``; the built stacks (test_stack.py) pass as long as
the three happen to look right together. Here each method is pinned on its own, for what the
cluster makes of it: which pods a Service or budget selects, what reaches a load balancer, when
a StatefulSet is protected, what makes a setup Job run again.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import pulumi
import pytest

from smartnation.program import naming
from smartnation.program.components import pods, stateful
from smartnation.program.placement import Placement
from smartnation.settings import load_settings
from smartnation.settings.models import Settings
from tests.unit.component_build import BuiltComponent, build_component
from tests.unit.harness import REPO_ENVIRONMENTS, Registered, install_mocks, run

pytestmark = pytest.mark.unit

SERVICE = "kubernetes:core/v1:Service"
VERSION = "9.9.9"


class _Component(pulumi.ComponentResource):
    def __init__(self, name: str, opts: pulumi.ResourceOptions) -> None:
        super().__init__("test:stateful:Component", name, None, opts)


@pytest.fixture(scope="module")
def dev() -> Settings:
    return load_settings("dev", REPO_ENVIRONMENTS)


@pytest.fixture(scope="module")
def production() -> Settings:
    return load_settings("production", REPO_ENVIRONMENTS)


def _with(settings: Settings, body, *, protect_state: bool | None = None) -> tuple[BuiltComponent, dict[str, Any]]:
    """Run ``body(children)`` in a component ``c`` of role broker; returns the build and what
    ``body`` returned (its values resolved when they are Outputs)."""
    seen: dict[str, Any] = {}

    def make(placement: Placement, opts: pulumi.ResourceOptions) -> dict[str, Any]:
        parent = _Component("c", opts)
        children = stateful.Children.of(parent, "c", opts, placement, naming.BROKER, VERSION)
        seen["children"] = children
        result = body(children)
        return result if isinstance(result, dict) else {}

    built = build_component(settings, make, protect_state=protect_state)
    return built, {**built.outputs, "children": seen["children"]}


def _names(settings: Settings) -> naming.Names:
    return naming.names(settings.environment, naming.BROKER)


def test_ports_target_the_container_port_of_the_same_name() -> None:
    assert stateful.ports("mqtt", 1883) == [{"name": "mqtt", "port": 1883, "target_port": "mqtt"}]


def test_sha256_is_the_hex_digest_of_the_utf8_text() -> None:
    assert stateful.sha256("pâté") == hashlib.sha256("pâté".encode()).hexdigest()


def test_only_the_digest_of_secret_values_leaves_and_it_is_plain() -> None:
    def program() -> dict[str, Any]:
        values = [pulumi.Output.secret("s3cret"), "plain"]
        return {"digest": stateful.secret_digest(values, lambda plain: "|".join(plain))}

    outputs = run(install_mocks(), program)
    assert outputs["digest"] == ("s3cret|plain", False)


def test_a_component_without_its_provider_is_refused(dev) -> None:
    placement = Placement.of(dev.environment, dev.cluster, protect_state=False)

    def program() -> None:
        parent = _Component("c", pulumi.ResourceOptions())
        with pytest.raises(ValueError, match="^_Component: pass the target cluster's Kubernetes provider"):
            stateful.Children.of(parent, "c", None, placement, naming.BROKER, VERSION)
        with pytest.raises(ValueError, match="^_Component: "):
            stateful.Children.of(parent, "c", pulumi.ResourceOptions(), placement, naming.BROKER, VERSION)

    run(install_mocks(), program)


def test_every_child_is_named_after_its_component_and_lives_in_the_environment(dev) -> None:
    def body(children: stateful.Children) -> None:
        children.secret("creds", {"user": "u"}, naming.SERVER)
        children.config_map("config", {"a.conf": "x"})

    built, seen = _with(dev, body)
    names = _names(dev)
    children: stateful.Children = seen["children"]
    assert children.names == names
    assert children.resource_name("tls") == "c-tls"
    (parent,) = [r for r in built.resources if r.type == "test:stateful:Component"]
    (provider,) = [r for r in built.resources if r.type == "pulumi:providers:kubernetes"]
    secret = built.one("kubernetes:core/v1:Secret", "c-creds")
    config = built.one("kubernetes:core/v1:ConfigMap", "c-config")
    assert secret.name == "c-creds" and config.name == "c-config"
    assert secret.plain == {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "namespace": naming.namespace(dev.environment),
            "name": names.child("creds"),
            "labels": names.labels(naming.SERVER, VERSION),
        },
        "type": "Opaque",
        "stringData": {"user": "u"},
    }
    assert config.plain == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "namespace": naming.namespace(dev.environment),
            "name": names.child("config"),
            "labels": names.labels(None, VERSION),
        },
        "data": {"a.conf": "x"},
    }
    for child in (secret, config):
        assert child.parent == parent.urn
        assert child.provider.startswith(provider.urn)
        # Neither holds data the cluster cannot be given again: never protected.
        assert child.protect is not True


def test_a_stateful_pod_runs_on_the_stateful_pool_as_its_user_without_a_token(dev) -> None:
    built, seen = _with(dev, lambda children: None)
    children: stateful.Children = seen["children"]
    assert children.pod_spec(1883, containers=["x"]) == {
        "automount_service_account_token": False,
        "security_context": pods.pod_security_context(1883),
        "node_selector": children.placement.node_selector("stateful"),
        "containers": ["x"],
    }


def test_the_headless_service_names_pods_and_publishes_unready_ones_only_when_asked(dev) -> None:
    def body(children: stateful.Children) -> None:
        children.headless_service("mqtt", 1883, naming.SERVER)
        children.headless_service("pg", 5432, publish_not_ready=True)

    built, _ = _with(dev, body)
    names = _names(dev)
    # By port: the mocks register resources in whatever order their inputs resolve (1 run in 4 swapped them).
    by_port = {s.plain["spec"]["ports"][0]["name"]: s for s in built.of_type(SERVICE)}
    assert sorted(by_port) == ["mqtt", "pg"] and len(built.of_type(SERVICE)) == 2
    first, second = by_port["mqtt"], by_port["pg"]
    assert first.plain["metadata"]["name"] == names.child("headless")
    assert first.plain["spec"] == {
        "clusterIP": "None",
        "selector": names.selector(naming.SERVER),
        "ports": [{"name": "mqtt", "port": 1883, "targetPort": "mqtt"}],
    }
    assert second.plain["spec"] == {
        "clusterIP": "None",
        "selector": names.selector(None),
        "ports": [{"name": "pg", "port": 5432, "targetPort": "pg"}],
        "publishNotReadyAddresses": True,
    }


def test_a_cluster_ip_service_selects_its_components_pods_under_its_own_or_given_name(dev) -> None:
    def body(children: stateful.Children) -> None:
        children.cluster_ip_service("internal", "mqtt", 1883, naming.SERVER)
        children.cluster_ip_service("primary", "pg", 5432, naming.PRIMARY, object_name="given")

    built, _ = _with(dev, body)
    names = _names(dev)
    internal = built.one(SERVICE, "c-internal").plain
    primary = built.one(SERVICE, "c-primary").plain
    assert internal["metadata"]["name"] == names.child("internal")
    assert internal["metadata"]["labels"] == names.labels(naming.SERVER, VERSION)
    assert internal["spec"] == {
        "type": "ClusterIP",
        "selector": names.selector(naming.SERVER),
        "ports": [{"name": "mqtt", "port": 1883, "targetPort": "mqtt"}],
    }
    assert primary["metadata"]["name"] == "given"
    assert primary["spec"]["selector"] == names.selector(naming.PRIMARY)


@pytest.mark.parametrize("environment", ["dev", "production"])
def test_a_load_balancer_keeps_the_clients_address_and_drops_other_sources_when_told(environment: str) -> None:
    settings = load_settings(environment, REPO_ENVIRONMENTS)

    def body(children: stateful.Children) -> None:
        children.load_balancer_service("open", "open-lb", naming.SERVER, "mqtts", 8883)
        children.load_balancer_service("narrow", "narrow-lb", naming.PRIMARY, "pg", 5432, ("192.0.2.0/24",))
        children.load_balancer_service("closed", "closed-lb", naming.PRIMARY, "pg", 5432, ())

    built, _ = _with(settings, body)
    names = _names(settings)
    load_balancer = settings.cluster.load_balancer
    open_, narrow, closed = (built.one(SERVICE, f"c-{role}").plain for role in ("open", "narrow", "closed"))
    assert open_["metadata"] == {
        "namespace": naming.namespace(settings.environment),
        "name": "open-lb",
        "labels": names.labels(naming.SERVER, VERSION),
        **({"annotations": dict(load_balancer.service_annotations)} if load_balancer.service_annotations else {}),
    }
    assert open_["spec"] == {
        "type": "LoadBalancer",
        "externalTrafficPolicy": "Local",
        "allocateLoadBalancerNodePorts": load_balancer.node_ports,
        "selector": names.selector(naming.SERVER),
        "ports": [{"name": "mqtts", "port": 8883, "targetPort": "mqtts", "protocol": "TCP"}],
    }
    assert narrow["spec"]["loadBalancerSourceRanges"] == ["192.0.2.0/24"]
    assert narrow["spec"]["selector"] == names.selector(naming.PRIMARY)
    # An empty list is said, not left out: no source at all.
    assert closed["spec"]["loadBalancerSourceRanges"] == []


def test_the_annotations_of_the_profile_reach_the_load_balancer(dev) -> None:
    cluster = dataclasses.replace(
        dev.cluster,
        load_balancer=dataclasses.replace(dev.cluster.load_balancer, service_annotations={"lb.example/x": "y"}),
    )
    settings = dataclasses.replace(dev, cluster=cluster)
    built, _ = _with(settings, lambda c: c.load_balancer_service("open", "open-lb", naming.SERVER, "mqtts", 8883))
    assert built.one(SERVICE, "c-open").plain["metadata"]["annotations"] == {"lb.example/x": "y"}


def _statefulset(built: BuiltComponent) -> Registered:
    (found,) = built.of_type("kubernetes:apps/v1:StatefulSet")
    return found


@pytest.mark.parametrize("protect", [True, False])
def test_a_statefulset_spreads_its_pods_keeps_its_claims_and_is_protected_as_placed(dev, protect: bool) -> None:
    def body(children: stateful.Children) -> None:
        config = children.config_map("config", {"a": "b"})
        children.stateful_set(
            "server",
            "obj",
            naming.SERVER,
            replicas=3,
            service_name="svc",
            pod={"containers": []},
            claims=[children.data_claim("5Gi", naming.SERVER)],
            depends_on=[config],
        )

    built, _ = _with(dev, body, protect_state=protect)
    names = _names(dev)
    server = _statefulset(built)
    selector = names.selector(naming.SERVER)
    assert server.protect is protect
    assert built.one("kubernetes:core/v1:ConfigMap", "c-config").urn in server.dependencies
    assert server.plain["metadata"]["name"] == "obj"
    assert server.plain["spec"] == {
        "replicas": 3,
        "serviceName": "svc",
        "selector": {"matchLabels": selector},
        "template": {
            "metadata": {"labels": names.labels(naming.SERVER, VERSION)},
            "spec": {"containers": [], "topologySpreadConstraints": _camel(pods.spread(selector, 3))},
        },
        "volumeClaimTemplates": [
            {
                "metadata": {"name": "data", "labels": names.labels(naming.SERVER)},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "storageClassName": dev.cluster.storage.default_class,
                    "resources": {"requests": {"storage": "5Gi"}},
                },
            }
        ],
    }


def _camel(value: Any) -> Any:
    if isinstance(value, list):
        return [_camel(v) for v in value]
    if isinstance(value, dict):
        return {_camel_key(k): _camel(v) if not k.startswith("match_labels") else v for k, v in value.items()}
    return value


def _camel_key(key: str) -> str:
    first, *rest = key.split("_")
    return first + "".join(word.capitalize() for word in rest)


def test_parallel_pods_and_annotations_only_when_asked(dev) -> None:
    def body(children: stateful.Children) -> None:
        children.stateful_set(
            "server",
            "obj",
            naming.SERVER,
            replicas=1,
            service_name="svc",
            pod={},
            claims=[],
            parallel=True,
            pod_annotations={"x/y": "z"},
        )

    spec = _statefulset(_with(dev, body)[0]).plain["spec"]
    assert spec["podManagementPolicy"] == "Parallel"
    assert spec["template"]["metadata"]["annotations"] == {"x/y": "z"}

    def plain(children: stateful.Children) -> None:
        children.stateful_set("server", "obj", naming.SERVER, replicas=1, service_name="svc", pod={}, claims=[])

    spec = _statefulset(_with(dev, plain)[0]).plain["spec"]
    assert "podManagementPolicy" not in spec
    assert "annotations" not in spec["template"]["metadata"]


def test_a_budget_selects_its_components_pods_with_the_limit_given(dev) -> None:
    built, _ = _with(dev, lambda c: c.disruption_budget("pdb", "obj", naming.SERVER, max_unavailable=1))
    (budget,) = built.of_type("kubernetes:policy/v1:PodDisruptionBudget")
    assert budget.name == "c-pdb"
    assert budget.plain["metadata"]["name"] == "obj"
    assert budget.plain["spec"] == {
        "maxUnavailable": 1,
        "selector": {"matchLabels": _names(dev).selector(naming.SERVER)},
    }


def test_a_hashed_name_carries_ten_hex_digits_of_the_digest(dev) -> None:
    digest = hashlib.sha256(b"x").hexdigest()
    _, seen = _with(dev, lambda c: {"name": c.hashed_name("setup", pulumi.Output.from_input(digest))})
    assert seen["name"] == _names(dev).child(f"setup-{digest[:10]}")


def _setup_job(dev: Settings, **extra: Any) -> Registered:
    def body(children: stateful.Children) -> None:
        scripts = children.config_map("scripts", {"run.sh": "true"})
        children.setup_job(
            "setup",
            "job-abc",
            uid=70,
            image="registry.example/tool@sha256:0",
            command=["/bin/sh", "/scripts/run.sh"],
            env=[{"name": "A", "value": "1"}],
            scripts=scripts,
            volume="scripts",
            mount_path="/scripts",
            **extra,
        )

    (job,) = _with(dev, body)[0].of_type("kubernetes:batch/v1:Job")
    return job


def test_a_setup_job_retries_a_while_then_fails_and_never_restarts_in_place(dev) -> None:
    job = _setup_job(dev)
    names = _names(dev)
    spec = job.plain["spec"]
    assert job.name == "c-setup"
    assert job.plain["metadata"]["name"] == "job-abc"
    assert job.plain["metadata"]["labels"] == names.labels(naming.SETUP, VERSION)
    assert spec["backoffLimit"] == 6
    assert spec["activeDeadlineSeconds"] == 1800
    pod = spec["template"]
    assert pod["metadata"] == {"labels": names.labels(naming.SETUP, VERSION)}
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert pod["spec"]["securityContext"]["runAsUser"] == 70
    (container,) = pod["spec"]["containers"]
    assert container["name"] == "setup"
    assert container["image"] == "registry.example/tool@sha256:0"
    assert container["command"] == ["/bin/sh", "/scripts/run.sh"]
    assert container["env"] == [{"name": "A", "value": "1"}]
    assert "envFrom" not in container
    assert container["resources"] == {
        "requests": {"cpu": pods.JOB_RESOURCES.requests.cpu, "memory": pods.JOB_RESOURCES.requests.memory},
        "limits": {"cpu": pods.JOB_RESOURCES.limits.cpu, "memory": pods.JOB_RESOURCES.limits.memory},
    }
    # Its scripts read-only, a writable /tmp (the root filesystem is read-only), nothing else.
    assert container["volumeMounts"] == [
        {"name": "scripts", "mountPath": "/scripts", "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    assert pod["spec"]["volumes"] == [
        {"name": "scripts", "configMap": {"name": names.child("scripts")}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
    ]


def test_a_setup_job_mounts_the_ca_and_takes_env_from_when_given(dev) -> None:
    ca_volume = {"name": "ca", "secret": {"secret_name": "the-ca"}}
    job = _setup_job(
        dev,
        ca=(ca_volume, "/ca"),
        env_from=[{"secret_ref": {"name": "creds"}}],
        delete_before_replace=True,
    )
    pod = job.plain["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["envFrom"] == [{"secretRef": {"name": "creds"}}]
    assert container["volumeMounts"][-1] == {"name": "ca", "mountPath": "/ca", "readOnly": True}
    assert pod["volumes"][-1] == {"name": "ca", "secret": {"secretName": "the-ca"}}
    assert len(pod["volumes"]) == 3
    # The options given reach the Job.
    assert job.delete_before_replace is True
