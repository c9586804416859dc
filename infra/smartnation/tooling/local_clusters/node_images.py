"""The images every real node holds before its kubelet starts, built here from Debian binaries.

No public registry is reachable, so the sandbox ("pause") image comes from Debian's static
catatonit (`catatonit -P` is a pause process), and a tiny test image from Debian's static
busybox. Each is written as an OCI image archive, reproducibly: same input binary, same
digest (fixed timestamps and owners, sorted entries, uncompressed layer), and imported into
the node's containerd with `ctr images import`.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from smartnation.tooling.local_clusters.containerd_config import SANDBOX_IMAGE

BUSYBOX_IMAGE = "smartnation.local/busybox:static"
NONROOT_UID = 65532
PAUSE_UID = 65535
# nslookup has its own resolver: the static busybox's wget and nc resolve names through glibc's
# getaddrinfo, which crashes (SIGSEGV) in an image without the dynamic loader; they take addresses.
BUSYBOX_APPLETS = ("sh", "sleep", "cat", "ls", "id", "echo", "true", "false", "test", "touch", "wget", "nc",
                   "nslookup")  # fmt: skip


@dataclass(frozen=True)
class Entry:
    """One file of a root file system: a directory, a regular file or a symlink."""

    path: str
    kind: str  # "dir" | "file" | "link"
    mode: int = 0o755
    data: bytes = b""
    target: str = ""


def _layer(entries: list[Entry]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in sorted(entries, key=lambda e: e.path):
            info = tarfile.TarInfo(e.path)
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            info.mode = e.mode
            if e.kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif e.kind == "link":
                info.type, info.linkname = tarfile.SYMTYPE, e.target
                tar.addfile(info)
            else:
                info.size = len(e.data)
                tar.addfile(info, io.BytesIO(e.data))
    return buf.getvalue()


def _base(passwd: str, group: str) -> list[Entry]:
    dirs = ["bin", "dev", "etc", "proc", "sys", "tmp", "var", "run"]
    return [
        *(Entry(d, "dir", 0o1777 if d == "tmp" else 0o755) for d in dirs),
        Entry("etc/passwd", "file", 0o644, passwd.encode()),
        Entry("etc/group", "file", 0o644, group.encode()),
        # Mount targets for what the runtime binds in; an empty file keeps a read-only root happy.
        Entry("etc/hosts", "file", 0o644),
        Entry("etc/hostname", "file", 0o644),
        Entry("etc/resolv.conf", "file", 0o644),
    ]


def pause_rootfs(catatonit: Path = Path("/usr/bin/catatonit")) -> list[Entry]:
    return [
        *_base(
            f"root:x:0:0::/:/nonexistent\npause:x:{PAUSE_UID}:{PAUSE_UID}::/:/nonexistent\n",
            f"root:x:0:\npause:x:{PAUSE_UID}:\n",
        ),  # fmt: skip
        Entry("catatonit", "file", 0o755, catatonit.read_bytes()),
    ]


def busybox_rootfs(busybox: Path = Path("/bin/busybox")) -> list[Entry]:
    return [
        *_base(
            f"root:x:0:0::/:/nonexistent\nnonroot:x:{NONROOT_UID}:{NONROOT_UID}::/tmp:/nonexistent\n",
            f"root:x:0:\nnonroot:x:{NONROOT_UID}:\n",
        ),
        Entry("bin/busybox", "file", 0o755, busybox.read_bytes()),
        *(Entry(f"bin/{a}", "link", 0o777, target="busybox") for a in BUSYBOX_APPLETS),
    ]


def _blob(blobs: dict[str, bytes], data: bytes) -> dict:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return {"digest": digest, "size": len(data)}


def oci_archive(name: str, entries: list[Entry], entrypoint: list[str], user: str) -> tuple[bytes, str]:
    """An OCI image layout as a tar archive, and the image's manifest digest."""
    blobs: dict[str, bytes] = {}
    layer = _layer(entries)
    layer_ref = _blob(blobs, layer)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {"Entrypoint": entrypoint, "User": user, "WorkingDir": "/", "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [layer_ref["digest"]]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "smartnation node_images.py"}],
    }
    config_ref = _blob(blobs, json.dumps(config, sort_keys=True, separators=(",", ":")).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config_ref},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **layer_ref}],
    }
    manifest_ref = _blob(blobs, json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode())
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                **manifest_ref,
                "platform": {"architecture": "amd64", "os": "linux"},
                # ctr names the imported image after this annotation.
                "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": name},
            }
        ],
    }
    files = [
        Entry("oci-layout", "file", 0o644, b'{"imageLayoutVersion":"1.0.0"}'),
        Entry("index.json", "file", 0o644, json.dumps(index, sort_keys=True).encode()),
        Entry("blobs", "dir"),
        Entry("blobs/sha256", "dir"),
        *(Entry(f"blobs/sha256/{d.split(':')[1]}", "file", 0o644, data) for d, data in blobs.items()),
    ]
    return _layer(files), manifest_ref["digest"]


def node_images() -> dict[str, tuple[bytes, str]]:
    """Every image a node is given: name -> (archive, manifest digest)."""
    return {
        SANDBOX_IMAGE: oci_archive(SANDBOX_IMAGE, pause_rootfs(), ["/catatonit", "-P"], f"{PAUSE_UID}:{PAUSE_UID}"),
        BUSYBOX_IMAGE: oci_archive(BUSYBOX_IMAGE, busybox_rootfs(), ["/bin/sh"], f"{NONROOT_UID}:{NONROOT_UID}"),
    }


def ctr(socket: Path, *args: str, stdin: bytes | None = None) -> str:
    proc = subprocess.run(["ctr", "--address", str(socket), "--namespace", "k8s.io", *args], input=stdin,
                          capture_output=True)  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"ctr {' '.join(args[:2])} failed: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout.decode()


def import_images(socket: Path, workdir: Path) -> list[str]:
    """Imports every node image the node's containerd lacks (or holds at another digest)."""
    present = {}
    for line in ctr(socket, "images", "ls").splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 3:
            present[parts[0]] = parts[2]
    imported = []
    for name, (archive, digest) in node_images().items():
        if present.get(name) == digest:
            continue
        workdir.mkdir(parents=True, exist_ok=True)
        path = workdir / (name.replace("/", "_").replace(":", "_") + ".oci.tar")
        path.write_bytes(archive)
        ctr(socket, "images", "import", "--platform", "linux/amd64", str(path))
        imported.append(name)
    return imported
