"""The broker serves a renewed certificate without a restart, on real Pods (issue 11 item 2).

On the dev the session deployed on Monaco's real node (conftest.dev_on_monaco): cert-manager's own
controller renews the broker's Certificate when asked the way `cmctl renew` asks (the condition
Issuing=True on its status), writes a new key pair into the Secret, the kubelet updates the Pod's
volume, and the tls-reloader sidecar has mosquitto re-read it. The TLS listener, reached through a
port-forward, must then present the new certificate, with the same Pod and no container restart.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import ssl
import time
from datetime import UTC, datetime

import pytest

from smartnation.program.components import broker
from tests.integration.platform_project import PROJECT
from tests.integration.running_pods import port_forward

pytestmark = pytest.mark.integration

ENVIRONMENT = "dev"
CLUSTER = "monaco-onprem"
NAMESPACE = f"{PROJECT}-{ENVIRONMENT}"
CERTIFICATE = f"{ENVIRONMENT}-broker-tls"
# cert-manager issues in seconds; the kubelet refreshes a mounted Secret within its sync period
# plus its cache's TTL (about a minute each by default); the reloader looks every 10 s.
RENEWAL_TIMEOUT = 240.0


def _broker_pods(tools) -> list[dict]:
    pods = tools.kubectl_json(CLUSTER, "-n", NAMESPACE, "get", "pods")["items"]
    return [p for p in pods if p["metadata"]["name"].startswith(f"{ENVIRONMENT}-broker-")
            and p["metadata"].get("ownerReferences", [{}])[0].get("kind") == "StatefulSet"]  # fmt: skip


def _secret_certificate(tools) -> bytes:
    secret = tools.kubectl_json(CLUSTER, "-n", NAMESPACE, "get", "secret", CERTIFICATE)
    return ssl.PEM_cert_to_DER_cert(base64.b64decode(secret["data"]["tls.crt"]).decode())


def _served_certificate(tools, pod: str) -> bytes:
    """The certificate the TLS listener presents, through a port-forward of its own: the
    listener requires a client certificate and drops this probe after the handshake, and
    kubectl ends a port-forward whose connection the Pod reset."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        port_forward(tools, CLUSTER, NAMESPACE, pod, broker.TLS_PORT) as port,
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw) as tls,
    ):
        return tls.getpeercert(binary_form=True)


def _restarts(pod: dict) -> dict[str, int]:
    return {s["name"]: s["restartCount"] for s in pod["status"]["containerStatuses"]}


def _request_renewal(tools) -> None:
    """What `cmctl renew` does: add the Issuing condition to the Certificate's status."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    condition = {"type": "Issuing", "status": "True", "reason": "ManuallyTriggered",
                 "message": "renewal requested by the broker certificate test", "lastTransitionTime": now}  # fmt: skip
    tools.run(
        "kubectl", "--context", CLUSTER, "-n", NAMESPACE, "patch", "certificates.cert-manager.io", CERTIFICATE,
        "--subresource=status", "--type=json",
        "-p", json.dumps([{"op": "add", "path": "/status/conditions/-", "value": condition}]),
    )  # fmt: skip


def test_a_renewed_certificate_is_served_without_a_restart(dev_on_monaco, tools) -> None:
    (pod,) = _broker_pods(tools)  # dev runs one broker replica
    name = pod["metadata"]["name"]
    assert {c["name"] for c in pod["spec"]["containers"]} == {"mosquitto", "tls-reloader"}
    assert all(s["ready"] for s in pod["status"]["containerStatuses"]), pod["status"]
    old = _secret_certificate(tools)

    assert _served_certificate(tools, name) == old, "the broker does not serve its Secret's certificate"
    _request_renewal(tools)

    deadline = time.monotonic() + RENEWAL_TIMEOUT
    while (new := _secret_certificate(tools)) == old and time.monotonic() < deadline:
        time.sleep(2)
    assert new != old, "cert-manager did not renew the certificate"
    while (served := _served_certificate(tools, name)) != new and time.monotonic() < deadline:
        time.sleep(3)
    waited = RENEWAL_TIMEOUT - (deadline - time.monotonic())
    print(f"renewed certificate served after {waited:.0f}s: sha256 {hashlib.sha256(new).hexdigest()[:16]}")
    assert served == new, f"after {RENEWAL_TIMEOUT:.0f}s the broker still serves the old certificate"

    (after,) = _broker_pods(tools)
    assert after["metadata"]["uid"] == pod["metadata"]["uid"], "the broker Pod was replaced"
    assert _restarts(after) == _restarts(pod), "a broker container restarted"
    logs = tools.run("kubectl", "--context", CLUSTER, "-n", NAMESPACE, "logs", name, "-c", "tls-reloader").stdout
    assert "certificate changed: sent SIGHUP to mosquitto" in logs, logs
