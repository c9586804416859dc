"""TLS inside the cluster (security item 9): MinIO, the broker's internal listener and the
database each serve a key pair from the profile's issuer, and every client in the rendered
manifests dials them over TLS and verifies them against that issuer's CA, mounted from the
server's own Secret (the CA alone, never the key, where the client is not the server)."""

from __future__ import annotations

import fnmatch
import posixpath
import re
from typing import Any
from urllib.parse import urlsplit

import pytest

from smartnation.program.components import broker as broker_component
from smartnation.program.components import database, object_storage
from tests.unit.harness import BuiltStack, Registered
from tests.unit.test_stack import (
    CERTIFICATE,
    CONFIGMAP,
    CRONJOB,
    JOB,
    MATRIX,
    STATEFULSET,
    WORKLOADS,
    by_name,
    chart_values,
    containers,
    pod_template,
)

pytestmark = pytest.mark.unit


@pytest.fixture(params=MATRIX, ids=[f"{e}@{c}" for e, c in MATRIX])
def built(request: pytest.FixtureRequest, build_stack) -> BuiltStack:
    environment, cluster = request.param
    return build_stack(environment, cluster)


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env") or [] if "value" in e}


def mounted_secret_file(workload: Registered, container: dict[str, Any], path: str) -> tuple[str, str, list]:
    """(Secret, key, the volume's items) behind the file ``path`` in ``container``."""
    volumes = {v["name"]: v for v in pod_template(workload)["spec"]["volumes"]}
    for mount in container.get("volumeMounts") or []:
        relative = posixpath.relpath(path, mount["mountPath"])
        if relative.startswith(".."):
            continue
        secret = volumes[mount["name"]].get("secret")
        assert secret is not None, f"{path} is not from a Secret in {workload.name}"
        items = secret.get("items") or []
        keys = {item["path"]: item["key"] for item in items}
        return secret["secretName"], keys.get(relative, relative), items
    raise AssertionError(f"{workload.name}/{container['name']}: nothing mounted at {path}")


def certificates(built: BuiltStack) -> dict[str, dict[str, Any]]:
    return {r.plain["spec"]["secretName"]: r.plain["spec"] for r in built.of_type(CERTIFICATE)}


def covered(host: str, dns_names: list[str]) -> bool:
    """Whether a certificate for ``dns_names`` is valid for ``host`` (one-label wildcards)."""
    return any(
        name == host or (name.startswith("*.") and fnmatch.fnmatch(host, name) and host.count(".") == name.count("."))
        for name in dns_names
    )


def issued_by_profile(built: BuiltStack, spec: dict[str, Any]) -> bool:
    issuer = built.settings.cluster.ingress.tls_issuer
    return spec["issuerRef"] == {"group": "cert-manager.io", "kind": "ClusterIssuer", "name": issuer}


def api_connections(built: BuiltStack) -> list[tuple[dict[str, Any], dict[str, str]]]:
    """(chart values, connections ConfigMap data) of every API."""
    maps = {r.plain["metadata"]["name"]: r.plain["data"] for r in built.of_type(CONFIGMAP)}
    found = []
    for values in chart_values(built).values():
        data: dict[str, str] = {}
        for name in values["envFromConfigMaps"]:
            data |= maps[name]
        found.append((values, data))
    return found


def api_ca_secret(values: dict[str, Any], path: str) -> str:
    """The Secret whose ``ca.crt`` the chart mounts at ``path`` (charts/city-api mounts only it)."""
    for ca in values["caCertificates"]:
        if path == f"{ca['mountPath']}/ca.crt":
            return ca["secretName"]
    raise AssertionError(f"{path} is not one of the chart's CA mounts {values['caCertificates']}")


# --- MinIO ----------------------------------------------------------------------------------


def test_minio_serves_https_only_with_the_issuers_key_pair(built: BuiltStack) -> None:
    env = built.settings.environment
    tls_secret = object_storage.tls_secret_name(env)
    server = by_name(built, STATEFULSET, "object-storage")[0]
    (minio,) = [c for c in containers(server) if c["name"] == "minio"]
    args = minio["args"]
    certs_dir = args[args.index("--certs-dir") + 1]
    for file, key in (("public.crt", "tls.crt"), ("private.key", "tls.key"), ("CAs/ca.crt", "ca.crt")):
        assert mounted_secret_file(server, minio, f"{certs_dir}/{file}")[:2] == (tls_secret, key)
    for probe in (minio["readinessProbe"], minio["livenessProbe"]):
        assert probe["httpGet"]["scheme"] == "HTTPS"
    # Distributed MinIO dials its peers by these URLs: TLS too.
    assert not [a for a in args if a.startswith("http://")]
    if built.settings.object_storage.mode == "distributed":
        assert [a for a in args if a.startswith("https://")]
    spec = certificates(built)[tls_secret]
    assert issued_by_profile(built, spec)
    endpoint = urlsplit(built.outputs["s3_endpoint"][0])
    assert endpoint.scheme == "https" and covered(endpoint.hostname, spec["dnsNames"])
    for arg in args:
        if arg.startswith("https://"):
            # MinIO's ellipsis ({0...N}) names every pod; the first stands for all of them.
            pod_host = urlsplit(re.sub(r"\{0\.\.\.\d+\}", "0", arg)).hostname
            assert covered(pod_host, spec["dnsNames"]), pod_host


def test_every_minio_client_dials_https_and_verifies_the_issuers_ca(built: BuiltStack) -> None:
    """The setup Job's and the backup's mc (SSL_CERT_FILE; restore copies the backup's Pod) and
    every API's boto3 (AWS_CA_BUNDLE): HTTPS, the CA from MinIO's Secret, and no --insecure."""
    tls_secret = object_storage.tls_secret_name(built.settings.environment)
    clients = 0
    for workload in built.of_type(JOB, CRONJOB):
        for container in containers(workload):
            env = env_of(container)
            if "S3_ENDPOINT" not in env:
                continue
            clients += 1
            assert env["S3_ENDPOINT"].startswith("https://"), workload.name
            secret, key, items = mounted_secret_file(workload, container, env["SSL_CERT_FILE"])
            assert (secret, key) == (tls_secret, "ca.crt"), workload.name
            assert [item["key"] for item in items] == ["ca.crt"], "a client never mounts MinIO's key"
    assert clients == 2, "the setup Job and the backup's upload"
    for r in built.of_type(CONFIGMAP):
        assert not any("--insecure" in text or " -k " in text for text in r.plain.get("data", {}).values())
    for values, data in api_connections(built):
        if "S3_ENDPOINT" in data:
            assert data["S3_ENDPOINT"].startswith("https://")
            assert api_ca_secret(values, data["AWS_CA_BUNDLE"]) == tls_secret


# --- The broker's internal listener --------------------------------------------------------------


def test_the_brokers_internal_listener_serves_tls(built: BuiltStack) -> None:
    config = by_name(built, CONFIGMAP, "broker-config")[0].plain["data"]["mosquitto.conf"]
    listeners = config.split("\nlistener ")[1:]
    (internal,) = [block for block in listeners if block.startswith(f"{broker_component.INTERNAL_PORT}")]
    assert "\ncertfile " in internal and "\nkeyfile " in internal and "\npassword_file " in internal
    assert "require_certificate" not in internal


def test_every_api_dials_the_broker_over_tls_and_verifies_the_issuers_ca(built: BuiltStack) -> None:
    tls_secret = broker_component.tls_secret_name(built.settings.environment)
    spec = certificates(built)[tls_secret]
    assert issued_by_profile(built, spec)
    dialled = 0
    for values, data in api_connections(built):
        if "MQTT_URL" not in data:
            continue
        urls = [data["MQTT_URL"], *filter(None, data.get("MQTT_BROKER_URLS", "").split(","))]
        for url in urls:
            parts = urlsplit(url)
            assert parts.scheme == "mqtts" and parts.port == broker_component.INTERNAL_PORT, url
            assert covered(parts.hostname, spec["dnsNames"]), url
            dialled += 1
        assert api_ca_secret(values, data["SSL_CERT_FILE"]) == tls_secret
    assert dialled >= 2, "the ingest and the registry dial the broker"


# --- The database's maintenance Jobs ---------------------------------------------------------------


def test_every_database_client_verifies_the_server_against_the_issuers_ca(built: BuiltStack) -> None:
    """The setup Job, the backup's dump (and so restore) and the replicas' clone: verify-full
    with the CA from the database's Secret; the Jobs get the CA alone."""
    tls_secret = database.tls_secret_name(built.settings.environment)
    clients = 0
    for workload in built.of_type(*WORKLOADS):
        for container in containers(workload):
            env = env_of(container)
            host = env.get("PGHOST") or env.get("PRIMARY_HOST")
            if host is None or host.startswith("/"):  # the reloader's Unix socket: no network
                continue
            clients += 1
            assert env["PGSSLMODE"] == "verify-full", workload.name
            secret, key, items = mounted_secret_file(workload, container, env["PGSSLROOTCERT"])
            assert (secret, key) == (tls_secret, "ca.crt"), workload.name
            if workload.type in (JOB, CRONJOB):
                assert [item["key"] for item in items] == ["ca.crt"], "a Job never mounts the server's key"
    assert clients >= 2, "the setup Job and the backup's dump"
