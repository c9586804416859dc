"""The platform's daemons run for real on a real node: dev, deployed with `pulumi up` on Monaco's
stand-in (staging on Düsseldorf's is test_platform_stack.py), is checked on its running Pods.

Each daemon runs as its non-root user, listens where it should and keeps its data on its claim;
PostgreSQL has the declared roles, databases, grants and extensions; MinIO the buckets, users and
policies; Mosquitto gives each device its own identity (certificate) and refuses passwords on TLS. What is checked
comes from the environment's settings, never from a copy of them here.
"""

from __future__ import annotations

import base64
import json
import ssl
import threading
import time
import uuid

import boto3
import botocore.exceptions
import paho.mqtt.client as mqtt
import psycopg
import pytest
from botocore.config import Config

from smartnation.cli.device_identity import broker_issuer, issue_device_certificate, retire_device_certificate
from smartnation.cli.kubectl import Kubectl
from smartnation.program import naming
from smartnation.program.components import broker, database, object_storage
from smartnation.program.components.broker import MOSQUITTO_UID
from smartnation.program.components.database import POSTGRES_UID
from smartnation.program.components.object_storage import MINIO_UID
from smartnation.settings import load_settings
from smartnation.settings.stack_secrets import (
    CONFIG_NAMESPACE,
    DATABASE_SUPERUSER_PASSWORD,
    OBJECT_STORAGE_ROOT_PASSWORD,
    OBJECT_STORAGE_ROOT_USER,
    broker_password,
    object_storage_secret_key,
)
from tests.integration.platform_project import PROJECT
from tests.integration.running_pods import (
    container_process,
    dialled_as,
    issuer_ca,
    listening_ports,
    mount_sources,
    port_forward,
    service_host,
)

pytestmark = pytest.mark.integration

ENVIRONMENT = "dev"
CLUSTER = "monaco-onprem"
NAMESPACE = f"{PROJECT}-{ENVIRONMENT}"
REAL = "smartnation.mc/node-kind"


@pytest.fixture(scope="module")
def deployed(dev_on_monaco):
    return dev_on_monaco


@pytest.fixture(scope="module")
def secrets(deployed) -> dict[str, str]:
    shown = json.loads(deployed.pulumi("config", "--show-secrets", "--json", "--stack", ENVIRONMENT).stdout)
    prefix = f"{CONFIG_NAMESPACE}:"
    return {k[len(prefix) :]: v["value"] for k, v in shown.items() if k.startswith(prefix)}


@pytest.fixture(scope="module")
def settings(deployed):
    return load_settings(ENVIRONMENT, deployed.root / "environments")


def _pods(tools) -> list[dict]:
    return tools.kubectl_json(CLUSTER, "-n", NAMESPACE, "get", "pods")["items"]


def _pod(tools, component: str, name_part: str = "") -> dict:
    pods = [
        p
        for p in _pods(tools)
        if p["metadata"]["labels"].get("app.kubernetes.io/name") == component
        and p["status"].get("phase") == "Running"
        and name_part in p["metadata"]["name"]
    ]
    assert pods, f"no running {component} pod in {NAMESPACE}"
    return pods[0]


def test_every_pod_runs_on_a_real_node_with_its_real_process(deployed, tools):
    nodes = {n["metadata"]["name"]: n for n in tools.kubectl_json(CLUSTER, "get", "nodes")["items"]}
    pods = _pods(tools)
    assert pods
    for pod in pods:
        name, node = pod["metadata"]["name"], pod["spec"]["nodeName"]
        assert nodes[node]["metadata"]["labels"].get(REAL) == "real", f"{name} is on {node}, a simulated node"
        phase = pod["status"]["phase"]
        assert phase in ("Running", "Succeeded"), f"{name}: {phase}"
        for status in pod["status"].get("containerStatuses", []):
            if phase == "Running":
                assert status["ready"], f"{name}/{status['name']} not ready"
            if phase == "Running":  # a real container has a process on this host; kwok's never do
                assert container_process(pod, status["name"]).pid > 1
    deployed.pulumi("preview", "--expect-no-changes", "--stack", ENVIRONMENT)


@pytest.mark.parametrize(
    ("component", "container", "uid", "ports", "data"),
    [
        ("broker", "mosquitto", MOSQUITTO_UID, {broker.INTERNAL_PORT, broker.TLS_PORT}, "/mosquitto/data"),
        ("database", "postgres", POSTGRES_UID, {database.PORT}, "/var/lib/postgresql/data"),
        ("object-storage", "minio", MINIO_UID, {object_storage.PORT}, "/data"),
    ],
)
def test_each_daemon_runs_as_its_user_listens_where_it_should_and_keeps_data_on_its_claim(
    deployed, tools, component, container, uid, ports, data
):
    pod = _pod(tools, component)
    process = container_process(pod, container)
    assert process.euid == uid != 0, f"{component} runs as uid {process.euid}"
    assert ports <= listening_ports(process.pid), f"{component} listens on {listening_ports(process.pid)}"
    claims = {v["persistentVolumeClaim"]["claimName"] for v in pod["spec"]["volumes"] if "persistentVolumeClaim" in v}
    assert claims, f"{component} has no claim"
    (claim,) = claims
    pvc = tools.kubectl_json(CLUSTER, "-n", NAMESPACE, "get", "pvc", claim)
    mounts = mount_sources(process.pid)
    assert data in mounts, f"{data} is not a mount in {component}: {sorted(mounts)}"
    # The provisioner's directory for this claim (real-nodes/<cluster>/volumes/<pv>).
    assert mounts[data].endswith(f"/volumes/{pvc['spec']['volumeName']}"), mounts[data]


def test_postgres_has_the_declared_roles_databases_grants_and_extensions(deployed, tools, secrets, settings):
    primary = _pod(tools, "database", "primary")
    with port_forward(tools, CLUSTER, NAMESPACE, primary["metadata"]["name"], database.PORT) as port:
        # Several connections through one tunnel: without TLS (a TLS session's close resets the
        # connection and kubectl port-forward drops the whole tunnel).
        password = secrets[DATABASE_SUPERUSER_PASSWORD]
        dsn = f"host=127.0.0.1 port={port} user=postgres password={password} sslmode=disable"
        with psycopg.connect(dsn + " dbname=postgres", connect_timeout=10) as conn:
            roles = {r for (r,) in conn.execute("select rolname from pg_roles")}
            owners = dict(
                conn.execute("select datname, pg_get_userbyid(datdba) from pg_database where not datistemplate")
            )
        assert {r.name for r in settings.database.roles} <= roles
        for db in settings.database.databases:
            assert owners.get(db.name) == db.owner, f"database {db.name} owned by {owners.get(db.name)}"
            with psycopg.connect(f"{dsn} dbname={db.name}", connect_timeout=10) as conn:
                extensions = {e for (e,) in conn.execute("select extname from pg_extension")}
                assert set(db.extensions) <= extensions, f"{db.name}: {extensions}"
                for grant in settings.database.grants:
                    if grant.database == db.name:
                        (can_connect,) = conn.execute(
                            "select has_database_privilege(%s, %s, 'CONNECT')", (grant.role, db.name)
                        ).fetchone()
                        assert can_connect, f"{grant.role} cannot connect to {db.name}"
        # A TimescaleDB hypertable takes rows on the deployed image.
        telemetry = next(d for d in settings.database.databases if "timescaledb" in d.extensions)
        with psycopg.connect(f"{dsn} dbname={telemetry.name}", connect_timeout=10) as conn:
            table = f"it_{uuid.uuid4().hex[:8]}"
            conn.execute(f"create table {table} (at timestamptz not null, v double precision)")
            conn.execute(f"select create_hypertable('{table}', 'at')")
            conn.execute(
                f"insert into {table} select now() - i * interval '1 minute', i from generate_series(1, 1000) i"
            )
            assert conn.execute(f"select count(*) from {table}").fetchone() == (1000,)
            conn.execute(f"drop table {table}")


MINIO_HOST = service_host(NAMESPACE, naming.names(ENVIRONMENT, naming.OBJECT_STORAGE).name)
"""The in-cluster name of MinIO's API Service, the name its certificate is for (the APIs dial it)."""


@pytest.fixture(scope="module")
def minio_ca(deployed, tools, tmp_path_factory):
    return issuer_ca(
        tools, CLUSTER, NAMESPACE, object_storage.tls_secret_name(ENVIRONMENT), tmp_path_factory.mktemp("minio-ca")
    )


def _s3(port: int, key: str, secret: str, ca):
    """An S3 client for MinIO through a forward: HTTPS, verified against the issuer's CA, for the
    Service's name (call it inside ``dialled_as(MINIO_HOST)``)."""
    return boto3.client(
        "s3",
        endpoint_url=f"https://{MINIO_HOST}:{port}",
        verify=str(ca),
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"}),
    )


def test_minio_has_the_buckets_users_and_policies(deployed, tools, secrets, settings, minio_ca):
    pod = _pod(tools, "object-storage")
    with (
        port_forward(tools, CLUSTER, NAMESPACE, pod["metadata"]["name"], object_storage.PORT) as port,
        dialled_as(MINIO_HOST),
    ):
        root = _s3(port, secrets[OBJECT_STORAGE_ROOT_USER], secrets[OBJECT_STORAGE_ROOT_PASSWORD], minio_ca)
        buckets = {b["Name"] for b in root.list_buckets()["Buckets"]}
        assert {b.name for b in settings.object_storage.buckets} <= buckets
        for user in settings.object_storage.users:
            client = _s3(port, user.name, secrets[object_storage_secret_key(user.name)], minio_ca)
            key = f"it/{uuid.uuid4().hex}"
            for bucket in sorted(buckets):
                allowed = bucket in user.buckets
                try:
                    client.list_objects_v2(Bucket=bucket, MaxKeys=1)
                    listed = True
                except botocore.exceptions.ClientError:
                    listed = False
                assert listed == allowed, f"{user.name} listing {bucket}: {listed}, policy says {allowed}"
                if allowed:
                    try:
                        client.put_object(Bucket=bucket, Key=key, Body=b"x")
                        wrote = True
                        root.delete_object(Bucket=bucket, Key=key)
                    except botocore.exceptions.ClientError:
                        wrote = False
                    assert wrote == (user.access == "readwrite"), f"{user.name} writing {bucket}"


def broker_pod_host(pod: str) -> str:
    """A broker pod's in-cluster name under the headless Service (the ingest dials it)."""
    return service_host(NAMESPACE, f"{pod}.{naming.names(ENVIRONMENT, naming.BROKER).child('headless')}")


def _connect(port: int, user: str, password: str, ca: str, pod: str) -> tuple[mqtt.Client, object]:
    """A password login on the internal listener through a forward, over TLS verified as the
    ingest verifies it: the issuer's CA and the pod's in-cluster name."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"it-{uuid.uuid4().hex[:8]}")
    client.username_pw_set(user, password)
    client.tls_set_context(ssl.create_default_context(cadata=ca))
    result = {}
    connected = threading.Event()

    def on_connect(_c, _u, _flags, reason_code, _props):
        result["rc"] = reason_code
        connected.set()

    client.on_connect = on_connect
    with dialled_as(broker_pod_host(pod)):
        client.connect(broker_pod_host(pod), port, keepalive=10)
    client.loop_start()
    assert connected.wait(10), "no CONNACK"
    return client, result["rc"]


def _tls_connect(port: int, cert: tuple[str, str] | None, login: tuple[str, str] | None, ca: str):
    """(client, CONNACK reason or the refusal) over TLS to a forwarded broker port."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"it-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5)
    if login:
        client.username_pw_set(*login)
    context = ssl.create_default_context(cadata=ca)
    context.check_hostname = False  # a forwarded port; the chain is what is checked here
    if cert:
        context.load_cert_chain(*cert)
    client.tls_set_context(context)
    result = {}
    connected = threading.Event()

    def on_connect(_c, _u, _flags, reason_code, _props):
        result["rc"] = reason_code
        connected.set()

    client.on_connect = on_connect
    try:
        client.connect("127.0.0.1", port, keepalive=10)
    except (ssl.SSLError, OSError) as refused:
        return client, refused
    client.loop_start()
    if not connected.wait(10):
        client.loop_stop()
        return client, "no CONNACK (the broker closed the connection)"
    return client, result["rc"]


def test_mosquitto_gives_devices_their_own_identity_and_internal_clients_the_plain_listener_only(
    deployed, tools, secrets, settings
):
    """On the running broker Pod: a device class name is no login on the in-cluster listener, the
    ingest's password is refused on the TLS listener, and a device with its own certificate from
    the site CA (cert-manager) publishes under its id and not as another device."""
    pod = _pod(tools, "broker")
    sensor = next(c for c in settings.broker.device_classes if not c.internal and c.publish)
    ingest_login = ("telemetry-ingest", secrets[broker_password("telemetry-ingest")])
    kubectl = Kubectl(CLUSTER, NAMESPACE, env=tools.env)
    issuer = broker_issuer(kubectl, naming.mqtt_hostname(ENVIRONMENT, settings.cluster.ingress.base_domain))
    device_a, device_b = f"it-{uuid.uuid4().hex[:6]}-a", f"it-{uuid.uuid4().hex[:6]}-b"
    identity = issue_device_certificate(kubectl, device_a, issuer)
    ca = base64.b64decode(
        tools.kubectl_json(CLUSTER, "-n", NAMESPACE, "get", "secret", f"{ENVIRONMENT}-broker-tls")["data"]["ca.crt"]
    ).decode()
    try:
        # Its own forward: the listener resets a connection without a client certificate, and
        # kubectl ends a port-forward whose connection the Pod reset.
        with port_forward(tools, CLUSTER, NAMESPACE, pod["metadata"]["name"], broker.TLS_PORT) as tls:
            intruder, refused = _tls_connect(tls, None, ingest_login, ca)
            intruder.loop_stop()
        assert not (hasattr(refused, "is_failure") and not refused.is_failure), (
            "the ingest's password was accepted on the TLS listener"
        )
        with (
            port_forward(tools, CLUSTER, NAMESPACE, pod["metadata"]["name"], broker.INTERNAL_PORT) as internal,
            port_forward(tools, CLUSTER, NAMESPACE, pod["metadata"]["name"], broker.TLS_PORT) as tls,
        ):
            wrong, rc = _connect(internal, sensor.name, "any-password", ca, pod["metadata"]["name"])
            assert rc.is_failure, f"a device class name logged in on the in-cluster listener: {rc}"
            wrong.loop_stop()

            received: list[str] = []
            listener, rc = _connect(internal, *ingest_login, ca, pod["metadata"]["name"])
            assert not rc.is_failure, rc
            listener.on_message = lambda _c, _u, msg: received.append(msg.topic)
            listener.subscribe("city/+/+/telemetry", qos=1)
            time.sleep(1)
            device, rc = _tls_connect(tls, (identity.certfile, identity.keyfile), None, ca)
            assert hasattr(rc, "is_failure") and not rc.is_failure, f"device {device_a} refused: {rc}"
            own = sensor.publish[0].replace("+", device_a)
            forged = sensor.publish[0].replace("+", device_b)
            device.publish(forged, b"99", qos=1).wait_for_publish(5)
            device.publish(own, b"21.5", qos=1).wait_for_publish(5)
            deadline = time.monotonic() + 5
            while own not in received and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(1)  # room for the forged message, had the broker let it through
            for client in (device, listener):
                client.disconnect()
                client.loop_stop()
    finally:
        retire_device_certificate(kubectl, identity)
    assert own in received, f"the device's own reading did not arrive: {received}"
    assert forged not in received, f"device {device_a} published as {device_b}"
