"""TLS inside the cluster on real Pods (issue 11, item 9), on dev on Monaco's real node
(conftest.dev_on_monaco): MinIO and the broker's internal listener refuse plain connections and
serve a certificate from the issuer for the names the APIs dial; the Jobs that talk to them
(storage setup, database setup) completed with the CA verified; the APIs that use them are ready.
verify's backup-restores (test_verify) runs the backup's mc and pg_dump the same way."""

from __future__ import annotations

import http.client
import json
import ssl
import threading
import uuid

import paho.mqtt.client as mqtt
import pytest

from smartnation.program import naming
from smartnation.program.components import broker, object_storage
from smartnation.settings.stack_secrets import CONFIG_NAMESPACE, broker_password
from tests.integration.platform_project import PROJECT
from tests.integration.running_pods import dialled_as, issuer_ca, port_forward, service_host

pytestmark = pytest.mark.integration

ENVIRONMENT = "dev"
CLUSTER = "monaco-onprem"
NAMESPACE = f"{PROJECT}-{ENVIRONMENT}"
STORAGE = naming.names(ENVIRONMENT, naming.OBJECT_STORAGE)
BROKER = naming.names(ENVIRONMENT, naming.BROKER)
MINIO_HOST = service_host(NAMESPACE, STORAGE.name)
MINIO_POD = f"{STORAGE.name}-0"
BROKER_POD = f"{BROKER.name}-0"
BROKER_POD_HOST = service_host(NAMESPACE, f"{BROKER_POD}.{BROKER.child('headless')}")


@pytest.fixture(scope="module")
def deployed(dev_on_monaco):
    return dev_on_monaco


@pytest.fixture(scope="module")
def secrets(deployed) -> dict[str, str]:
    shown = json.loads(deployed.pulumi("config", "--show-secrets", "--json", "--stack", ENVIRONMENT).stdout)
    prefix = f"{CONFIG_NAMESPACE}:"
    return {k[len(prefix) :]: v["value"] for k, v in shown.items() if k.startswith(prefix)}


@pytest.fixture(scope="module")
def cas(deployed, tools, tmp_path_factory) -> dict[str, str]:
    """The issuer's CA from each server's own Secret."""
    directory = tmp_path_factory.mktemp("cas")
    return {
        name: str(issuer_ca(tools, CLUSTER, NAMESPACE, secret, directory))
        for name, secret in (
            ("object-storage", object_storage.tls_secret_name(ENVIRONMENT)),
            ("broker", broker.tls_secret_name(ENVIRONMENT)),
        )
    }


def test_minio_refuses_plain_http_and_serves_https_for_its_service_name(deployed, tools, cas) -> None:
    with port_forward(tools, CLUSTER, NAMESPACE, MINIO_POD, object_storage.PORT) as port:
        plain = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
        try:
            plain.request("GET", "/minio/health/live")
            answer = plain.getresponse()
            status, body = answer.status, answer.read().decode(errors="replace")
        except (ConnectionError, http.client.RemoteDisconnected):
            status, body = None, "closed"
        finally:
            plain.close()
        assert status != 200, "MinIO answered plain HTTP"
        assert status is None or "HTTPS" in body, body
        context = ssl.create_default_context(cafile=cas["object-storage"])
        with dialled_as(MINIO_HOST):
            verified = http.client.HTTPSConnection(MINIO_HOST, port, context=context, timeout=15)
            try:
                verified.request("GET", "/minio/health/live")
                assert verified.getresponse().status == 200
            finally:
                verified.close()


def _mqtt_connect(port: int, login: tuple[str, str], context: ssl.SSLContext | None) -> object:
    """The CONNACK reason, or the error / "no CONNACK" when the broker hung up first."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"it-{uuid.uuid4().hex[:8]}")
    client.username_pw_set(*login)
    if context is not None:
        client.tls_set_context(context)
    answer: dict[str, object] = {}
    done = threading.Event()
    client.on_connect = lambda _c, _u, _f, reason, _p: (answer.setdefault("rc", reason), done.set())
    client.on_disconnect = lambda *_args: done.set()
    try:
        with dialled_as(BROKER_POD_HOST):
            client.connect(BROKER_POD_HOST, port, keepalive=10)
    except (ssl.SSLError, OSError) as error:
        return error
    client.loop_start()
    try:
        done.wait(15)
    finally:
        client.loop_stop()
        client.disconnect()
    return answer.get("rc", "no CONNACK")


def test_the_brokers_internal_listener_refuses_plain_mqtt_and_admits_tls(deployed, tools, secrets, cas) -> None:
    """The ingest's own password: refused in the clear (no CONNACK), admitted over TLS verified
    against the issuer's CA for the pod's in-cluster name, as the ingest dials it."""
    login = ("telemetry-ingest", secrets[broker_password("telemetry-ingest")])
    # One forward each: kubectl ends a forward whose connection the Pod reset.
    with port_forward(tools, CLUSTER, NAMESPACE, BROKER_POD, broker.INTERNAL_PORT) as port:
        plain = _mqtt_connect(port, login, None)
    assert not (hasattr(plain, "is_failure") and not plain.is_failure), "plain MQTT got a CONNACK"
    with port_forward(tools, CLUSTER, NAMESPACE, BROKER_POD, broker.INTERNAL_PORT) as port:
        over_tls = _mqtt_connect(port, login, ssl.create_default_context(cafile=cas["broker"]))
    assert hasattr(over_tls, "is_failure") and not over_tls.is_failure, over_tls


def test_the_jobs_that_verify_the_servers_completed_and_the_apis_are_ready(deployed, tools) -> None:
    """The storage setup (mc, SSL_CERT_FILE) and the database setup (verify-full) completed; every
    API Pod (boto3 with AWS_CA_BUNDLE, paho with SSL_CERT_FILE, psycopg verify-full) is Ready,
    which its /readyz only is when the broker, the bucket and the database answer."""
    jobs = tools.kubectl_json(CLUSTER, "-n", NAMESPACE, "get", "jobs")["items"]
    setups = [j for j in jobs if j["metadata"].get("labels", {}).get("app.kubernetes.io/component") == naming.SETUP]
    roles = {j["metadata"]["labels"]["app.kubernetes.io/name"] for j in setups}
    assert roles >= {naming.OBJECT_STORAGE, naming.DATABASE}, [j["metadata"]["name"] for j in setups]
    for job in setups:
        assert job["status"].get("succeeded") == 1, (job["metadata"]["name"], job["status"])
    # The API tier's Pods less the migration Jobs' (same tier label for the network policy).
    selector = f"{naming.TIER_LABEL}={naming.API_TIER},!batch.kubernetes.io/job-name"
    api_pods = tools.kubectl_json(CLUSTER, "-n", NAMESPACE, "get", "pods", "-l", selector)["items"]
    assert len({p["metadata"]["labels"]["app.kubernetes.io/instance"] for p in api_pods}) == 3, api_pods
    for pod in api_pods:
        ready = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}.get("Ready")
        assert ready == "True", pod["metadata"]["name"]
