"""The checks of `smartnation verify`: each a function of the shared context that returns what it
saw, or raises CheckFailed saying what was wrong. Each bounds its own waits; the runner
(verify.py) bounds each as a whole too.

They use only what an operator has against any site: kubectl (get, exec, port-forward) with the
environment's context, the broker's public TLS address and the stack's secrets.
"""

from __future__ import annotations

import json
import secrets
import ssl
import threading
import time
import urllib.error
import urllib.request
from base64 import b64decode
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from smartnation.cli import restore, restore_pod
from smartnation.cli.device_identity import (
    DeviceIdentity,
    broker_issuer,
    issue_device_certificate,
    retire_device_certificate,
)
from smartnation.cli.health import summarise, workload_readiness
from smartnation.cli.kubectl import Kubectl, KubectlError, http_port, pod_ready
from smartnation.cli.verify_target import MqttPlan, VerifyTarget

OPEN_DATA_API = "open-data-api"
"""The API (a key of `deployed_releases.helm_releases`) that serves readings to citizens."""
DEVICE_REGISTRY = "device-registry"
"""The API that registers devices and sends them commands."""
RELEASE_LABEL = "app.kubernetes.io/instance"
"""The Helm release label on every Pod of a release (standard chart labels)."""
CONNECT_TIMEOUT = 5.0
PROBE_TIMEOUT = 3.0
WORKLOAD_POLL_SECONDS = 2.0


class CheckFailed(Exception):
    """The check ran and found the environment wrong; the message says what."""


@dataclass
class VerifyContext:
    """What every check reads, and what one check leaves for a later one."""

    target: VerifyTarget
    kubectl: Kubectl
    plan: MqttPlan
    device_id: str
    passwords: Mapping[str, str]
    """Internal class -> MQTT password (stack secrets): the subscriber's, which the public TLS
    listener must refuse."""
    reading_bound: float
    """Seconds a reading may take from the broker's acknowledgement to open-data-api."""
    settle: float = 0.0
    """Seconds the workloads may take to become ready before the workloads check fails."""
    operator_token: str = ""
    """device-registry's bearer token of verify's own operator client (a stack secret)."""
    published: dict[str, Any] | None = None
    """The reading the publish check sent (ts, value, acknowledged_at), for the open-data check."""
    _ca: str | None = field(default=None, repr=False)
    _ca_read: bool = field(default=False, repr=False)
    _sequence: int = field(default=0, repr=False)
    _identities: dict[str, DeviceIdentity] = field(default_factory=dict, repr=False)

    def device_identity(self, device_id: str) -> DeviceIdentity:
        """The client certificate of ``device_id``, issued on first use (device_identity.py)."""
        if device_id not in self._identities:
            self._identities[device_id] = issue_device_certificate(
                self.kubectl, device_id, broker_issuer(self.kubectl, self.target.mqtt_hostname)
            )
        return self._identities[device_id]

    def retire_identities(self) -> None:
        """Delete the devices' Certificates and Secrets verify made, and their local files."""
        for identity in self._identities.values():
            retire_device_certificate(self.kubectl, identity)
        self._identities.clear()

    def broker_ca(self) -> str | None:
        """PEM of the CA that signed the broker's certificate: `ca.crt` of the Secret of the
        cert-manager Certificate naming the MQTT hostname; None (system trust) when none does."""
        if not self._ca_read:
            self._ca = _certificate_ca(self.kubectl, self.target.mqtt_hostname)
            self._ca_read = True
        return self._ca

    def next_reading(self) -> tuple[str, int]:
        """A fresh (ts, value): distinct timestamps, since (device, ts) identifies a stored reading."""
        self._sequence += 1
        now = datetime.now(UTC)
        ts = now.replace(microsecond=(now.microsecond // 1000) * 1000).isoformat(timespec="milliseconds")
        time.sleep(0.002)
        return ts, self._sequence


def _certificate_ca(kubectl: Kubectl, hostname: str) -> str | None:
    try:
        certificates = kubectl.items("certificates.cert-manager.io")
    except KubectlError:
        return None  # no cert-manager: a publicly trusted certificate
    for certificate in certificates:
        if hostname in certificate.get("spec", {}).get("dnsNames", []):
            secret_name = certificate["spec"]["secretName"]
            secret = _secret(kubectl, secret_name)
            data = secret.get("data", {})
            if "ca.crt" not in data:
                raise CheckFailed(f"Secret {secret_name} of the broker's certificate has no ca.crt")
            return b64decode(data["ca.crt"]).decode()
    return None


def _secret(kubectl: Kubectl, name: str) -> dict[str, Any]:
    return json.loads(kubectl.run("get", "secret", name, "-o", "json"))


# -- workloads and pods ---------------------------------------------------------------------


def check_workloads(
    ctx: VerifyContext,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Every Deployment and StatefulSet has as many ready replicas as it wants, within
    ``ctx.settle`` seconds: after the clusters restart, or an update with nothing to change
    (Pulumi awaits only what it changed), the APIs are back only once the database is."""
    deadline = clock() + ctx.settle
    waited_from = clock()
    while True:
        workloads = workload_readiness(ctx.kubectl)
        if not workloads:
            raise CheckFailed(f"no Deployment or StatefulSet in namespace {ctx.target.namespace}")
        text = f"{summarise(workloads)} in {len(workloads)} workloads"
        if all(w.is_ready for w in workloads):
            waited = clock() - waited_from
            return text if waited < WORKLOAD_POLL_SECONDS else f"{text} (after {waited:.0f}s settling)"
        if clock() >= deadline:
            raise CheckFailed(f"{text} after {ctx.settle:g}s settling (verify.settle_seconds)")
        sleep(WORKLOAD_POLL_SECONDS)


def container_security_problems(pod: Mapping[str, Any]) -> list[str]:
    """What in a Pod's spec lets a container run as root or write its root filesystem."""
    spec = pod.get("spec", {})
    pod_context = spec.get("securityContext") or {}
    problems = []
    for container in [*spec.get("initContainers", []), *spec.get("containers", [])]:
        context = container.get("securityContext") or {}
        name = f"{pod['metadata']['name']}/{container['name']}"
        user = context.get("runAsUser", pod_context.get("runAsUser"))
        non_root = context.get("runAsNonRoot", pod_context.get("runAsNonRoot"))
        if user == 0 or (not non_root and user is None):
            problems.append(f"{name} may run as root")
        if not context.get("readOnlyRootFilesystem"):
            problems.append(f"{name} has a writable root filesystem")
    return problems


def _running_uid(ctx: VerifyContext, pod: str, container: str) -> int | None:
    """The container's uid from `id -u` inside it; None where the image has no `id` (the API and
    broker images carry no coreutils: their spec is what is checked)."""
    done = ctx.kubectl.exec(pod, container, ["id", "-u"], timeout=10)
    if done.returncode != 0:
        if "not found" in done.stderr or "no such file" in done.stderr.lower():
            return None
        raise CheckFailed(f"exec id -u in {pod}/{container}: {done.stderr.strip()[-200:]}")
    return int(done.stdout.strip())


def check_pod_security(ctx: VerifyContext) -> str:
    """Every Pod non-root with a read-only root filesystem: the spec of every Pod, and the running
    uid (`id -u`) of every running container whose image has `id`."""
    pods = ctx.kubectl.items("pods")
    if not pods:
        raise CheckFailed(f"no Pod in namespace {ctx.target.namespace}")
    problems = [p for pod in pods for p in container_security_problems(pod)]
    looked, spec_only = 0, 0
    for pod in pods:
        if pod.get("status", {}).get("phase") != "Running":
            continue
        for status in pod["status"].get("containerStatuses", []):
            if "running" not in status.get("state", {}):
                continue
            uid = _running_uid(ctx, pod["metadata"]["name"], status["name"])
            if uid is None:
                spec_only += 1
            else:
                looked += 1
                if uid == 0:
                    problems.append(f"{pod['metadata']['name']}/{status['name']} runs as uid 0")
    if problems:
        raise CheckFailed("; ".join(problems[:5]) + (f" (+{len(problems) - 5})" if len(problems) > 5 else ""))
    return f"{len(pods)} pods by spec; running uid non-root in {looked} containers ({spec_only} without `id`: spec)"


# -- broker ---------------------------------------------------------------------------------


class _PinnedName(ssl.SSLContext):
    """Verifies the broker's certificate for its hostname while connecting to its address: the
    load balancer's address is what devices reach here, the name is what the certificate holds
    (at a site DNS maps one to the other)."""

    server_name: str = ""

    def wrap_socket(self, sock, *args, server_hostname=None, **kwargs):  # noqa: ANN001, ANN201 (ssl's signature)
        return super().wrap_socket(sock, *args, server_hostname=self.server_name, **kwargs)


def tls_context(ca_pem: str | None, server_name: str) -> ssl.SSLContext:
    context = _PinnedName(ssl.PROTOCOL_TLS_CLIENT)
    context.server_name = server_name
    if ca_pem:
        context.load_verify_locations(cadata=ca_pem)
    else:
        context.load_default_certs()
    return context


class MqttSession:
    """One MQTT 5 connection over TLS to the broker's public address, with what it received.

    A device presents its own certificate (``identity``); ``login`` (username, password) is only
    for showing that a password gets nowhere on this listener."""

    def __init__(
        self,
        ctx: VerifyContext,
        role: str,
        *,
        identity: DeviceIdentity | None = None,
        login: tuple[str, str] | None = None,
    ) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"smartnation-verify-{role}-{ctx.device_id}-{time.monotonic_ns() % 10**6}",
            protocol=mqtt.MQTTv5,
        )
        if login is not None:
            self.client.username_pw_set(*login)
        context = tls_context(ctx.broker_ca(), ctx.target.mqtt_hostname)
        if identity is not None:
            context.load_cert_chain(identity.certfile, identity.keyfile)
        self.client.tls_set_context(context)
        self.connected = threading.Event()
        self.connack: Any = None
        self.received: list[tuple[str, bytes]] = []
        self.arrived = threading.Condition()
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self._address = (ctx.target.mqtt_address, ctx.target.mqtt_port)

    def _on_connect(self, _client, _userdata, _flags, reason, _properties) -> None:  # noqa: ANN001
        self.connack = reason
        self.connected.set()

    def _on_message(self, _client, _userdata, message) -> None:  # noqa: ANN001
        with self.arrived:
            self.received.append((message.topic, message.payload))
            self.arrived.notify_all()

    def connect(self) -> Any:
        """Connect; the CONNACK reason code (refusals are returned, not raised)."""
        try:
            self.client.connect(*self._address, keepalive=30)
        except (OSError, ssl.SSLError) as error:
            raise CheckFailed(f"cannot reach the broker at {self._address[0]}:{self._address[1]}: {error}") from None
        self.client.loop_start()
        if not self.connected.wait(CONNECT_TIMEOUT):
            raise CheckFailed(f"no CONNACK from {self._address[0]} in {CONNECT_TIMEOUT:g}s")
        return self.connack

    def publish(self, topic: str, payload: dict[str, Any]) -> Any:
        """Publish at QoS 1; the PUBACK's reason code (MQTT 5: Not authorized for a denied topic)."""
        acked: dict[int, Any] = {}
        done = threading.Event()

        def on_publish(_client, _userdata, mid, reason, _properties) -> None:  # noqa: ANN001
            acked[mid] = reason
            done.set()

        self.client.on_publish = on_publish
        info = self.client.publish(topic, json.dumps(payload), qos=1)
        if not done.wait(CONNECT_TIMEOUT) or info.mid not in acked:
            raise CheckFailed(f"no PUBACK for {topic} in {CONNECT_TIMEOUT:g}s")
        return acked[info.mid]

    def subscribe(self, *topics: str) -> None:
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_args: subscribed.set()
        self.client.subscribe([(t, 1) for t in topics])
        if not subscribed.wait(CONNECT_TIMEOUT):
            raise CheckFailed(f"no SUBACK in {CONNECT_TIMEOUT:g}s")

    def wait_for(self, predicate: Callable[[str, bytes], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.arrived:
            while not any(predicate(t, p) for t, p in self.received):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.arrived.wait(left)
        return True

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _reading(ctx: VerifyContext) -> tuple[dict[str, Any], str, int]:
    ts, value = ctx.next_reading()
    return {"ts": ts, "metrics": {"verify": value}}, ts, value


def _carries(value: int) -> Callable[[str, bytes], bool]:
    return lambda _topic, payload: json.loads(payload).get("metrics", {}).get("verify") == value


def check_broker_publish(ctx: VerifyContext) -> str:
    """A device with its own certificate connects over TLS to the load balancer and publishes."""
    device = MqttSession(ctx, "device", identity=ctx.device_identity(ctx.device_id))
    try:
        reason = device.connect()
        if reason.is_failure:
            raise CheckFailed(f"device {ctx.device_id} refused: {reason}")
        payload, ts, value = _reading(ctx)
        ack = device.publish(ctx.plan.device_topic, payload)
        if ack.is_failure:
            raise CheckFailed(f"publish on {ctx.plan.device_topic} refused: {ack}")
        ctx.published = {"ts": ts, "value": value, "acknowledged_at": time.monotonic()}
    finally:
        device.close()
    return (
        f"device {ctx.device_id} ({ctx.plan.device_class}, own certificate) over TLS to {ctx.target.mqtt_address}:"
        f"{ctx.target.mqtt_port} ({ctx.target.mqtt_hostname}), reading on {ctx.plan.device_topic} acknowledged"
    )


def check_broker_acl(ctx: VerifyContext) -> str:
    """The device may not publish as another device: the broker answers Not authorized, and the
    forged reading never reaches open-data-api, while a reading the device sent after it does
    (the ingest reads every broker Pod, in order per Pod)."""
    other = ctx.plan.forbidden_topic.split("/")[2]
    device = MqttSession(ctx, "device", identity=ctx.device_identity(ctx.device_id))
    pod = api_pods(ctx, OPEN_DATA_API)[0]
    with ctx.kubectl.port_forward(pod["metadata"]["name"], http_port(pod)) as port:
        try:
            reason = device.connect()
            if reason.is_failure:
                raise CheckFailed(f"device {ctx.device_id} refused: {reason}")
            forged, _, _ = _reading(ctx)
            ack = device.publish(ctx.plan.forbidden_topic, forged)
            marker, marker_ts, _ = _reading(ctx)
            if device.publish(ctx.plan.device_topic, marker).is_failure:
                raise CheckFailed(f"the device's own reading on {ctx.plan.device_topic} was refused")
        finally:
            device.close()
        if not ack.is_failure:
            raise CheckFailed(f"the broker acknowledged device {ctx.device_id}'s publish as {other}")
        _wait_until_served(ctx, port, ctx.device_id, marker_ts)
        status, body = http_json(port, "GET", f"/v1/devices/{other}/latest")
        if status == 200:
            raise CheckFailed(f"the forged reading of {other} was stored: {body}")
    return f"device {ctx.device_id} as {other} on {ctx.plan.forbidden_topic}: {ack}, not delivered"


def check_broker_auth(ctx: VerifyContext) -> str:
    """The public TLS listener refuses a password, even the internal subscriber's real one
    (devices log in with certificates; internal clients only on the in-cluster listener)."""
    internal = ctx.plan.subscriber_class
    session = MqttSession(ctx, "intruder", login=(internal, ctx.passwords[internal]))
    try:
        reason = session.connect()
    except CheckFailed as refused:
        return f"{internal}'s password without a certificate: refused in the TLS handshake ({refused})"
    finally:
        session.close()
    if not reason.is_failure:
        raise CheckFailed(f"{internal}'s password was accepted on the public TLS listener")
    return f"{internal}'s password without a certificate: {reason}"


# -- the APIs -------------------------------------------------------------------------------


def api_pods(ctx: VerifyContext, api: str) -> list[dict[str, Any]]:
    """The ready Pods of one API's release."""
    release = ctx.target.api_releases.get(api)
    if release is None:
        raise CheckFailed(f"the stack deployed no {api} (deployed_releases.helm_releases)")
    pods = [p for p in ctx.kubectl.items("pods", "-l", f"{RELEASE_LABEL}={release}") if pod_ready(p)]
    if not pods:
        raise CheckFailed(f"no ready Pod of {release}")
    return pods


def http_json(
    port: int, method: str, path: str, body: dict | None = None, timeout: float = 5, token: str | None = None
) -> tuple[int, Any]:
    """(status, JSON body) of one request to a forwarded local port; ``token``: a bearer token."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {token}"} if token else {})
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def _wait_until_served(ctx: VerifyContext, port: int, device_id: str, ts: str) -> None:
    """Until open-data-api serves a reading of ``device_id`` at ``ts`` or later (the bound)."""
    wanted, deadline = datetime.fromisoformat(ts), time.monotonic() + ctx.reading_bound + CONNECT_TIMEOUT
    while True:
        status, last = http_json(port, "GET", f"/v1/devices/{device_id}/latest")
        if status == 200 and datetime.fromisoformat(str(last["ts"]).replace("Z", "+00:00")) >= wanted:
            return
        if time.monotonic() >= deadline:
            raise CheckFailed(f"reading of {device_id} at {ts} not served (last answer {status}: {last})")
        time.sleep(0.2)


def check_open_data(ctx: VerifyContext) -> str:
    """The reading the publish check sent is served by open-data-api within the bound."""
    if ctx.published is None:
        check_broker_publish(ctx)
    assert ctx.published is not None
    pod = api_pods(ctx, OPEN_DATA_API)[0]
    wanted = datetime.fromisoformat(ctx.published["ts"])
    with ctx.kubectl.port_forward(pod["metadata"]["name"], http_port(pod)) as port:
        deadline = ctx.published["acknowledged_at"] + ctx.reading_bound
        last: Any = None
        while True:
            status, last = http_json(port, "GET", f"/v1/devices/{ctx.device_id}/latest")
            if status == 200 and datetime.fromisoformat(str(last["ts"]).replace("Z", "+00:00")) >= wanted:
                after = time.monotonic() - ctx.published["acknowledged_at"]
                served = f"reading of {ctx.device_id} served {after:.1f}s after the broker took it"
                # Seen late is late, even if this poll was the first (a bound of 0 always fails).
                if after > ctx.reading_bound:
                    raise CheckFailed(f"{served}: over the bound of {ctx.reading_bound:g}s")
                return f"{served} (bound {ctx.reading_bound:g}s)"
            if time.monotonic() >= deadline:
                raise CheckFailed(
                    f"reading of {ctx.device_id} not served within {ctx.reading_bound:g}s "
                    f"(last answer {status}: {last})"
                )
            time.sleep(0.2)


def check_device_command(ctx: VerifyContext) -> str:
    """A device registered through device-registry receives a command on its command topic."""
    if ctx.plan.command_topic is None:
        raise CheckFailed(f"class {ctx.plan.device_class} subscribes to no command topic")
    pod = api_pods(ctx, DEVICE_REGISTRY)[0]
    device_id = f"{ctx.device_id}-cmd"
    topic = ctx.plan.command_topic.replace(ctx.device_id, device_id)
    device = MqttSession(ctx, "commanded", identity=ctx.device_identity(device_id))
    with ctx.kubectl.port_forward(pod["metadata"]["name"], http_port(pod)) as port:
        location = {"latitude": 43.7384, "longitude": 7.4246, "label": "smartnation verify"}
        status, body = http_json(
            port,
            "POST",
            "/v1/devices",
            {"id": device_id, "class": ctx.plan.device_class, "location": location},
            token=ctx.operator_token,
        )
        if status != 201:
            raise CheckFailed(f"registering {device_id}: {status} {body}")
        try:
            reason = device.connect()
            if reason.is_failure:
                raise CheckFailed(f"device {device_id} refused: {reason}")
            device.subscribe(topic)
            started = time.monotonic()
            status, body = http_json(
                port, "POST", f"/v1/devices/{device_id}/commands", {"command": "verify_ping"}, token=ctx.operator_token
            )
            if status != 202:
                raise CheckFailed(f"command to {device_id}: {status} {body}")
            command_id = body["command_id"]
            if not device.wait_for(lambda _t, p: json.loads(p).get("command_id") == command_id, ctx.reading_bound):
                raise CheckFailed(f"{device_id} did not receive command {command_id} on {topic}")
            took = time.monotonic() - started
        finally:
            device.close()
            # Retire it: verify leaves no live device.
            http_json(port, "DELETE", f"/v1/devices/{device_id}", token=ctx.operator_token)
    return f"{device_id} got command {command_id} on {topic} in {took:.1f}s ({body['brokers_reached']} broker pods)"


def check_registry_refuses_anonymous(ctx: VerifyContext) -> str:
    """device-registry refuses every /v1 request without an operator's bearer token (401), a
    wrong token too, and answers verify's own; its probes stay open."""
    pod = api_pods(ctx, DEVICE_REGISTRY)[0]
    device_id = f"{ctx.device_id}-anon"
    body = {"id": device_id, "class": ctx.plan.device_class, "location": {"latitude": 43.7, "longitude": 7.4}}
    wrong = f"{ctx.operator_token}x"
    with ctx.kubectl.port_forward(pod["metadata"]["name"], http_port(pod)) as port:
        for token, who in ((None, "without a token"), (wrong, "with a wrong token")):
            for method, path, payload in (
                ("POST", "/v1/devices", body),
                ("POST", f"/v1/devices/{device_id}/commands", {"command": "verify_ping"}),
                ("DELETE", f"/v1/devices/{device_id}", None),
                ("GET", "/v1/devices", None),
            ):
                status, answer = http_json(port, method, path, payload, token=token)
                if status != 401:
                    raise CheckFailed(f"{method} {path} {who}: {status} {answer}, expected 401")
        status, answer = http_json(port, "GET", f"/v1/devices/{device_id}", token=ctx.operator_token)
        if status != 404:
            raise CheckFailed(f"verify's token: GET /v1/devices/{device_id} answered {status} {answer}, expected 404")
        status, _ = http_json(port, "GET", "/healthz")
        if status != 200:
            raise CheckFailed(f"/healthz without a token answered {status}")
    return "8 requests without or with a wrong token refused (401); verify's token and /healthz answered"


# -- network policy -------------------------------------------------------------------------

_PROBE = """
import json, os, socket, sys
def probe(host, port):
    try:
        socket.create_connection((host, int(port)), timeout=float(sys.argv[3])).close()
        return "connected"
    except socket.timeout:
        return "timed out"
    except OSError as error:
        return "refused: " + (error.strerror or str(error))
host = os.environ.get(sys.argv[1], sys.argv[1]) if sys.argv[1].isupper() else sys.argv[1]
port = os.environ.get(sys.argv[2], sys.argv[2]) if sys.argv[2].isupper() else sys.argv[2]
print(json.dumps({"to": host + ":" + port, "result": probe(host, port)}))
"""
_PYTHONS = ("python3", "python3.11", "python")


def probe_from(ctx: VerifyContext, pod: Mapping[str, Any], host: str, port: str) -> dict[str, str]:
    """A TCP connection from inside ``pod`` (its own network namespace, its policies); ``host`` and
    ``port`` may name variables of the container's environment (upper case)."""
    name, container = pod["metadata"]["name"], pod["spec"]["containers"][0]["name"]
    for python in _PYTHONS:
        done = ctx.kubectl.exec(name, container, [python, "-c", _PROBE, host, port, str(PROBE_TIMEOUT)], timeout=20)
        if done.returncode == 0:
            return json.loads(done.stdout)
        if "not found" not in done.stderr:
            raise CheckFailed(f"probe in {name}: {done.stderr.strip()[-200:]}")
    raise CheckFailed(f"no python in {name} to open a connection from")


def check_network_policy_denies(ctx: VerifyContext) -> str:
    """From an open-data-api Pod to a device-registry Pod's own port: the policies allow the APIs
    only the database, broker and object storage (egress) and admit them only from the ingress
    controller (ingress), so this connection must not open though the target listens (it is Ready)."""
    source = api_pods(ctx, OPEN_DATA_API)[0]
    target = api_pods(ctx, DEVICE_REGISTRY)[0]
    result = probe_from(ctx, source, target["status"]["podIP"], str(http_port(target)))
    if result["result"] == "connected":
        raise CheckFailed(f"{source['metadata']['name']} -> {target['metadata']['name']} {result['to']} connected")
    return f"{source['metadata']['name']} -> {target['metadata']['name']} {result['to']}: {result['result']}"


def check_network_policy_allows(ctx: VerifyContext) -> str:
    """The same Pod reaches its own database ($PGHOST:$PGPORT), a flow the policies allow: the
    refusal above is the policy's, not a broken network."""
    source = api_pods(ctx, OPEN_DATA_API)[0]
    result = probe_from(ctx, source, "PGHOST", "PGPORT")
    if result["result"] != "connected":
        raise CheckFailed(f"{source['metadata']['name']} -> database {result['to']}: {result['result']}")
    return f"{source['metadata']['name']} -> database {result['to']}: connected"


# -- backup ---------------------------------------------------------------------------------

BACKUP_JOB_SECONDS = 240
"""The backup Job run once (its Pods wait up to 120 s for the primary and MinIO, then dump).
Its deadline and the restore's are generous: on a busy 2-core host the dump took 46 s and a
restore ran past a 90 s deadline after it had compared every table."""
LIST_JOB_SECONDS = 60
RESTORE_JOB_SECONDS = 240


def check_backup_restores(ctx: VerifyContext) -> str:
    """The backup CronJob's Job, run once, leaves a complete backup set in the backups bucket that
    restores: `smartnation restore`'s Jobs list the bucket, restore the set into scratch databases
    (dropped again) and compare every table's row count and checksum with the live database.

    The comparison is exact, so it holds where nothing writes between the dump and the comparison
    (the verify run's own readings are written before it); a busy environment's readings table
    grows meanwhile and shows as different."""
    started = time.monotonic()
    environment = ctx.target.environment
    target = restore.Target(ctx.kubectl.context, ctx.kubectl.namespace, ctx.kubectl.process_env())
    try:
        cronjob = restore.backup_cronjob(target, environment)
        job = restore_pod.backup_job(cronjob, restore._job_name(environment, "verify"), BACKUP_JOB_SECONDS)
        dumped = restore.run_job(target, job, timeout=BACKUP_JOB_SECONDS + 30)
        if not dumped.succeeded:
            raise CheckFailed(
                f"backup Job {job['metadata']['name']} failed ({dumped.reason}): {dumped.logs.strip()[-400:]}"
            )
        name, bucket = restore_pod.uploaded_backup(dumped.logs)
        listing = restore.run_job(target, restore_pod.list_job(cronjob, restore._job_name(environment, "backups")),
                                  timeout=LIST_JOB_SECONDS)  # fmt: skip
        if not listing.succeeded:
            raise CheckFailed(f"listing the backups bucket failed: {listing.logs.strip()[-400:]}")
        found = {b.name: b for b in restore_pod.parse_listing(listing.logs)}
        if name not in found or not found[name].complete:
            raise CheckFailed(f"backup {name} is not complete in bucket {bucket} (files: {found.get(name)})")
        suffix = f"verify_{secrets.token_hex(3)}"
        job = restore_pod.restore_job(
            cronjob, restore._job_name(environment, "restore"), name, suffix, cleanup=True,
            deadline=RESTORE_JOB_SECONDS,
        )  # fmt: skip
        restored = restore.run_job(target, job, timeout=RESTORE_JOB_SECONDS + 30)
    except (restore_pod.RestoreError, KubectlError) as error:
        raise CheckFailed(str(error)) from None
    if not restored.succeeded:
        raise CheckFailed(f"restoring backup {name} failed ({restored.reason}): {restored.logs.strip()[-400:]}")
    tables = restore_pod.compare(restore_pod.parse_rows(restored.logs))
    if not tables:
        raise CheckFailed(f"the restore of {name} compared no table")
    different = [f"{t.database}.{t.table} {t.source} -> {t.restored}" for t in tables if not t.same]
    if different:
        raise CheckFailed(f"backup {name} restored with {len(different)} different tables: {'; '.join(different[:3])}")
    rows = sum(t.restored[0] for t in tables if t.restored)
    databases = len({t.database for t in tables})
    return (
        f"backup {name} in bucket {bucket} ({restore._size(found[name].size)}, dumped in {dumped.seconds:.0f}s) "
        f"restored in {restored.seconds:.0f}s: {len(tables)} tables of {databases} databases, {rows} rows, "
        f"counts and checksums equal; scratch databases dropped ({time.monotonic() - started:.0f}s in all)"
    )
