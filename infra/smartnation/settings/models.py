"""Frozen dataclasses for cluster profiles and environment settings.

The YAML shape is exactly the dataclass shape: a key in ``environments/*.yaml`` is a field
here, and the docstring under each field is its documentation. ``validation.convert`` enforces
types, enums (``Literal``) and the ranges declared with ``setting(...)``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from smartnation.program.daemon_config.mosquitto import validate_topic_filter
from smartnation.settings.validation import parse_quantity, setting

DNS_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
SQL_IDENTIFIER = r"[a-z_][a-z0-9_]{0,62}"
# A tag is pinned: never `latest`, never empty (an untagged image means latest).
IMAGE_TAG = r"(?!latest$)[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
IMAGE_REPOSITORY = r"[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*"
SEMVER = r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?"
CRON = r"(\S+\s+){4}\S+"


def _unique(items: tuple[Any, ...], what: str) -> None:
    names = [item.name for item in items]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"{what} must have unique names, {', '.join(duplicates)} appears more than once")


# --- Cluster profile (environments/clusters/<name>.yaml) -----------------------------------


@dataclass(frozen=True, kw_only=True)
class Site:
    provider: str
    """Who runs the cluster (``huawei-cloud-cce``, ``on-premise``)."""
    region: str
    """Provider region or site code."""
    country: str = setting(pattern=r"[A-Z]{2}", describe="an ISO 3166 country code such as MC")
    """Where data at rest on this cluster lives (data residency)."""


@dataclass(frozen=True, kw_only=True)
class NodePool:
    name: str
    """Pool name."""
    label: Mapping[str, str]
    """Node label that selects this pool."""
    count: int = setting(range=(1, 1000))
    """Number of nodes."""
    cpu: str = setting(quantity="cpu")
    """Allocatable CPU per node."""
    memory: str = setting(quantity="memory")
    """Allocatable memory per node."""
    pods: int = setting(range=(1, 1000))
    """Maximum pods per node."""


@dataclass(frozen=True, kw_only=True)
class WorkloadNodeSelector:
    stateless: Mapping[str, str]
    """Node selector for Deployments (APIs)."""
    stateful: Mapping[str, str]
    """Node selector for StatefulSets and backup jobs (broker, database, object storage)."""


@dataclass(frozen=True, kw_only=True)
class StorageClass:
    name: str
    """StorageClass name."""
    provisioner: str
    """CSI provisioner."""
    parameters: Mapping[str, str]
    """Provisioner parameters."""
    binding_mode: Literal["Immediate", "WaitForFirstConsumer"]
    """volumeBindingMode."""
    reclaim_policy: Literal["Delete", "Retain"]
    """reclaimPolicy."""


@dataclass(frozen=True, kw_only=True)
class Storage:
    default_class: str
    """StorageClass every PVC of smartnation uses."""
    classes: tuple[StorageClass, ...]
    """StorageClasses the cluster offers."""

    def __post_init__(self) -> None:
        if self.default_class not in {c.name for c in self.classes}:
            raise ValueError(f"default_class {self.default_class!r} is not one of the classes listed")


@dataclass(frozen=True, kw_only=True)
class LoadBalancer:
    implementation: str
    """What answers Services of type LoadBalancer (``huawei-elb``, ``metallb``)."""
    service_annotations: Mapping[str, str]
    """Annotations every LoadBalancer Service gets on this cluster."""
    node_ports: bool
    """Whether the load balancer reaches pods through node ports (CCE's shared ELB does;
    MetalLB announces the Service address itself and needs none)."""


@dataclass(frozen=True, kw_only=True)
class Ingress:
    ingress_class: str = setting(key="class")
    """ingressClassName for the APIs."""
    annotations: Mapping[str, str] = setting(default_factory=dict)
    """Annotations every Ingress gets on this cluster."""
    tls_issuer: str = setting()
    """The cert-manager ClusterIssuer that signs the broker's and the APIs' certificates."""
    base_domain: str = setting()
    """DNS zone under which API hostnames are created."""
    controller_namespace: str = setting(default="ingress-nginx", pattern=DNS_LABEL, describe="a namespace name")
    """Namespace the ingress controller's pods run in; NetworkPolicies admit API traffic from it."""


@dataclass(frozen=True, kw_only=True)
class Registry:
    default: str
    """Registry prefix (host/path) every smartnation image is pulled from."""
    allowed: tuple[str, ...]
    """Registry prefixes admission allows on this cluster."""

    def __post_init__(self) -> None:
        if self.default not in self.allowed:
            raise ValueError(f"registry.default {self.default!r} is not in registry.allowed")


@dataclass(frozen=True, kw_only=True)
class VolumePool:
    count: int = setting(range=(1, 1000))
    """Volumes per storage class."""
    size: str = setting(quantity="memory", quantity_range=("1Gi", "100Ti"))
    """Size of each volume."""


@dataclass(frozen=True, kw_only=True)
class Simulation:
    """How `make clusters` stands in for the cluster locally (smartnation.tooling.local_clusters).

    Read only there: the program deploys the same way to the stand-in and to the real cluster.
    """

    apiserver_port: int = setting(range=(1024, 65535))
    """Loopback port of the stand-in's API server; each profile needs its own."""
    load_balancer_pool: ipaddress.IPv4Network = setting(range=(24, 24))
    """Addresses handed to Services of type LoadBalancer; a /24, because a Service gets the
    address ending in the last octet of its cluster IP."""
    ingress_address: ipaddress.IPv4Address = setting()
    """Address every Ingress of the cluster reports, as the ingress controller's would."""
    volume_pool: VolumePool = setting()
    """Volumes the site has per storage class (the stand-in's provisioner makes one per claim
    instead and does not read this)."""


@dataclass(frozen=True, kw_only=True)
class ClusterProfile:
    """Where an environment runs: everything that differs between clusters."""

    name: str = setting(pattern=DNS_LABEL, describe="a lowercase DNS label")
    """Profile name, equal to the file name."""
    context: str = setting()
    """kubeconfig context the Kubernetes provider targets."""
    site: Site = setting()
    """Operator, region and data-residency country."""
    zones: tuple[str, ...] = setting()
    """Failure zones (topology.kubernetes.io/zone values)."""
    node_pools: tuple[NodePool, ...] = setting()
    """Node pools and their labels."""
    workload_node_selector: WorkloadNodeSelector = setting()
    """Which pool stateless and stateful workloads are scheduled on."""
    storage: Storage = setting()
    """Storage classes and the one PVCs use."""
    load_balancer: LoadBalancer = setting()
    """LoadBalancer implementation and Service annotations."""
    ingress: Ingress = setting()
    """Ingress class, annotations, certificate issuer and DNS zone."""
    registry: Registry = setting()
    """Image registry."""
    simulation: Simulation | None = setting(default=None)
    """How the local stand-in of this cluster is made; a profile without it cannot be simulated."""


# --- Environment settings (environments/defaults.yaml + environments/<env>.yaml) ------------


@dataclass(frozen=True, kw_only=True)
class Compute:
    cpu: str = setting(quantity="cpu", quantity_range=("1m", "64"))
    """CPU quantity."""
    memory: str = setting(quantity="memory", quantity_range=("4Mi", "256Gi"))
    """Memory quantity."""


@dataclass(frozen=True, kw_only=True)
class Resources:
    requests: Compute
    """What the scheduler reserves."""
    limits: Compute
    """Hard ceiling; must be at least the requests."""

    def __post_init__(self) -> None:
        for kind in ("cpu", "memory"):
            if parse_quantity(getattr(self.limits, kind)) < parse_quantity(getattr(self.requests, kind)):
                raise ValueError(f"limits.{kind} must be at least requests.{kind}")


@dataclass(frozen=True, kw_only=True)
class ComponentRelease:
    version: str
    """Upstream version of the software (what release notes talk about)."""
    repository: str = setting(pattern=IMAGE_REPOSITORY, describe="an image repository path without registry")
    """Image repository under the cluster registry (``eclipse-mosquitto``)."""
    tag: str = setting(pattern=IMAGE_TAG, describe="a pinned image tag (not 'latest')")
    """Pinned image tag."""


@dataclass(frozen=True, kw_only=True)
class ComponentReleases:
    broker: ComponentRelease
    """Eclipse Mosquitto."""
    database: ComponentRelease
    """TimescaleDB (PostgreSQL) server; its pg_dump also runs the backups."""
    object_storage: ComponentRelease
    """MinIO server."""
    object_storage_client: ComponentRelease
    """MinIO client (mc), for bucket setup and backup upload."""
    device_registry: ComponentRelease
    """Device registry API."""
    telemetry_ingest: ComponentRelease
    """Telemetry ingest service."""
    open_data_api: ComponentRelease
    """Open data API."""


@dataclass(frozen=True, kw_only=True)
class Releases:
    """What runs, stated in full in every environment file (``promote`` copies it verbatim)."""

    chart_version: str = setting(pattern=SEMVER, describe="a semantic version such as 0.1.0")
    """Version of charts/city-api."""
    components: ComponentReleases = setting()
    """Image and version per component."""


@dataclass(frozen=True, kw_only=True)
class DeviceClassSettings:
    name: str = setting(pattern=DNS_LABEL, describe="a lowercase DNS label")
    """Class name; also the MQTT username and part of the secret key of its password."""
    publish: tuple[str, ...] = setting(default=())
    """Topic filters the class may publish to."""
    subscribe: tuple[str, ...] = setting(default=())
    """Topic filters the class may subscribe to."""

    def __post_init__(self) -> None:
        for topic in (*self.publish, *self.subscribe):
            validate_topic_filter(topic, where=f"device class {self.name!r}")
        if not self.publish and not self.subscribe:
            raise ValueError("a device class needs at least one publish or subscribe topic")


@dataclass(frozen=True, kw_only=True)
class BrokerSettings:
    replicas: int = setting(range=(1, 9))
    """Independent Mosquitto pods; 3 or more spreads them over the zones (see docs/broker-ha.md)."""
    storage_size: str = setting(quantity="memory", quantity_range=("1Gi", "1Ti"))
    """Persistence volume per pod (retained messages, sessions)."""
    resources: Resources = setting()
    """Per-pod requests and limits."""
    device_classes: tuple[DeviceClassSettings, ...] = setting()
    """MQTT clients by class with their topic ACLs; each has its own password secret."""
    device_source_ranges: tuple[str, ...] = setting(default=("0.0.0.0/0",))
    """CIDRs devices may connect from (NetworkPolicy on 8883)."""

    def __post_init__(self) -> None:
        _unique(self.device_classes, "device_classes")


@dataclass(frozen=True, kw_only=True)
class RoleSettings:
    name: str = setting(pattern=SQL_IDENTIFIER, describe="a lowercase SQL identifier")
    """PostgreSQL role; its password is the secret ``database-password-<name>``."""
    login: bool = setting(default=True)
    """Whether the role can log in (false for group roles)."""


@dataclass(frozen=True, kw_only=True)
class DatabaseSpec:
    name: str = setting(pattern=SQL_IDENTIFIER, describe="a lowercase SQL identifier")
    """Database name."""
    owner: str = setting(pattern=SQL_IDENTIFIER, describe="a lowercase SQL identifier")
    """Owning role (one of database.roles)."""
    extensions: tuple[str, ...] = setting(default=())
    """Extensions created in the database (``timescaledb``)."""


@dataclass(frozen=True, kw_only=True)
class GrantSettings:
    role: str
    """Role that receives the privilege."""
    database: str
    """Database it applies to."""
    privilege: Literal["connect", "read", "write", "all"]
    """connect, read (SELECT), write (read + DML) or all."""


@dataclass(frozen=True, kw_only=True)
class BackupSettings:
    schedule: str = setting(pattern=CRON, describe="a five-field cron schedule")
    """When pg_dump runs (cluster time zone, UTC)."""
    bucket: str = setting(default="backups")
    """Object storage bucket the dumps go to."""
    storage_user: str = setting(default="database-backup")
    """Object storage user (access key) the backup job uses."""


@dataclass(frozen=True, kw_only=True)
class DatabaseSettings:
    replicas: int = setting(range=(0, 5))
    """Streaming read replicas next to the primary."""
    storage_size: str = setting(quantity="memory", quantity_range=("1Gi", "10Ti"))
    """Data volume per pod."""
    resources: Resources = setting()
    """Per-pod requests and limits (primary and replicas)."""
    roles: tuple[RoleSettings, ...] = setting()
    """Application roles."""
    databases: tuple[DatabaseSpec, ...] = setting()
    """Databases and their owners."""
    grants: tuple[GrantSettings, ...] = setting(default=())
    """Extra privileges beyond ownership."""
    backup: BackupSettings = setting()
    """Scheduled pg_dump to object storage."""

    def __post_init__(self) -> None:
        _unique(self.roles, "roles")
        _unique(self.databases, "databases")
        roles = {r.name for r in self.roles}
        names = {d.name for d in self.databases}
        for db in self.databases:
            if db.owner not in roles:
                raise ValueError(f"database {db.name!r}: owner {db.owner!r} is not one of the roles")
        for grant in self.grants:
            if grant.role not in roles or grant.database not in names:
                raise ValueError(f"grant {grant.privilege} on {grant.database!r} to {grant.role!r}: unknown role or db")


@dataclass(frozen=True, kw_only=True)
class Bucket:
    name: str = setting(pattern=r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", describe="an S3 bucket name")
    """Bucket name."""
    anonymous_read: bool = setting(default=False)
    """Anyone may download (open data)."""


@dataclass(frozen=True, kw_only=True)
class StorageUser:
    name: str = setting(pattern=DNS_LABEL, describe="a lowercase DNS label")
    """Access key; the secret key is the secret ``object-storage-secret-key-<name>``."""
    buckets: tuple[str, ...] = setting()
    """Buckets this user may use."""
    access: Literal["read", "readwrite"] = setting()
    """read or readwrite."""


@dataclass(frozen=True, kw_only=True)
class ObjectStorageSettings:
    mode: Literal["standalone", "distributed"]
    """standalone: one pod; distributed: erasure-coded over ``replicas`` pods."""
    replicas: int = setting(range=(1, 16))
    """MinIO pods: 1 when standalone, an even number of at least 4 when distributed."""
    storage_size: str = setting(quantity="memory", quantity_range=("1Gi", "100Ti"))
    """Data volume per pod."""
    resources: Resources = setting()
    """Per-pod requests and limits."""
    buckets: tuple[Bucket, ...] = setting()
    """Buckets created by the setup job."""
    users: tuple[StorageUser, ...] = setting()
    """Per-application access keys and their bucket policies."""

    def __post_init__(self) -> None:
        if self.mode == "standalone" and self.replicas != 1:
            raise ValueError(f"mode standalone needs replicas 1, got {self.replicas}")
        if self.mode == "distributed" and (self.replicas < 4 or self.replicas % 2):
            raise ValueError(f"mode distributed needs an even number of replicas from 4 to 16, got {self.replicas}")
        _unique(self.buckets, "buckets")
        _unique(self.users, "users")
        buckets = {b.name for b in self.buckets}
        for user in self.users:
            missing = sorted(set(user.buckets) - buckets)
            if missing:
                raise ValueError(f"user {user.name!r} refers to unknown bucket(s) {', '.join(missing)}")


@dataclass(frozen=True, kw_only=True)
class DatabaseAccess:
    name: str
    """Database the API connects to."""
    role: str
    """Role it connects as."""


@dataclass(frozen=True, kw_only=True)
class ApiSettings:
    replicas: int = setting(range=(1, 20))
    """Minimum replicas (HPA floor)."""
    max_replicas: int = setting(range=(1, 50))
    """HPA ceiling."""
    target_cpu_utilization: int = setting(default=70, range=(10, 95))
    """HPA CPU target in percent of requests."""
    resources: Resources = setting()
    """Per-pod requests and limits."""
    database: DatabaseAccess | None = setting(default=None)
    """Database and role, or null for none."""
    broker_client: str | None = setting(default=None)
    """Device class whose MQTT credentials the API uses, or null."""
    broker_all_pods: bool = setting(default=False)
    """Connect to every broker pod by its own DNS name (the telemetry ingest)."""
    storage_user: str | None = setting(default=None)
    """Object storage user whose access key the API uses, or null."""
    extra_env: Mapping[str, str] = setting(default_factory=dict)
    """Escape hatch: extra non-secret environment variables."""

    def __post_init__(self) -> None:
        if self.max_replicas < self.replicas:
            raise ValueError(f"max_replicas ({self.max_replicas}) must be at least replicas ({self.replicas})")


@dataclass(frozen=True, kw_only=True)
class CityApisSettings:
    device_registry: ApiSettings
    """Device registry API."""
    telemetry_ingest: ApiSettings
    """Telemetry ingest (MQTT -> TimescaleDB, archive to object storage)."""
    open_data_api: ApiSettings
    """Public open-data API."""

    def items(self) -> tuple[tuple[str, ApiSettings], ...]:
        """(app name as in Kubernetes, settings) for each API, e.g. ``device-registry``."""
        return tuple(
            (field.replace("_", "-"), getattr(self, field))
            for field in ("device_registry", "telemetry_ingest", "open_data_api")
        )


@dataclass(frozen=True, kw_only=True)
class Quota:
    requests_cpu: str = setting(quantity="cpu", quantity_range=("100m", "1000"))
    """Sum of CPU requests in the namespace."""
    requests_memory: str = setting(quantity="memory", quantity_range=("128Mi", "4Ti"))
    """Sum of memory requests."""
    limits_cpu: str = setting(quantity="cpu", quantity_range=("100m", "1000"))
    """Sum of CPU limits."""
    limits_memory: str = setting(quantity="memory", quantity_range=("128Mi", "4Ti"))
    """Sum of memory limits."""
    requests_storage: str = setting(quantity="memory", quantity_range=("1Gi", "1Pi"))
    """Sum of PVC sizes."""
    persistent_volume_claims: int = setting(range=(1, 500))
    """Number of PVCs."""
    pods: int = setting(range=(1, 2000))
    """Number of pods."""


@dataclass(frozen=True, kw_only=True)
class LimitRangeSettings:
    default_request: Compute
    """Requests of a container that states none."""
    default_limit: Compute
    """Limits of a container that states none."""
    max: Compute
    """Largest container allowed."""


@dataclass(frozen=True, kw_only=True)
class GuardrailsSettings:
    quota: Quota
    """ResourceQuota of the environment namespace."""
    limit_range: LimitRangeSettings
    """LimitRange of the environment namespace."""
    protect_state: bool
    """Protect the stateful resources (namespace, StatefulSets) from deletion by Pulumi, so a
    destroy or a refactor cannot drop data; lifting it takes an explicit `pulumi state unprotect`."""


@dataclass(frozen=True, kw_only=True)
class EnvironmentSpec:
    """The merged YAML of defaults.yaml and <env>.yaml, before the profile is attached."""

    cluster: str = setting(pattern=DNS_LABEL, describe="a cluster profile name")
    """Cluster profile (environments/clusters/<name>.yaml) the environment deploys to."""
    releases: Releases = setting()
    """Images and chart version; stated in full in every environment file."""
    broker: BrokerSettings = setting()
    """MQTT broker (Mosquitto)."""
    database: DatabaseSettings = setting()
    """PostgreSQL/TimescaleDB."""
    object_storage: ObjectStorageSettings = setting()
    """MinIO."""
    city_apis: CityApisSettings = setting()
    """The three city APIs (charts/city-api)."""
    guardrails: GuardrailsSettings = setting()
    """Namespace quota and limits."""


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything ``build`` needs for one environment, validated."""

    environment: str
    """dev, staging or production; also the Pulumi stack name."""
    source: str
    """Environment file these settings came from (for messages)."""
    cluster: ClusterProfile
    """Profile of the target cluster."""
    releases: Releases
    """Images and chart version."""
    broker: BrokerSettings
    """MQTT broker."""
    database: DatabaseSettings
    """PostgreSQL/TimescaleDB."""
    object_storage: ObjectStorageSettings
    """MinIO."""
    city_apis: CityApisSettings
    """The city APIs."""
    guardrails: GuardrailsSettings
    """Namespace quota and limits."""
