"""cert-manager issues real certificates on both local clusters (local_clusters/cert_manager.py).

A Certificate naming the profile's issuer, as the program's are (program/components/certificates.py),
becomes Ready with a key pair signed by the cluster's CA: the Secret holds tls.crt, tls.key and
ca.crt, the certificate verifies against ca.crt, carries the DNS name in its SAN and matches the
key. Deleting the Certificate removes what it made.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

READY_WITHIN = 60
"""Seconds a Certificate may take to be issued on an idle cluster (it takes about one)."""


@pytest.fixture
def namespace(tools, cluster):
    name = f"certs-{uuid.uuid4().hex[:8]}"
    tools.run("kubectl", "--context", cluster.context, "create", "namespace", name)
    yield name
    tools.run("kubectl", "--context", cluster.context, "delete", "namespace", name, "--wait=false")


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"{what} not within {timeout}s")


def _certificate(cluster, name: str, dns_name: str) -> dict:
    """Shaped like the program's Certificates: the profile's ClusterIssuer, an ECDSA key."""
    return {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {"name": name},
        "spec": {
            "secretName": name,
            "issuerRef": {
                "group": "cert-manager.io",
                "kind": "ClusterIssuer",
                "name": cluster.profile.ingress.tls_issuer,
            },
            "dnsNames": [dns_name],
            "duration": "2160h",
            "renewBefore": "360h",
            "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
        },
    }


def _get(tools, context: str, namespace: str, kind: str, name: str) -> dict | None:
    proc = tools.run(
        "kubectl",
        "--context",
        context,
        "-n",
        namespace,
        "get",
        kind,
        name,
        "-o",
        "json",
        "--ignore-not-found",
        check=False,
    )
    return json.loads(proc.stdout) if proc.returncode == 0 and proc.stdout.strip() else None


def _ready(tools, context: str, namespace: str, name: str) -> dict | None:
    cert = _get(tools, context, namespace, "certificate", name)
    conditions = {c["type"]: c for c in ((cert or {}).get("status") or {}).get("conditions", [])}
    return cert if conditions.get("Ready", {}).get("status") == "True" else None


def _openssl(*args: str) -> str:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, check=True).stdout


def _issue(tools, cluster, namespace: str, name: str, dns_name: str) -> tuple[dict, float]:
    began = time.monotonic()
    tools.run(
        "kubectl",
        "--context",
        cluster.context,
        "-n",
        namespace,
        "apply",
        "-f",
        "-",
        input=json.dumps(_certificate(cluster, name, dns_name)),
    )
    _wait(lambda: _ready(tools, cluster.context, namespace, name), READY_WITHIN, f"Certificate {name} Ready")
    took = time.monotonic() - began
    secret = _get(tools, cluster.context, namespace, "secret", name)
    assert secret is not None
    return secret, took


def _check_key_pair(secret: dict, dns_name: str, ca_file: Path, tmp_path: Path) -> None:
    assert secret["type"] == "kubernetes.io/tls"
    assert set(secret["data"]) == {"tls.crt", "tls.key", "ca.crt"}
    files = {}
    for key, value in secret["data"].items():
        files[key] = tmp_path / key
        files[key].write_bytes(base64.b64decode(value))
    # The trust root handed to clients is this cluster's CA, the one `make clusters` made.
    assert files["ca.crt"].read_bytes().strip() == ca_file.read_bytes().strip()
    verified = _openssl("verify", "-CAfile", str(files["ca.crt"]), "-purpose", "sslserver", str(files["tls.crt"]))
    assert verified.strip() == f"{files['tls.crt']}: OK"
    san = _openssl("x509", "-noout", "-ext", "subjectAltName", "-in", str(files["tls.crt"]))
    assert f"DNS:{dns_name}" in san
    # The key is the certificate's own, and the one the spec asked for.
    assert _openssl("pkey", "-pubout", "-in", str(files["tls.key"])) == _openssl(
        "x509", "-noout", "-pubkey", "-in", str(files["tls.crt"])
    )
    assert "prime256v1" in _openssl("pkey", "-noout", "-text", "-in", str(files["tls.key"]))


def test_the_profiles_issuer_is_ready_and_its_controller_runs(tools, clusters, cluster):
    assert clusters.cert_manager(cluster).running() is not None, "cert-manager controller not running"
    issuer = tools.kubectl_json(cluster.context, "get", "clusterissuer", cluster.profile.ingress.tls_issuer)
    assert "ca" in issuer["spec"]
    conditions = {c["type"]: c["status"] for c in issuer.get("status", {}).get("conditions", [])}
    assert conditions.get("Ready") == "True", issuer.get("status")


def test_a_certificate_is_issued_by_the_clusters_ca_and_deleted_with_what_it_made(
    tools, clusters, cluster, namespace, tmp_path
):
    dns_name = f"probe-{namespace}.{cluster.profile.ingress.base_domain}"
    secret, took = _issue(tools, cluster, namespace, "probe-tls", dns_name)
    print(f"[{cluster.name}] Certificate Ready in {took:.1f}s")
    _check_key_pair(secret, dns_name, clusters.cert_manager(cluster).ca.cert_file, tmp_path)
    requests = tools.kubectl_json(cluster.context, "-n", namespace, "get", "certificaterequests")["items"]
    assert requests and all(r["metadata"]["ownerReferences"][0]["kind"] == "Certificate" for r in requests)

    tools.run("kubectl", "--context", cluster.context, "-n", namespace, "delete", "certificate", "probe-tls")

    def cleaned():
        left = tools.kubectl_json(cluster.context, "-n", namespace, "get", "secrets,certificaterequests")["items"]
        return not [i for i in left if i["metadata"]["name"].startswith("probe-tls")]

    _wait(cleaned, 60, "the Secret and CertificateRequests of a deleted Certificate removed")


def test_a_secret_with_placeholder_bytes_is_replaced_by_a_real_key_pair(tools, clusters, cluster, namespace, tmp_path):
    """What the kwok stage used to write into every certificate Secret: cert-manager reissues it."""
    placeholder = base64.b64encode(b"placeholder issued by the local stand-in").decode()
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"name": "old-tls", "namespace": namespace},
        "data": {"tls.crt": placeholder, "tls.key": placeholder},
    }
    tools.run("kubectl", "--context", cluster.context, "apply", "-f", "-", input=json.dumps(secret))
    dns_name = f"old-{namespace}.{cluster.profile.ingress.base_domain}"
    issued, _ = _issue(tools, cluster, namespace, "old-tls", dns_name)
    _check_key_pair(issued, dns_name, clusters.cert_manager(cluster).ca.cert_file, tmp_path)
