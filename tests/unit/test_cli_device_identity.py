"""verify's devices get their own certificates from the broker's issuer (cli/device_identity.py),
under a stand-in kubectl; tests/integration/test_verify.py does it against cert-manager."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path
from typing import Any

import pytest

from smartnation.cli.device_identity import (
    DeviceIdentityError,
    broker_issuer,
    issue_device_certificate,
    retire_device_certificate,
)
from smartnation.cli.kubectl import KubectlError

pytestmark = pytest.mark.unit

ISSUER = {"group": "cert-manager.io", "kind": "ClusterIssuer", "name": "site-ca"}


class FakeKubectl:
    """Records what verify asks; cert-manager 'issues' once the Certificate was applied."""

    namespace = "smartnation-dev"

    def __init__(self, issue: bool = True) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.applied: list[dict[str, Any]] = []
        self.issue = issue

    def items(self, kinds: str, *_selector: str) -> list[dict[str, Any]]:
        assert kinds == "certificates.cert-manager.io"
        return [
            {"spec": {"dnsNames": ["db.smartnation-dev.svc"], "issuerRef": {"name": "other"}}},
            {"spec": {"dnsNames": ["mqtt.dev.example"], "issuerRef": ISSUER}},
        ]

    def run(self, *args: str, check: bool = True, timeout: float = 30) -> str:
        self.calls.append(args)
        if args[:2] == ("apply", "-f"):
            self.applied.append(json.loads(Path(args[2]).read_text()))
            return ""
        if args[:2] == ("get", "secret"):
            if not (self.issue and self.applied):
                raise KubectlError("NotFound")
            data = {"tls.crt": base64.b64encode(b"CERT").decode(), "tls.key": base64.b64encode(b"KEY").decode()}
            return json.dumps({"data": data})
        return ""


def test_the_device_certificate_names_the_device_and_comes_from_the_brokers_issuer() -> None:
    kubectl = FakeKubectl()
    issuer = broker_issuer(kubectl, "mqtt.dev.example")  # type: ignore[arg-type]
    identity = issue_device_certificate(kubectl, "smartnation-verify-ab12", issuer)  # type: ignore[arg-type]
    (certificate,) = kubectl.applied
    spec = certificate["spec"]
    assert spec["commonName"] == "smartnation-verify-ab12" == identity.device_id
    assert spec["issuerRef"] == ISSUER
    assert "client auth" in spec["usages"]
    assert certificate["metadata"]["namespace"] == kubectl.namespace
    assert Path(identity.certfile).read_bytes() == b"CERT"
    key = Path(identity.keyfile)
    assert key.read_bytes() == b"KEY" and stat.S_IMODE(key.stat().st_mode) == 0o600

    retire_device_certificate(kubectl, identity)  # type: ignore[arg-type]
    deleted = [c[1:3] for c in kubectl.calls if c[0] == "delete"]
    assert deleted == [("certificates.cert-manager.io", identity.name), ("secret", identity.name)]
    assert not Path(identity.certfile).parent.exists()


def test_no_issuer_and_no_certificate_are_named() -> None:
    with pytest.raises(DeviceIdentityError, match="no cert-manager Certificate names mqtt.elsewhere"):
        broker_issuer(FakeKubectl(), "mqtt.elsewhere")  # type: ignore[arg-type]
    with pytest.raises(DeviceIdentityError, match="issued no certificate for device d-1"):
        issue_device_certificate(FakeKubectl(issue=False), "d-1", ISSUER, timeout=0.2)  # type: ignore[arg-type]
