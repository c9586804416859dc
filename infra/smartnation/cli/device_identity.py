"""A device's own MQTT identity, as a device gets one at provisioning: a client certificate from
the issuer of the broker's certificate (the site CA), whose common name is the device id.

The broker's TLS listener requires such a certificate and takes its common name as the username
that its pattern ACL confines to the device's own topics (daemon_config/mosquitto.py).
`smartnation verify` plays devices with certificates made here and deletes them afterwards.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from base64 import b64decode
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smartnation.cli.kubectl import Kubectl, KubectlError

ISSUE_TIMEOUT = 60.0
# Who made these objects, so an operator (or a cleanup) can tell them from the platform's own.
MADE_BY = {"app.kubernetes.io/managed-by": "smartnation-verify"}


class DeviceIdentityError(Exception):
    """A device certificate could not be issued; the message says why."""


@dataclass(frozen=True)
class DeviceIdentity:
    """A device's certificate and key, in files for the TLS client (removed on retirement)."""

    device_id: str
    name: str
    """Name of the cert-manager Certificate and of its Secret in the environment's namespace."""
    certfile: str
    keyfile: str


def broker_issuer(kubectl: Kubectl, hostname: str) -> dict[str, Any]:
    """The issuerRef of the Certificate naming the broker's hostname: devices' certificates must
    come from the CA the broker trusts, which is the one that signed its own."""
    for certificate in kubectl.items("certificates.cert-manager.io"):
        spec = certificate.get("spec", {})
        if hostname in spec.get("dnsNames", []):
            return dict(spec["issuerRef"])
    raise DeviceIdentityError(f"no cert-manager Certificate names {hostname}: no issuer for device certificates")


def issue_device_certificate(
    kubectl: Kubectl, device_id: str, issuer: dict[str, Any], timeout: float = ISSUE_TIMEOUT
) -> DeviceIdentity:
    """Ask cert-manager for a client certificate with common name ``device_id`` and wait for it."""
    name = device_id
    manifest = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {"name": name, "namespace": kubectl.namespace, "labels": MADE_BY},
        "spec": {
            "secretName": name,
            "commonName": device_id,
            "usages": ["client auth", "digital signature"],
            # cert-manager's shortest; the device exists for one verify run.
            "duration": "1h",
            "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
            "secretTemplate": {"labels": MADE_BY},
            "issuerRef": issuer,
        },
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json") as file:
        json.dump(manifest, file)
        file.flush()
        kubectl.run("apply", "-f", file.name)
    deadline = time.monotonic() + timeout
    while True:
        data = _secret_data(kubectl, name)
        if data.get("tls.crt") and data.get("tls.key"):
            break
        if time.monotonic() >= deadline:
            raise DeviceIdentityError(f"cert-manager issued no certificate for device {device_id} in {timeout:g}s")
        time.sleep(0.5)
    directory = Path(tempfile.mkdtemp(prefix="smartnation-device-"))  # 0700: the key stays ours
    certfile, keyfile = directory / "tls.crt", directory / "tls.key"
    certfile.write_bytes(b64decode(data["tls.crt"]))
    keyfile.touch(mode=0o600)
    keyfile.write_bytes(b64decode(data["tls.key"]))
    return DeviceIdentity(device_id, name, str(certfile), str(keyfile))


def retire_device_certificate(kubectl: Kubectl, identity: DeviceIdentity) -> None:
    """Delete the Certificate, its Secret and the local files (a missing one is no error)."""
    kubectl.run("delete", "certificates.cert-manager.io", identity.name, "--ignore-not-found", check=False)
    kubectl.run("delete", "secret", identity.name, "--ignore-not-found", check=False)
    shutil.rmtree(Path(identity.certfile).parent, ignore_errors=True)


def _secret_data(kubectl: Kubectl, name: str) -> dict[str, str]:
    try:
        return json.loads(kubectl.run("get", "secret", name, "-o", "json")).get("data") or {}
    except KubectlError:
        return {}
