"""MQTT broker: N independent Eclipse Mosquitto pods behind one LoadBalancer (docs/broker-ha.md)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from smartnation.program import naming
from smartnation.program.components import broker_bridge, pods
from smartnation.program.components.certificates import certificate
from smartnation.program.components.stateful import PUBLISHED_SUFFIX, Children, load_balancer_address, sha256
from smartnation.program.daemon_config.mosquitto import (
    DeviceClass,
    render_acl_file,
    render_device_acl_file,
    render_mosquitto_conf,
    render_password_file,
    render_tls_reloader,
)
from smartnation.program.placement import Placement
from smartnation.settings import stack_secrets
from smartnation.settings.models import BrokerSettings, ComponentRelease, Compute, Resources

INTERNAL_PORT = 1883
"""In-cluster clients (the APIs): MQTT over TLS, a password per client class."""
TLS_PORT = 8883
"""Devices: MQTT over TLS, a client certificate each."""
POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
# The official image runs mosquitto as this UID/GID.
MOSQUITTO_UID = 1883

_CONFIG_DIR = "/mosquitto/config"
_PASSWORD_DIR = "/mosquitto/passwords"
_TLS_DIR = "/mosquitto/tls"
_DATA_DIR = "/mosquitto/data"
PASSWORD_FILE = f"{_PASSWORD_DIR}/passwords"

# Pod annotations that roll the pods when what mosquitto reads at start changes.
CONFIG_HASH = "smartnation.mc/config-sha256"
PASSWORDS_HASH = "smartnation.mc/passwords-sha256"

# The certificate is not in those hashes: cert-manager renews it between deployments, and the
# `tls-reloader` sidecar has mosquitto re-read it (SIGHUP) once the kubelet updated the volume.
RELOADER_SCRIPT = "reload-tls.sh"
# The TLS listener's ACL: patterns that confine each device to topics carrying its own id.
DEVICE_ACL = "device-acl"
RELOADER_INTERVAL_S = 10
# A shell loop that sleeps: a sliver of CPU and a few MiB.
RELOADER_RESOURCES = Resources(
    requests=Compute(cpu="5m", memory="8Mi"),
    limits=Compute(cpu="50m", memory="32Mi"),
)


@dataclass(frozen=True)
class BrokerArgs:
    placement: Placement
    """Environment, namespace, cluster (registry, storage class, LB annotations, node pools, DNS
    zone) and whether the retained messages are protected."""
    settings: BrokerSettings
    """Replicas, sizes, device classes and their ACLs."""
    release: ComponentRelease
    """Mosquitto image from the environment's release block."""
    tools_release: ComponentRelease
    """Image of the certificate reloader sidecar: the platform's small shell image (the object
    storage client's, which carries dash and sleep); the broker image has no shell."""
    client_secrets: tuple[str, ...] = ()
    """Internal classes used by in-cluster apps: each gets a Secret with MQTT_USERNAME/MQTT_PASSWORD."""
    bridge_password: pulumi.Output[str] | None = None
    """During a move, on both sites: the password of the move's bridge user (broker_bridge)."""
    published_for_bridge: tuple[str, ...] = ()
    """During a move, on the old site: CIDRs the new site's bridge connects from; each pod's
    internal listener is published on a LoadBalancer address of its own for them alone."""
    bridge_from: broker_bridge.BridgeSource | None = None
    """During a move, on the new site: the old site's pods, which the bridge Deployment here dials."""


class Broker(pulumi.ComponentResource):
    """Mosquitto StatefulSet, its Services, config, credentials and disruption budget."""

    mqtt_endpoint: pulumi.Output[str]
    """Public MQTT over TLS URL devices connect to (``mqtts://mqtt.<env>.<zone>:8883``)."""
    load_balancer_address: pulumi.Output[str]
    """Address the LoadBalancer got (IP or hostname), ``pending`` until it has one."""
    internal_endpoint: pulumi.Output[str]
    """In-cluster MQTT over TLS URL (any pod) for apps that publish."""
    pod_endpoints: pulumi.Output[list[str]]
    """In-cluster MQTT over TLS URL of every pod, for subscribers that must see all traffic."""
    client_secret_names: pulumi.Output[dict[str, str]]
    """Device class -> name of the Secret holding its in-cluster credentials."""
    published_addresses: pulumi.Output[list[str]]
    """During a move, on the old site: each pod's published address, in pod order (else empty)."""

    def __init__(self, name: str, args: BrokerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("smartnation:broker:Broker", name, None, opts)
        children = Children.of(self, name, opts, args.placement, naming.BROKER, args.release.version)
        config, config_hash = _config(children, args)
        passwords, password_hash, client_secret_names = _credentials(children, args)
        headless, internal_name, public = _services(children)
        tls = _certificate(children)
        server = _server(
            children, args, config, passwords, tls, {CONFIG_HASH: config_hash, PASSWORDS_HASH: password_hash}
        )

        names = children.names
        hostname = naming.mqtt_hostname(args.placement.environment, args.placement.cluster.ingress.base_domain)
        self.mqtt_endpoint = pulumi.Output.from_input(f"mqtts://{hostname}:{TLS_PORT}")
        self.load_balancer_address = public.status.apply(load_balancer_address)
        self.internal_endpoint = pulumi.Output.from_input(f"mqtts://{names.host(internal_name, INTERNAL_PORT)}")
        self.pod_endpoints = pulumi.Output.all(server.metadata.name, headless.metadata.name).apply(
            lambda both: _pod_urls(names, both[0], both[1], args.settings.replicas)
        )
        self.client_secret_names = pulumi.Output.from_input(client_secret_names)
        self.published_addresses = pulumi.Output.from_input(_published(children, args))
        if args.bridge_from is not None and args.bridge_password is not None:
            broker_bridge.bridge(
                children,
                args.bridge_from,
                args.settings,
                image=pods.image(args.placement.cluster, args.release),
                uid=MOSQUITTO_UID,
                port=INTERNAL_PORT,
                password=args.bridge_password,
                target_host=f"{internal_name}.{naming.namespace(args.placement.environment)}.svc",
                site_tls_secret=names.child("tls"),
                after=[server, tls],
            )
        self.register_outputs(
            {
                "mqtt_endpoint": self.mqtt_endpoint,
                "load_balancer_address": self.load_balancer_address,
                "internal_endpoint": self.internal_endpoint,
                "pod_endpoints": self.pod_endpoints,
                "client_secret_names": self.client_secret_names,
                "published_addresses": self.published_addresses,
            }
        )


def _config(children: Children, args: BrokerArgs) -> tuple[k8s.core.v1.ConfigMap, str]:
    """mosquitto.conf, the two ACL files (in-cluster clients by user, devices by pattern) and the
    certificate reloader; returns the ConfigMap and a hash of its content."""
    settings = args.settings
    conf = render_mosquitto_conf(
        plain_port=INTERNAL_PORT,
        internal_tls=True,
        tls_port=TLS_PORT,
        certfile=f"{_TLS_DIR}/tls.crt",
        keyfile=f"{_TLS_DIR}/tls.key",
        # Devices' certificates come from the site CA, the issuer of the broker's own certificate:
        # cert-manager writes that CA's certificate beside the key pair.
        cafile=f"{_TLS_DIR}/ca.crt",
        password_file=PASSWORD_FILE,
        acl_file=f"{_CONFIG_DIR}/acl",
        device_acl_file=f"{_CONFIG_DIR}/{DEVICE_ACL}",
        persistence_dir=_DATA_DIR,
    )
    internal = _device_classes(settings, internal=True)
    acl = render_acl_file(internal + _bridge_users(args))
    device_acl = render_device_acl_file(_device_classes(settings, internal=False), revoked=settings.revoked_devices)
    reloader = render_tls_reloader(
        tls_dir=_TLS_DIR, interval_s=RELOADER_INTERVAL_S, reloaded_files=(PASSWORD_FILE, f"{_CONFIG_DIR}/acl")
    )
    config = children.config_map(
        "config",
        {"mosquitto.conf": conf, "acl": acl, DEVICE_ACL: device_acl, RELOADER_SCRIPT: reloader},
        naming.SERVER,
    )
    # Hashed without the move's bridge user: a move adds it to a running broker, whose reloader
    # has mosquitto re-read the ACL (SIGHUP) instead of every device losing its connection.
    return config, sha256(conf + render_acl_file(internal) + device_acl + reloader)


def _device_classes(settings: BrokerSettings, *, internal: bool) -> list[DeviceClass]:
    """The in-cluster clients' classes (``internal``) or the devices' classes."""
    return [
        DeviceClass(name=c.name, username=c.name, publish=c.publish, subscribe=c.subscribe)
        for c in settings.device_classes
        if c.internal == internal
    ]


def _bridge_users(args: BrokerArgs) -> list[DeviceClass]:
    """During a move, the bridge's user with its rights on this site (broker_bridge.bridge_user)."""
    if args.bridge_password is None:
        return []
    return [broker_bridge.bridge_user(args.settings)]


def _published(children: Children, args: BrokerArgs) -> pulumi.Output[list[str]] | list[str]:
    """During a move, on the old site: ``<env>-broker-published-<i>``, pod i's internal listener on
    a LoadBalancer address for the new site's bridge alone (the pods are independent: the bridge
    must reach each). The policy pack admits these by name, selector and port
    (move_replication.published_services)."""
    if not args.published_for_bridge:
        return []
    addresses = []
    for index in range(args.settings.replicas):
        service = children.load_balancer_service(
            f"{PUBLISHED_SUFFIX}-{index}",
            children.names.child(f"{PUBLISHED_SUFFIX}-{index}"),
            naming.SERVER,
            "mqtt",
            INTERNAL_PORT,
            source_ranges=args.published_for_bridge,
            selector=published_pod_selector(args.placement.environment, index),
        )
        addresses.append(service.status.apply(load_balancer_address))
    return pulumi.Output.all(*addresses)


def published_pod_selector(environment: str, index: int) -> dict[str, str]:
    """The labels of the broker's pod ``index`` alone (the StatefulSet controller's pod-name label)."""
    names = naming.names(environment, naming.BROKER)
    return {**names.selector(naming.SERVER), POD_NAME_LABEL: f"{names.name}-{index}"}


def _credentials(children: Children, args: BrokerArgs) -> tuple[k8s.core.v1.Secret, pulumi.Output[str], dict[str, str]]:
    """The password file the server reads, and one Secret per in-cluster client.

    Returns the password file's Secret, a hash of the file (it rolls the pods: mosquitto reads
    the file at start only) and device class -> client Secret name."""
    config = pulumi.Config(stack_secrets.CONFIG_NAMESPACE)
    # Only in-cluster clients have passwords; devices log in with their certificates.
    classes = _device_classes(args.settings, internal=True)
    usernames = [c.username for c in classes]
    secrets = [config.require_secret(stack_secrets.broker_password(c.name)) for c in classes]

    def render(passwords: list[str]) -> str:
        return render_password_file(dict(zip(usernames, passwords, strict=True)))

    # Hashing happens inside apply so cleartext passwords never leave the secret Output.
    own_file = pulumi.Output.secret(pulumi.Output.all(*secrets).apply(render))
    password_file = own_file
    if args.bridge_password is not None:
        password_file = pulumi.Output.secret(
            pulumi.Output.all(*secrets, args.bridge_password).apply(
                lambda passwords: render_password_file(
                    dict(zip([*usernames, broker_bridge.BRIDGE_USER], passwords, strict=True))
                )
            )
        )
    passwords = children.secret("passwords", {"passwords": password_file}, naming.SERVER)
    # The file holds only PBKDF2 hashes; its own hash may be plain. Without the move's bridge
    # user, which the reloader has a running broker read (SIGHUP) instead of a restart.
    password_hash = pulumi.Output.unsecret(own_file).apply(sha256)

    client_secret_names: dict[str, str] = {}
    for class_name in args.client_secrets:
        password = config.require_secret(stack_secrets.broker_password(class_name))
        children.secret(f"client-{class_name}", {"MQTT_USERNAME": class_name, "MQTT_PASSWORD": password}, naming.SERVER)
        client_secret_names[class_name] = children.names.child(f"client-{class_name}")
    return passwords, password_hash, client_secret_names


def _services(children: Children) -> tuple[k8s.core.v1.Service, str, k8s.core.v1.Service]:
    """Headless (per-pod DNS names for subscribers that attach to every pod), internal MQTT over
    TLS with passwords (ClusterIP only: stays inside the cluster) and the public TLS LoadBalancer."""
    headless = children.headless_service("mqtt", INTERNAL_PORT, naming.SERVER)
    children.cluster_ip_service("internal", "mqtt", INTERNAL_PORT, naming.SERVER)
    # Local: the device's source address reaches the NetworkPolicy's device_source_ranges.
    public = children.load_balancer_service("public", children.names.name, naming.SERVER, "mqtts", TLS_PORT)
    return headless, children.names.child("internal"), public


def tls_secret_name(environment: str) -> str:
    """Secret of the broker's key pair and the issuer's CA; clients mount its ``ca.crt`` only."""
    return naming.names(environment, naming.BROKER).child("tls")


def _certificate(children: Children) -> k8s.apiextensions.CustomResource:
    """Both listeners' key pair, from the cluster's issuer: the public name devices dial and the
    in-cluster names the APIs dial (the internal Service and every pod under the headless one)."""
    placement, names = children.placement, children.names
    namespace = naming.namespace(placement.environment)
    return certificate(
        children.resource_name("tls"),
        namespace=placement.namespace,
        secret_name=names.child("tls"),
        dns_names=[
            naming.mqtt_hostname(placement.environment, placement.cluster.ingress.base_domain),
            f"{names.name}.{namespace}.svc",
            names.host(names.child("internal")),
            f"{names.child('internal')}.{namespace}.svc",
            f"*.{names.host(names.child('headless'))}",
        ],
        issuer=placement.cluster.ingress.tls_issuer,
        labels=names.labels(naming.SERVER, children.version),
        opts=children.options(),
    )


def _server(
    children: Children,
    args: BrokerArgs,
    config: k8s.core.v1.ConfigMap,
    passwords: k8s.core.v1.Secret,
    tls: pulumi.Resource,
    pod_annotations: dict[str, pulumi.Input[str]],
) -> k8s.apps.v1.StatefulSet:
    """N independent Mosquitto pods (no cluster protocol) and their disruption budget."""
    settings, names = args.settings, children.names
    probe = {"tcp_socket": {"port": "mqtt"}, "period_seconds": 10}
    mosquitto = pods.container(
        "mosquitto",
        pods.image(args.placement.cluster, args.release),
        settings.resources,
        command=["mosquitto", "-c", f"{_CONFIG_DIR}/mosquitto.conf"],
        ports=[{"name": "mqtt", "container_port": INTERNAL_PORT}, {"name": "mqtts", "container_port": TLS_PORT}],
        readiness_probe={**probe, "initial_delay_seconds": 2},
        liveness_probe={**probe, "initial_delay_seconds": 15, "failure_threshold": 6},
        volume_mounts=[
            {"name": "config", "mount_path": _CONFIG_DIR, "read_only": True},
            {"name": "passwords", "mount_path": _PASSWORD_DIR, "read_only": True},
            {"name": "tls", "mount_path": _TLS_DIR, "read_only": True},
            {"name": "data", "mount_path": _DATA_DIR},
        ],
    )
    # Sends mosquitto SIGHUP when cert-manager's renewal reaches the mounted Secret (it sees the
    # broker's process through the shared process namespace and runs as the same UID, so it may
    # signal it without any capability).
    reloader_probe = {
        "exec": {"command": ["/bin/sh", f"{_CONFIG_DIR}/{RELOADER_SCRIPT}", "check"]},
        "period_seconds": 10,
        "timeout_seconds": 5,
    }
    reloader = pods.container(
        "tls-reloader",
        pods.image(args.placement.cluster, args.tools_release),
        RELOADER_RESOURCES,
        command=["/bin/sh", f"{_CONFIG_DIR}/{RELOADER_SCRIPT}"],
        # Ready and alive while it can read the certificate and see the broker's process.
        readiness_probe={**reloader_probe, "initial_delay_seconds": 2},
        liveness_probe={**reloader_probe, "initial_delay_seconds": 15, "failure_threshold": 6},
        volume_mounts=[
            {"name": "config", "mount_path": _CONFIG_DIR, "read_only": True},
            {"name": "tls", "mount_path": _TLS_DIR, "read_only": True},
        ],
    )
    volumes = [
        pods.config_map_volume("config", config.metadata.name),
        pods.secret_volume("passwords", passwords.metadata.name),
        # Written by the profile's issuer for the Certificate (`tls`); the StatefulSet waits for it.
        pods.secret_volume("tls", names.child("tls")),
    ]
    server = children.stateful_set(
        "server",
        names.name,
        naming.SERVER,
        replicas=settings.replicas,
        service_name=names.child("headless"),
        # Pods are independent (no cluster protocol): start and replace them together.
        parallel=True,
        pod_annotations=pod_annotations,
        pod=children.pod_spec(
            MOSQUITTO_UID, containers=[mosquitto, reloader], volumes=volumes, share_process_namespace=True
        ),
        claims=[children.data_claim(settings.storage_size, naming.SERVER)],
        depends_on=[tls],
    )
    children.disruption_budget("pdb", names.name, naming.SERVER, min_available=max(settings.replicas - 1, 0))
    return server


def _pod_urls(names: naming.Names, statefulset: str, headless: str, replicas: int) -> list[str]:
    """MQTT over TLS URL of each pod, by its stable DNS name ``<statefulset>-<i>.<headless Service>``."""
    return [f"mqtts://{statefulset}-{i}.{names.host(headless, INTERNAL_PORT)}" for i in range(replicas)]
