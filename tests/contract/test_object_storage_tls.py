"""Contract: MinIO serves TLS from the certs dir the StatefulSet mounts (``public.crt``,
``private.key``, ``CAs/ca.crt`` out of the cert-manager Secret, laid out as the kubelet lays out a
Secret volume), and its clients verify it the way the program tells them to: ``mc`` (setup Job,
backup, restore) through SSL_CERT_FILE, boto3 (the APIs) through AWS_CA_BUNDLE. Plain HTTP is
refused, another CA is refused, and a renewed key pair is served without a restart (why the
server needs no reloader sidecar). Real binaries, the ones `make images` builds (issue 11, item 9)."""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import SSLError

from service_testing.daemons import _find_program
from smartnation.program.components import object_storage

from . import contract_daemons as cd

pytestmark = pytest.mark.contract

ROOT_USER, ROOT_PASSWORD = "smartnation-root", secrets.token_hex(16)
RENEWAL_WAIT_S = 150
"""MinIO looks at a symlinked certs dir about once a minute."""


class CertsDir:
    """MinIO's ``--certs-dir`` as the kubelet writes the Secret volume with the StatefulSet's items:
    each version in ``..<stamp>/``, ``..data`` a symlink to it, the files symlinks through ``..data``;
    a renewal writes a new version and renames a new ``..data`` over the old one."""

    def __init__(self, root: Path) -> None:
        self.root, self.version = root, 0
        root.mkdir(mode=0o755)

    def write(self, crt: Path, key: Path, ca: Path) -> None:
        self.version += 1
        version = self.root / f"..2026_11_29_00_00_{self.version:02d}.000000001"
        (version / "CAs").mkdir(mode=0o755, parents=True)
        for source, target in ((crt, "public.crt"), (key, "private.key"), (ca, "CAs/ca.crt")):
            (version / target).write_bytes(source.read_bytes())
        staged = self.root / "..data_tmp"
        staged.symlink_to(version.name)
        staged.rename(self.root / "..data")
        for name in ("public.crt", "private.key", "CAs"):
            link = self.root / name
            if not link.is_symlink():
                link.symlink_to(f"..data/{name}")


@dataclasses.dataclass
class TlsStore:
    port: int
    workdir: Path
    mc: str
    env: dict[str, str]
    certs: CertsDir
    ca: Path

    @property
    def endpoint(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def mc_alias(self, ca_file: Path | None, name: str) -> subprocess.CompletedProcess:
        """``mc alias set`` (it probes the server) as the setup Job runs it, with the program's
        client environment (SSL_CERT_FILE) pointing at ``ca_file``, or without it."""
        env = self.env | {"MC_CONFIG_DIR": str(self.workdir / f"mc-{name}")}
        if ca_file is not None:
            env |= {
                e["name"]: e["value"].replace(object_storage.CA_FILE, str(ca_file)) for e in object_storage.ca_env()
            }
        return subprocess.run(
            [self.mc, "alias", "set", "store", self.endpoint, ROOT_USER, ROOT_PASSWORD],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    def served_fingerprint(self) -> str:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as raw, context.wrap_socket(raw) as tls:
            return hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest()


def fingerprint_of(pem: Path) -> str:
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem.read_text())).hexdigest()


@pytest.fixture(scope="module")
def store() -> Iterator[TlsStore]:
    cd.require_binaries(cd.OPENSSL)
    minio, mc = _find_program("MINIO_BINARY", "minio"), _find_program("MC_BINARY", "mc")
    workdir = cd.make_workdir("smartnation-storage-tls-")
    (workdir / "v1").mkdir()
    ca, crt, key = cd.make_tls_material(workdir / "v1", None)
    certs = CertsDir(workdir / "certs")
    certs.write(crt, key, ca)
    port, console = cd.free_port(), cd.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MINIO_", "AWS_", "MC_", "SSL_"))}
    env |= {"HOME": str(workdir), "MINIO_BROWSER": "off", "MINIO_UPDATE": "off"}
    (workdir / "data").mkdir()
    log = workdir / "minio.log"
    with log.open("wb") as handle:
        proc = subprocess.Popen(
            [minio, "server", "--address", f"127.0.0.1:{port}", "--console-address", f"127.0.0.1:{console}",
             "--certs-dir", str(certs.root), str(workdir / "data")],
            stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env | {"MINIO_ROOT_USER": ROOT_USER, "MINIO_ROOT_PASSWORD": ROOT_PASSWORD},
        )  # fmt: skip
    try:
        cd.wait_for_ports(proc, [port], log, "minio")
        yield TlsStore(port, workdir, mc, env, certs, ca)
    finally:
        cd.stop(proc)
        shutil.rmtree(workdir, ignore_errors=True)


def test_plain_http_is_refused(store: TlsStore) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", store.port, timeout=10)
    try:
        connection.request("GET", "/minio/health/live")
        response = connection.getresponse()
        status, body = response.status, response.read().decode(errors="replace")
    except (ConnectionError, http.client.RemoteDisconnected):
        status, body = None, "connection closed"
    finally:
        connection.close()
    assert status != 200, "MinIO answered plain HTTP"
    assert status is None or "HTTPS" in body, body


def test_mc_verifies_minio_with_the_issuers_ca(store: TlsStore, tmp_path: Path) -> None:
    """With the CA the Jobs mount, mc logs in; without it, or with another CA, it refuses the
    server's certificate (there is no --insecure anywhere to fall back on)."""
    trusted = store.mc_alias(store.ca, "trusted")
    assert trusted.returncode == 0, trusted.stderr + trusted.stdout
    untrusted = store.mc_alias(None, "untrusted")
    assert untrusted.returncode != 0
    assert "certificate" in (untrusted.stderr + untrusted.stdout).lower(), untrusted.stderr + untrusted.stdout
    other_ca, _crt, _key = cd.make_tls_material(tmp_path, None)
    wrong = store.mc_alias(other_ca, "wrong-ca")
    assert wrong.returncode != 0 and "certificate" in (wrong.stderr + wrong.stdout).lower()


def _boto3_client(store: TlsStore, ca_file: Path) -> object:
    # What service_common.storage.make_client builds, with the variable the APIs are given
    # (the CA at ``ca_file``): boto3 has no other TLS input.
    given = {object_storage.BOTO3_CA_ENV: str(ca_file)}
    os.environ.update(given)
    try:
        return boto3.client(
            "s3", endpoint_url=store.endpoint, aws_access_key_id=ROOT_USER, aws_secret_access_key=ROOT_PASSWORD,
            region_name="us-east-1", config=Config(s3={"addressing_style": "path"}, signature_version="s3v4",
                                                   retries={"max_attempts": 1}),
        )  # fmt: skip
    finally:
        for name in given:
            del os.environ[name]


def test_boto3_verifies_minio_with_the_bundle_the_apis_get(store: TlsStore, tmp_path: Path) -> None:
    assert "Buckets" in _boto3_client(store, store.ca).list_buckets()
    other_ca, _crt, _key = cd.make_tls_material(tmp_path, None)
    with pytest.raises(SSLError):
        _boto3_client(store, other_ca).list_buckets()


def test_a_renewed_key_pair_is_served_without_a_restart(store: TlsStore) -> None:
    """cert-manager renews in place (same CA, new key) and the kubelet swaps ``..data``: MinIO
    watches its certs dir and serves the new certificate; clients with the CA go on working."""
    directory = store.workdir / "v2"
    directory.mkdir()
    _ca, crt, key = cd.make_tls_material(directory, None)
    first = store.workdir / "v1"
    subprocess.run(
        [cd.OPENSSL, "x509", "-req", "-in", str(directory / "server.csr"), "-CA", str(first / "ca.crt"),
         "-CAkey", str(first / "ca.key"), "-CAcreateserial", "-days", "1", "-extfile", str(directory / "server.ext"),
         "-out", str(crt)],
        check=True, capture_output=True,
    )  # fmt: skip
    assert store.served_fingerprint() == fingerprint_of(first / "server.crt")
    store.certs.write(crt, key, store.ca)
    deadline = time.monotonic() + RENEWAL_WAIT_S
    while store.served_fingerprint() != fingerprint_of(crt):
        assert time.monotonic() < deadline, f"MinIO still serves the old certificate after {RENEWAL_WAIT_S} s"
        time.sleep(1)
    renewed = store.mc_alias(store.ca, "after-renewal")
    assert renewed.returncode == 0, renewed.stderr + renewed.stdout
