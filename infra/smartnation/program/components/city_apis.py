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
from smartnation.program.components import child_options, pods, require_provider
from smartnation.program.components.certificates import certificate
from smartnation.settings.models import ApiSettings, CityApisSettings, ClusterProfile, Releases

API_PORT = 8080

CHART_PATH = CHART


def chart_version(chart: Path = CHART_PATH) -> str:
    """``version`` of the local chart (releases.chart_version must equal it)."""
    return str(yaml.safe_load((chart / "Chart.yaml").read_text(encoding="utf-8"))["version"])


@dataclass(frozen=True)
class Connections:
    """Where the APIs find the platform services; names and URLs only, never credentials."""

    mqtt_url: pulumi.Input[str]
    """Plain MQTT URL of the broker Service (any pod)."""
    mqtt_pod_urls: pulumi.Input[list[str]]
    """Plain MQTT URL of each broker pod."""
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


@dataclass(frozen=True)
class CityApisArgs:
    environment: str
    """Environment name; release names are <env>-<api>."""
    namespace: pulumi.Input[str]
    """Namespace to deploy into."""
    settings: CityApisSettings
    """Per-API replicas, autoscaling, resources and which services each uses."""
    releases: Releases
    """Images of the APIs and the chart version."""
    cluster: ClusterProfile
    """Target cluster: registry, ingress class/annotations, DNS zone, node pool."""
    connections: Connections
    """Service endpoints and the Secrets that hold credentials."""
    chart_path: str = str(CHART_PATH)
    """Local chart directory."""


def chart_values(
    *,
    environment: str,
    app: str,
    api: ApiSettings,
    releases: Releases,
    cluster: ClusterProfile,
    config_maps: Sequence[pulumi.Input[str]],
    secrets: Sequence[pulumi.Input[str]],
    pod_annotations: Mapping[str, pulumi.Input[str]] | None = None,
) -> dict[str, Any]:
    """Values of one charts/city-api release (pure: the contract tests render them with helm)."""
    n = naming.names(environment, app)
    release = getattr(releases.components, app.replace("-", "_"))
    ha = api.replicas > 1
    return {
        "image": {"repository": f"{cluster.registry.default}/{release.repository}", "tag": release.tag},
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
            "tlsSecretName": n.child("tls"),
        },
        "nodeSelector": pods.node_selector(cluster, "stateless"),
        "zoneSpread": {"enabled": True, "whenUnsatisfiable": "DoNotSchedule" if ha else "ScheduleAnyway"},
        "podLabels": {naming.TIER_LABEL: naming.API_TIER, naming.ENVIRONMENT_LABEL: environment},
        "podAnnotations": dict(pod_annotations or {}),
        "envFromConfigMaps": list(config_maps),
        "envFromSecrets": list(secrets),
        "extraEnv": [{"name": k, "value": v} for k, v in sorted(api.extra_env.items())],
    }


def _digest(data: Mapping[str, pulumi.Input[str]]) -> pulumi.Output[str]:
    keys = sorted(data)
    return pulumi.Output.all(*[data[k] for k in keys]).apply(
        lambda values: hashlib.sha256(json.dumps(dict(zip(keys, values, strict=True))).encode()).hexdigest()
    )


class CityApis(pulumi.ComponentResource):
    """Three releases of charts/city-api plus one connection ConfigMap each."""

    api_urls: pulumi.Output[dict[str, str]]
    """API name -> public HTTPS URL."""
    helm_releases: pulumi.Output[dict[str, str]]
    """API name -> Helm release name."""

    def __init__(self, name: str, args: CityApisArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("smartnation:city_apis:CityApis", name, None, opts)
        self._provider = require_provider(opts, "CityApis")
        urls: dict[str, str] = {}
        releases: dict[str, str] = {}
        for app, api in args.settings.items():
            release = self._deploy(name, app, api, args)
            releases[app] = release
            urls[app] = f"https://{naming.api_hostname(app, args.environment, args.cluster.ingress.base_domain)}"
        self.api_urls = pulumi.Output.from_input(urls)
        self.helm_releases = pulumi.Output.from_input(releases)
        self.register_outputs({"api_urls": self.api_urls, "helm_releases": self.helm_releases})

    def _deploy(self, name: str, app: str, api: ApiSettings, args: CityApisArgs) -> str:
        n = naming.names(args.environment, app)
        c = args.connections
        release = getattr(args.releases.components, app.replace("-", "_"))

        data: dict[str, pulumi.Input[str]] = {"SMARTNATION_ENVIRONMENT": args.environment}
        secret_refs: list[pulumi.Input[str]] = []
        if api.database is not None:
            data |= {
                "PGHOST": c.database_host,
                "PGHOST_READONLY": c.database_read_host,
                "PGPORT": "5432",
                "PGDATABASE": api.database.name,
            }
            secret_refs.append(pulumi.Output.from_input(c.database_role_secrets)[api.database.role])
        if api.broker_client is not None:
            data["MQTT_URL"] = c.mqtt_url
            if api.broker_all_pods:
                data["MQTT_BROKER_URLS"] = pulumi.Output.from_input(c.mqtt_pod_urls).apply(",".join)
            secret_refs.append(pulumi.Output.from_input(c.broker_client_secrets)[api.broker_client])
        if api.storage_user is not None:
            data["S3_ENDPOINT"] = c.s3_endpoint
            secret_refs.append(pulumi.Output.from_input(c.storage_user_secrets)[api.storage_user])

        connections = k8s.core.v1.ConfigMap(
            f"{name}-{app}-connections",
            metadata={
                "namespace": args.namespace,
                "name": n.child("connections"),
                "labels": n.labels("api", release.version),
            },
            data=data,
            opts=child_options(self, self._provider),
        )

        values = chart_values(
            environment=args.environment,
            app=app,
            api=api,
            releases=args.releases,
            cluster=args.cluster,
            config_maps=[connections.metadata.name],
            secrets=secret_refs,
            pod_annotations={"smartnation.mc/connections-sha256": _digest(data)},
        )
        hostname = naming.api_hostname(app, args.environment, args.cluster.ingress.base_domain)
        tls = certificate(
            f"{name}-{app}-tls",
            namespace=args.namespace,
            secret_name=n.child("tls"),
            dns_names=[hostname],
            issuer=args.cluster.ingress.tls_issuer,
            labels=n.labels("api", release.version),
            opts=child_options(self, self._provider),
        )
        k8s.helm.v4.Chart(
            f"{name}-{app}",
            k8s.helm.v4.ChartArgs(
                chart=args.chart_path,
                name=n.name,
                namespace=args.namespace,
                values=values,
            ),
            opts=child_options(self, self._provider, depends_on=[connections, tls]),
        )
        return n.name
