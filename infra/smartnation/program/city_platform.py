"""``build(settings)``: the whole platform of one environment, on its cluster."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from smartnation.program import move_guard, move_replication, naming
from smartnation.program.components import pods
from smartnation.program.components.broker import Broker, BrokerArgs
from smartnation.program.components.broker import tls_secret_name as broker_tls_secret_name
from smartnation.program.components.broker_bridge import (
    BridgePhase,
    BridgeSource,
    bridge_password,
    replication_password,
)
from smartnation.program.components.city_apis import CityApis, CityApisArgs, Connections, chart_version
from smartnation.program.components.database import Database, DatabaseArgs, StandbySource, tls_secret_name
from smartnation.program.components.guardrails import Guardrails, GuardrailsArgs
from smartnation.program.components.object_mirror import MirrorSource
from smartnation.program.components.object_storage import ObjectStorage, ObjectStorageArgs
from smartnation.program.components.object_storage import tls_secret_name as object_storage_tls_secret_name
from smartnation.program.components.providers import cluster_providers
from smartnation.program.placement import Placement
from smartnation.program.preflight import check_non_negotiables
from smartnation.settings import SettingsError, list_clusters, load_cluster_profile
from smartnation.settings.models import MOVE_ROLLBACK, PLATFORM_COMPONENTS, ClusterProfile, Settings
from smartnation.settings.stack_secrets import check_secrets


def preflight(settings: Settings) -> None:
    """Everything that can be wrong before a resource is registered: raise, register nothing.

    The non-negotiables (residency, production's state protected, no plaintext credentials) come
    first and hold even when the engine runs without the policy pack (preflight.py).
    """
    check_non_negotiables(settings)
    expected = chart_version()
    if settings.releases.chart_version != expected:
        raise SettingsError(
            settings.source,
            "releases.chart_version",
            f"expected the version of charts/city-api/Chart.yaml ({expected!r}), "
            f"got {settings.releases.chart_version!r}",
        )
    check_secrets(settings)


@dataclass(frozen=True)
class Arrival:
    """What a move's new site takes from the old one (docs/move.md): its database streams from
    ``database`` as a hot standby; in the replicate phase its buckets are mirrored from ``objects``
    (None from the cutover on: the old site is fenced, and the new site's own writes must stay)."""

    database: StandbySource
    objects: MirrorSource | None = None
    serving: bool = False
    """From the cutover on (the rollback too): the new site's database is promoted, a primary of
    its own, so it is backed up."""
    broker: BridgeSource | None = None
    """The old site's broker pods, which the new site's broker bridge dials (its commands cross
    back from the cutover on)."""


def deploy(
    settings: Settings,
    cluster: ClusterProfile,
    provider: k8s.Provider,
    replication_sources: tuple[str, ...] = (),
    arrival: Arrival | None = None,
) -> dict[str, Any]:
    """Register the environment on one cluster; returns that deployment's outputs.

    Component names start with the cluster name so that the same environment can exist on
    two clusters in one stack while it moves between them. ``replication_sources``: during a
    move, where the new site's standby connects from (the database is published to them).
    ``arrival``: during a move, on the new site: the whole platform, its database a standby of
    the old site's (so its APIs run read-only until the cutover promotes it), no migration Job
    (the schema arrives by replication and a standby refuses DDL); backed up once it serves (the
    old site keeps its nightly dumps until then).
    """
    releases = settings.releases.components
    opts = pulumi.ResourceOptions(provider=provider)
    prefix = cluster.name
    site = Placement.of(settings.environment, cluster, protect_state=settings.guardrails.protect_state)

    if arrival is None:
        guardrails = _guardrails(
            settings,
            prefix,
            site,
            opts,
            replication_sources=replication_sources,
            bridged_pods=settings.broker.replicas if replication_sources else 0,
        )
    else:
        guardrails = _guardrails(
            settings,
            prefix,
            site,
            opts,
            replicates_from=arrival.database.address,
            mirrors_from=arrival.objects.address if arrival.objects is not None else None,
            bridges_from=arrival.broker.addresses if arrival.broker is not None else None,
        )
    # Everything else goes into the namespace Guardrails made; its output makes them wait for it.
    placement = site.inside(guardrails.namespace)

    if arrival is None:
        storage = _object_storage(settings, prefix, placement, opts, published_for_replication=replication_sources)
    else:
        storage = _object_storage(settings, prefix, placement, opts, mirror_of=arrival.objects)
    api_clients = tuple(sorted({a.broker_client for a in settings.city_apis.values() if a.broker_client}))
    # During a move both sites admit the broker bridge (the old one publishes its pods to it).
    bridged = bool(replication_sources) or (arrival is not None and arrival.broker is not None)
    broker = Broker(
        f"{prefix}-broker",
        BrokerArgs(
            placement,
            settings.broker,
            release=releases["broker"],
            tools_release=releases["object_storage_client"],
            client_secrets=api_clients,
            bridge_password=bridge_password(replication_password()) if bridged else None,
            published_for_bridge=replication_sources,
            bridge_from=arrival.broker if arrival is not None else None,
        ),
        opts,
    )
    backup_user = settings.database.backup.storage_user
    backed_up = arrival is None or arrival.serving
    database = Database(
        f"{prefix}-database",
        DatabaseArgs(
            placement,
            settings.database,
            release=releases["database"],
            backup_client_release=releases["object_storage_client"],
            backup_endpoint=storage.s3_endpoint if backed_up else "",
            backup_credentials_secret=storage.user_secret_names[backup_user] if backed_up else "",
            published_for_replication=replication_sources,
            standby_of=arrival.database if arrival is not None else None,
        ),
        opts,
    )
    apis = CityApis(
        f"{prefix}-city-apis",
        CityApisArgs(
            placement,
            settings.city_apis,
            releases=settings.releases,
            # A standby has no in-site replicas (they come with the complete phase): read the standby.
            connections=_connections(settings, broker, database, storage, replicas=arrival is None),
            migrate=arrival is None,
        ),
        pulumi.ResourceOptions(provider=provider, depends_on=[broker, database, storage]),
    )
    return {
        "namespace": placement.namespace,
        "mqtt_endpoint": broker.mqtt_endpoint,
        "mqtt_load_balancer_address": broker.load_balancer_address,
        "api_urls": apis.api_urls,
        "s3_endpoint": storage.s3_endpoint,
        "helm_releases": apis.helm_releases,
        "database_published_address": database.published_address,
        "object_storage_published_address": storage.published_address,
        "broker_published_addresses": broker.published_addresses,
    }


def _guardrails(
    settings: Settings, prefix: str, site: Placement, opts: pulumi.ResourceOptions, **move: Any
) -> Guardrails:
    """The namespace and its guardrails on one cluster; ``move``: what a move adds there
    (GuardrailsArgs' replication_sources, replicates_from, mirrors_from)."""
    return Guardrails(
        f"{prefix}-guardrails",
        GuardrailsArgs(site, settings.guardrails, device_source_ranges=settings.broker.device_source_ranges, **move),
        opts,
    )


def _object_storage(
    settings: Settings, prefix: str, placement: Placement, opts: pulumi.ResourceOptions, **move: Any
) -> ObjectStorage:
    """MinIO on one cluster; ``move``: what a move adds there (ObjectStorageArgs'
    published_for_replication on the old site, mirror_of on the new)."""
    releases = settings.releases.components
    return ObjectStorage(
        f"{prefix}-object-storage",
        ObjectStorageArgs(
            placement,
            settings.object_storage,
            release=releases["object_storage"],
            client_release=releases["object_storage_client"],
            **move,
        ),
        opts,
    )


def mirror_source(
    settings: Settings, source: ClusterProfile, target: ClusterProfile, address: pulumi.Input[str]
) -> MirrorSource:
    """The old site's MinIO for the new site's mirror: its name (as its certificate has it), its
    published address, its CA (read from its Secret, move_replication.read_source_ca) and the
    image, from the new site's registry, that the verification's object reader runs in (the
    reader API's, move_replication.READER_API, when the environment runs that API)."""
    storage = naming.names(settings.environment, naming.OBJECT_STORAGE)
    ca = move_replication.read_source_ca(
        source.context, naming.namespace(settings.environment), object_storage_tls_secret_name(settings.environment)
    )
    reader = move_replication.READER_API.replace("-", "_")  # the settings' key of that API
    return MirrorSource(
        storage.host(storage.name),
        address,
        ca,
        reader_image=pods.image(target, settings.releases.components[reader]) if reader in settings.city_apis else None,
    )


def bridge_source(settings: Settings, addresses: pulumi.Input[list[str]], *, phase: BridgePhase) -> BridgeSource:
    """The old site's broker pods for the new site's bridge: each pod's name as the broker's
    certificate has it (its wildcard under the headless Service), its published address, the
    old site's CA (read from the broker's key pair Secret, move_replication.read_source_ca), and
    its public MQTT name, which the bridge dials in rollback (``phase`` says which way it crosses)."""
    names = naming.names(settings.environment, naming.BROKER)
    headless = names.host(names.child("headless"))
    ca = move_replication.read_source_ca(
        settings.cluster.context, naming.namespace(settings.environment), broker_tls_secret_name(settings.environment)
    )
    hosts = tuple(f"{names.name}-{index}.{headless}" for index in range(settings.broker.replicas))
    public = naming.mqtt_hostname(settings.environment, settings.cluster.ingress.base_domain)
    return BridgeSource(hosts, addresses, ca, phase=phase, public_host=public)


def _move_target(settings: Settings) -> ClusterProfile | None:
    """The cluster the environment moves to, while a move is declared (the guard let through only
    the phases the program runs)."""
    if settings.move is None:
        return None
    return load_cluster_profile(settings.move.to)


def _connections(
    settings: Settings, broker: Broker, database: Database, storage: ObjectStorage, *, replicas: bool = True
) -> Connections:
    """Where the APIs find the broker, the database and the object storage (``replicas``: whether
    the database runs its in-site replicas here)."""
    read_host = database.replicas_host if replicas and settings.database.replicas > 0 else database.primary_host
    return Connections(
        mqtt_url=broker.internal_endpoint,
        mqtt_pod_urls=broker.pod_endpoints,
        broker_client_secrets=broker.client_secret_names,
        database_host=database.primary_host,
        database_read_host=read_host,
        database_role_secrets=database.role_secret_names,
        database_owners={spec.name: spec.owner for spec in settings.database.databases},
        s3_endpoint=storage.s3_endpoint,
        storage_user_secrets=storage.user_secret_names,
    )


def release_summary(settings: Settings, cluster: ClusterProfile | None = None) -> dict[str, Any]:
    """What is deployed: chart version and, per component (the platform's, then each API's), version
    and image by digest (no secrets), from ``cluster``'s registry (default: the settings' cluster).
    A release no API of the environment uses is not deployed."""
    components = settings.releases.components
    summary: dict[str, Any] = {"chart_version": settings.releases.chart_version}
    for name in (*PLATFORM_COMPONENTS, *settings.city_apis):
        release = components[name]
        summary[name] = {
            "version": release.version,
            "image": pods.image(cluster or settings.cluster, release),
        }
    return summary


def build(settings: Settings) -> dict[str, Any]:
    """Check, then register everything for ``settings`` and export the stack outputs.

    Returns the exported outputs (tests read them; the engine reads the exports).
    """
    preflight(settings)
    move_guard.check_cutover_ran(settings)
    if settings.move is not None and settings.move.phase == "complete":
        return _complete(settings)
    target = _move_target(settings)
    providers = cluster_providers([settings.cluster, *([target] if target else [])])
    sources = move_replication.arrival_addresses(settings, settings.cluster, list_clusters()) if target else ()
    deployed = deploy(settings, settings.cluster, providers[settings.cluster.name], replication_sources=sources)
    move: dict[str, Any] | None = None
    serving = deployed
    if target is not None and settings.move is not None:
        database = naming.names(settings.environment, naming.DATABASE)
        ca = move_replication.read_source_ca(
            settings.cluster.context, naming.namespace(settings.environment), tls_secret_name(settings.environment)
        )
        source = StandbySource(database.host(database.child("primary")), deployed["database_published_address"], ca)
        phase = settings.move.phase
        cutover = phase == "cutover"
        # The rollback deploys both sites as the cutover did (the new site's database promoted,
        # no mirror): it only turns the bridge and gives the old site's endpoints again.
        promoted = cutover or phase == MOVE_ROLLBACK
        # From the cutover on the old site is fenced and the new one takes writes: no more mirror
        # (its --remove would delete what the new site's APIs write).
        published_storage = deployed["object_storage_published_address"]
        objects = None if promoted else mirror_source(settings, settings.cluster, target, published_storage)
        assert phase != "complete"  # built by _complete
        bridge = bridge_source(settings, deployed["broker_published_addresses"], phase=phase)
        arrived = deploy(
            settings, target, providers[target.name], arrival=Arrival(source, objects, serving=promoted, broker=bridge)
        )
        # The endpoints the outputs give devices and clients: the new site's in the cutover, the
        # old site's before it and again in the rollback.
        serving = arrived if cutover else deployed
        # The guard reads `to` and `phase` back (move_guard.Deployed); the rest is for the operator.
        move = {
            "to": target.name,
            "phase": phase,
            "serving": target.name if cutover else settings.cluster.name,
            "namespace": arrived["namespace"],
            "target_mqtt_endpoint": arrived["mqtt_endpoint"],
            "target_api_urls": arrived["api_urls"],
            "database_address": deployed["database_published_address"],
            "object_storage_address": deployed["object_storage_published_address"],
            "broker_addresses": deployed["broker_published_addresses"],
            "replication_sources": list(sources),
            "source_ca_sha256": move_replication.fingerprint(ca),
        }
    return _export(settings, settings.cluster, deployed, serving, move)


def _complete(settings: Settings) -> dict[str, Any]:
    """The complete phase (docs/move.md, section 9): the environment on the new site alone, as any
    environment deployed there (its database a primary like any other: the setup Job, the
    in-site replicas, the migration Jobs, all idempotent against what replication brought); the
    old site's resources are no longer registered, so Pulumi deletes them. Only after the driver
    verified a final backup of the old site in the new site's object storage (the guard reads the
    record it leaves there)."""
    assert settings.move is not None
    move_guard.check_final_backup(settings)
    target = load_cluster_profile(settings.move.to)
    providers = cluster_providers([target])
    deployed = deploy(settings, target, providers[target.name])
    move = {
        "to": target.name,
        "phase": "complete",
        "serving": target.name,
        "namespace": deployed["namespace"],
        "moved_from": settings.cluster.name,
    }
    # `cluster` is where the environment and its data are now: the guard lets `cluster: <to>` alone follow.
    return _export(settings, target, deployed, deployed, move)


def _export(
    settings: Settings,
    cluster: ClusterProfile,
    deployed: dict[str, Any],
    serving: dict[str, Any],
    move: dict[str, Any] | None,
) -> dict[str, Any]:
    """The stack outputs: the environment on ``cluster`` (``deployed`` there), the endpoints
    devices and clients use (``serving``'s: the new site's from a move's cutover on), and the
    ``move`` record while a move runs or once it completed."""
    outputs = {
        "environment": settings.environment,
        # Named `cluster` (the target cluster), as the integration tests and ops CLI read it.
        "cluster": cluster.name,
        "namespace": deployed["namespace"],
        "mqtt_endpoint": serving["mqtt_endpoint"],
        "mqtt_load_balancer_address": serving["mqtt_load_balancer_address"],
        "api_urls": serving["api_urls"],
        "s3_endpoint": serving["s3_endpoint"],
        "deployed_releases": {**release_summary(settings, cluster), "helm_releases": deployed["helm_releases"]},
    }
    if move is not None:
        outputs["move"] = move
    for key, value in outputs.items():
        pulumi.export(key, value)
    return outputs


__all__ = ["Arrival", "build", "deploy", "mirror_source", "preflight", "release_summary"]
