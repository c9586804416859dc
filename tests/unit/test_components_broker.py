"""Unit: the broker component alone (smartnation/program/components/broker.py), built under the
Pulumi mocks without the rest of the stack.

test_broker_identity.py and test_broker_tls_reload.py read the built stacks for the device
identity and the certificate reloader; here the wiring the rest of the platform relies on:
which Service serves which listener, the names in the certificate, that the pods roll when
what mosquitto reads at start changes, who gets a password and where it lands, the outputs
the APIs and the operator read, and the disruption budget.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pulumi
import pytest

from smartnation.program import naming
from smartnation.program.components import broker, stateful
from smartnation.program.components.stateful import sha256
from smartnation.program.daemon_config.mosquitto import DeviceClass, render_acl_file, render_device_acl_file
from smartnation.settings import load_settings
from smartnation.settings.models import Settings
from smartnation.settings.stack_secrets import broker_password
from tests.unit.component_build import BuiltComponent, build_component
from tests.unit.harness import REPO_ENVIRONMENTS, fake_secret

pytestmark = pytest.mark.unit

SERVICE = "kubernetes:core/v1:Service"
SECRET = "kubernetes:core/v1:Secret"
CONFIGMAP = "kubernetes:core/v1:ConfigMap"
STATEFULSET = "kubernetes:apps/v1:StatefulSet"
PDB = "kubernetes:policy/v1:PodDisruptionBudget"
CERTIFICATE = "kubernetes:cert-manager.io/v1:Certificate"
CLIENTS = ("telemetry-ingest", "device-registry")


def _build(
    settings: Settings, clients: tuple[str, ...] = CLIENTS, secrets: dict[str, str] | None = None
) -> BuiltComponent:
    releases = settings.releases.components

    def make(placement, opts) -> dict[str, Any]:
        component = broker.Broker(
            "b",
            broker.BrokerArgs(
                placement,
                settings.broker,
                release=releases["broker"],
                tools_release=releases["object_storage_client"],
                client_secrets=clients,
            ),
            opts,
        )
        return {
            "mqtt_endpoint": component.mqtt_endpoint,
            "internal_endpoint": component.internal_endpoint,
            "pod_endpoints": component.pod_endpoints,
            "load_balancer_address": component.load_balancer_address,
            "client_secret_names": component.client_secret_names,
        }

    return build_component(settings, make, secrets=secrets)


@pytest.fixture(scope="module", params=["dev", "production"])
def settings(request: pytest.FixtureRequest) -> Settings:
    return load_settings(request.param, REPO_ENVIRONMENTS)


# Built for each test (in well under a second): a build shared by the module would credit its code
# to the first test alone when mutmut records which tests reach which function.
@pytest.fixture
def built(settings: Settings) -> BuiltComponent:
    return _build(settings)


def _names(settings: Settings) -> naming.Names:
    return naming.names(settings.environment, naming.BROKER)


def _by_name(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in items}


def _pod(built: BuiltComponent) -> dict[str, Any]:
    return built.one(STATEFULSET, "-server").plain["spec"]["template"]


def test_each_listener_has_its_service_and_only_the_device_listener_is_public(settings, built) -> None:
    names = _names(settings)
    server = names.selector(naming.SERVER)
    headless = built.one(SERVICE, "-headless").plain
    internal = built.one(SERVICE, "-internal").plain
    public = built.one(SERVICE, "-public").plain
    assert len(built.of_type(SERVICE)) == 3
    # In-cluster clients: the password listener, never reachable from outside the cluster.
    mqtt = [{"name": "mqtt", "port": broker.INTERNAL_PORT, "targetPort": "mqtt"}]
    assert headless["metadata"]["name"] == names.child("headless")
    assert headless["spec"] == {"clusterIP": "None", "selector": server, "ports": mqtt}
    assert internal["metadata"]["name"] == names.child("internal")
    assert internal["spec"] == {"type": "ClusterIP", "selector": server, "ports": mqtt}
    # Devices: the certificate listener on the LoadBalancer, under the broker's own name.
    assert public["metadata"]["name"] == names.name
    assert public["spec"]["type"] == "LoadBalancer"
    assert public["spec"]["selector"] == server
    assert public["spec"]["ports"] == [
        {"name": "mqtts", "port": broker.TLS_PORT, "targetPort": "mqtts", "protocol": "TCP"}
    ]


def test_the_certificate_names_every_address_a_client_dials(settings, built) -> None:
    names = _names(settings)
    namespace = naming.namespace(settings.environment)
    certificate = built.one(CERTIFICATE, "-tls").plain
    assert certificate["metadata"]["name"] == broker.tls_secret_name(settings.environment) == names.child("tls")
    assert certificate["spec"]["secretName"] == names.child("tls")
    assert certificate["spec"]["issuerRef"]["name"] == settings.cluster.ingress.tls_issuer
    assert certificate["metadata"]["labels"] == names.labels(
        naming.SERVER, settings.releases.components["broker"].version
    )
    assert certificate["spec"]["dnsNames"] == [
        # Devices, through the LoadBalancer.
        f"mqtt.{settings.environment}.{settings.cluster.ingress.base_domain}",
        # The APIs: the public Service's and the internal Service's in-cluster names...
        f"{names.name}.{namespace}.svc",
        f"{names.child('internal')}.{namespace}.svc.cluster.local",
        f"{names.child('internal')}.{namespace}.svc",
        # ...and every pod under the headless Service, for subscribers attached to each pod.
        f"*.{names.child('headless')}.{namespace}.svc.cluster.local",
    ]


def test_the_pods_roll_when_anything_mosquitto_reads_at_start_changes(settings, built) -> None:
    config = built.one(CONFIGMAP, "-config").plain["data"]
    passwords = built.one(SECRET, "-passwords").plain["stringData"]["passwords"]
    annotations = _pod(built)["metadata"]["annotations"]
    assert set(config) == {"mosquitto.conf", "acl", broker.DEVICE_ACL, broker.RELOADER_SCRIPT}
    assert annotations == {
        broker.CONFIG_HASH: sha256(
            config["mosquitto.conf"] + config["acl"] + config[broker.DEVICE_ACL] + config[broker.RELOADER_SCRIPT]
        ),
        broker.PASSWORDS_HASH: sha256(passwords),
    }


def test_a_changed_password_rolls_the_pods_and_a_changed_acl_too(settings, built) -> None:
    before = _pod(built)["metadata"]["annotations"]
    # Another password of an in-cluster client: only the password file's hash changes.
    rotated = _build(settings, secrets={broker_password(CLIENTS[0]): "rotated-password"})
    after = _pod(rotated)["metadata"]["annotations"]
    assert before[broker.PASSWORDS_HASH] != after[broker.PASSWORDS_HASH]
    assert before[broker.CONFIG_HASH] == after[broker.CONFIG_HASH]
    # Another topic for a device class: only the configuration's hash changes.
    classes = list(settings.broker.device_classes)
    device = next(i for i, c in enumerate(classes) if not c.internal)
    classes[device] = dataclasses.replace(classes[device], publish=("city/other/+/telemetry",))
    moved = _build(_with_broker(settings, device_classes=tuple(classes)))
    after = _pod(moved)["metadata"]["annotations"]
    assert before[broker.CONFIG_HASH] != after[broker.CONFIG_HASH]
    assert before[broker.PASSWORDS_HASH] == after[broker.PASSWORDS_HASH]


def _with_broker(settings: Settings, **changes: Any) -> Settings:
    return dataclasses.replace(settings, broker=dataclasses.replace(settings.broker, **changes))


def test_in_cluster_clients_are_confined_by_user_and_devices_by_pattern(settings, built) -> None:
    config = built.one(CONFIGMAP, "-config").plain["data"]
    internal = [c for c in settings.broker.device_classes if c.internal]
    devices = [c for c in settings.broker.device_classes if not c.internal]
    assert internal and devices
    as_acl = [DeviceClass(name=c.name, username=c.name, publish=c.publish, subscribe=c.subscribe) for c in internal]
    as_device = [DeviceClass(name=c.name, username=c.name, publish=c.publish, subscribe=c.subscribe) for c in devices]
    assert config["acl"] == render_acl_file(as_acl)
    assert config[broker.DEVICE_ACL] == render_device_acl_file(as_device, revoked=settings.broker.revoked_devices)


def test_revoked_devices_reach_the_device_acl(settings) -> None:
    built = _build(_with_broker(settings, revoked_devices=("stolen-7",)))
    assert "stolen-7" in built.one(CONFIGMAP, "-config").plain["data"][broker.DEVICE_ACL]


def test_only_in_cluster_clients_have_a_password_and_each_api_gets_its_own(settings, built) -> None:
    names = _names(settings)
    passwords = built.one(SECRET, "-passwords").plain
    assert passwords["metadata"]["name"] == names.child("passwords")
    users = [line.split(":", 1)[0] for line in passwords["stringData"]["passwords"].splitlines() if line]
    assert users == sorted(c.name for c in settings.broker.device_classes if c.internal)
    for client in CLIENTS:
        secret = built.one(SECRET, f"-client-{client}").plain
        assert secret["metadata"]["name"] == names.child(f"client-{client}")
        assert secret["stringData"] == {
            "MQTT_USERNAME": client,
            "MQTT_PASSWORD": fake_secret(broker_password(client)),
        }
    assert built.outputs["client_secret_names"] == {c: names.child(f"client-{c}") for c in CLIENTS}
    # An API that does not use the broker gets nothing.
    assert not _build(settings, clients=()).outputs["client_secret_names"]


def test_the_outputs_are_the_addresses_clients_dial(settings, built) -> None:
    names = _names(settings)
    namespace = naming.namespace(settings.environment)
    headless = f"{names.child('headless')}.{namespace}.svc.cluster.local:{broker.INTERNAL_PORT}"
    assert built.outputs["mqtt_endpoint"] == (
        f"mqtts://mqtt.{settings.environment}.{settings.cluster.ingress.base_domain}:{broker.TLS_PORT}"
    )
    assert built.outputs["internal_endpoint"] == (
        f"mqtts://{names.child('internal')}.{namespace}.svc.cluster.local:{broker.INTERNAL_PORT}"
    )
    assert built.outputs["pod_endpoints"] == [
        f"mqtts://{names.name}-{i}.{headless}" for i in range(settings.broker.replicas)
    ]
    # The mocks' LoadBalancer has no address yet.
    assert built.outputs["load_balancer_address"] == "pending"


class _Status:
    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)


@pytest.mark.parametrize(
    ("ingress", "address"),
    [
        ([], "pending"),
        ([_Status(ip="192.0.2.7", hostname=None)], "192.0.2.7"),
        ([_Status(ip=None, hostname="lb.example")], "lb.example"),
        ([_Status(ip="", hostname=""), _Status(ip="192.0.2.8")], "192.0.2.8"),
    ],
)
def test_the_load_balancer_address_is_its_first_ip_or_hostname(ingress: list[Any], address: str) -> None:
    assert stateful.load_balancer_address(_Status(load_balancer=_Status(ingress=ingress))) == address
    assert stateful.load_balancer_address(None) == "pending"


def test_the_server_runs_n_independent_pods_that_keep_their_data(settings, built) -> None:
    names = _names(settings)
    replicas = settings.broker.replicas
    server = built.one(STATEFULSET, "-server")
    spec = server.plain["spec"]
    assert server.plain["metadata"]["name"] == names.name
    assert spec["replicas"] == replicas
    assert spec["serviceName"] == names.child("headless")
    assert spec["podManagementPolicy"] == "Parallel"
    (claim,) = spec["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["resources"]["requests"]["storage"] == settings.broker.storage_size
    # It waits for its certificate (the pods mount the Secret cert-manager writes).
    assert built.one(CERTIFICATE, "-tls").urn in server.dependencies
    assert server.protect is settings.guardrails.protect_state
    # One pod may be down at a time (a rolling update, a drained node), never a single one's only.
    budget = built.one(PDB, "-pdb").plain
    assert budget["metadata"]["name"] == names.name
    assert budget["spec"] == {
        "minAvailable": max(replicas - 1, 0),
        "selector": {"matchLabels": names.selector(naming.SERVER)},
    }


def test_a_single_broker_may_be_evicted() -> None:
    built = _build(_with_broker(load_settings("dev", REPO_ENVIRONMENTS), replicas=1))
    assert built.one(PDB, "-pdb").plain["spec"]["minAvailable"] == 0


def test_mosquitto_serves_both_listeners_from_its_mounted_files(settings, built) -> None:
    pod = _pod(built)["spec"]
    containers = _by_name(pod["containers"])
    mosquitto = containers["mosquitto"]
    release = settings.releases.components["broker"]
    assert mosquitto["image"].endswith(f"/{release.repository}@{release.digest}")
    assert containers["tls-reloader"]["image"].endswith(
        f"/{settings.releases.components['object_storage_client'].repository}"
        f"@{settings.releases.components['object_storage_client'].digest}"
    )
    assert mosquitto["command"] == ["mosquitto", "-c", "/mosquitto/config/mosquitto.conf"]
    assert mosquitto["resources"]["limits"]["memory"] == settings.broker.resources.limits.memory
    assert mosquitto["ports"] == [
        {"name": "mqtt", "containerPort": broker.INTERNAL_PORT},
        {"name": "mqtts", "containerPort": broker.TLS_PORT},
    ]
    # Ready once it accepts connections; restarted only after a minute of not accepting any.
    assert mosquitto["readinessProbe"] == {"tcpSocket": {"port": "mqtt"}, "periodSeconds": 10, "initialDelaySeconds": 2}
    assert mosquitto["livenessProbe"] == {
        "tcpSocket": {"port": "mqtt"},
        "periodSeconds": 10,
        "initialDelaySeconds": 15,
        "failureThreshold": 6,
    }
    mounts = _by_name(mosquitto["volumeMounts"])
    assert {name: (m["mountPath"], m.get("readOnly", False)) for name, m in mounts.items()} == {
        "config": ("/mosquitto/config", True),
        "passwords": ("/mosquitto/passwords", True),
        "tls": ("/mosquitto/tls", True),
        "data": ("/mosquitto/data", False),
    }
    conf = built.one(CONFIGMAP, "-config").plain["data"]["mosquitto.conf"]
    # Every file mosquitto.conf names lies under a mount that holds it.
    for path in ("/mosquitto/tls/tls.crt", "/mosquitto/tls/tls.key", "/mosquitto/tls/ca.crt"):
        assert path in conf
    assert "/mosquitto/passwords/passwords" in conf
    assert "/mosquitto/config/acl" in conf
    assert f"/mosquitto/config/{broker.DEVICE_ACL}" in conf
    assert "/mosquitto/data" in conf
    volumes = _by_name(pod["volumes"])
    names = _names(settings)
    assert volumes["config"]["configMap"]["name"] == names.child("config")
    assert volumes["passwords"]["secret"]["secretName"] == names.child("passwords")
    assert volumes["tls"]["secret"]["secretName"] == names.child("tls")
    assert set(volumes) == {"config", "passwords", "tls"}
    assert pod["securityContext"]["runAsUser"] == broker.MOSQUITTO_UID
    assert pod["automountServiceAccountToken"] is False


def _listeners(conf: str) -> dict[int, dict[str, str]]:
    """mosquitto.conf's listener blocks: port -> directive -> value (comments left out)."""
    blocks: dict[int, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in conf.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        if key == "listener":
            current = blocks.setdefault(int(value), {})
        elif current is not None:
            current[key] = value
    return blocks


def test_both_listeners_serve_tls_and_only_the_in_cluster_one_takes_passwords(built) -> None:
    conf = built.one(CONFIGMAP, "-config").plain["data"]["mosquitto.conf"]
    listeners = _listeners(conf)
    assert set(listeners) == {broker.INTERNAL_PORT, broker.TLS_PORT}
    internal, devices = listeners[broker.INTERNAL_PORT], listeners[broker.TLS_PORT]
    for listener in (internal, devices):
        # The key pair cert-manager writes into the mounted Secret.
        assert listener["certfile"] == "/mosquitto/tls/tls.crt"
        assert listener["keyfile"] == "/mosquitto/tls/tls.key"
        assert listener["allow_anonymous"] == "false"
    assert internal["password_file"] == "/mosquitto/passwords/passwords"
    assert internal["acl_file"] == "/mosquitto/config/acl"
    assert "require_certificate" not in internal
    # Devices: a certificate from the site CA, beside the key pair; their own ACL.
    assert devices["cafile"] == "/mosquitto/tls/ca.crt"
    assert devices["require_certificate"] == "true"
    assert devices["acl_file"] == f"/mosquitto/config/{broker.DEVICE_ACL}"
    assert "password_file" not in devices
    assert "persistence_location /mosquitto/data/" in conf.splitlines()


def test_the_broker_takes_the_options_it_is_given(settings) -> None:
    releases = settings.releases.components

    def make(placement, opts) -> dict[str, Any]:
        before = pulumi.CustomResource("test:index:Before", "before", {}, opts=opts)
        args = broker.BrokerArgs(
            placement, settings.broker, release=releases["broker"], tools_release=releases["object_storage_client"]
        )
        broker.Broker("b", args, pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[before])))
        return {}

    built = build_component(settings, make)
    (before,) = built.of_type("test:index:Before")
    (component,) = built.of_type("smartnation:broker:Broker")
    assert before.urn in component.dependencies
    # Every object it makes is its child (a destroy or a rename of the component takes them along).
    children = [r for r in built.resources if r.type.startswith("kubernetes:")]
    assert children
    assert {r.parent for r in children} == {component.urn}


def test_the_reloader_is_small_and_checked_by_its_own_script(built) -> None:
    reloader = _by_name(_pod(built)["spec"]["containers"])["tls-reloader"]
    script = f"/mosquitto/config/{broker.RELOADER_SCRIPT}"
    assert reloader["command"] == ["/bin/sh", script]
    check = {"exec": {"command": ["/bin/sh", script, "check"]}, "periodSeconds": 10, "timeoutSeconds": 5}
    assert reloader["readinessProbe"] == {**check, "initialDelaySeconds": 2}
    assert reloader["livenessProbe"] == {**check, "initialDelaySeconds": 15, "failureThreshold": 6}
    assert reloader["resources"] == {
        "requests": {"cpu": "5m", "memory": "8Mi"},
        "limits": {"cpu": "50m", "memory": "32Mi"},
    }
    assert {m["name"]: m.get("readOnly") for m in reloader["volumeMounts"]} == {"config": True, "tls": True}
    config = built.one(CONFIGMAP, "-config").plain["data"]
    assert f"{broker.RELOADER_INTERVAL_S}" in config[broker.RELOADER_SCRIPT]
