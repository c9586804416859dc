"""Root filesystems and layers: trimming, accounts, and layers that are the same bytes every time."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest

from smartnation.tooling.images import rootfs

pytestmark = pytest.mark.unit

EPOCH = 1735689600


def _tree(root: Path) -> Path:
    (root / "usr/sbin").mkdir(parents=True)
    (root / "usr/bin").mkdir(parents=True)
    (root / "bin").mkdir()
    (root / "usr/share/doc/pkg").mkdir(parents=True)
    (root / "usr/share/man/man1").mkdir(parents=True)
    (root / "var/lib/dpkg").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "usr/sbin/daemon").write_text("daemon")
    (root / "usr/bin/passwd").write_text("setuid tool")
    (root / "bin/dash").write_text("shell")
    (root / "bin/sh").symlink_to("dash")
    (root / "usr/share/doc/pkg/copyright").write_text("licence")
    (root / "usr/share/doc/pkg/changelog.gz").write_text("history")
    (root / "usr/share/man/man1/daemon.1").write_text("manual")
    (root / "var/lib/dpkg/status").write_text("state")
    (root / "etc/shadow").write_text("root:*:")
    os.link(root / "usr/sbin/daemon", root / "usr/sbin/daemon-alias")
    return root


def test_trim_keeps_only_the_listed_executables_and_the_licences(tmp_path: Path) -> None:
    root = _tree(tmp_path / "root")
    rootfs.trim(root, keep_executables=["usr/sbin/daemon", "bin/sh", "bin/dash"])
    assert (root / "usr/sbin/daemon").is_file()
    assert (root / "bin/sh").is_symlink()
    assert not (root / "usr/bin/passwd").exists()
    assert not (root / "usr/sbin/daemon-alias").exists()
    assert (root / "usr/share/doc/pkg/copyright").read_text() == "licence"
    assert not (root / "usr/share/doc/pkg/changelog.gz").exists()
    assert not (root / "usr/share/man").exists()
    assert not (root / "var/lib/dpkg").exists()


def test_trim_refuses_an_image_without_an_executable_it_needs(tmp_path: Path) -> None:
    root = _tree(tmp_path / "root")
    with pytest.raises(FileNotFoundError, match="usr/bin/psql"):
        rootfs.trim(root, keep_executables=["usr/sbin/daemon", "usr/bin/psql"])


def test_accounts_have_no_login_shell_and_no_password_files(tmp_path: Path) -> None:
    root = _tree(tmp_path / "root")
    rootfs.write_accounts(root, [rootfs.Account("postgres", 70, "/var/lib/postgresql")])
    passwd = (root / "etc/passwd").read_text().splitlines()
    assert passwd == ["root:x:0:0::/root:/sbin/nologin", "postgres:x:70:70::/var/lib/postgresql:/sbin/nologin"]
    assert (root / "etc/group").read_text().splitlines() == ["root:x:0:", "postgres:x:70:"]
    assert not (root / "etc/shadow").exists()


def test_a_layer_is_the_same_bytes_whatever_the_files_times(tmp_path: Path) -> None:
    first = _tree(tmp_path / "a")
    second = _tree(tmp_path / "b")
    # Different times and creation order on disk must not show in the layer.
    os.utime(second / "usr/sbin/daemon", (1, 1))
    os.utime(first / "etc", (2_000_000_000, 2_000_000_000))
    rootfs.write_layer(first, tmp_path / "a.tar", EPOCH)
    rootfs.write_layer(second, tmp_path / "b.tar", EPOCH)
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()


def test_a_layer_is_sorted_dated_and_owned_by_number_only(tmp_path: Path) -> None:
    root = _tree(tmp_path / "root")
    os.chown(root / "var/lib/dpkg/status", 70, 70)
    rootfs.write_layer(root, tmp_path / "layer.tar", EPOCH)
    with tarfile.open(tmp_path / "layer.tar") as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names, key=str.encode)
    assert {m.mtime for m in members} == {EPOCH}
    assert {(m.uname, m.gname) for m in members} == {("", "")}
    status = next(m for m in members if m.name == "var/lib/dpkg/status")
    assert (status.uid, status.gid) == (70, 70)
    links = {m.name: m for m in members if m.islnk() or m.issym()}
    assert links["bin/sh"].linkname == "dash"
    # The second name of a hard-linked file is a link to the first, not a second copy.
    assert links["usr/sbin/daemon-alias"].islnk() and links["usr/sbin/daemon-alias"].linkname == "usr/sbin/daemon"


def test_a_layer_leaves_out_device_nodes_and_sockets(tmp_path: Path) -> None:
    import socket

    root = _tree(tmp_path / "root")
    (root / "dev").mkdir()
    os.mkfifo(root / "dev/fifo")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(root / "dev/sock"))
    try:
        rootfs.write_layer(root, tmp_path / "layer.tar", EPOCH)
    finally:
        sock.close()
    with tarfile.open(tmp_path / "layer.tar") as tar:
        names = tar.getnames()
    assert "dev" in names
    assert "dev/fifo" not in names and "dev/sock" not in names
