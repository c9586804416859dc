"""TLS certificates, issued by the cluster's cert-manager ClusterIssuer (profile ingress.tls_issuer).

Both sites run cert-manager: the Düsseldorf test cluster as a CCE add-on, Monaco with an issuer
backed by the site's own CA. The program asks for each certificate it mounts or serves; the
issuer writes the key pair into the named Secret, and renews it before it expires.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pulumi
import pulumi_kubernetes as k8s

API_VERSION = "cert-manager.io/v1"


def certificate(
    resource_name: str,
    *,
    namespace: pulumi.Input[str],
    secret_name: str,
    dns_names: Sequence[str],
    issuer: str,
    labels: Mapping[str, str],
    opts: pulumi.ResourceOptions,
) -> k8s.apiextensions.CustomResource:
    """A Certificate whose key pair lands in Secret `secret_name`, in `namespace`."""
    return k8s.apiextensions.CustomResource(
        resource_name,
        api_version=API_VERSION,
        kind="Certificate",
        metadata={"name": secret_name, "namespace": namespace, "labels": dict(labels)},
        spec={
            "secretName": secret_name,
            "issuerRef": {"group": "cert-manager.io", "kind": "ClusterIssuer", "name": issuer},
            "dnsNames": list(dns_names),
            # 90 days, renewed 15 days ahead: expiry never becomes a 3 a.m. page.
            "duration": "2160h",
            "renewBefore": "360h",
            "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
        },
        opts=opts,
    )
