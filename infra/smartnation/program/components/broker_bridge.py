"""The broker bridge of a move (docs/move.md), on the new site: a Deployment of one Mosquitto whose
connections carry the devices' traffic between the sites (daemon_config/mosquitto_bridge.py says
what crosses in which phase, and why a broker of its own).

Each old-site broker pod is dialled by the name its certificate has (``<pod>.<headless Service>``,
the certificate's wildcard), which in the bridge's Pod resolves to that pod's published address
(hostAliases), as the standby and the bucket mirror reach theirs; the new site's brokers by their
internal Service's ``<name>.<namespace>.svc`` name, which the cluster's DNS answers. Both TLS,
verified against each site's issuer CA. Both sides admit the bridge as the ``move-bridge`` user
(BRIDGE_USER), whose password is derived from the stack's replication secret (bridge_password):
a move adds no secret an operator must create first.

Which way the devices' traffic crosses follows the phase (BridgeSource.phase). In replicate and
cutover the old site's devices are heard on the new site, which serves: one connection per old
pod (their telemetry in, the new site's commands out) and one to the new site. In rollback the
old site serves again and the roles swap: one connection per NEW pod (the telemetry of devices
that reconnected there in, the old site's commands out to each) and one to the old site, dialled
by its public MQTT name (its pods' names are the new pods' names too) at pod 0's published
address. The renderer is the same: its ``sources`` are where the devices are heard, its
``target`` the site that serves.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import pulumi
import pulumi_kubernetes as k8s

from smartnation.program.components import pods
from smartnation.program.components.stateful import Children, secret_digest, sha256
from smartnation.program.daemon_config.mosquitto import DeviceClass
from smartnation.program.daemon_config.mosquitto_bridge import BridgeEnd, render_bridge_conf
from smartnation.program.naming import Names
from smartnation.settings import stack_secrets
from smartnation.settings.models import BrokerSettings, Compute, Resources

BRIDGE = "bridge"
"""``app.kubernetes.io/component`` of the bridge's Pod, under the broker's names."""
BRIDGE_USER = "move-bridge"
"""The MQTT user the bridge logs in as on both sites' internal listeners."""
SOURCE_CA_SUFFIX = "source-ca"
"""``<env>-broker-source-ca``: the old site's CA, on the new site."""
CONFIG_DIR = "/mosquitto/bridge"
CA_DIR = "/mosquitto/cas"
DATA_DIR = "/mosquitto/data"
CONFIG_HASH = "smartnation.mc/bridge-config-sha256"
"""Rolls the bridge when its configuration (its topics: the phase) changes."""
RESOURCES = Resources(requests=Compute(cpu="10m", memory="16Mi"), limits=Compute(cpu="500m", memory="256Mi"))
"""Forwards messages: little CPU; memory for its queues, bounded at its brokers' 32 MiB of payloads
per connection (daemon_config/mosquitto_bridge.py), a source's and the target's at once."""
SKIP_AWAIT = "pulumi.com/skipAwait"
QUEUE_SIZE = "256Mi"
"""The bridge's persisted queue: its brokers' bound per connection (32 MiB of payloads) a side."""
_PASSWORD_CONTEXT = b"smartnation/move/broker-bridge-password/v1"

BridgePhase = Literal["replicate", "cutover", "rollback"]
"""The move's phases that run a bridge (complete removes it)."""


@dataclass(frozen=True)
class BridgeSource:
    """The old site's broker pods, as the new site's bridge reaches them."""

    hosts: tuple[str, ...]
    """Per pod, the name its certificate carries (``<pod>.<headless Service FQDN>``)."""
    addresses: pulumi.Input[Sequence[str]]
    """Per pod, its published (LoadBalancer) address, in the order of ``hosts``."""
    ca_pem: str
    """The old site's issuer CA."""
    phase: BridgePhase = "replicate"
    """replicate: telemetry crosses to the new site; cutover: also commands back to the devices
    still on the old site; rollback: the other way round, the old site serves again."""
    public_host: str = ""
    """The old site's public MQTT name (its certificate carries it): in rollback the bridge dials the
    old site as one broker by it, at pod 0's published address."""

    @property
    def returning(self) -> bool:
        """The old site serves again (rollback): the devices are heard on the new site's pods."""
        return self.phase == "rollback"


def bridge_password(replication_password: pulumi.Input[str]) -> pulumi.Output[str]:
    """The bridge's MQTT password (secret Output), derived from the stack's replication secret."""
    return pulumi.Output.secret(pulumi.Output.from_input(replication_password).apply(derive_password))


def derive_password(replication_secret: str) -> str:
    """An HMAC of the replication secret: both sites' brokers and the bridge agree on it without a
    new stack secret an operator must create before a move, it changes when that secret is
    rotated, and it tells nothing about the secret it came from."""
    return hmac.new(replication_secret.encode(), _PASSWORD_CONTEXT, hashlib.sha256).hexdigest()


def replication_password() -> pulumi.Output[str]:
    config = pulumi.Config(stack_secrets.CONFIG_NAMESPACE)
    return config.require_secret(stack_secrets.DATABASE_REPLICATION_PASSWORD)


def device_topics(settings: BrokerSettings) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(what devices publish, what devices subscribe to): the two directions' topics, in the
    order the settings list them, each once."""
    publish: dict[str, None] = {}
    subscribe: dict[str, None] = {}
    for device_class in settings.device_classes:
        if device_class.internal:
            continue
        publish.update(dict.fromkeys(device_class.publish))
        subscribe.update(dict.fromkeys(device_class.subscribe))
    return tuple(publish), tuple(subscribe)


def bridge_user(settings: BrokerSettings) -> DeviceClass:
    """The bridge's rights on either site during a move: it reads and writes the devices'
    telemetry and commands. Both ways on both sites from the replicate phase on, although the
    bridge carries telemetry in and (from the cutover on) commands out: the cutover and the
    rollback (which turns the bridge) then change no ACL. A broker reloads its ACL when the kubelet
    refreshes the mounted file, a minute or so after an update; until then it would drop what the
    bridge publishes (MQTT 3.1.1 acknowledges a refused publish) and refuse its subscriptions
    (made only when it connects): the first rollback on real Pods, run a minute after the cutover
    that added the rights, found the turned bridge's subscription on Monaco refused. Which way
    messages cross is the bridge's configuration (daemon_config/mosquitto_bridge.py)."""
    telemetry, commands = device_topics(settings)
    both = tuple(dict.fromkeys((*telemetry, *commands)))
    return DeviceClass(name=BRIDGE_USER, username=BRIDGE_USER, publish=both, subscribe=both)


def bridge(
    children: Children,
    source: BridgeSource,
    settings: BrokerSettings,
    *,
    image: str,
    uid: int,
    port: int,
    password: pulumi.Output[str],
    target_host: str,
    site_tls_secret: str,
    after: Sequence[pulumi.Resource],
) -> k8s.apps.v1.Deployment:
    """The bridge's Deployment (one Pod: two bridges would deliver every message twice), its
    configuration (a Secret: it holds the password) and the old site's CA. ``children``: the
    broker's; ``target_host``: the new site's internal Service name its certificate carries."""
    names = children.names
    telemetry, commands = device_topics(settings)
    heard, serving = _ends(source, names, target_host, port)
    conf = password.apply(
        lambda secret: render_bridge_conf(
            sources=heard,
            target=serving,
            device_topics=telemetry,
            command_topics=commands,
            username=BRIDGE_USER,
            password=secret,
            reverse_commands=source.phase != "replicate",
            persistence_dir=DATA_DIR,
        )
    )
    config = children.secret(f"{BRIDGE}-config", {"mosquitto.conf": pulumi.Output.secret(conf)}, BRIDGE)
    ca_secret = children.secret(SOURCE_CA_SUFFIX, {"ca.crt": source.ca_pem}, BRIDGE)
    cas = {
        "name": "cas",
        "projected": {
            "default_mode": 0o444,
            "sources": [
                {"secret": {"name": names.child(SOURCE_CA_SUFFIX), "items": [{"key": "ca.crt", "path": "source.crt"}]}},
                # The new site's broker key pair Secret: its CA only.
                {"secret": {"name": site_tls_secret, "items": [{"key": "ca.crt", "path": "site.crt"}]}},
            ],
        },
    }
    mosquitto = pods.container(
        "mosquitto",
        image,
        RESOURCES,
        command=["mosquitto", "-c", f"{CONFIG_DIR}/mosquitto.conf"],
        volume_mounts=[
            {"name": "config", "mount_path": CONFIG_DIR, "read_only": True},
            {"name": "cas", "mount_path": CA_DIR, "read_only": True},
            {"name": "data", "mount_path": DATA_DIR},
        ],
    )
    aliases = pulumi.Output.from_input(source.addresses).apply(lambda addresses: _host_aliases(source, addresses))
    # Its queue on a volume of its own: what one side acknowledged to the bridge and the other has
    # not yet waits in mosquitto.db, which a new Pod (a phase change rolls the bridge) reads again.
    # In an emptyDir it went with the old Pod.
    claim = k8s.core.v1.PersistentVolumeClaim(
        children.resource_name(f"{BRIDGE}-data"),
        # Bound only once the bridge's Pod is scheduled (the classes bind on first consumer): the
        # provider must not wait for that before it creates the Deployment.
        metadata={**children.metadata(names.child(f"{BRIDGE}-data"), BRIDGE), "annotations": {SKIP_AWAIT: "true"}},
        spec={
            "access_modes": ["ReadWriteOnce"],
            "storage_class_name": children.placement.cluster.storage.default_class,
            "resources": {"requests": {"storage": QUEUE_SIZE}},
        },
        opts=children.options(),
    )
    selector = names.selector(BRIDGE)
    return k8s.apps.v1.Deployment(
        children.resource_name(BRIDGE),
        metadata=children.metadata(names.child(BRIDGE), BRIDGE),
        spec={
            "replicas": 1,
            # Never two bridges at once: each would deliver every message.
            "strategy": {"type": "Recreate"},
            "selector": {"match_labels": selector},
            "template": {
                "metadata": {
                    "labels": names.labels(BRIDGE, children.version),
                    "annotations": {CONFIG_HASH: secret_digest([conf], lambda parts: sha256(parts[0]))},
                },
                "spec": children.pod_spec(
                    uid,
                    containers=[mosquitto],
                    volumes=[
                        pods.secret_volume("config", config.metadata.name),
                        cas,
                        {"name": "data", "persistent_volume_claim": {"claim_name": claim.metadata.name}},
                    ],
                    # The old site's pod names, as its certificate has them, lead to their
                    # published addresses.
                    host_aliases=aliases,
                ),
            },
        },
        opts=children.options(depends_on=[*after, config, ca_secret, claim]),
    )


def _ends(source: BridgeSource, names: Names, target_host: str, port: int) -> tuple[list[BridgeEnd], BridgeEnd]:
    """(where the devices are heard, one connection per pod; the site that serves), by phase.

    Client ids are stable, and the old site's pod 0 keeps its id in rollback: the durable session
    it kept there, and the bridge's own queue towards it, carry on across the turn (mosquitto sends
    an `out` topic's UNSUBSCRIBE when it reconnects, bridge_attempt_unsubscribe, so the session no
    longer sends that pod's telemetry to the bridge)."""
    env = names.environment
    old = f"{CA_DIR}/source.crt"
    new = f"{CA_DIR}/site.crt"
    if not source.returning:
        old_pods = [
            BridgeEnd(f"source-{index}", f"{host}:{port}", f"{env}-move-bridge-{index}", old)
            for index, host in enumerate(source.hosts)
        ]
        return old_pods, BridgeEnd("target", f"{target_host}:{port}", f"{env}-move-bridge", new)
    if not source.public_host:
        raise ValueError("bridge: a rollback dials the old site by its public MQTT name, and none was given")
    # The new site's pods by their own names (the cluster's DNS answers them; no alias here shadows
    # them in rollback), the certificate's wildcard under the headless Service.
    headless = names.host(names.child("headless"))
    new_pods = [
        BridgeEnd(f"arrived-{index}", f"{names.name}-{index}.{headless}:{port}", arrived_client_id(env, index), new)
        for index in range(len(source.hosts))
    ]
    # One old pod is enough: the old site's ingest reads every pod, its registry publishes each
    # command on every pod (docs/broker-ha.md), so each crosses once.
    return new_pods, BridgeEnd("source-0", f"{source.public_host}:{port}", f"{env}-move-bridge-0", old)


def arrived_client_id(environment: str, index: int) -> str:
    """The turned bridge's client id on the new site's broker pod ``index`` in a rollback (the
    driver finds its connection in that pod's log by it, cli/move_rollback.py)."""
    return f"{environment}-move-bridge-arrived-{index}"


def _host_aliases(source: BridgeSource, addresses: Sequence[str]) -> list[dict]:
    """What resolves the old site's names in the bridge's Pod to their published addresses: each
    pod's name, or in rollback the public name alone, to pod 0's (the pods' names would shadow the
    new site's own pods)."""
    if source.returning:
        return [{"ip": addresses[0], "hostnames": [source.public_host]}]
    return [{"ip": address, "hostnames": [host]} for host, address in zip(source.hosts, addresses, strict=True)]


__all__ = [
    "BRIDGE",
    "BRIDGE_USER",
    "BridgePhase",
    "BridgeSource",
    "bridge",
    "bridge_password",
    "bridge_user",
    "device_topics",
    "replication_password",
]
