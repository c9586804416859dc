"""Frozen dataclasses for cluster profiles and environment settings.

The YAML shape is exactly the dataclass shape: a key in ``environments/*.yaml`` is a field
here, and the docstring under each field is its documentation. ``validation.convert`` enforces
types, enums (``Literal``) and the ranges declared with ``setting(...)``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from smartnation.settings.validation import FieldProblem, parse_quantity, setting

DNS_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
# A tag is pinned: never `latest`, never empty (an untagged image means latest).
IMAGE_TAG = r"(?!latest$)[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
IMAGE_REPOSITORY = r"[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*"
SEMVER = r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?"
# A registry prefix: host[:port] then path segments (what an image reference starts with).
# An image manifest digest, the way what is deployed names an image (environments/images.lock.yaml).
IMAGE_DIGEST = r"sha256:[0-9a-f]{64}"
REGISTRY_PREFIX = r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?(/[a-z0-9]+([._-][a-z0-9]+)*)*"

# The platform's own releases in `releases.components`; every other release belongs to a city API
# of the same name. An API may not take one of these names, nor one starting with it and `_`: its
# Kubernetes names (`<env>-<app>...`) would be the component's (`<env>-broker...`, whose
# NetworkPolicies select pods by that name). tests/unit/test_settings_rules.py checks they are
# the program's roles (program/naming.py) plus the MinIO client.
PLATFORM_COMPONENTS = ("broker", "database", "object_storage", "object_storage_client")


def api_app(name: str) -> str:
    """Kubernetes name of the API ``name`` in ``city_apis``: ``street_lighting`` -> ``street-lighting``."""
    return name.replace("_", "-")


# PostgreSQL names that are not ours to converge: the superuser and the streaming replication
# role the database component creates (program/components/database.py SUPERUSER and
# REPLICATION_USER; tests/unit/test_settings_rules.py checks they are listed here), and names
# PostgreSQL itself refuses or owns.
RESERVED_ROLES = frozenset({"postgres", "replicator", "public", "none"})
RESERVED_ROLE_PREFIX = "pg_"
RESERVED_DATABASES = frozenset({"postgres", "template0", "template1"})
# The database component passes each login role's password to psql as `<role>_password`, an
# identifier of at most 63 characters itself.
ROLE_NAME_MAX = 63 - len("_password")

# Variables the program gives every API, from its connection ConfigMap and the Secrets it mounts
# (program/components/city_apis.py, database.py, broker.py, object_storage.py) plus the chart's
# PORT. An `env` entry wins over `envFrom` in Kubernetes, so an extra_env entry with one of these
# names would silently replace a credential or a connection. tests/unit/test_settings_rules.py
# checks this list against what a built stack sets.
API_PROVIDED_ENV = frozenset(
    {
        "PORT",
        "SMARTNATION_ENVIRONMENT",
        "PGHOST",
        "PGHOST_READONLY",
        "PGPORT",
        "PGDATABASE",
        "PGUSER",
        "PGPASSWORD",
        "PGSSLMODE",
        "PGSSLROOTCERT",
        "MIGRATE_ON_START",
        "MQTT_URL",
        "MQTT_BROKER_URLS",
        "MQTT_USERNAME",
        "MQTT_PASSWORD",
        "SSL_CERT_FILE",
        "S3_ENDPOINT",
        "AWS_CA_BUNDLE",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "OPERATOR_TOKENS",
    }
)
# extra_env is plain text in the environment files and in the Deployment: no credentials.
_SECRET_NAME_RE = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|CREDENTIAL|PRIVATE_?KEY|ACCESS_?KEY|API_?KEY", re.I)
_URL_USERINFO_RE = re.compile(r"://[^/\s@:]*:[^/\s@]+@")


def _unique(items: tuple[Any, ...], field: str) -> None:
    """Names within ``field`` are unique; the duplicate's own key path is named."""
    seen: set[str] = set()
    for index, item in enumerate(items):
        if item.name in seen:
            raise FieldProblem((field, str(index), "name"), f"{item.name!r} is already used in {field}")
        seen.add(item.name)


# --- Cluster profile (environments/clusters/<name>.yaml) -----------------------------------


@dataclass(frozen=True, kw_only=True)
class Site:
    provider: str = setting(kind="dns_label")
    """Who runs the cluster (``huawei-cloud-cce``, ``on-premise``)."""
    region: str = setting(kind="dns_label")
    """Provider region or site code."""
    country: str = setting(pattern=r"[A-Z]{2}", describe="an ISO 3166 country code such as MC")
    """Where data at rest on this cluster lives (data residency)."""


@dataclass(frozen=True, kw_only=True)
class NodePool:
    name: str = setting(kind="dns_label")
    """Pool name."""
    label: Mapping[str, str] = setting(key_kind="label_key", kind="label_value", items=(1, 20))
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
    stateless: Mapping[str, str] = setting(key_kind="label_key", kind="label_value", items=(1, 20))
    """Node selector for Deployments (APIs); must select one of the node pools."""
    stateful: Mapping[str, str] = setting(key_kind="label_key", kind="label_value", items=(1, 20))
    """Node selector for StatefulSets and backup jobs (broker, database, object storage); must
    select one of the node pools."""


@dataclass(frozen=True, kw_only=True)
class StorageClass:
    name: str = setting(kind="dns_subdomain")
    """StorageClass name."""
    provisioner: str = setting(kind="label_key")
    """CSI provisioner."""
    parameters: Mapping[str, str] = setting(key_kind="label_key", max_length=4096)
    """Provisioner parameters."""
    binding_mode: Literal["Immediate", "WaitForFirstConsumer"]
    """volumeBindingMode."""
    reclaim_policy: Literal["Delete", "Retain"]
    """reclaimPolicy."""


@dataclass(frozen=True, kw_only=True)
class Storage:
    default_class: str = setting(kind="dns_subdomain")
    """StorageClass every PVC of smartnation uses."""
    classes: tuple[StorageClass, ...] = setting(items=(1, 20))
    """StorageClasses the cluster offers."""

    def __post_init__(self) -> None:
        _unique(self.classes, "classes")
        if self.default_class not in {c.name for c in self.classes}:
            raise FieldProblem("default_class", f"{self.default_class!r} is not one of the classes listed")


@dataclass(frozen=True, kw_only=True)
class LoadBalancer:
    implementation: str = setting(kind="dns_label")
    """What answers Services of type LoadBalancer (``huawei-elb``, ``metallb``)."""
    service_annotations: Mapping[str, str] = setting(key_kind="label_key", max_length=4096)
    """Annotations every LoadBalancer Service gets on this cluster."""
    node_ports: bool
    """Whether the load balancer reaches pods through node ports (CCE's shared ELB does;
    MetalLB announces the Service address itself and needs none)."""


@dataclass(frozen=True, kw_only=True)
class Ingress:
    ingress_class: str = setting(key="class", kind="dns_subdomain")
    """ingressClassName for the APIs."""
    annotations: Mapping[str, str] = setting(default_factory=dict, key_kind="label_key", max_length=4096)
    """Annotations every Ingress gets on this cluster."""
    tls_issuer: str = setting(kind="dns_subdomain")
    """The cert-manager ClusterIssuer that signs the broker's and the APIs' certificates."""
    base_domain: str = setting(kind="hostname")
    """DNS zone under which API hostnames are created."""
    controller_namespace: str = setting(default="ingress-nginx", pattern=DNS_LABEL, describe="a namespace name")
    """Namespace the ingress controller's pods run in; NetworkPolicies admit API traffic from it."""


@dataclass(frozen=True, kw_only=True)
class Registry:
    default: str = setting(pattern=REGISTRY_PREFIX, describe="a registry prefix such as registry.example/path")
    """Registry prefix (host/path) every smartnation image is pulled from."""
    allowed: tuple[str, ...] = setting(
        pattern=REGISTRY_PREFIX, describe="a registry prefix such as registry.example/path", items=(1, 20), unique=True
    )
    """Registry prefixes admission allows on this cluster."""

    def __post_init__(self) -> None:
        if self.default not in self.allowed:
            raise FieldProblem("default", f"{self.default!r} is not in registry.allowed")


@dataclass(frozen=True, kw_only=True)
class VolumePool:
    count: int = setting(range=(1, 1000))
    """Volumes per storage class."""
    size: str = setting(quantity="memory", quantity_range=("1Gi", "100Ti"))
    """Size of each volume."""


REAL_NODE_LABEL = "smartnation.mc/node-kind"
"""Label on every node of a local stand-in: ``real`` on ours, ``simulated`` on kwok's."""
REAL_NODE_SELECTOR = {REAL_NODE_LABEL: "real"}
"""The node selector of an environment the profile runs on the real nodes."""


@dataclass(frozen=True, kw_only=True)
class Simulation:
    """How `make clusters` stands in for the cluster locally (smartnation.tooling.local_clusters).

    Read there, and by the program for one thing only: which environments run on the stand-in's
    real nodes (``real_node_environments``). Everything else deploys the same way to the
    stand-in and to the real cluster.
    """

    apiserver_port: int = setting(range=(1024, 65535))
    """Loopback port of the stand-in's API server; each profile needs its own."""
    registry_port: int = setting(range=(1024, 65535))
    """Loopback port of the local registry that stands for ``registry.default`` (`make images`
    pushes there; tooling/images/registry.py); the real nodes pull through it. Each profile its own."""
    load_balancer_pool: ipaddress.IPv4Network = setting(range=(24, 24))
    """Addresses handed to Services of type LoadBalancer; a /24, because a Service gets the
    address ending in the last octet of its cluster IP."""
    ingress_address: ipaddress.IPv4Address = setting()
    """Address every Ingress of the cluster reports, as the ingress controller's would."""
    volume_pool: VolumePool = setting()
    """Volumes the site has per storage class: the stand-in's provisioner makes one per claim for
    classes with a provisioner, and keeps pre-made ones of this size (at most this many) for
    classes without one (``kubernetes.io/no-provisioner``, local disks)."""
    real_nodes: int = setting(default=1, range=(0, 16))
    """Real nodes (kubelet, containerd, runc in a network namespace of their own) beside the
    simulated ones; what the platform is for is proven on their Pods (0: simulation only)."""
    real_node_environments: tuple[str, ...] = setting(default=(), kind="dns_label", items=(0, 10), unique=True)
    """Environments whose Pods run on the real nodes, in place of the profile's node pools: their
    workloads select ``REAL_NODE_SELECTOR`` instead of ``workload_node_selector``. A real node
    has this machine's capacity, so only environments that fit it belong here (dev, staging);
    production at full size stays on the simulated pools."""

    def runs_on_real_nodes(self, environment: str) -> bool:
        return environment in self.real_node_environments


@dataclass(frozen=True, kw_only=True)
class ClusterProfile:
    """Where an environment runs: everything that differs between clusters."""

    name: str = setting(pattern=DNS_LABEL, describe="a lowercase DNS label")
    """Profile name, equal to the file name."""
    context: str = setting(pattern=r"[A-Za-z0-9@:/._-]{1,253}", describe="a kubeconfig context name")
    """kubeconfig context the Kubernetes provider targets."""
    site: Site = setting()
    """Operator, region and data-residency country."""
    zones: tuple[str, ...] = setting(kind="dns_label", items=(1, 10), unique=True)
    """Failure zones (topology.kubernetes.io/zone values)."""
    node_pools: tuple[NodePool, ...] = setting(items=(1, 50))
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
    pod_network: tuple[str, ...] = setting(kind="cidr", items=(1, 20), unique=True)
    """The cluster's Pod address ranges (its CNI's cluster CIDR): in-cluster clients of the
    database come from here, and its pg_hba admits its roles from nowhere else."""
    simulation: Simulation | None = setting(default=None)
    """How the local stand-in of this cluster is made; a profile without it cannot be simulated."""

    def __post_init__(self) -> None:
        _unique(self.node_pools, "node_pools")
        for kind in ("stateless", "stateful"):
            selector = dict(getattr(self.workload_node_selector, kind))
            if not any(selector.items() <= dict(pool.label).items() for pool in self.node_pools):
                raise FieldProblem(("workload_node_selector", kind), "selects none of the node_pools by their label")


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
    version: str = setting(pattern=r"[0-9A-Za-z][0-9A-Za-z.+_-]{0,127}", describe="a version such as 2.0.20")
    """Upstream version of the software (what release notes talk about)."""
    repository: str = setting(pattern=IMAGE_REPOSITORY, describe="an image repository path without registry")
    """Image repository under the cluster registry (``mosquitto``)."""
    tag: str = setting(pattern=IMAGE_TAG, describe="a pinned image tag (not 'latest')")
    """Pinned image tag."""
    digest: str = setting(default="", pattern=IMAGE_DIGEST, describe="a manifest digest sha256:<64 hex>")
    """Manifest digest of ``repository:tag``: never written in an environment file; the loader fills
    it from environments/images.lock.yaml (what `make images` built), and the program deploys it."""


@dataclass(frozen=True, kw_only=True)
class Releases:
    """What runs, stated in full in every environment file (``promote`` copies it verbatim)."""

    chart_version: str = setting(pattern=SEMVER, describe="a semantic version such as 0.1.0")
    """Version of charts/city-api."""
    components: Mapping[str, ComponentRelease] = setting(key_kind="component_name", items=(1, 100))
    """Image and version per component, by name: the platform's own (``PLATFORM_COMPONENTS``) and
    one per city API under the API's name in ``city_apis`` (the loader checks each API has one).
    A release no API of this environment uses is accepted: ``promote`` copies the block verbatim,
    so an API enabled in one environment carries its release into the next before it is enabled
    there."""

    def __post_init__(self) -> None:
        for name in PLATFORM_COMPONENTS:
            if name not in self.components:
                raise FieldProblem(("components", name), "required key is missing (a release of the platform)")


@dataclass(frozen=True, kw_only=True)
class DeviceClassSettings:
    name: str = setting(pattern=DNS_LABEL, describe="a lowercase DNS label")
    """Class name; for an internal class also the MQTT username and part of the secret key of its
    password."""
    publish: tuple[str, ...] = setting(default=(), kind="topic_filter", unique=True)
    """Topic filters the class may publish to; never wildcards alone (``#``)."""
    subscribe: tuple[str, ...] = setting(default=(), kind="topic_filter", unique=True)
    """Topic filters the class may subscribe to; never wildcards alone (``#``)."""
    internal: bool = setting(default=False)
    """An in-cluster client (an API): one password for the class, accepted on the plain
    listener only. Otherwise a class of devices: each device has its own client certificate
    from the site CA (common name = device id), accepted on the TLS listener only, and may use
    the class's topics only where the one ``+`` level is its own id."""

    def __post_init__(self) -> None:
        if not self.publish and not self.subscribe:
            raise ValueError("a device class needs at least one publish or subscribe topic")
        if self.internal:
            return
        # Blamed on the class, not the topic: the mistake may as well be a missing `internal`.
        for field_name in ("publish", "subscribe"):
            for index, topic in enumerate(getattr(self, field_name)):
                levels = topic.split("/")
                if levels.count("+") != 1 or "#" in levels:
                    raise ValueError(
                        f"{field_name}.{index} {topic!r}: a device class's topic needs exactly one '+' level "
                        "(the device id) and no '#'; an in-cluster client's class says `internal: true`"
                    )


@dataclass(frozen=True, kw_only=True)
class BrokerSettings:
    replicas: int = setting(range=(1, 9))
    """Independent Mosquitto pods; 3 or more spreads them over the zones (see docs/broker-ha.md)."""
    storage_size: str = setting(quantity="memory", quantity_range=("1Gi", "1Ti"))
    """Persistence volume per pod (retained messages, sessions)."""
    resources: Resources = setting()
    """Per-pod requests and limits."""
    device_classes: tuple[DeviceClassSettings, ...] = setting(items=(1, 100))
    """MQTT clients by class with their topic ACLs; each has its own password secret."""
    device_source_ranges: tuple[str, ...] = setting(default=("0.0.0.0/0",), kind="cidr", items=(1, 100), unique=True)
    """CIDRs devices may connect from (NetworkPolicy on 8883); at least one, since an empty
    list would render `from: []`, which admits every source."""
    revoked_devices: tuple[str, ...] = setting(
        default=(), pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", describe="a device id", items=(0, 10000), unique=True
    )
    """Device ids whose certificates the broker no longer honours (a stolen or retired device):
    each gets a deny-all block in the TLS listener's ACL, so it publishes and receives nothing
    although its certificate is valid until it expires (docs/security.md)."""

    def __post_init__(self) -> None:
        _unique(self.device_classes, "device_classes")


@dataclass(frozen=True, kw_only=True)
class RoleSettings:
    name: str = setting(kind="sql_identifier")
    """PostgreSQL role; its password is the secret ``database-password-<name>``. Not a role
    PostgreSQL or the platform owns (postgres, replicator, public, pg_*)."""
    login: bool = setting(default=True)
    """Whether the role can log in (false for group roles)."""

    def __post_init__(self) -> None:
        if self.name in RESERVED_ROLES or self.name.startswith(RESERVED_ROLE_PREFIX):
            raise FieldProblem("name", f"{self.name!r} is reserved (PostgreSQL's own or the platform's role)")
        if len(self.name) > ROLE_NAME_MAX:
            raise FieldProblem("name", f"expected at most {ROLE_NAME_MAX} characters, got {len(self.name)}")


@dataclass(frozen=True, kw_only=True)
class DatabaseSpec:
    name: str = setting(kind="sql_identifier")
    """Database name; not postgres or a template."""
    owner: str = setting(kind="sql_identifier")
    """Owning role (one of database.roles)."""
    extensions: tuple[str, ...] = setting(default=(), kind="sql_identifier", unique=True)
    """Extensions created in the database (``timescaledb``)."""

    def __post_init__(self) -> None:
        if self.name in RESERVED_DATABASES:
            raise FieldProblem("name", f"{self.name!r} is reserved by PostgreSQL")


@dataclass(frozen=True, kw_only=True)
class GrantSettings:
    role: str = setting(kind="sql_identifier")
    """Role that receives the privilege."""
    database: str = setting(kind="sql_identifier")
    """Database it applies to."""
    privilege: Literal["connect", "read", "write", "all"]
    """connect, read (SELECT), write (read + DML and temporary tables) or all."""


@dataclass(frozen=True, kw_only=True)
class BackupSettings:
    schedule: str = setting(kind="cron")
    """When pg_dump runs (cluster time zone, UTC)."""
    bucket: str = setting(default="backups", kind="bucket")
    """Object storage bucket the dumps go to."""
    storage_user: str = setting(default="database-backup", kind="dns_label")
    """Object storage user (access key) the backup job uses."""


@dataclass(frozen=True, kw_only=True)
class DatabaseSettings:
    replicas: int = setting(range=(0, 5))
    """Streaming read replicas next to the primary."""
    storage_size: str = setting(quantity="memory", quantity_range=("1Gi", "10Ti"))
    """Data volume per pod."""
    resources: Resources = setting()
    """Per-pod requests and limits (primary and replicas)."""
    roles: tuple[RoleSettings, ...] = setting(items=(1, 100))
    """Application roles."""
    databases: tuple[DatabaseSpec, ...] = setting(items=(1, 100))
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
        for index, db in enumerate(self.databases):
            if db.owner not in roles:
                raise FieldProblem(("databases", str(index), "owner"), f"{db.owner!r} is not one of the roles")
        pairs: set[tuple[str, str]] = set()
        for index, grant in enumerate(self.grants):
            if grant.role not in roles:
                raise FieldProblem(("grants", str(index), "role"), f"{grant.role!r} is not one of the roles")
            if grant.database not in names:
                raise FieldProblem(
                    ("grants", str(index), "database"), f"{grant.database!r} is not one of the databases"
                )
            if (grant.role, grant.database) in pairs:
                raise FieldProblem(("grants", str(index)), f"{grant.role!r} already has a grant on {grant.database!r}")
            pairs.add((grant.role, grant.database))


@dataclass(frozen=True, kw_only=True)
class Bucket:
    name: str = setting(kind="bucket")
    """Bucket name."""
    anonymous_read: bool = setting(default=False)
    """Anyone may download (open data)."""


@dataclass(frozen=True, kw_only=True)
class StorageUser:
    name: str = setting(pattern=r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]", describe="a DNS label of at least 3 characters")
    """Access key (MinIO wants at least 3 characters); the secret key is the secret
    ``object-storage-secret-key-<name>``."""
    buckets: tuple[str, ...] = setting(kind="bucket", items=(1, 100), unique=True)
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
    buckets: tuple[Bucket, ...] = setting(items=(1, 100))
    """Buckets created by the setup job."""
    users: tuple[StorageUser, ...] = setting(items=(1, 100))
    """Per-application access keys and their bucket policies."""

    def __post_init__(self) -> None:
        if self.mode == "standalone" and self.replicas != 1:
            raise ValueError(f"mode standalone needs replicas 1, got {self.replicas}")
        if self.mode == "distributed" and (self.replicas < 4 or self.replicas % 2):
            raise ValueError(f"mode distributed needs an even number of replicas from 4 to 16, got {self.replicas}")
        _unique(self.buckets, "buckets")
        _unique(self.users, "users")
        buckets = {b.name for b in self.buckets}
        for index, user in enumerate(self.users):
            missing = sorted(set(user.buckets) - buckets)
            if missing:
                raise FieldProblem(("users", str(index), "buckets"), f"unknown bucket(s) {', '.join(missing)}")


@dataclass(frozen=True, kw_only=True)
class DatabaseAccess:
    name: str = setting(kind="sql_identifier")
    """Database the API connects to."""
    role: str = setting(kind="sql_identifier")
    """Role it connects as (a login role with a grant on the database, never its owner: the
    running API gets DML only)."""
    migrations: bool = setting(default=False)
    """The API owns the database's schema: before its release rolls out, a Job runs the image's
    ``python -m <api>.migrate`` as the database's owner (the running API does not migrate)."""


@dataclass(frozen=True, kw_only=True)
class ApiSettings:
    """One city API: a release of charts/city-api named after its key in ``city_apis``."""

    name: str = setting(from_key=True)
    """The API's key in ``city_apis`` (``device_registry``); also the name of its release in
    ``releases.components``."""
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
    broker_client: str | None = setting(default=None, kind="dns_label")
    """Device class whose MQTT credentials the API uses, or null."""
    broker_all_pods: bool = setting(default=False)
    """Connect to every broker pod by its own DNS name (the telemetry ingest)."""
    storage_user: str | None = setting(default=None, kind="dns_label")
    """Object storage user whose access key the API uses, or null."""
    operator_clients: tuple[str, ...] = setting(default=(), kind="dns_label", items=(0, 20), unique=True)
    """Operator clients of the API (``operator``, ``verify``): each gets its own bearer token, the
    stack secret ``api-token-<app>-<client>``, handed to the API in its ``operator-tokens`` Secret
    (OPERATOR_TOKENS). An API that lists none gets no Secret; device-registry then refuses every
    request under /v1 (services/device_registry/auth.py)."""
    extra_env: Mapping[str, str] = setting(default_factory=dict, key_kind="env_var", items=(0, 50))
    """Escape hatch: extra non-secret environment variables; never a credential, never one of
    the variables the program sets (API_PROVIDED_ENV)."""

    @property
    def app(self) -> str:
        """The API's Kubernetes name (``device-registry``): Helm release ``<env>-<app>``, host name
        ``<app>.<env>.<base domain>``, ``app.kubernetes.io/component``."""
        return api_app(self.name)

    def __post_init__(self) -> None:
        if self.max_replicas < self.replicas:
            raise FieldProblem("max_replicas", f"must be at least replicas ({self.replicas}), got {self.max_replicas}")
        for name, value in self.extra_env.items():
            if name in API_PROVIDED_ENV:
                raise FieldProblem(
                    ("extra_env", name),
                    "the program sets this variable (from a ConfigMap or a Secret); it cannot be overridden",
                )
            if _SECRET_NAME_RE.search(name) or _URL_USERINFO_RE.search(value):
                raise FieldProblem(
                    ("extra_env", name),
                    "looks like a credential; extra_env is plain text: put secrets in the stack file, never here",
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

    def __post_init__(self) -> None:
        for kind in ("cpu", "memory"):
            request, limit, largest = (
                parse_quantity(getattr(c, kind)) for c in (self.default_request, self.default_limit, self.max)
            )
            if limit < request:
                raise FieldProblem(("default_limit", kind), f"must be at least default_request.{kind}")
            if largest < limit:
                raise FieldProblem(("max", kind), f"must be at least default_limit.{kind}")


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
class VerifySettings:
    """What `smartnation verify ENV` holds the deployed environment to."""

    reading_bound_seconds: int = setting(default=10, range=(1, 600))
    """Seconds a reading may take from the broker's acknowledgement to being served by
    open-data-api (`--reading-bound` overrides it for one run)."""
    settle_seconds: int = setting(default=180, range=(0, 1800))
    """Seconds the workloads may take to become ready before verify's first check fails: after
    the clusters restart, Pods come back in their own time and an update with nothing to change
    does not wait for them (`--settle` overrides it for one run)."""


MOVE_PHASES = ("replicate", "cutover", "complete")
"""A move's phases in order (docs/move.md); each one reviewed `pulumi up`."""
MOVE_ROLLBACK = "rollback"
"""The way back to the old site after a cutover (docs/move.md, section 10): beside MOVE_PHASES, not
in their order, so no forward phase "skips" it and it skips none."""


@dataclass(frozen=True, kw_only=True)
class MoveSettings:
    """An environment moving, with its data, from its ``cluster`` to another (docs/move.md)."""

    to: str = setting(pattern=DNS_LABEL, describe="a cluster profile name")
    """The cluster profile the environment moves to; ``cluster`` stays where it comes from."""
    phase: Literal["replicate", "cutover", "complete", "rollback"]
    """Where the move stands: replicate, then cutover, then complete (MOVE_PHASES); or, after the
    cutover, rollback (MOVE_ROLLBACK): the old site serves again."""


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
    city_apis: Mapping[str, ApiSettings] = setting(key_kind="component_name", items=(1, 50))
    """The city APIs by name, each a release of charts/city-api with its release in
    ``releases.components.<name>``. A new API is one entry here plus its release: no code change."""
    guardrails: GuardrailsSettings = setting()
    """Namespace quota and limits; they must hold every workload at its largest (footprint.py)."""
    verify: VerifySettings = setting(default_factory=VerifySettings)
    """The post-deploy checks' bounds (`smartnation verify`)."""
    move: MoveSettings | None = setting(default=None)
    """A move to another cluster in progress (settings/move.py checks it; docs/move.md)."""
    move_complete: bool = setting(default=False)
    """Set once the environment's move is over, its Pulumi state included (`smartnation state move`):
    for production the data-residency list becomes final (smartnation_policy.residency)."""

    def __post_init__(self) -> None:
        for name in self.city_apis:
            if name in PLATFORM_COMPONENTS or name.startswith(tuple(f"{c}_" for c in PLATFORM_COMPONENTS)):
                raise FieldProblem(
                    ("city_apis", name),
                    f"an API may not be named after a platform component ({', '.join(PLATFORM_COMPONENTS)}) "
                    "or start with one and '_': its release and its Kubernetes names would be that component's",
                )
        # Imported here: footprint reads these models' fields.
        from smartnation.settings.footprint import needs, workloads

        quota = self.guardrails.quota
        for field, need in needs(self).items():
            value = getattr(quota, field)
            amount = value if isinstance(value, int) else parse_quantity(str(value))
            if amount < need.amount * (1 - 1e-9):
                raise FieldProblem(
                    ("guardrails", "quota", field),
                    f"{value!r} is below what the workloads need with every API at its HPA ceiling and the "
                    f"jobs running: {_amount(field, need.amount)} ({need.detail})",
                )
        largest = self.guardrails.limit_range.max
        for workload in workloads(self):
            for kind in ("cpu", "memory"):
                for section in ("requests", "limits"):
                    wanted = getattr(getattr(workload.resources, section), kind)
                    if parse_quantity(str(wanted)) > parse_quantity(str(getattr(largest, kind))):
                        raise FieldProblem(
                            ("guardrails", "limit_range", "max", kind),
                            f"{getattr(largest, kind)!r} is below {workload.name}'s {section}.{kind} ({wanted!r}); "
                            "the LimitRange would refuse its pods",
                        )


def _amount(field: str, amount: float) -> str:
    if field in ("pods", "persistent_volume_claims"):
        return str(int(amount))
    if "memory" in field or "storage" in field:
        return f"{amount / 2**30:g}Gi"
    return f"{amount:g}"


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
    city_apis: Mapping[str, ApiSettings]
    """The city APIs by name."""
    guardrails: GuardrailsSettings
    """Namespace quota and limits."""
    verify: VerifySettings = VerifySettings()
    """The post-deploy checks' bounds."""
    move: MoveSettings | None = None
    """A move to another cluster in progress, if any."""
    move_complete: bool = False
    """The environment's move is over, its state included (EnvironmentSpec.move_complete)."""
