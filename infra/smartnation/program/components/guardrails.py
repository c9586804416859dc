"""The environment namespace and its guardrails: Pod Security, quota, limits, network policy.

Network policy is default-deny in both directions; each allow policy below is one flow the
platform needs, so reading this file lists every connection that can exist.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from smartnation.program import naming
from smartnation.program.components import (
    broker,
    broker_bridge,
    child_options,
    city_apis,
    database,
    object_mirror,
    object_storage,
    require_provider,
    stateful_options,
)
from smartnation.program.placement import Placement
from smartnation.settings.models import ClusterProfile, GuardrailsSettings

DNS_NAMESPACE = "kube-system"
_NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


@dataclass(frozen=True)
class GuardrailsArgs:
    placement: Placement
    """Environment (the namespace is ``<project>-<env>``), cluster (ingress controller namespace,
    node ports) and whether the namespace is protected."""
    settings: GuardrailsSettings
    """Quota and LimitRange sizes."""
    device_source_ranges: tuple[str, ...]
    """CIDRs devices may reach the broker's TLS listener from."""
    replication_sources: tuple[str, ...] = ()
    """During a move, on the old site: CIDRs another site's standby connects from (its database
    primary is published on a second LoadBalancer for them alone; docs/move.md)."""
    replicates_from: pulumi.Input[str] | None = None
    """During a move, on the new site: the old site's published database address, the one place
    the standby may connect to."""
    mirrors_from: pulumi.Input[str] | None = None
    """During a move, on the new site: the old site's published object storage address, the one
    place the bucket mirror may connect to besides its own site's MinIO."""
    bridged_pods: int = 0
    """During a move, on the old site: broker pods published to the other site's bridge, one
    LoadBalancer each."""
    bridges_from: pulumi.Input[Sequence[str]] | None = None
    """During a move, on the new site: the old site's published broker pod addresses, the places
    the broker bridge may connect to besides its own site's brokers."""


def _peer(selector: dict[str, str]) -> dict[str, Any]:
    return {"pod_selector": {"match_labels": selector}}


def _ports(port: int, *more: int) -> list[dict[str, Any]]:
    return [{"protocol": "TCP", "port": p} for p in (port, *more)]


def flows(environment: str, cluster: ClusterProfile, device_source_ranges: tuple[str, ...]) -> dict[str, dict]:
    """NetworkPolicy specs by policy suffix: the exact set of allowed connections."""
    database_names = naming.names(environment, naming.DATABASE)
    storage_names = naming.names(environment, naming.OBJECT_STORAGE)
    apis = {naming.TIER_LABEL: naming.API_TIER}
    broker_pods = naming.names(environment, naming.BROKER).selector(naming.SERVER)
    primary = database_names.selector(naming.PRIMARY)
    replica = database_names.selector(naming.REPLICA)
    backup = database_names.selector(naming.BACKUP)
    db_setup = database_names.selector(naming.SETUP)
    storage = storage_names.selector(naming.SERVER)
    storage_setup = storage_names.selector(naming.SETUP)
    pg, s3, mqtt = database.PORT, object_storage.PORT, broker.INTERNAL_PORT
    return {
        # Every pod may resolve names, and nothing else, unless a policy below says so.
        "allow-dns": {
            "pod_selector": {},
            "policy_types": ["Egress"],
            "egress": [
                {
                    "to": [{"namespace_selector": {"match_labels": {_NAMESPACE_NAME_LABEL: DNS_NAMESPACE}}}],
                    "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
                }
            ],
        },
        # Devices (from anywhere allowed) -> broker TLS; APIs -> broker plain. Broker: no egress.
        "broker": {
            "pod_selector": {"match_labels": broker_pods},
            "policy_types": ["Ingress", "Egress"],
            "ingress": [
                {
                    "from": [{"ip_block": {"cidr": cidr}} for cidr in device_source_ranges],
                    "ports": _ports(broker.TLS_PORT),
                },
                {"from": [_peer(apis)], "ports": _ports(mqtt)},
            ],
            "egress": [],
        },
        # Ingress controller -> APIs; APIs -> database, broker, object storage.
        "city-apis": {
            "pod_selector": {"match_labels": apis},
            "policy_types": ["Ingress", "Egress"],
            "ingress": [
                {
                    "from": [
                        {
                            "namespace_selector": {
                                "match_labels": {_NAMESPACE_NAME_LABEL: cluster.ingress.controller_namespace}
                            }
                        }
                    ],
                    "ports": _ports(city_apis.API_PORT),
                }
            ],
            "egress": [
                {"to": [_peer(primary), _peer(replica)], "ports": _ports(pg)},
                {"to": [_peer(broker_pods)], "ports": _ports(mqtt)},
                {"to": [_peer(storage)], "ports": _ports(s3)},
            ],
        },
        # Primary <- APIs, backup, setup Job, replicas (streaming).
        "database-primary": {
            "pod_selector": {"match_labels": primary},
            "policy_types": ["Ingress", "Egress"],
            "ingress": [{"from": [_peer(apis), _peer(backup), _peer(db_setup), _peer(replica)], "ports": _ports(pg)}],
            "egress": [],
        },
        # Replicas <- APIs (reads); replicas -> primary (WAL stream, initial clone).
        "database-replica": {
            "pod_selector": {"match_labels": replica},
            "policy_types": ["Ingress", "Egress"],
            "ingress": [{"from": [_peer(apis)], "ports": _ports(pg)}],
            "egress": [{"to": [_peer(primary)], "ports": _ports(pg)}],
        },
        # Backup CronJob -> primary (pg_dumpall) and object storage (upload).
        "database-backup": {
            "pod_selector": {"match_labels": backup},
            "policy_types": ["Ingress", "Egress"],
            "ingress": [],
            "egress": [{"to": [_peer(primary)], "ports": _ports(pg)}, {"to": [_peer(storage)], "ports": _ports(s3)}],
        },
        # Role/database setup Job -> primary.
        "database-setup": {
            "pod_selector": {"match_labels": db_setup},
            "policy_types": ["Ingress", "Egress"],
            "ingress": [],
            "egress": [{"to": [_peer(primary)], "ports": _ports(pg)}],
        },
        # MinIO <- APIs, backup, setup Job, its peers; MinIO -> its peers (erasure sets).
        "object-storage": {
            "pod_selector": {"match_labels": storage},
            "policy_types": ["Ingress", "Egress"],
            "ingress": [
                {"from": [_peer(apis), _peer(backup), _peer(storage_setup), _peer(storage)], "ports": _ports(s3)}
            ],
            "egress": [{"to": [_peer(storage)], "ports": _ports(s3)}],
        },
        # Bucket/user setup Job -> MinIO.
        "object-storage-setup": {
            "pod_selector": {"match_labels": storage_setup},
            "policy_types": ["Ingress", "Egress"],
            "ingress": [],
            "egress": [{"to": [_peer(storage)], "ports": _ports(s3)}],
        },
    }


def move_flows(
    environment: str,
    replication_sources: tuple[str, ...],
    replicates_from: pulumi.Input[str] | None,
    mirrors_from: pulumi.Input[str] | None = None,
    bridges_from: pulumi.Input[Sequence[str]] | None = None,
) -> dict[str, dict]:
    """The flows a move adds (docs/move.md), one policy each, beside the others (policies add up):
    on the old site, the other site's standby -> the primary's port, its bucket mirror ->
    MinIO's and its broker bridge -> the brokers' internal port, from its link address only; on
    the new site, the standby (its primary) -> the old site's published database address, the
    mirror -> the old site's published MinIO address and its own site's MinIO, the bridge -> the
    old site's published broker addresses and its own site's brokers."""
    broker_names = naming.names(environment, naming.BROKER)
    broker_pods, bridge = broker_names.selector(naming.SERVER), broker_names.selector(broker_bridge.BRIDGE)
    primary = naming.names(environment, naming.DATABASE).selector(naming.PRIMARY)
    storage_names = naming.names(environment, naming.OBJECT_STORAGE)
    storage, mirror = storage_names.selector(naming.SERVER), storage_names.selector(object_mirror.MIRROR)
    added: dict[str, dict] = {}
    if replication_sources:
        links = [{"ip_block": {"cidr": cidr}} for cidr in replication_sources]
        added["move-replication-source"] = {
            "pod_selector": {"match_labels": primary},
            "policy_types": ["Ingress"],
            "ingress": [{"from": links, "ports": _ports(database.PORT)}],
        }
        added["move-mirror-source"] = {
            "pod_selector": {"match_labels": storage},
            "policy_types": ["Ingress"],
            "ingress": [{"from": [dict(link) for link in links], "ports": _ports(object_storage.PORT)}],
        }
        added["move-bridge-source"] = {
            "pod_selector": {"match_labels": broker_pods},
            "policy_types": ["Ingress"],
            "ingress": [{"from": [dict(link) for link in links], "ports": _ports(broker.INTERNAL_PORT)}],
        }
    if bridges_from is not None:
        cidrs = pulumi.Output.from_input(bridges_from).apply(
            lambda addresses: [{"ip_block": {"cidr": f"{address}/32"}} for address in addresses]
        )
        added["move-bridge-target"] = {
            "pod_selector": {"match_labels": bridge},
            "policy_types": ["Ingress", "Egress"],
            "ingress": [],
            "egress": [
                {"to": cidrs, "ports": _ports(broker.INTERNAL_PORT)},
                {"to": [_peer(broker_pods)], "ports": _ports(broker.INTERNAL_PORT)},
            ],
        }
        added["move-bridge-broker"] = {
            "pod_selector": {"match_labels": broker_pods},
            "policy_types": ["Ingress"],
            "ingress": [{"from": [_peer(bridge)], "ports": _ports(broker.INTERNAL_PORT)}],
        }
    if mirrors_from is not None:
        cidr = pulumi.Output.from_input(mirrors_from).apply(lambda address: f"{address}/32")
        added["move-mirror-target"] = {
            "pod_selector": {"match_labels": mirror},
            "policy_types": ["Ingress", "Egress"],
            "ingress": [],
            "egress": [
                {"to": [{"ip_block": {"cidr": cidr}}], "ports": _ports(object_storage.PORT)},
                {"to": [_peer(storage)], "ports": _ports(object_storage.PORT)},
            ],
        }
        added["move-mirror-object-storage"] = {
            "pod_selector": {"match_labels": storage},
            "policy_types": ["Ingress"],
            "ingress": [{"from": [_peer(mirror)], "ports": _ports(object_storage.PORT)}],
        }
    if replicates_from is not None:
        cidr = pulumi.Output.from_input(replicates_from).apply(lambda address: f"{address}/32")
        added["move-replication-target"] = {
            "pod_selector": {"match_labels": primary},
            "policy_types": ["Egress"],
            "egress": [{"to": [{"ip_block": {"cidr": cidr}}], "ports": _ports(database.PORT)}],
        }
    return added


class Guardrails(pulumi.ComponentResource):
    """Namespace smartnation-<env> with restricted Pod Security, quota, limits and network policy."""

    namespace: pulumi.Output[str]
    """Name of the environment namespace (depend on it to deploy after it exists)."""

    def __init__(self, name: str, args: GuardrailsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("smartnation:guardrails:Guardrails", name, None, opts)
        provider = require_provider(opts, "Guardrails")
        child = child_options(self, provider)
        environment = args.placement.environment
        namespace = _namespace(name, args.placement, child).metadata.name
        metadata = {
            "namespace": namespace,
            "labels": {**_common_labels(environment), "app.kubernetes.io/managed-by": "pulumi"},
        }
        _quota_and_limits(name, args, metadata, child)
        k8s.networking.v1.NetworkPolicy(
            f"{name}-default-deny",
            metadata={**metadata, "name": f"{environment}-default-deny"},
            spec={"pod_selector": {}, "policy_types": ["Ingress", "Egress"]},
            opts=child,
        )
        allowed = flows(environment, args.placement.cluster, args.device_source_ranges)
        allowed.update(
            move_flows(
                environment, args.replication_sources, args.replicates_from, args.mirrors_from, args.bridges_from
            )
        )
        for suffix, spec in allowed.items():
            k8s.networking.v1.NetworkPolicy(
                f"{name}-{suffix}",
                metadata={**metadata, "name": f"{environment}-{suffix}"},
                spec=spec,
                opts=child,
            )

        self.namespace = namespace
        self.register_outputs({"namespace": self.namespace})


def _common_labels(environment: str) -> dict[str, str]:
    return {"app.kubernetes.io/part-of": naming.PART_OF, naming.ENVIRONMENT_LABEL: environment}


def _namespace(name: str, placement: Placement, child: pulumi.ResourceOptions) -> k8s.core.v1.Namespace:
    """The environment namespace under the restricted Pod Security profile, enforced, audited
    and warned. Deleting it deletes everything in it: protected with the state."""
    return k8s.core.v1.Namespace(
        f"{name}-namespace",
        metadata={
            "name": placement.namespace,
            "labels": {
                **_common_labels(placement.environment),
                "app.kubernetes.io/managed-by": "pulumi",
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest",
                "pod-security.kubernetes.io/audit": "restricted",
                "pod-security.kubernetes.io/audit-version": "latest",
                "pod-security.kubernetes.io/warn": "restricted",
                "pod-security.kubernetes.io/warn-version": "latest",
            },
        },
        opts=stateful_options(child, placement.protect_state),
    )


def _quota_and_limits(name: str, args: GuardrailsArgs, metadata: dict, child: pulumi.ResourceOptions) -> None:
    """What the whole namespace may request, and the defaults and ceiling of one container."""
    environment, quota, limits = args.placement.environment, args.settings.quota, args.settings.limit_range
    # During a move the old site publishes its database, its MinIO and each broker pod to the new
    # site too.
    load_balancers = 3 + args.bridged_pods if args.replication_sources else 1
    k8s.core.v1.ResourceQuota(
        f"{name}-quota",
        metadata={**metadata, "name": f"{environment}-quota"},
        spec={
            "hard": {
                "requests.cpu": quota.requests_cpu,
                "requests.memory": quota.requests_memory,
                "limits.cpu": quota.limits_cpu,
                "limits.memory": quota.limits_memory,
                "requests.storage": quota.requests_storage,
                "persistentvolumeclaims": str(quota.persistent_volume_claims),
                "pods": str(quota.pods),
                # Only the broker may have a LoadBalancer (and, during a move, the database, the
                # object storage and the broker pods published to the other site); APIs go
                # through the Ingress.
                "services.loadbalancers": str(load_balancers),
                # The broker's one TLS port (and the published database's and MinIO's), where the load
                # balancer needs node ports.
                "services.nodeports": str(load_balancers) if args.placement.cluster.load_balancer.node_ports else "0",
            }
        },
        opts=child,
    )
    k8s.core.v1.LimitRange(
        f"{name}-limits",
        metadata={**metadata, "name": f"{environment}-limits"},
        spec={
            "limits": [
                {
                    "type": "Container",
                    "default_request": {"cpu": limits.default_request.cpu, "memory": limits.default_request.memory},
                    "default": {"cpu": limits.default_limit.cpu, "memory": limits.default_limit.memory},
                    "max": {"cpu": limits.max.cpu, "memory": limits.max.memory},
                }
            ]
        },
        opts=child,
    )
