"""MQTT broker: N independent Eclipse Mosquitto pods behind one LoadBalancer (docs/broker-ha.md)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from smartnation.program import naming
from smartnation.program.components import child_options, pods, require_provider, stateful_options
from smartnation.program.components.certificates import certificate
from smartnation.program.daemon_config.mosquitto import (
    DeviceClass,
    render_acl_file,
    render_mosquitto_conf,
    render_password_file,
)
from smartnation.settings import stack_secrets
from smartnation.settings.models import BrokerSettings, ClusterProfile, ComponentRelease

PLAIN_PORT = 1883
TLS_PORT = 8883
# The official image runs mosquitto as this UID/GID.
MOSQUITTO_UID = 1883

_CONFIG_DIR = "/mosquitto/config"
_PASSWORD_DIR = "/mosquitto/passwords"
_TLS_DIR = "/mosquitto/tls"
_DATA_DIR = "/mosquitto/data"


@dataclass(frozen=True)
class BrokerArgs:
    environment: str
    """Environment name; names and labels derive from it."""
    namespace: pulumi.Input[str]
    """Namespace to deploy into (the guardrails' output, so the namespace exists first)."""
    settings: BrokerSettings
    """Replicas, sizes, device classes and their ACLs."""
    release: ComponentRelease
    """Mosquitto image from the environment's release block."""
    cluster: ClusterProfile
    """Target cluster: registry, storage class, LB annotations, node pools, DNS zone."""
    client_secrets: tuple[str, ...] = ()
    """Device classes used by in-cluster apps: each gets a Secret with MQTT_USERNAME/MQTT_PASSWORD."""

    protect_state: bool = False
    """Protect the data-holding children from deletion (production)."""


class Broker(pulumi.ComponentResource):
    """Mosquitto StatefulSet, its Services, config, credentials and disruption budget."""

    mqtt_endpoint: pulumi.Output[str]
    """Public MQTT over TLS URL devices connect to (``mqtts://mqtt.<env>.<zone>:8883``)."""
    load_balancer_address: pulumi.Output[str]
    """Address the LoadBalancer got (IP or hostname), ``pending`` until it has one."""
    internal_endpoint: pulumi.Output[str]
    """In-cluster plain MQTT URL (any pod) for apps that publish."""
    pod_endpoints: pulumi.Output[list[str]]
    """In-cluster plain MQTT URL of every pod, for subscribers that must see all traffic."""
    client_secret_names: pulumi.Output[dict[str, str]]
    """Device class -> name of the Secret holding its in-cluster credentials."""

    def __init__(self, name: str, args: BrokerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("smartnation:broker:Broker", name, None, opts)
        provider = require_provider(opts, "Broker")
        child = child_options(self, provider)
        n = naming.names(args.environment, naming.BROKER)
        cfg = pulumi.Config(stack_secrets.CONFIG_NAMESPACE)
        replicas = args.settings.replicas
        selector = n.selector(naming.SERVER)
        labels = n.labels(naming.SERVER, args.release.version)
        metadata = {"namespace": args.namespace, "labels": labels}

        classes = [
            DeviceClass(name=c.name, username=c.name, publish=c.publish, subscribe=c.subscribe)
            for c in args.settings.device_classes
        ]
        conf = render_mosquitto_conf(
            plain_port=PLAIN_PORT,
            tls_port=TLS_PORT,
            certfile=f"{_TLS_DIR}/tls.crt",
            keyfile=f"{_TLS_DIR}/tls.key",
            cafile=None,
            password_file=f"{_PASSWORD_DIR}/passwords",
            acl_file=f"{_CONFIG_DIR}/acl",
            persistence_dir=_DATA_DIR,
        )
        acl = render_acl_file(classes)
        config = k8s.core.v1.ConfigMap(
            f"{name}-config",
            metadata={**metadata, "name": n.child("config")},
            data={"mosquitto.conf": conf, "acl": acl},
            opts=child,
        )

        # Hashing happens inside apply so cleartext passwords never leave the secret Output.
        usernames = [c.username for c in classes]
        password_file = pulumi.Output.secret(
            pulumi.Output.all(*[cfg.require_secret(stack_secrets.broker_password(c.name)) for c in classes]).apply(
                lambda passwords: render_password_file(dict(zip(usernames, passwords, strict=True)))
            )
        )
        passwords = k8s.core.v1.Secret(
            f"{name}-passwords",
            metadata={**metadata, "name": n.child("passwords")},
            type="Opaque",
            string_data={"passwords": password_file},
            opts=child,
        )

        client_secret_names: dict[str, str] = {}
        for class_name in args.client_secrets:
            secret_name = n.child(f"client-{class_name}")
            k8s.core.v1.Secret(
                f"{name}-client-{class_name}",
                metadata={**metadata, "name": secret_name},
                type="Opaque",
                string_data={
                    "MQTT_USERNAME": class_name,
                    "MQTT_PASSWORD": cfg.require_secret(stack_secrets.broker_password(class_name)),
                },
                opts=child,
            )
            client_secret_names[class_name] = secret_name

        headless_name = n.child("headless")
        headless = k8s.core.v1.Service(
            f"{name}-headless",
            metadata={**metadata, "name": headless_name},
            spec={
                # Per-pod DNS names (<pod>.<headless>) for subscribers that attach to every pod.
                "cluster_ip": "None",
                "selector": selector,
                "ports": [{"name": "mqtt", "port": PLAIN_PORT, "target_port": "mqtt"}],
            },
            opts=child,
        )
        internal_name = n.child("internal")
        k8s.core.v1.Service(
            f"{name}-internal",
            metadata={**metadata, "name": internal_name},
            spec={
                # Plain MQTT stays inside the cluster: ClusterIP only.
                "type": "ClusterIP",
                "selector": selector,
                "ports": [{"name": "mqtt", "port": PLAIN_PORT, "target_port": "mqtt"}],
            },
            opts=child,
        )
        public = k8s.core.v1.Service(
            f"{name}-public",
            metadata={
                **metadata,
                "name": n.name,
                "annotations": dict(args.cluster.load_balancer.service_annotations),
            },
            spec={
                "type": "LoadBalancer",
                # Local keeps the device's source address, which the NetworkPolicy's
                # device_source_ranges match on; the LB only targets nodes running a pod.
                "external_traffic_policy": "Local",
                "allocate_load_balancer_node_ports": args.cluster.load_balancer.node_ports,
                "selector": selector,
                "ports": [{"name": "mqtts", "port": TLS_PORT, "target_port": "mqtts", "protocol": "TCP"}],
            },
            opts=child,
        )

        config_hash = hashlib.sha256((conf + acl).encode()).hexdigest()
        # A hash of the password file (itself only PBKDF2 hashes) rolls the pods when a
        # password changes; mosquitto reads the file at start only.
        password_hash = pulumi.Output.unsecret(password_file).apply(
            lambda text: hashlib.sha256(text.encode()).hexdigest()
        )
        probe = {"tcp_socket": {"port": "mqtt"}, "period_seconds": 10}
        # The TLS listener's key pair, from the cluster's issuer: the public name devices dial
        # and the in-cluster names, so a client inside the cluster can use TLS too.
        tls = certificate(
            f"{name}-tls",
            namespace=args.namespace,
            secret_name=n.child("tls"),
            dns_names=[
                naming.mqtt_hostname(args.environment, args.cluster.ingress.base_domain),
                f"{n.name}.{naming.namespace(args.environment)}.svc",
                f"*.{headless_name}.{naming.namespace(args.environment)}.svc.cluster.local",
            ],
            issuer=args.cluster.ingress.tls_issuer,
            labels=labels,
            opts=child,
        )
        statefulset = k8s.apps.v1.StatefulSet(
            f"{name}-server",
            metadata={**metadata, "name": n.name},
            spec={
                "replicas": replicas,
                "service_name": headless_name,
                # Pods are independent (no cluster protocol): start and replace them together.
                "pod_management_policy": "Parallel",
                "selector": {"match_labels": selector},
                "template": {
                    "metadata": {
                        "labels": labels,
                        "annotations": {
                            "smartnation.mc/config-sha256": config_hash,
                            "smartnation.mc/passwords-sha256": password_hash,
                        },
                    },
                    "spec": {
                        "automount_service_account_token": False,
                        "security_context": pods.pod_security_context(MOSQUITTO_UID),
                        "node_selector": pods.node_selector(args.cluster, "stateful"),
                        "topology_spread_constraints": pods.spread(selector, replicas),
                        "containers": [
                            {
                                "name": "mosquitto",
                                "image": pods.image(args.cluster, args.release),
                                "command": ["mosquitto", "-c", f"{_CONFIG_DIR}/mosquitto.conf"],
                                "ports": [
                                    {"name": "mqtt", "container_port": PLAIN_PORT},
                                    {"name": "mqtts", "container_port": TLS_PORT},
                                ],
                                "resources": pods.resources(args.settings.resources),
                                "security_context": pods.container_security_context(),
                                "readiness_probe": {**probe, "initial_delay_seconds": 2},
                                "liveness_probe": {**probe, "initial_delay_seconds": 15, "failure_threshold": 6},
                                "volume_mounts": [
                                    {"name": "config", "mount_path": _CONFIG_DIR, "read_only": True},
                                    {"name": "passwords", "mount_path": _PASSWORD_DIR, "read_only": True},
                                    {"name": "tls", "mount_path": _TLS_DIR, "read_only": True},
                                    {"name": "data", "mount_path": _DATA_DIR},
                                ],
                            }
                        ],
                        "volumes": [
                            {"name": "config", "config_map": {"name": config.metadata.name}},
                            {
                                "name": "passwords",
                                "secret": {"secret_name": passwords.metadata.name, "default_mode": 0o440},
                            },
                            # Written by the profile's issuer for the Certificate above
                            # (`tls`); the StatefulSet is created after it.
                            {"name": "tls", "secret": {"secret_name": n.child("tls"), "default_mode": 0o440}},
                        ],
                    },
                },
                "volume_claim_templates": [
                    pods.volume_claim("data", args.settings.storage_size, args.cluster, n.labels(naming.SERVER))
                ],
            },
            opts=stateful_options(child_options(self, provider, depends_on=[tls]), args.protect_state),
        )
        k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pdb",
            metadata={**metadata, "name": n.name},
            spec={"min_available": max(replicas - 1, 0), "selector": {"match_labels": selector}},
            opts=child,
        )

        self.mqtt_endpoint = pulumi.Output.from_input(
            f"mqtts://{naming.mqtt_hostname(args.environment, args.cluster.ingress.base_domain)}:{TLS_PORT}"
        )
        self.load_balancer_address = public.status.apply(_lb_address)
        self.internal_endpoint = pulumi.Output.from_input(f"mqtt://{n.host(internal_name, PLAIN_PORT)}")
        self.pod_endpoints = pulumi.Output.all(statefulset.metadata.name, headless.metadata.name).apply(
            lambda names: [f"mqtt://{names[0]}-{i}.{n.host(names[1], PLAIN_PORT)}" for i in range(replicas)]
        )
        self.client_secret_names = pulumi.Output.from_input(client_secret_names)
        self.register_outputs(
            {
                "mqtt_endpoint": self.mqtt_endpoint,
                "load_balancer_address": self.load_balancer_address,
                "internal_endpoint": self.internal_endpoint,
                "pod_endpoints": self.pod_endpoints,
                "client_secret_names": self.client_secret_names,
            }
        )


def _lb_address(status: object) -> str:
    ingress = getattr(getattr(status, "load_balancer", None), "ingress", None) or []
    for entry in ingress:
        address = getattr(entry, "ip", None) or getattr(entry, "hostname", None)
        if address:
            return address
    return "pending"
