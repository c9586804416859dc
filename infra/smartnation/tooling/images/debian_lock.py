"""debian-packages.lock.yaml: the exact version of every Debian package that goes into an image.

images.yaml pins the packages each image asks for (mosquitto, postgresql-15, python3.11); apt
resolves their dependencies (libc6, libssl3, libzstd1, ...) to whatever the mirror offers that
day. Debian publishes security updates into bookworm-security between point releases, so the
same pins gave another image a week later: a rebuilt broker came out with a newer libzstd1 and
no longer matched environments/images.lock.yaml. This lock closes that gap: every build pins
every package it unpacks to the version recorded here (apt preferences), and fails, naming the
package, when one went in at another version or is not recorded.

Taking Debian's updates is a deliberate step: `make images-debian-update` builds with the newest
versions the mirror offers, rewrites this file from what went in and prints what changed; then
`make images` and `make images-lock` record the new image digests, which are released like any
other change. A locked version the mirror no longer offers (a point release folded the security
update into the main suite) fails the build with the same advice.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import yaml

from smartnation.tooling.images import lock_files

LOCK_FILE = Path(__file__).with_name("debian-packages.lock.yaml")
SHOWN = "infra/smartnation/tooling/images/debian-packages.lock.yaml"
UPDATE = "make images-debian-update"

HEADER = f"""\
# Written by the image build, never by hand: `{UPDATE}` rewrites it from the Debian packages
# that went into the images when built with the newest versions the mirror offers.
#
# Why: images.yaml pins the packages each image asks for; this pins everything apt unpacks with
# them (libc6, libssl3, ...), so the same pins give the same image digest on every machine and
# every day, until this file changes on purpose (module debian_lock.py).
"""

# Debian policy: package names are lower case alphanumerics and + - . (at least two characters);
# versions are [epoch:]upstream[-revision] from alphanumerics and . + ~ - :
_NAME = re.compile(r"[a-z0-9][a-z0-9+.-]+")
_VERSION = re.compile(r"([0-9]+:)?[0-9][A-Za-z0-9.+~:-]*")


class DebianLockError(ValueError):
    """The lock file is malformed or disagrees with what went into an image; names the file and key."""


def read(path: Path = LOCK_FILE, shown: str = SHOWN) -> dict[str, str]:
    """Package -> exact version; every problem names the file and the key."""
    if not path.is_file():
        raise DebianLockError(f"{shown}: missing: `{UPDATE}` writes it")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise DebianLockError(f"{shown}: cannot read: {exc}") from exc
    if not isinstance(data, Mapping) or set(data) != {"packages"} or not isinstance(data["packages"], Mapping):
        raise DebianLockError(f"{shown}: expected one key, `packages`, mapping each Debian package to its version")
    packages: dict[str, str] = {}
    for name, version in data["packages"].items():
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise DebianLockError(f"{shown}: packages.{name}: not a Debian package name")
        if not isinstance(version, str) or not _VERSION.fullmatch(version):
            raise DebianLockError(f"{shown}: packages.{name}: {version!r} is not a Debian version (quote it)")
        packages[name] = version
    if not packages:
        raise DebianLockError(f"{shown}: packages is empty: `{UPDATE}` writes it")
    return packages


def render(packages: Mapping[str, str]) -> str:
    return lock_files.render(HEADER, "packages", packages)


def write(path: Path, packages: Mapping[str, str]) -> bool:
    """Writes the lock; returns whether its content changed."""
    return lock_files.write_if_changed(path, render(packages))


def preferences(packages: Mapping[str, str]) -> str:
    """apt preferences that make each locked version the one apt installs, even over a newer one.

    Priority 1001 also allows a downgrade; a version no index offers any more is ignored by apt,
    and `check` then names it."""
    return "".join(
        f"Package: {name}\nPin: version {version}\nPin-Priority: 1001\n\n" for name, version in sorted(packages.items())
    )


def parse_manifest(lines: Iterable[str]) -> dict[str, str]:
    """The Debian part of an image's package manifest (``name version`` lines; Python packages,
    written ``python:<name> <version>``, and Go programs, ``<name> v... (built ...)``, left out)."""
    went_in: dict[str, str] = {}
    for line in lines:
        parts = line.split()
        if len(parts) == 2 and _NAME.fullmatch(parts[0]) and _VERSION.fullmatch(parts[1]):
            went_in[parts[0]] = parts[1]
    return went_in


def check(went_in: Mapping[str, str], locked: Mapping[str, str], image: str, shown: str = SHOWN) -> None:
    """Every package that went into ``image`` is locked at the version that went in."""
    problems = []
    for name, version in sorted(went_in.items()):
        want = locked.get(name)
        if want is None:
            problems.append(f"{shown}: packages.{name}: missing ({image} needs it; {version} went in)")
        elif want != version:
            problems.append(
                f"{shown}: packages.{name}: the lock says {want}, {version} went in: the mirror no longer "
                "offers the locked version (a Debian point release replaced it)"
            )
    if problems:
        raise DebianLockError(
            f"the Debian packages of {image} are not the locked ones:\n  "
            + "\n  ".join(problems)
            + f"\nTake Debian's current versions on purpose: `{UPDATE}`, then `make images` and "
            "`make images-lock`, and commit both lock files."
        )


def union(manifests: Mapping[str, Mapping[str, str]], shown: str = SHOWN) -> dict[str, str]:
    """One lock from every image's packages; two images with one package at two versions is an error
    (the mirror changed while they were built: run the update again)."""
    packages: dict[str, str] = {}
    seen_in: dict[str, str] = {}
    for image, went_in in sorted(manifests.items()):
        for name, version in went_in.items():
            if name in packages and packages[name] != version:
                raise DebianLockError(
                    f"{shown}: packages.{name}: {seen_in[name]} got {packages[name]}, {image} got {version} "
                    "(the mirror changed during the build): run it again"
                )
            packages[name] = version
            seen_in.setdefault(name, image)
    return packages


def changes(before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    """What an update changed, one line per package: ``name old -> new``, ``+name new``, ``-name old``."""
    lines = []
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        if old is None:
            lines.append(f"+{name} {new}")
        elif new is None:
            lines.append(f"-{name} {old}")
        else:
            lines.append(f"{name} {old} -> {new}")
    return lines
