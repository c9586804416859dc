"""The city APIs: our charts/city-api chart, once per API, wired through Secrets and ConfigMaps."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import yaml

from smartnation.paths import CHART
from smartnation.program import naming
from smartnation.program.components import (
    api_tokens,
    broker,
    child_options,
    database,
    object_storage,
    pods,
    require_provider,
)
from smartnation.program.components.certificates import certificate
from smartnation.program.components.stateful import secret_digest, sha256
from smartnation.program.placement import Placement
from smartnation.settings import derived_names, stack_secrets
from smartnation.settings.models import ApiSettings, Releases

API_PORT = 8080

CONNECTIONS_HASH = "smartnation.mc/connections-sha256"
"""Pod-template annotation: a digest of the connections ConfigMap (a new endpoint rolls the Pods)."""
CREDENTIALS_HASH = "smartnation.mc/credentials-sha256"
"""Pod-template annotation: a digest of every password and key the API reads from its Secrets
(database role, broker client, storage user). The Pods read them once, through ``envFrom``, so a
rotated value must roll them; the digest is one-way and says nothing about the values."""
DATABASE_CA_DIR = "/etc/smartnation/database-ca"
"""Where an API that uses the database finds the issuer's CA (``ca.crt``) to verify the server."""
BROKER_CA_DIR = "/etc/smartnation/broker-ca"
"""Where an API that uses the broker finds the issuer's CA: the internal listener serves TLS too."""

MIGRATE_COMMAND = ["/usr/bin/python3.11", "-m"]
"""How the migration Job starts ``<package>.migrate`` in the API's image (the image's interpreter,
as its entrypoint ``/usr/bin/python3.11 -m <package>`` does: tooling/images/recipes/city_apis.py)."""
MIGRATE_ON_START = "MIGRATE_ON_START"
"""Told ``false`` in the connections ConfigMap of an API whose migrations the Job runs: the running
API connects with DML only and could not create its tables."""
API_UID = 10001
"""The user the APIs' images run as (charts/city-api's securityContext)."""
MIGRATE_BACKOFF_LIMIT = 6
MIGRATE_DEADLINE_SECONDS = 900

CHART_PATH = CHART


def chart_version(chart: Path = CHART_PATH) -> str:
    """``version`` of the local chart (releases.chart_version must equal it)."""
    return str(yaml.safe_load((chart / "Chart.yaml").read_text(encoding="utf-8"))["version"])


@dataclass(frozen=True)
class Connections:
    """Where the APIs find the platform services; names and URLs only, never credentials."""

    mqtt_url: pulumi.Input[str]
    """MQTT over TLS URL of the broker's internal Service (any pod)."""
    mqtt_pod_urls: pulumi.Input[list[str]]
    """MQTT over TLS URL of each broker pod."""
    broker_client_secrets: pulumi.Input[Mapping[str, str]]
    """Device class -> Secret with MQTT_USERNAME/MQTT_PASSWORD."""
    database_host: pulumi.Input[str]
    """Read-write PostgreSQL host."""
    database_read_host: pulumi.Input[str]
    """Read-only PostgreSQL host (replicas, or the primary when there are none)."""
    database_role_secrets: pulumi.Input[Mapping[str, str]]
    """Role -> Secret with PGUSER/PGPASSWORD."""
    s3_endpoint: pulumi.Input[str]
    """S3 endpoint URL."""
    storage_user_secrets: pulumi.Input[Mapping[str, str]]
    """Storage user -> Secret with AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY."""
    database_owners: Mapping[str, str] | None = None
    """Database -> its owner role (whose Secret in ``database_role_secrets`` only the migration
    Job mounts); required for an API with ``database.migrations``."""


@dataclass(frozen=True)
class CityApisArgs:
    placement: Placement
    """Environment (release names are <env>-<api>), namespace and cluster (registry, ingress
    class and annotations, DNS zone, node pool)."""
    settings: Mapping[str, ApiSettings]
    """The APIs by name (``city_apis``): per API replicas, autoscaling, resources and which
    services it uses."""
    releases: Releases
    """The chart version and, under each API's name, its image."""
    connections: Connections
    """Service endpoints and the Secrets that hold credentials."""
    chart_path: str = str(CHART_PATH)
    """Local chart directory."""
    migrate: bool = True
    """Whether each API's migration Job runs here. Not on a move's new site before it completes:
    its database is a standby, whose schema arrives by replication and which refuses DDL (the
    running APIs check the schema themselves)."""


def chart_values(
    *,
    placement: Placement,
    api: ApiSettings,
    releases: Releases,
    config_maps: Sequence[pulumi.Input[str]],
    secrets: Sequence[pulumi.Input[str]],
    pod_annotations: Mapping[str, pulumi.Input[str]] | None = None,
    ca_certificates: Sequence[Mapping[str, str]] = (),
) -> dict[str, Any]:
    """Values of one charts/city-api release (pure: the contract tests render them with helm)."""
    environment, cluster = placement.environment, placement.cluster
    app = api.app
    names = naming.names(environment, app)
    release = releases.components[api.name]
    ha = api.replicas > 1
    return {
        # The chart runs the digest; the tag labels the pods (app.kubernetes.io/version).
        "image": {
            "repository": f"{cluster.registry.default}/{release.repository}",
            "tag": release.tag,
            "digest": release.digest,
        },
        "component": app,
        "containerPort": API_PORT,
        "resources": pods.resources(api.resources),
        "replicaCount": api.replicas,
        "autoscaling": {
            "enabled": True,
            "minReplicas": api.replicas,
            "maxReplicas": api.max_replicas,
            "targetCPUUtilizationPercentage": api.target_cpu_utilization,
        },
        # With one replica (dev) a budget of 1 would block every node drain.
        "podDisruptionBudget": {"enabled": True, "minAvailable": max(api.replicas - 1, 0)},
        "ingress": {
            "enabled": True,
            "className": cluster.ingress.ingress_class,
            "annotations": dict(cluster.ingress.annotations),
            "host": naming.api_hostname(app, environment, cluster.ingress.base_domain),
            "tlsSecretName": names.child("tls"),
        },
        "nodeSelector": placement.node_selector("stateless"),
        "zoneSpread": {"enabled": True, "whenUnsatisfiable": "DoNotSchedule" if ha else "ScheduleAnyway"},
        "podLabels": {naming.TIER_LABEL: naming.API_TIER, naming.ENVIRONMENT_LABEL: environment},
        "podAnnotations": dict(pod_annotations or {}),
        "envFromConfigMaps": list(config_maps),
        "envFromSecrets": list(secrets),
        "caCertificates": [dict(ca) for ca in ca_certificates],
        "extraEnv": [{"name": k, "value": v} for k, v in sorted(api.extra_env.items())],
    }


def _digest(data: Mapping[str, pulumi.Input[str]]) -> pulumi.Output[str]:
    keys = sorted(data)
    return pulumi.Output.all(*[data[k] for k in keys]).apply(
        lambda values: hashlib.sha256(json.dumps(dict(zip(keys, values, strict=True))).encode()).hexdigest()
    )


class CityApis(pulumi.ComponentResource):
    """One release of charts/city-api per API in the settings, each with its connections
    ConfigMap and TLS Certificate."""

    api_urls: pulumi.Output[dict[str, str]]
    """API name -> public HTTPS URL."""
    helm_releases: pulumi.Output[dict[str, str]]
    """API name -> Helm release name."""

    def __init__(self, name: str, args: CityApisArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("smartnation:city_apis:CityApis", name, None, opts)
        provider = require_provider(opts, "CityApis")
        # The migration Jobs run after what the APIs depend on (the database's setup Job has made
        # the owner roles and their grants); a component's depends_on is not its children's.
        self._after = list((opts.depends_on if opts else None) or [])  # type: ignore[arg-type]
        urls: dict[str, str] = {}
        releases: dict[str, str] = {}
        for api in args.settings.values():
            releases[api.app], hostname = self._deploy(name, api, args, provider)
            urls[api.app] = f"https://{hostname}"
        self.api_urls = pulumi.Output.from_input(urls)
        self.helm_releases = pulumi.Output.from_input(releases)
        self.register_outputs({"api_urls": self.api_urls, "helm_releases": self.helm_releases})

    def _deploy(
        self, name: str, api: ApiSettings, args: CityApisArgs, provider: pulumi.ProviderResource
    ) -> tuple[str, str]:
        """The API's connections ConfigMap, its TLS Certificate and its chart release; returns
        the release name and the public hostname."""
        app = api.app
        names = args.placement.names(app)
        release = args.releases.components[api.name]
        data, secret_refs = _connections(args.placement.environment, api, args.connections)
        tokens = api_tokens.operator_tokens_secret(
            f"{name}-{app}-{api_tokens.SECRET_ROLE}",
            api,
            namespace=args.placement.namespace,
            secret_name=names.child(api_tokens.SECRET_ROLE),
            labels=names.labels("api", release.version),
            opts=child_options(self, provider),
        )
        if tokens is not None:
            secret_refs.append(tokens.metadata.name)
        connections = k8s.core.v1.ConfigMap(
            f"{name}-{app}-connections",
            metadata={
                "namespace": args.placement.namespace,
                "name": names.child("connections"),
                "labels": names.labels("api", release.version),
            },
            data=data,
            opts=child_options(self, provider),
        )
        values = chart_values(
            placement=args.placement,
            api=api,
            releases=args.releases,
            config_maps=[connections.metadata.name],
            secrets=secret_refs,
            pod_annotations={CONNECTIONS_HASH: _digest(data), CREDENTIALS_HASH: credentials_digest(api)},
            ca_certificates=_ca_certificates(args.placement.environment, api),
        )
        # The Certificate is for exactly the host the chart's Ingress serves.
        hostname = values["ingress"]["host"]
        tls = certificate(
            f"{name}-{app}-tls",
            namespace=args.placement.namespace,
            secret_name=values["ingress"]["tlsSecretName"],
            dns_names=[hostname],
            issuer=args.placement.cluster.ingress.tls_issuer,
            labels=names.labels("api", release.version),
            opts=child_options(self, provider),
        )
        after: list[pulumi.Resource] = [connections, tls]
        if api.database is not None and api.database.migrations and args.migrate:
            after.append(self._migration_job(name, api, args, provider, connections, values, _digest(data)))
        # With migrations, the release rolls out only once its schema is in place.
        k8s.helm.v4.Chart(
            f"{name}-{app}",
            k8s.helm.v4.ChartArgs(
                chart=args.chart_path, name=names.name, namespace=args.placement.namespace, values=values
            ),
            opts=child_options(self, provider, depends_on=after),
        )
        return names.name, hostname

    def _migration_job(
        self,
        name: str,
        api: ApiSettings,
        args: CityApisArgs,
        provider: pulumi.ProviderResource,
        connections: k8s.core.v1.ConfigMap,
        values: Mapping[str, Any],
        connections_digest: pulumi.Output[str],
    ) -> k8s.batch.v1.Job:
        """The Job that runs ``<package>.migrate`` from the release's image as the database's
        owner: the one place the owner's Secret is mounted (the API's Pods get their own role's).
        Named after everything its Pod template is made of (image, labels with the release's
        version, node pool, CA mounts) and the connections, so each release (or a move to another
        database) runs it once under a new name: a Job's template cannot be changed, and a
        replacement under the same name is refused by the API server (a release relabelled
        without a new image did that). The migrations are idempotent and the new Job is created
        before the old one goes."""
        assert api.database is not None
        owners = args.connections.database_owners or {}
        owner = owners.get(api.database.name)
        if owner is None:
            raise ValueError(f"city_apis.{api.name}: no owner known for database {api.database.name!r}")
        names = args.placement.names(api.app)
        release = args.releases.components[api.name]
        image = f"{values['image']['repository']}@{values['image']['digest']}"
        owner_secret = pulumi.Output.from_input(args.connections.database_role_secrets)[owner]
        # The API tier's NetworkPolicy lets it reach the database. Its own instance label (not the
        # release's): neither the Deployment, the Service nor a look-up of the release's Pods
        # takes the Job's Pod for one of the API's.
        instance = {"app.kubernetes.io/instance": names.child("migrate")}
        labels = {**names.labels("migrate", release.version), **instance, **values["podLabels"]}
        # The database's CA only: the Job talks to nothing else.
        cas = [ca for ca in values["caCertificates"] if ca["mountPath"] == DATABASE_CA_DIR]
        node_selector = args.placement.node_selector("stateful")
        template = json.dumps({"labels": labels, "node_selector": node_selector, "cas": cas}, sort_keys=True)
        digits = derived_names.MIGRATE_HASH_DIGITS
        job_name = connections_digest.apply(
            lambda digest: names.child(f"migrate-{sha256(image + template + digest)[:digits]}")
        )
        ca_volumes = [
            {
                "name": f"ca-{ca['name']}",
                "secret": {
                    "secret_name": ca["secretName"],
                    "default_mode": 0o444,
                    "items": [{"key": "ca.crt", "path": "ca.crt"}],
                },
            }
            for ca in cas
        ]
        container = pods.container(
            "migrate",
            image,
            pods.JOB_RESOURCES,  # as settings/footprint.py counts it
            command=[*MIGRATE_COMMAND, f"{api.name}.migrate"],
            env_from=[{"config_map_ref": {"name": connections.metadata.name}}, {"secret_ref": {"name": owner_secret}}],
            volume_mounts=[
                {"name": "tmp", "mount_path": "/tmp"},
                *({"name": f"ca-{ca['name']}", "mount_path": ca["mountPath"], "read_only": True} for ca in cas),
            ],
        )
        return k8s.batch.v1.Job(
            f"{name}-{api.app}-migrate",
            metadata={"namespace": args.placement.namespace, "name": job_name, "labels": labels},
            spec={
                "backoff_limit": MIGRATE_BACKOFF_LIMIT,
                "active_deadline_seconds": MIGRATE_DEADLINE_SECONDS,
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "automount_service_account_token": False,
                        "security_context": pods.pod_security_context(API_UID),
                        # Where the other Jobs run (the profile's stateful pool), beside the database.
                        "node_selector": node_selector,
                        "restart_policy": "Never",
                        "containers": [container],
                        "volumes": [pods.tmp_volume(), *ca_volumes],
                    },
                },
            },
            opts=child_options(self, provider, depends_on=[connections, *self._after], delete_before_replace=False),
        )


def credentials_digest(api: ApiSettings) -> pulumi.Output[str]:
    """One-way digest of the secret values ``api`` reads, from the stack's secrets (the same
    values the database, broker and object storage put in the Secrets it mounts)."""
    config = pulumi.Config(stack_secrets.CONFIG_NAMESPACE)
    keys: list[str] = []
    if api.database is not None:
        keys.append(stack_secrets.database_role_password(api.database.role))
    if api.broker_client is not None:
        keys.append(stack_secrets.broker_password(api.broker_client))
    if api.storage_user is not None:
        keys.append(stack_secrets.object_storage_secret_key(api.storage_user))
    keys.extend(api_tokens.token_keys(api))
    values = [config.require_secret(key) for key in keys]
    return secret_digest(values, lambda plain: sha256(json.dumps(dict(zip(keys, plain, strict=True)))))


def _ca_certificates(environment: str, api: ApiSettings) -> list[dict[str, str]]:
    """The issuer's CA for each server the API verifies: the database (verify-full), the broker's
    internal listener and MinIO (both TLS only), each from that server's own Secret."""
    cas: list[dict[str, str]] = []
    if api.database is not None:
        cas.append(_ca("database", database.tls_secret_name(environment), DATABASE_CA_DIR))
    if api.broker_client is not None:
        cas.append(_ca("broker", broker.tls_secret_name(environment), BROKER_CA_DIR))
    if api.storage_user is not None:
        cas.append(_ca("object-storage", object_storage.tls_secret_name(environment), object_storage.CA_DIR))
    return cas


def _ca(name: str, secret: str, mount_path: str) -> dict[str, str]:
    return {"name": name, "secretName": secret, "mountPath": mount_path}


def _connections(
    environment: str, api: ApiSettings, connections: Connections
) -> tuple[dict[str, pulumi.Input[str]], list[pulumi.Input[str]]]:
    """What one API is told about the services it uses: ConfigMap data (hosts, URLs, names) and
    the Secrets (credentials) it reads, by reference."""
    data: dict[str, pulumi.Input[str]] = {"SMARTNATION_ENVIRONMENT": environment}
    secret_refs: list[pulumi.Input[str]] = []
    if api.database is not None:
        data |= {
            "PGHOST": connections.database_host,
            "PGHOST_READONLY": connections.database_read_host,
            "PGPORT": str(database.PORT),
            "PGDATABASE": api.database.name,
            # libpq reads both: TLS, the server's certificate checked against the issuer's CA and
            # its name against PGHOST (pg_hba refuses the APIs without TLS).
            "PGSSLMODE": database.CLIENT_SSLMODE,
            "PGSSLROOTCERT": f"{DATABASE_CA_DIR}/ca.crt",
        }
        if api.database.migrations:
            data[MIGRATE_ON_START] = "false"
        secret_refs.append(pulumi.Output.from_input(connections.database_role_secrets)[api.database.role])
    if api.broker_client is not None:
        data["MQTT_URL"] = connections.mqtt_url
        # paho's TLS (mqtts://) loads Python's default verify paths, which SSL_CERT_FILE names:
        # the broker's certificate is checked against the issuer's CA and the host dialled.
        data["SSL_CERT_FILE"] = f"{BROKER_CA_DIR}/ca.crt"
        if api.broker_all_pods:
            data["MQTT_BROKER_URLS"] = pulumi.Output.from_input(connections.mqtt_pod_urls).apply(",".join)
        secret_refs.append(pulumi.Output.from_input(connections.broker_client_secrets)[api.broker_client])
    if api.storage_user is not None:
        data["S3_ENDPOINT"] = connections.s3_endpoint
        # boto3 verifies MinIO's certificate against this bundle (it ignores SSL_CERT_FILE).
        data[object_storage.BOTO3_CA_ENV] = object_storage.CA_FILE
        secret_refs.append(pulumi.Output.from_input(connections.storage_user_secrets)[api.storage_user])
    return data, secret_refs
