"""Certificates for a real node, signed by its cluster's CA (the one kwokctl made).

- the kubelet's client certificate: user system:node:<node>, group system:nodes, so the API
  server's Node authorizer and NodeRestriction treat it as that node and nothing more;
- kube-proxy's client certificate: user system:kube-proxy, which Kubernetes' default RBAC binds
  to the system:node-proxier role;
- the kubelet's serving certificate for the node's address, so the API server (logs, exec)
  talks TLS to a certificate of the cluster's CA;
- CoreDNS's client certificate (node_dns.py): user smartnation:node-dns, and kube-router's
  (node_network_policy.py): user smartnation:node-network-policy, each bound to a ClusterRole
  that reads only what that process watches. One user per process, shared by the nodes of a
  cluster: neither writes anything, so there is nothing one node's could do to another's.

openssl (Debian) does the work; nothing here is secret beyond the local stand-in clusters.
"""

from __future__ import annotations

import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

from smartnation.tooling.local_clusters.node_dns import DNS_USER
from smartnation.tooling.local_clusters.node_network_policy import NETPOL_USER
from smartnation.tooling.local_clusters.node_plan import RealNodePlan


class CredentialError(RuntimeError):
    pass


@dataclass(frozen=True)
class ClusterCA:
    cert: Path
    key: Path


def _openssl(*args: str, stdin: str | None = None) -> None:
    proc = subprocess.run(["openssl", *args], input=stdin, capture_output=True, text=True)
    if proc.returncode != 0:
        raise CredentialError(f"openssl {' '.join(args[:2])} failed: {proc.stderr.strip()[-800:]}")


def issue(ca: ClusterCA, out: Path, subject: str, sans: list[str] | None = None, days: int = 3650) -> None:
    """Writes out.crt and out.key (EC P-256) unless both exist and the cert is from this CA."""
    crt, key, csr = out.with_suffix(".crt"), out.with_suffix(".key"), out.with_suffix(".csr")
    if crt.exists() and key.exists() and _signed_by(crt, ca.cert):
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(key))
    key.chmod(0o600)
    _openssl("req", "-new", "-key", str(key), "-subj", subject, "-out", str(csr))
    ext = out.with_suffix(".ext")
    lines = ["basicConstraints=critical,CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment"]
    lines.append("extendedKeyUsage=" + ("serverAuth" if sans else "clientAuth"))
    if sans:
        lines.append("subjectAltName=" + ",".join(sans))
    ext.write_text("\n".join(lines) + "\n")
    _openssl(
        # A random serial: -CAcreateserial would write a serial file beside kwokctl's CA.
        "x509", "-req", "-in", str(csr), "-CA", str(ca.cert), "-CAkey", str(ca.key),
        "-set_serial", f"0x{secrets.token_hex(16)}",
        "-days", str(days), "-sha256", "-extfile", str(ext), "-out", str(crt),
    )  # fmt: skip
    csr.unlink(missing_ok=True)
    ext.unlink(missing_ok=True)


def _signed_by(crt: Path, ca_cert: Path) -> bool:
    proc = subprocess.run(["openssl", "verify", "-CAfile", str(ca_cert), str(crt)], capture_output=True, text=True)
    return proc.returncode == 0


def node_credentials(plan: RealNodePlan, ca: ClusterCA) -> dict[str, Path]:
    pki = plan.node_dir / "pki"
    issue(ca, pki / "kubelet-client", f"/O=system:nodes/CN=system:node:{plan.name}")
    issue(ca, pki / "kube-proxy-client", "/CN=system:kube-proxy")
    issue(ca, pki / "coredns-client", f"/CN={DNS_USER}")
    issue(ca, pki / "kube-router-client", f"/CN={NETPOL_USER}")
    issue(ca, pki / "kubelet-serving", f"/O=system:nodes/CN=system:node:{plan.name}",
          sans=[f"IP:{plan.node_ip}", f"DNS:{plan.name}"])  # fmt: skip
    return {
        "ca": ca.cert,
        "kubelet_cert": pki / "kubelet-client.crt",
        "kubelet_key": pki / "kubelet-client.key",
        "proxy_cert": pki / "kube-proxy-client.crt",
        "proxy_key": pki / "kube-proxy-client.key",
        "dns_cert": pki / "coredns-client.crt",
        "dns_key": pki / "coredns-client.key",
        "netpol_cert": pki / "kube-router-client.crt",
        "netpol_key": pki / "kube-router-client.key",
    }
