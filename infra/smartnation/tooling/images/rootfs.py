"""Root filesystems: Debian packages unpacked by mmdebstrap, trimmed, and written as a reproducible layer.

mmdebstrap's `extract` variant unpacks the named packages and their dependencies without running
any maintainer script, so nothing in the root filesystem depends on when or where it was built,
and no shell or package manager comes along unless a recipe asks for one. What a maintainer
script would have done that the image needs (the service user, the dynamic linker's cache) the
recipe and `finish` do themselves.
"""

from __future__ import annotations

import os
import shlex
import shutil
import stat
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from smartnation.tooling.images import debian_lock
from smartnation.tooling.images.pins import Pins
from smartnation.tooling.images.steps import StepRunner

PACKAGE_MANIFEST = "usr/share/smartnation/packages.txt"
"""Inside every Debian-based image: the Debian packages (name and version) it was made from."""
_HOOK_MANIFEST = ".smartnation-packages"
_PREFERENCES = "smartnation-debian-lock.pref"

BIN_DIRS = ("bin", "sbin", "usr/bin", "usr/sbin", "usr/local/bin", "usr/local/sbin")

# Never needed at run time in a container: documentation, translations, package-manager state,
# init-system and PAM configuration of programs that are not in the image, and perl (only
# maintainer scripts and Debian's wrapper scripts use it).
TRIMMED = (
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "usr/share/lintian",
    "usr/share/bug",
    "usr/share/doc-base",
    "usr/share/menu",
    "usr/share/debconf",
    "usr/share/perl5",
    "usr/share/perl",
    "usr/share/pixmaps",
    "usr/share/bash-completion",
    "usr/share/zsh",
    "usr/share/postgresql-common",
    "usr/lib/x86_64-linux-gnu/perl",
    "usr/lib/x86_64-linux-gnu/perl5",
    "usr/lib/x86_64-linux-gnu/perl-base",
    "usr/lib/systemd",
    "lib/systemd",
    "usr/lib/tmpfiles.d",
    "usr/lib/sysusers.d",
    "var/cache",
    "var/log",
    "var/lib/apt",
    "var/lib/dpkg",
    "var/lib/ucf",
    "var/lib/systemd",
    "etc/apt",
    "etc/dpkg",
    "etc/init.d",
    "etc/logrotate.d",
    "etc/pam.d",
    "etc/security",
    "etc/cron.d",
    "etc/cron.daily",
    "etc/systemd",
    "etc/selinux",
    "etc/default",
    "etc/postgresql-common",
    "etc/alternatives",
    "etc/debconf.conf",
    "etc/adduser.conf",
    "etc/deluser.conf",
    "etc/libaudit.conf",
)


@dataclass(frozen=True)
class Account:
    """A user (and its group of the same name and id) written into /etc/passwd and /etc/group."""

    name: str
    uid: int
    home: str


def debian_rootfs(runner: StepRunner, pins: Pins, packages: Sequence[str], target: Path) -> list[str]:
    """Unpacks ``packages`` (``name`` or ``name=version``) and their dependencies into ``target``,
    every package at the version debian-packages.lock.yaml gives (unless ``pins.debian_lock`` is
    None: the update takes the newest the mirror offers).

    Returns the manifest: one ``name version`` line per Debian package that went in.
    """
    shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    # The hook runs after extraction, before mmdebstrap empties its download cache: the .deb files
    # there are what went in.
    hook = (
        'for deb in "$1"/var/cache/apt/archives/*.deb; do '
        "dpkg-deb --show --showformat='${Package} ${Version}\\n' \"$deb\"; done "
        f'| LC_ALL=C sort > "$1/{_HOOK_MANIFEST}"'
    )
    lock_args: list[str] = []
    preferences = target.parent / f"{target.name}.apt-preferences"
    if pins.debian_lock is not None:
        # Before apt resolves anything: its preferences pin every dependency, not only the packages
        # named, so a security update published since the lock was written does not slip in.
        preferences.write_text(debian_lock.preferences(dict(pins.debian_lock)))
        lock_args.append(
            f'--setup-hook=mkdir -p "$1/etc/apt/preferences.d" && cp {shlex.quote(str(preferences))} '
            f'"$1/etc/apt/preferences.d/{_PREFERENCES}"'
        )
    try:
        runner.run(
            "debian-packages",
            [
                "mmdebstrap",
                "--variant=extract",
                "--mode=root",
                "--format=directory",
                f"--include={','.join(packages)}",
                *lock_args,
                f"--extract-hook={hook}",
                pins.suite,
                str(target),
                str(pins.apt_sources),
            ],
            env={"SOURCE_DATE_EPOCH": str(pins.source_date_epoch), "LC_ALL": "C.UTF-8"},
        )
    finally:
        _remove(preferences)
    manifest_file = target / _HOOK_MANIFEST
    manifest = [line for line in manifest_file.read_text().splitlines() if line.strip()]
    manifest_file.unlink()
    _remove(target / "etc/apt/preferences.d" / _PREFERENCES)
    installed = dict(line.split(" ", 1) for line in manifest)
    for spec in packages:
        name, _, version = spec.partition("=")
        if version and installed.get(name) != version:
            raise runner.fail("debian-packages", f"{name} {version} was pinned, {installed.get(name)} went in")
    if pins.debian_lock is not None:
        try:
            debian_lock.check(installed, dict(pins.debian_lock), runner.image)
        except debian_lock.DebianLockError as exc:
            raise runner.fail("debian-lock", str(exc)) from exc
    return manifest


def trim(rootfs: Path, keep_executables: Iterable[str], extra: Iterable[str] = ()) -> None:
    """Removes TRIMMED and ``extra`` (globs), every executable in BIN_DIRS not in ``keep_executables``
    (paths relative to the root) and the device nodes mmdebstrap made; documentation keeps only the
    licences (usr/share/doc/*/copyright)."""
    keep = {p.strip("/") for p in keep_executables}
    for rel in (*TRIMMED, *extra):
        for path in sorted(rootfs.glob(rel)):
            _remove(path)
    doc = rootfs / "usr/share/doc"
    if doc.is_dir():
        for path in sorted(doc.rglob("*"), reverse=True):
            if path.is_symlink() or (path.is_file() and path.name != "copyright"):
                path.unlink()
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()
    for bin_dir in BIN_DIRS:
        folder = rootfs / bin_dir
        if not folder.is_dir() or folder.is_symlink():
            continue
        for entry in sorted(folder.iterdir()):
            if f"{bin_dir}/{entry.name}" not in keep:
                _remove(entry)
    for dev in sorted((rootfs / "dev").glob("*")):
        _remove(dev)
    missing = sorted(p for p in keep if not os.path.lexists(rootfs / p))
    if missing:
        raise FileNotFoundError(f"executables the image needs are not in its root filesystem: {missing}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()


def write_accounts(rootfs: Path, accounts: Sequence[Account]) -> None:
    """/etc/passwd and /etc/group with root and ``accounts``; no password hashes, no login shell."""
    users = [Account("root", 0, "/root"), *accounts]
    (rootfs / "etc").mkdir(exist_ok=True)
    (rootfs / "etc/passwd").write_text("".join(f"{a.name}:x:{a.uid}:{a.uid}::{a.home}:/sbin/nologin\n" for a in users))
    (rootfs / "etc/group").write_text("".join(f"{a.name}:x:{a.uid}:\n" for a in users))
    for name in ("passwd", "group"):
        (rootfs / "etc" / name).chmod(0o644)
    for leftover in ("etc/shadow", "etc/gshadow", "etc/passwd-", "etc/group-", "etc/subuid", "etc/subgid"):
        _remove(rootfs / leftover)


def finish(runner: StepRunner, rootfs: Path, manifest: Sequence[str]) -> None:
    """What the maintainer scripts would have left: the linker cache; plus the package manifest."""
    if manifest:
        target = rootfs / PACKAGE_MANIFEST
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("".join(f"{line}\n" for line in manifest))
    if (rootfs / "etc/ld.so.conf.d").is_dir():
        (rootfs / "etc/ld.so.conf").write_text("include /etc/ld.so.conf.d/*.conf\n")
        runner.run("linker-cache", ["ldconfig", "-r", str(rootfs)])
    # ldconfig's auxiliary cache records inode times: never reproducible, never needed.
    _remove(rootfs / "var/cache/ldconfig")
    for folder in ("tmp", "var/tmp"):
        path = rootfs / folder
        if path.exists():
            shutil.rmtree(path)
            path.mkdir()
            path.chmod(0o1777)


def base_dirs(rootfs: Path) -> None:
    """The mount points every OCI runtime fills (/dev, /proc, /sys) and a world-writable /tmp."""
    for folder in ("dev", "proc", "sys"):
        (rootfs / folder).mkdir(exist_ok=True)
        (rootfs / folder).chmod(0o755)
    (rootfs / "tmp").mkdir(exist_ok=True)
    (rootfs / "tmp").chmod(0o1777)


def make_dirs(rootfs: Path, dirs: Iterable[tuple[str, int, int]]) -> None:
    """(path, uid, mode): directories a container writes into when nothing is mounted there."""
    for rel, uid, mode in dirs:
        path = rootfs / rel.strip("/")
        path.mkdir(parents=True, exist_ok=True)
        os.chown(path, uid, uid)
        path.chmod(mode)


def install_file(rootfs: Path, rel: str, content: str | bytes, mode: int = 0o644) -> None:
    path = rootfs / rel.strip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        content = content.encode()
    path.write_bytes(content)
    path.chmod(mode)


def write_layer(rootfs: Path, out: Path, epoch: int) -> int:
    """Writes ``rootfs`` as an uncompressed layer: entries in byte order, every mtime ``epoch``,
    numeric owners only. The same tree always gives the same bytes. Returns the bytes of content."""
    entries = sorted(_walk(rootfs), key=lambda rel: rel.encode())
    content = 0
    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out, "w", format=tarfile.GNU_FORMAT) as tar:
        for rel in entries:
            path = rootfs / rel
            mode = path.lstat().st_mode
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)):
                continue  # device nodes, sockets, fifos: the runtime provides /dev
            info = tar.gettarinfo(str(path), arcname=rel)
            info.mtime = epoch
            info.uname = info.gname = ""
            if info.isreg():
                content += info.size
                with path.open("rb") as fh:
                    tar.addfile(info, fh)
            else:
                tar.addfile(info)
    return content


def _walk(rootfs: Path) -> Iterable[str]:
    for folder, dirs, files in os.walk(rootfs):
        base = Path(folder).relative_to(rootfs)
        for name in (*dirs, *files):
            yield (base / name).as_posix()


def tree_size(rootfs: Path) -> int:
    return sum(p.lstat().st_size for p in rootfs.rglob("*") if p.is_file() and not p.is_symlink())
