"""Real nodes: the images built here from Debian binaries are reproducible OCI archives that
`ctr images import` names correctly, with non-root users and fixed timestamps."""

from __future__ import annotations

import io
import json
import tarfile

import pytest

from smartnation.tooling.local_clusters.node_images import (
    NONROOT_UID,
    Entry,
    busybox_rootfs,
    oci_archive,
    pause_rootfs,
)

pytestmark = pytest.mark.unit


@pytest.fixture
def fake_binary(tmp_path):
    path = tmp_path / "busybox"
    path.write_bytes(b"\x7fELF pretend static busybox")
    return path


def _members(archive: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        return {m.name: (tar.extractfile(m).read() if m.isfile() else b"") for m in tar.getmembers()}


def _blob(files: dict[str, bytes], digest: str) -> bytes:
    return files[f"blobs/sha256/{digest.split(':')[1]}"]


def test_same_input_same_digest_and_another_input_another(fake_binary, tmp_path):
    first = oci_archive("smartnation.local/t:1", busybox_rootfs(fake_binary), ["/bin/sh"], "65532:65532")
    again = oci_archive("smartnation.local/t:1", busybox_rootfs(fake_binary), ["/bin/sh"], "65532:65532")
    assert first == again
    other_binary = tmp_path / "other"
    other_binary.write_bytes(b"\x7fELF another build")
    other = oci_archive("smartnation.local/t:1", busybox_rootfs(other_binary), ["/bin/sh"], "65532:65532")
    assert other[1] != first[1]


def test_the_archive_is_an_oci_layout_named_for_ctr_and_consistent(fake_binary):
    archive, digest = oci_archive("smartnation.local/t:1", busybox_rootfs(fake_binary), ["/bin/sh"], "65532:65532")
    files = _members(archive)
    assert json.loads(files["oci-layout"])["imageLayoutVersion"] == "1.0.0"
    (entry,) = json.loads(files["index.json"])["manifests"]
    assert entry["digest"] == digest
    assert entry["annotations"]["io.containerd.image.name"] == "smartnation.local/t:1"
    manifest = json.loads(_blob(files, digest))
    config = json.loads(_blob(files, manifest["config"]["digest"]))
    (layer,) = manifest["layers"]
    # Uncompressed layer: its digest is also the diff id the config names.
    assert config["rootfs"]["diff_ids"] == [layer["digest"]]
    assert config["config"]["User"] == "65532:65532"
    for ref in [manifest["config"], layer]:
        assert len(_blob(files, ref["digest"])) == ref["size"]


def test_layers_carry_no_build_time_or_builders_identity(fake_binary):
    archive, digest = oci_archive("x/y:z", busybox_rootfs(fake_binary), ["/bin/sh"], "65532:65532")
    files = _members(archive)
    layer = _blob(files, json.loads(_blob(files, digest))["layers"][0]["digest"])
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        members = tar.getmembers()
    assert members and all(m.mtime == 0 and m.uid == 0 and m.gid == 0 for m in members)
    names = [m.name for m in members]
    assert names == sorted(names)
    assert "bin/busybox" in names and "tmp" in names


def test_the_test_image_has_a_non_root_user_and_the_pause_image_only_catatonit(fake_binary):
    passwd = next(e for e in busybox_rootfs(fake_binary) if e.path == "etc/passwd").data.decode()
    assert f"nonroot:x:{NONROOT_UID}:{NONROOT_UID}:" in passwd
    pause = pause_rootfs(fake_binary)
    files = [e.path for e in pause if e.kind == "file" and not e.path.startswith("etc/")]
    assert files == ["catatonit"]
    assert all(isinstance(e, Entry) for e in pause)
