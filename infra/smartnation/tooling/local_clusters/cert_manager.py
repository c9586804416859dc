"""cert-manager on a local stand-in: its CRDs, the CA behind the profile's issuer, its controller.

Both sites run cert-manager (Düsseldorf as the CCE add-on, Monaco with an issuer backed by the
site's CA), and the program asks it for every certificate it mounts or serves
(program/components/certificates.py). Locally cert-manager's own controllers issue them:

- the API: the CRDs of the pinned cert-manager module (deploy/crds), which `make bootstrap`
  copies beside the controller binary;
- the issuer: ClusterIssuer ``ingress.tls_issuer`` of the profile, of kind CA, whose key pair is
  Secret ``<issuer>-ca`` in the controller's cluster resource namespace;
- the CA: an ECDSA P-256 key and a self-signed certificate, made with openssl the first time a
  cluster comes up and kept in the cluster's folder, so a restart keeps the same trust root and
  the certificates already issued stay valid; a reset removes it with the cluster;
- the controller (cert_manager_service.py): one host process per cluster.

Everything here is pure rendering (argv and manifests) except the CA's files.
"""

from __future__ import annotations

import base64
import subprocess
from dataclasses import dataclass
from pathlib import Path

from smartnation.settings.yaml_files import read_yaml_documents
from smartnation.tooling.local_clusters.simulation import ClusterError, LocalCluster

NAMESPACE = "cert-manager"
"""The controller's cluster resource namespace, where a ClusterIssuer's Secret lives: the
namespace cert-manager's own install uses."""

API_GROUPS = ("cert-manager.io", "acme.cert-manager.io")
"""The groups of cert-manager's CRDs: all of them are served, as on the sites, though the local
controller runs no ACME."""

CA_DAYS = 3650
"""The local CA's lifetime: it outlives any machine the clusters run on; leaves last 90 days."""


def crd_documents(crd_dir: Path) -> list[dict]:
    """cert-manager's CRDs as the pinned module ships them (copied there by `make bootstrap`)."""
    files = sorted(crd_dir.glob("*.yaml")) if crd_dir.is_dir() else []
    if not files:
        raise ClusterError(f"no cert-manager CRDs in {crd_dir}: run `make bootstrap` (it copies them from the module)")
    docs = [d for f in files for d in read_yaml_documents(f) if d]
    for doc in docs:
        group = (doc.get("spec") or {}).get("group")
        if doc.get("kind") != "CustomResourceDefinition" or group not in API_GROUPS:
            raise ClusterError(
                f"{crd_dir}: expected only cert-manager's CustomResourceDefinitions, found {doc.get('kind')}"
            )
    return docs


def ca_secret_name(cluster: LocalCluster) -> str:
    return f"{cluster.profile.ingress.tls_issuer}-ca"


def ca_subject(cluster: LocalCluster) -> str:
    """The CA's distinguished name: says which local stand-in and which issuer it signs for."""
    return f"/O=smartnation local clusters/OU={cluster.name}/CN={cluster.profile.ingress.tls_issuer}"


def issuer_documents(cluster: LocalCluster, ca_cert_pem: bytes, ca_key_pem: bytes) -> list[dict]:
    """The namespace, the CA's key pair Secret and the profile's ClusterIssuer, in apply order."""

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/tls",
            "metadata": {"name": ca_secret_name(cluster), "namespace": NAMESPACE},
            "data": {"tls.crt": b64(ca_cert_pem), "tls.key": b64(ca_key_pem)},
        },
        {
            "apiVersion": "cert-manager.io/v1",
            "kind": "ClusterIssuer",
            "metadata": {"name": cluster.profile.ingress.tls_issuer},
            "spec": {"ca": {"secretName": ca_secret_name(cluster)}},
        },
    ]


def controller_argv(binary: Path, kubeconfig: Path, verbosity: int = 2) -> list[str]:
    """The controller's command line. It talks to one cluster with kwokctl's admin kubeconfig of
    that cluster (one context); Secrets become owned by their Certificate, so deleting a
    Certificate removes its key pair as the program's destroy expects."""
    return [
        str(binary),
        f"--kubeconfig={kubeconfig}",
        f"--cluster-resource-namespace={NAMESPACE}",
        "--enable-certificate-owner-ref=true",
        # Two workers per controller: the clusters issue a handful of certificates, on two cores.
        "--workers=2",
        f"--v={verbosity}",
    ]


@dataclass(frozen=True)
class CertificateAuthority:
    """The CA key pair of one cluster, in ``directory`` (ca.key readable by root only)."""

    directory: Path
    subject: str

    @property
    def cert_file(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def key_file(self) -> Path:
        return self.directory / "ca.key"

    def ensure(self) -> tuple[bytes, bytes, bool]:
        """The CA's certificate and key (PEM), made once; the flag says whether it was made now."""
        if self.cert_file.is_file() and self.key_file.is_file():
            return self.cert_file.read_bytes(), self.key_file.read_bytes(), False
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp_key, tmp_cert = self.directory / "ca.key.tmp", self.directory / "ca.crt.tmp"
        proc = subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-noenc",
                "-keyout",
                str(tmp_key),
                "-out",
                str(tmp_cert),
                "-days",
                str(CA_DAYS),
                "-subj",
                self.subject,
                # A CA that signs leaf certificates only (path length 0), as a site's issuing CA.
                "-addext",
                "basicConstraints=critical,CA:TRUE,pathlen:0",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise ClusterError(f"openssl could not make the CA in {self.directory}: {proc.stderr.strip()[-800:]}")
        tmp_key.chmod(0o600)
        # The key first: a certificate without its key would be taken for a finished CA.
        tmp_key.replace(self.key_file)
        tmp_cert.replace(self.cert_file)
        return self.cert_file.read_bytes(), self.key_file.read_bytes(), True
