"""cert-manager on the local stand-ins (cert_manager.py, cert_manager_service.py): the controller's
command line, the profile's CA issuer, the CRDs from the module, the CA made once, the process
started, kept, restarted and stopped by PID; and the toolchain recipe that builds it."""

from __future__ import annotations

import base64
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from smartnation.tooling.local_clusters import cert_manager_service
from smartnation.tooling.local_clusters.cert_manager import (
    NAMESPACE,
    CertificateAuthority,
    ca_secret_name,
    ca_subject,
    controller_argv,
    crd_documents,
    issuer_documents,
)
from smartnation.tooling.local_clusters.cert_manager_service import CertManagerService
from smartnation.tooling.local_clusters.node_processes import alive
from smartnation.tooling.local_clusters.simulation import ClusterError, LocalCluster
from smartnation.tooling.toolchain.cache import CacheLayout
from smartnation.tooling.toolchain.recipes import CERT_MANAGER_MAIN, RECIPES
from smartnation.tooling.toolchain.versions import load_pins

pytestmark = pytest.mark.unit
PROFILES = sorted((Path(__file__).resolve().parents[2] / "environments" / "clusters").glob("*.yaml"))


@pytest.fixture(params=PROFILES, ids=lambda p: p.stem)
def cluster(request):
    return LocalCluster.read(request.param)


def _flags(argv: list[str]) -> dict[str, str]:
    pairs = [a.removeprefix("--").split("=", 1) for a in argv[1:]]
    assert all(len(p) == 2 for p in pairs), argv  # every flag spelled --key=value, none positional
    flags = dict(pairs)
    assert len(flags) == len(pairs), "a flag given twice"
    return flags


def test_the_controller_talks_to_its_own_cluster_and_owns_the_secrets_it_writes(tmp_path):
    kubeconfig = tmp_path / "clusters" / "kwok" / "clusters" / "monaco-onprem" / "kubeconfig.yaml"
    argv = controller_argv(tmp_path / "cert-manager-controller", kubeconfig)
    assert argv[0] == str(tmp_path / "cert-manager-controller")
    flags = _flags(argv)
    assert flags["kubeconfig"] == str(kubeconfig)
    # The namespace where the ClusterIssuer's key pair is looked up is the one we write it to.
    assert flags["cluster-resource-namespace"] == NAMESPACE
    # Deleting a Certificate deletes its key pair (no Secret outlives a destroyed environment).
    assert flags["enable-certificate-owner-ref"] == "true"
    assert int(flags["workers"]) <= 2


def test_the_profiles_issuer_is_a_ca_cluster_issuer_over_the_secret_we_write(cluster):
    docs = issuer_documents(cluster, b"CERT PEM", b"KEY PEM")
    assert [d["kind"] for d in docs] == ["Namespace", "Secret", "ClusterIssuer"]  # apply order
    namespace, secret, issuer = docs
    assert namespace["metadata"]["name"] == NAMESPACE == secret["metadata"]["namespace"]
    # The program's Certificates name the profile's issuer as a ClusterIssuer (certificates.py).
    assert issuer["metadata"]["name"] == cluster.profile.ingress.tls_issuer
    assert issuer["spec"] == {"ca": {"secretName": secret["metadata"]["name"]}}
    assert secret["metadata"]["name"] == ca_secret_name(cluster)
    assert secret["type"] == "kubernetes.io/tls"
    assert {k: base64.b64decode(v) for k, v in secret["data"].items()} == {
        "tls.crt": b"CERT PEM",
        "tls.key": b"KEY PEM",
    }
    # Piped through yaml.safe_dump_all into kubectl: plain data only.
    assert list(yaml.safe_load_all(yaml.safe_dump_all(docs))) == docs


def test_each_cluster_has_its_own_ca_subject():
    subjects = {ca_subject(LocalCluster.read(p)) for p in PROFILES}
    assert len(subjects) == len(PROFILES)


def test_crds_come_from_the_module_and_nothing_else(tmp_path):
    with pytest.raises(ClusterError, match="make bootstrap"):
        crd_documents(tmp_path / "absent")
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "certificates.cert-manager.io"},
        "spec": {"group": "cert-manager.io"},
    }
    (tmp_path / "cert-manager.io_certificates.yaml").write_text("---\n" + yaml.safe_dump(crd))
    assert crd_documents(tmp_path) == [crd]
    (tmp_path / "extra.yaml").write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Secret"}))
    with pytest.raises(ClusterError, match="only cert-manager's CustomResourceDefinitions"):
        crd_documents(tmp_path)


def test_the_ca_is_made_once_and_kept(tmp_path):
    ca = CertificateAuthority(tmp_path / "ca", "/O=smartnation local clusters/OU=test/CN=test-ca")
    cert, key, made = ca.ensure()
    assert made and b"BEGIN CERTIFICATE" in cert and b"PRIVATE KEY" in key
    assert ca.key_file.stat().st_mode & 0o077 == 0
    again = ca.ensure()
    assert again == (cert, key, False)
    text = subprocess.run(
        ["openssl", "x509", "-noout", "-text", "-in", str(ca.cert_file)], capture_output=True, text=True, check=True
    ).stdout
    assert "CA:TRUE, pathlen:0" in text and "Certificate Sign" in text and "CN = test-ca" in text
    # A CA whose certificate went missing is made anew, never half-reused.
    ca.cert_file.unlink()
    assert ca.ensure()[2] is True


def test_a_ca_that_openssl_refuses_says_where(tmp_path):
    ca = CertificateAuthority(tmp_path / "ca", "not-a-distinguished-name")
    with pytest.raises(ClusterError, match=str(tmp_path / "ca")):
        ca.ensure()


@pytest.fixture
def service(tmp_path, monkeypatch):
    """The service of a cluster in a scratch cache, with a stand-in binary that just waits."""
    cache = CacheLayout(tmp_path)
    cluster = LocalCluster.read(PROFILES[0])
    svc = CertManagerService(cache, cluster, tmp_path / "kubeconfig.yaml")
    svc.binary.parent.mkdir(parents=True)
    svc.binary.write_text("#!/bin/sh\nexec sleep 60\n")
    svc.binary.chmod(0o755)
    yield svc
    svc.down()


def test_the_controller_is_started_kept_restarted_and_stopped_by_pid(service, monkeypatch):
    assert "started" in service.up()
    first = service.running()
    assert first and alive(first)
    assert service.status() == f"running (pid {first.pid})"
    assert "running" in service.up() and service.running() == first  # same command line: kept
    log = service.log_file.read_text()
    assert str(service.binary) in log and "--kubeconfig=" in log  # the log says what ran

    monkeypatch.setattr(cert_manager_service, "controller_argv", lambda binary, kubeconfig: [str(binary), "--v=4"])
    assert "restarted" in service.up()
    second = service.running()
    assert second and second != first and not alive(first)

    assert service.down() == "cert-manager controller stopped"
    assert not alive(second) and service.status() == "stopped"
    assert service.down() == "cert-manager controller not running"


def test_a_dead_controller_is_started_again(service):
    service.up()
    first = service.running()
    subprocess.run(["kill", "-9", str(first.pid)], check=True)
    for _ in range(100):
        if not alive(first):
            break
        subprocess.run(["sleep", "0.05"], check=True)
    assert "started" in service.up()
    assert service.running() not in (None, first)


def test_reset_removes_the_ca_and_the_log(service):
    service.issuer()
    service.up()
    service.reset()
    assert service.running() is None
    assert not service.ca.directory.exists() and not service.log_file.exists()


def test_a_missing_binary_says_run_bootstrap(service):
    service.binary.unlink()
    with pytest.raises(ClusterError, match="make bootstrap"):
        service.up()


def test_the_recipe_reads_the_version_our_binary_prints():
    pin, recipe = load_pins()["cert-manager"], RECIPES["cert-manager"]
    assert pin.module == "github.com/cert-manager/cert-manager" and pin.module_version == f"v{pin.version}"
    assert recipe.binaries == ("cert-manager-controller",)
    match = re.search(recipe.version_pattern, f"cert-manager-controller v{pin.version}\n")
    assert match and match.group(1) == pin.version


def test_only_the_issuing_controllers_are_linked_in():
    """No ACME, Vault, Venafi or shims: their packages are never imported, so never linked."""
    imports = re.findall(r'"(github.com/cert-manager/cert-manager/[^"]+)"', CERT_MANAGER_MAIN.read_text())
    assert imports
    assert not [i for i in imports if re.search(r"acme|vault|venafi|certificate-shim|webhook|cainjector", i)]
    assert "github.com/cert-manager/cert-manager/pkg/issuer/ca" in imports
