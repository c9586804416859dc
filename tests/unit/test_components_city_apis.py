"""Unit: the city APIs component (smartnation/program/components/city_apis.py), built alone under
the Pulumi mocks with stand-in connections.

The built stacks (test_chart.py, test_secret_consumers.py, test_least_privilege.py) check the
releases as the whole platform makes them; here, per API, what it is told and given: the
connections ConfigMap (hosts, URLs, the CA paths its clients read), the Secrets it reads by
reference and nothing more, the annotations that roll it when a connection or a credential
changes, the chart values, the Certificate for its own host, and the migration Job (the owner's
Secret mounted there only, a new name for every new template, after the database).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

import pulumi
import pytest
import yaml

from smartnation.program import naming
from smartnation.program.components import city_apis
from smartnation.program.placement import Placement
from smartnation.settings import load_settings
from smartnation.settings.models import ApiSettings, DatabaseAccess, Settings
from smartnation.settings.stack_secrets import (
    api_token,
    broker_password,
    database_role_password,
    object_storage_secret_key,
)
from tests.unit.component_build import BuiltComponent, build_component
from tests.unit.harness import REPO_ENVIRONMENTS, Registered, install_mocks, run

pytestmark = pytest.mark.unit

CONFIGMAP = "kubernetes:core/v1:ConfigMap"
SECRET = "kubernetes:core/v1:Secret"
JOB = "kubernetes:batch/v1:Job"
CHART = "kubernetes:helm.sh/v4:Chart"
CERTIFICATE = "kubernetes:cert-manager.io/v1:Certificate"

CONNECTIONS = city_apis.Connections(
    mqtt_url="mqtts://broker-internal:1883",
    mqtt_pod_urls=["mqtts://broker-0:1883", "mqtts://broker-1:1883"],
    broker_client_secrets={"device-registry": "secret-mqtt-registry", "telemetry-ingest": "secret-mqtt-ingest"},
    database_host="db-primary",
    database_read_host="db-replicas",
    database_role_secrets={
        "device_registry": "secret-pg-registry",
        "telemetry_ingest": "secret-pg-ingest",
        "open_data": "secret-pg-open-data",
        "devices_owner": "secret-pg-devices-owner",
        "telemetry_owner": "secret-pg-telemetry-owner",
    },
    s3_endpoint="https://s3.example:9000",
    storage_user_secrets={"telemetry-ingest": "secret-s3-ingest", "open-data-api": "secret-s3-open-data"},
    database_owners={"devices": "devices_owner", "telemetry": "telemetry_owner"},
)


@pytest.fixture(scope="module", params=["dev", "production"])
def settings(request: pytest.FixtureRequest) -> Settings:
    return load_settings(request.param, REPO_ENVIRONMENTS)


def _build(
    settings: Settings,
    connections: city_apis.Connections = CONNECTIONS,
    secrets: dict[str, str] | None = None,
    apis: dict[str, ApiSettings] | None = None,
) -> BuiltComponent:
    def make(placement, opts) -> dict[str, Any]:
        # What the APIs wait for (the database's setup Job in the platform).
        before = pulumi.CustomResource("test:index:Before", "before", {}, opts=opts)
        component = city_apis.CityApis(
            "apis",
            city_apis.CityApisArgs(
                placement,
                apis if apis is not None else settings.city_apis,
                releases=settings.releases,
                connections=connections,
            ),
            pulumi.ResourceOptions(provider=opts.provider, depends_on=[before]),
        )
        return {"api_urls": component.api_urls, "helm_releases": component.helm_releases}

    return build_component(settings, make, secrets=secrets)


# Built for each test (in well under a second): a build shared by the module would credit its code
# to the first test alone when mutmut records which tests reach which function.
@pytest.fixture
def built(settings: Settings) -> BuiltComponent:
    return _build(settings)


def _chart(built: BuiltComponent, app: str) -> dict[str, Any]:
    return built.one(CHART, f"apis-{app}").plain


def _connections(built: BuiltComponent, app: str) -> dict[str, Any]:
    return built.one(CONFIGMAP, f"apis-{app}-connections").plain


def test_each_api_is_one_release_under_its_own_host(settings, built) -> None:
    base = settings.cluster.ingress.base_domain
    apps = [api.app for api in settings.city_apis.values()]
    assert built.outputs["api_urls"] == {app: f"https://{app}.{settings.environment}.{base}" for app in apps}
    assert built.outputs["helm_releases"] == {app: f"{settings.environment}-{app}" for app in apps}
    assert len(built.of_type(CHART)) == len(apps)
    for app in apps:
        chart = _chart(built, app)
        assert chart["name"] == f"{settings.environment}-{app}"
        assert chart["namespace"] == naming.namespace(settings.environment)
        assert chart["chart"] == str(city_apis.CHART_PATH)
        # The Certificate is for exactly the host the release's Ingress serves, into its Secret.
        certificate = built.one(CERTIFICATE, f"apis-{app}-tls").plain
        ingress = chart["values"]["ingress"]
        assert certificate["spec"]["dnsNames"] == [ingress["host"]]
        assert certificate["spec"]["secretName"] == ingress["tlsSecretName"] == f"{settings.environment}-{app}-tls"
        assert certificate["spec"]["issuerRef"]["name"] == settings.cluster.ingress.tls_issuer


def test_the_device_registry_is_told_where_everything_it_uses_is(settings, built) -> None:
    connections = _connections(built, "device-registry")
    assert connections["metadata"]["name"] == f"{settings.environment}-device-registry-connections"
    assert connections["data"] == {
        "SMARTNATION_ENVIRONMENT": settings.environment,
        "PGHOST": "db-primary",
        "PGHOST_READONLY": "db-replicas",
        "PGPORT": "5432",
        "PGDATABASE": "devices",
        "PGSSLMODE": "verify-full",
        "PGSSLROOTCERT": "/etc/smartnation/database-ca/ca.crt",
        # Its migrations run in the Job, as the owner: the API itself could not create tables.
        "MIGRATE_ON_START": "false",
        "MQTT_URL": "mqtts://broker-internal:1883",
        "SSL_CERT_FILE": "/etc/smartnation/broker-ca/ca.crt",
        # Commands reach every broker pod.
        "MQTT_BROKER_URLS": "mqtts://broker-0:1883,mqtts://broker-1:1883",
    }


def test_an_api_without_migrations_or_broker_is_told_only_its_database_and_storage(settings, built) -> None:
    assert _connections(built, "open-data-api")["data"] == {
        "SMARTNATION_ENVIRONMENT": settings.environment,
        "PGHOST": "db-primary",
        "PGHOST_READONLY": "db-replicas",
        "PGPORT": "5432",
        "PGDATABASE": "telemetry",
        "PGSSLMODE": "verify-full",
        "PGSSLROOTCERT": "/etc/smartnation/database-ca/ca.crt",
        "S3_ENDPOINT": "https://s3.example:9000",
        "AWS_CA_BUNDLE": "/etc/smartnation/object-storage-ca/ca.crt",
    }


def test_a_broker_client_on_one_pod_gets_no_pod_list(settings) -> None:
    api = dataclasses.replace(settings.city_apis["telemetry_ingest"], broker_all_pods=False)
    built = _build(settings, apis={"telemetry_ingest": api})
    data = _connections(built, "telemetry-ingest")["data"]
    assert data["MQTT_URL"] == "mqtts://broker-internal:1883"
    assert "MQTT_BROKER_URLS" not in data


def test_each_api_reads_its_own_credentials_and_its_cas_only(settings, built) -> None:
    env = settings.environment
    expected = {
        "device-registry": (
            ["secret-pg-registry", "secret-mqtt-registry", f"{env}-device-registry-operator-tokens"],
            ["database", "broker"],
        ),
        "telemetry-ingest": (
            ["secret-pg-ingest", "secret-mqtt-ingest", "secret-s3-ingest"],
            ["database", "broker", "object-storage"],
        ),
        "open-data-api": (["secret-pg-open-data", "secret-s3-open-data"], ["database", "object-storage"]),
    }
    ca_of = {
        "database": (f"{env}-database-tls", "/etc/smartnation/database-ca"),
        "broker": (f"{env}-broker-tls", "/etc/smartnation/broker-ca"),
        "object-storage": (f"{env}-object-storage-tls", "/etc/smartnation/object-storage-ca"),
    }
    for app, (secrets, cas) in expected.items():
        values = _chart(built, app)["values"]
        assert values["envFromSecrets"] == secrets
        assert values["envFromConfigMaps"] == [f"{env}-{app}-connections"]
        assert values["caCertificates"] == [
            {"name": ca, "secretName": ca_of[ca][0], "mountPath": ca_of[ca][1]} for ca in cas
        ]


def test_the_operator_tokens_are_one_secret_of_the_api_that_has_operator_clients(settings, built) -> None:
    env = settings.environment
    (tokens,) = built.of_type(SECRET)
    assert tokens.plain["metadata"]["name"] == f"{env}-device-registry-operator-tokens"
    assert tokens.plain["metadata"]["labels"]["app.kubernetes.io/component"] == "api"


def _annotations(built: BuiltComponent, app: str) -> dict[str, str]:
    return _chart(built, app)["values"]["podAnnotations"]


def test_a_changed_connection_rolls_the_api_and_the_digest_is_of_the_data(settings, built) -> None:
    data = _connections(built, "open-data-api")["data"]
    annotations = _annotations(built, "open-data-api")
    keys = sorted(data)
    expected = hashlib.sha256(json.dumps({k: data[k] for k in keys}).encode()).hexdigest()
    assert annotations[city_apis.CONNECTIONS_HASH] == expected
    moved = _build(settings, dataclasses.replace(CONNECTIONS, database_host="db-elsewhere"))
    assert _annotations(moved, "open-data-api")[city_apis.CONNECTIONS_HASH] != expected


@pytest.mark.parametrize(
    ("app", "key"),
    [
        ("device-registry", database_role_password("device_registry")),
        ("device-registry", broker_password("device-registry")),
        ("device-registry", api_token("device-registry", "operator")),
        ("telemetry-ingest", object_storage_secret_key("telemetry-ingest")),
        ("open-data-api", database_role_password("open_data")),
    ],
)
def test_a_rotated_credential_rolls_the_api_that_reads_it_and_no_other(settings, built, app: str, key: str) -> None:
    rotated = _build(settings, secrets={key: "rotated-value"})
    for other in (api.app for api in settings.city_apis.values()):
        before = _annotations(built, other)
        after = _annotations(rotated, other)
        assert before[city_apis.CONNECTIONS_HASH] == after[city_apis.CONNECTIONS_HASH]
        changed = before[city_apis.CREDENTIALS_HASH] != after[city_apis.CREDENTIALS_HASH]
        assert changed is (other == app), other


def test_the_credentials_digest_is_of_the_keys_and_values_the_api_reads(settings) -> None:
    api = settings.city_apis["telemetry_ingest"]
    keys = [
        database_role_password("telemetry_ingest"),
        broker_password("telemetry-ingest"),
        object_storage_secret_key("telemetry-ingest"),
    ]
    values = {key: f"value-of-{key}" for key in keys}
    built = build_component(settings, lambda p, o: {"digest": city_apis.credentials_digest(api)}, secrets=values)
    assert built.outputs["digest"] == hashlib.sha256(json.dumps(values).encode()).hexdigest()


def test_the_chart_values_say_what_the_settings_say(settings) -> None:
    placement = Placement.of(settings.environment, settings.cluster, protect_state=False)
    for api in settings.city_apis.values():
        values = city_apis.chart_values(
            placement=placement,
            api=api,
            releases=settings.releases,
            config_maps=["cm"],
            secrets=["s1", "s2"],
            pod_annotations={"a": "b"},
            ca_certificates=[{"name": "x", "secretName": "y", "mountPath": "/z"}],
        )
        release = settings.releases.components[api.name]
        ha = api.replicas > 1
        assert values == {
            "image": {
                "repository": f"{settings.cluster.registry.default}/{release.repository}",
                "tag": release.tag,
                "digest": release.digest,
            },
            "component": api.app,
            "containerPort": 8080,
            "resources": {
                "requests": {"cpu": api.resources.requests.cpu, "memory": api.resources.requests.memory},
                "limits": {"cpu": api.resources.limits.cpu, "memory": api.resources.limits.memory},
            },
            "replicaCount": api.replicas,
            "autoscaling": {
                "enabled": True,
                "minReplicas": api.replicas,
                "maxReplicas": api.max_replicas,
                "targetCPUUtilizationPercentage": api.target_cpu_utilization,
            },
            "podDisruptionBudget": {"enabled": True, "minAvailable": api.replicas - 1},
            "ingress": {
                "enabled": True,
                "className": settings.cluster.ingress.ingress_class,
                "annotations": dict(settings.cluster.ingress.annotations),
                "host": f"{api.app}.{settings.environment}.{settings.cluster.ingress.base_domain}",
                "tlsSecretName": f"{settings.environment}-{api.app}-tls",
            },
            "nodeSelector": placement.node_selector("stateless"),
            "zoneSpread": {"enabled": True, "whenUnsatisfiable": "DoNotSchedule" if ha else "ScheduleAnyway"},
            "podLabels": {"smartnation.mc/tier": "city-api", "smartnation.mc/environment": settings.environment},
            "podAnnotations": {"a": "b"},
            "envFromConfigMaps": ["cm"],
            "envFromSecrets": ["s1", "s2"],
            "caCertificates": [{"name": "x", "secretName": "y", "mountPath": "/z"}],
            "extraEnv": [{"name": k, "value": v} for k, v in sorted(api.extra_env.items())],
        }


def test_extra_env_is_passed_sorted_and_one_replica_may_be_evicted(settings) -> None:
    api = dataclasses.replace(settings.city_apis["open_data_api"], replicas=1, extra_env={"B": "2", "A": "1"})
    values = city_apis.chart_values(
        placement=Placement.of(settings.environment, settings.cluster, protect_state=False),
        api=api,
        releases=settings.releases,
        config_maps=[],
        secrets=[],
    )
    assert values["extraEnv"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    assert values["podDisruptionBudget"]["minAvailable"] == 0
    assert values["zoneSpread"]["whenUnsatisfiable"] == "ScheduleAnyway"
    # Two replicas are already spread over zones, as a hard rule.
    two = dataclasses.replace(api, replicas=2)
    placement = Placement.of(settings.environment, settings.cluster, protect_state=False)
    spread = city_apis.chart_values(
        placement=placement, api=two, releases=settings.releases, config_maps=[], secrets=[]
    )
    assert spread["zoneSpread"]["whenUnsatisfiable"] == "DoNotSchedule"
    assert spread["podDisruptionBudget"]["minAvailable"] == 1
    assert values["podAnnotations"] == {}
    assert values["caCertificates"] == []


# --- the migration Job ----------------------------------------------------------------------


def _migrate(built: BuiltComponent, app: str) -> Registered:
    return built.one(JOB, f"apis-{app}-migrate")


def test_only_apis_with_migrations_have_a_job_and_it_runs_as_the_owner(settings, built) -> None:
    env = settings.environment
    apps = {r.name.removeprefix("apis-").removesuffix("-migrate") for r in built.of_type(JOB)}
    assert apps == {a.app for a in settings.city_apis.values() if a.database and a.database.migrations}
    job = _migrate(built, "device-registry")
    spec = job.plain["spec"]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    release = settings.releases.components["device_registry"]
    assert container["image"] == f"{settings.cluster.registry.default}/{release.repository}@{release.digest}"
    assert container["command"] == ["/usr/bin/python3.11", "-m", "device_registry.migrate"]
    # The owner's Secret here, and only here; the connections as the API has them.
    assert container["envFrom"] == [
        {"configMapRef": {"name": f"{env}-device-registry-connections"}},
        {"secretRef": {"name": "secret-pg-devices-owner"}},
    ]
    # The database's CA only: the Job talks to nothing else.
    assert container["volumeMounts"] == [
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "ca-database", "mountPath": "/etc/smartnation/database-ca", "readOnly": True},
    ]
    assert pod["volumes"] == [
        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
        {
            "name": "ca-database",
            "secret": {
                "secretName": f"{env}-database-tls",
                "defaultMode": 0o444,
                "items": [{"key": "ca.crt", "path": "ca.crt"}],
            },
        },
    ]
    assert pod["restartPolicy"] == "Never"
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsUser"] == city_apis.API_UID == 10001
    # Beside the database, where the other Jobs run (the profile's stateful pool).
    placement = Placement.of(settings.environment, settings.cluster, protect_state=False)
    assert pod["nodeSelector"] == placement.node_selector("stateful")
    assert spec["backoffLimit"] == 6
    assert spec["activeDeadlineSeconds"] == 900
    assert job.delete_before_replace is False
    assert container["name"] == "migrate"
    # In the environment's namespace, a child of the component on its provider.
    assert job.plain["metadata"]["namespace"] == naming.namespace(env)
    (component,) = built.of_type("smartnation:city_apis:CityApis")
    assert job.parent == component.urn
    (provider,) = built.of_type("pulumi:providers:kubernetes")
    assert job.provider.startswith(provider.urn)


def test_the_migration_job_is_an_api_pod_to_the_network_policy_but_not_one_of_the_releases(settings, built) -> None:
    env = settings.environment
    job = _migrate(built, "device-registry")
    labels = job.plain["metadata"]["labels"]
    assert job.plain["spec"]["template"]["metadata"]["labels"] == labels
    assert labels["smartnation.mc/tier"] == "city-api"
    assert labels["smartnation.mc/environment"] == env
    assert labels["app.kubernetes.io/instance"] == f"{env}-device-registry-migrate"
    assert labels["app.kubernetes.io/component"] == "migrate"
    assert labels["app.kubernetes.io/version"] == settings.releases.components["device_registry"].version


def test_the_migration_job_runs_after_the_database_and_before_the_release(built) -> None:
    job = _migrate(built, "device-registry")
    (before,) = [r for r in built.resources if r.type == "test:index:Before"]
    assert before.urn in job.dependencies
    assert _connections_urn(built, "device-registry") in job.dependencies
    chart = built.one(CHART, "apis-device-registry")
    assert job.urn in chart.dependencies
    assert built.one(CERTIFICATE, "apis-device-registry-tls").urn in chart.dependencies
    # Without migrations, the release waits for its connections and Certificate only.
    open_data = built.one(CHART, "apis-open-data-api")
    assert _connections_urn(built, "open-data-api") in open_data.dependencies


def _connections_urn(built: BuiltComponent, app: str) -> str:
    return built.one(CONFIGMAP, f"apis-{app}-connections").urn


def test_the_migration_jobs_name_changes_with_its_connections_and_stays_otherwise(settings, built) -> None:
    name = _migrate(built, "device-registry").plain["metadata"]["name"]
    prefix = f"{settings.environment}-device-registry-migrate-"
    assert name.startswith(prefix)
    assert len(name) == len(prefix) + 6
    assert _migrate(_build(settings), "device-registry").plain["metadata"]["name"] == name
    moved = _build(settings, dataclasses.replace(CONNECTIONS, database_host="db-elsewhere"))
    assert _migrate(moved, "device-registry").plain["metadata"]["name"] != name
    # A new release version relabels the Job's Pod: a new Job (its template cannot change).
    release = settings.releases.components["device_registry"]
    relabelled = dataclasses.replace(
        settings,
        releases=dataclasses.replace(
            settings.releases,
            components={
                **settings.releases.components,
                "device_registry": dataclasses.replace(release, version="9.9.9"),
            },
        ),
    )
    assert _migrate(_build(relabelled), "device-registry").plain["metadata"]["name"] != name
    # A credential the Job does not read leaves it alone (the release rolls, the schema is there).
    rotated = _build(settings, secrets={broker_password("device-registry"): "rotated"})
    assert _migrate(rotated, "device-registry").plain["metadata"]["name"] == name


def test_an_api_whose_database_has_no_known_owner_is_refused(settings) -> None:
    with pytest.raises(ValueError, match=r"^city_apis\.device_registry: no owner known for database 'devices'$"):
        _build(settings, dataclasses.replace(CONNECTIONS, database_owners={"telemetry": "telemetry_owner"}))
    with pytest.raises(ValueError, match=r"no owner known for database 'devices'"):
        _build(settings, dataclasses.replace(CONNECTIONS, database_owners=None))


def test_an_api_without_migrations_gets_no_job_and_no_migrate_on_start(settings) -> None:
    api = dataclasses.replace(
        settings.city_apis["device_registry"], database=DatabaseAccess(name="devices", role="device_registry")
    )
    built = _build(settings, apis={"device_registry": api})
    assert not built.of_type(JOB)
    assert "MIGRATE_ON_START" not in _connections(built, "device-registry")["data"]


def test_the_city_apis_refuse_the_default_provider(settings) -> None:
    def program() -> None:
        placement = Placement.of(settings.environment, settings.cluster, protect_state=False)
        args = city_apis.CityApisArgs(placement, settings.city_apis, settings.releases, CONNECTIONS)
        with pytest.raises(ValueError, match="^CityApis: pass the target cluster's Kubernetes provider"):
            city_apis.CityApis("apis", args, None)

    run(install_mocks(), program)


def test_the_chart_version_is_the_local_charts() -> None:
    chart = yaml.safe_load((city_apis.CHART_PATH / "Chart.yaml").read_text(encoding="utf-8"))
    assert city_apis.chart_version() == str(chart["version"])
