"""environments/images.lock.yaml: every image the build made, ``repository:tag`` -> manifest digest.

What is deployed names each image by digest (``<registry>/<repository>@sha256:...``), and that
digest must come from the build, never from a person: the lock is written here from the last
build (``python -m smartnation.tooling.images lock``, ``make images-lock``), committed beside the
environments, and read by the settings loader, which resolves each environment's release
(repository and tag) to its digest. ``make images`` checks every image it builds against the
lock, so a lock that no longer says what this code builds fails the build, never a deployment.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from smartnation.settings.errors import SettingsError
from smartnation.settings.yaml_files import read_yaml
from smartnation.tooling.images import lock_files

if TYPE_CHECKING:
    # Annotations only: the settings loader reads the lock through this module, and must not
    # import the image builder (umoci, the Go toolchain) to do so.
    from smartnation.tooling.images.builder import BuiltImage
    from smartnation.tooling.images.cache import ImageCache
    from smartnation.tooling.images.pins import Pins

SHOWN = "environments/images.lock.yaml"
"""How messages name the lock (it lives in the environments directory, paths.IMAGES_LOCK)."""

HEADER = """\
# Written by the image build, never by hand: `make images-lock` (python -m smartnation.tooling.images
# lock) rewrites it from the last `make images` (its digests and the tags in
# infra/smartnation/tooling/images/images.yaml).
#
# Why: what is deployed names every image by digest, and that digest must be what this code
# builds. The settings loader resolves each environment's `releases.components.<name>`
# (repository, tag) to its digest here; a release not listed is refused. `make images` fails
# when an image it builds is missing here or has another digest (a pin changed: rerun
# `make images-lock` and commit; or a build that is not reproducible).
"""

_KEY = re.compile(r"[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


class LockError(RuntimeError):
    """The lock disagrees with the build, or the build the lock would be written from is missing."""


def image_key(repository: str, tag: str) -> str:
    """The lock's key of an image: ``repository:tag`` (no registry: every site holds the same bytes)."""
    return f"{repository}:{tag}"


def built_entries(built: Iterable[BuiltImage]) -> dict[str, str]:
    """``repository:tag`` -> digest of every repository each built image is pushed under."""
    return {
        image_key(repository, image.tag): image.digest for image in built for repository in image.repositories.values()
    }


def render(entries: Mapping[str, str]) -> str:
    """The lock's text: the header, then the images sorted by key."""
    return lock_files.render(HEADER, "images", entries)


def read_lock(path: Path, shown: str = SHOWN) -> dict[str, str]:
    """The lock's ``repository:tag`` -> digest; every problem is a ``SettingsError`` naming file and key."""
    if not path.is_file():
        raise SettingsError(
            shown, "<file>", "missing: `make images` builds the images and `make images-lock` writes it"
        )
    data = read_yaml(path, shown)
    if not isinstance(data, Mapping) or set(data) != {"images"} or not isinstance(data["images"], Mapping):
        raise SettingsError(shown, "<top level>", "expected one key, `images`, mapping repository:tag to a digest")
    entries: dict[str, str] = {}
    for key, digest in data["images"].items():
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            raise SettingsError(shown, f"images.{key}", "expected a key repository:tag (no registry, a pinned tag)")
        if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
            raise SettingsError(shown, f"images.{key}", f"expected sha256: and 64 hex digits, got {digest!r}")
        entries[key] = digest
    return entries


def last_build(pins: Pins, cache: ImageCache) -> dict[str, str]:
    """``repository:tag`` -> digest of the last full build, with the tags the pins give now.

    digests.json names each release's repository and digest; the tag is the pins'. A pin whose
    tag changed since that build would put the new tag on the old bytes, so each digest must be
    a finished image in the cache built with the pin's tag and pushed under that repository."""
    if not cache.digests.is_file():
        raise LockError(f"no images built yet ({cache.digests} is missing): run `make images` first")
    references = json.loads(cache.digests.read_text())
    finished: dict[str, dict] = {}
    for record in cache.oci.glob("*/built.json") if cache.oci.is_dir() else ():
        data = json.loads(record.read_text())
        finished[data["digest"]] = data
    entries: dict[str, str] = {}
    for release, pin in sorted(pins.images.items()):
        reference = references.get(release)
        if reference is None:
            raise LockError(f"the last build made no {release} image: run `make images` first")
        repository, _, digest = reference.partition("@")
        image = finished.get(digest)
        if repository != pin.repository or image is None or image["tag"] != pin.tag:
            raise LockError(
                f"the last build's {release} ({reference}) is not what images.yaml pins now "
                f"({image_key(pin.repository, pin.tag)}): run `make images` first"
            )
        entries[image_key(pin.repository, pin.tag)] = digest
    return entries


def write_lock(path: Path, entries: Mapping[str, str]) -> bool:
    """Writes the lock; returns whether its content changed."""
    return lock_files.write_if_changed(path, render(entries))


def verify(built: Mapping[str, str], lock: Mapping[str, str], *, complete: bool, shown: str = SHOWN) -> None:
    """Every image just built is in the lock with the digest it came out with.

    ``complete`` (a build of every image): the lock must not list an image no recipe builds any
    more either, or a release could still resolve to bytes this code cannot make again.
    """
    problems = []
    for key, digest in sorted(built.items()):
        locked = lock.get(key)
        if locked is None:
            problems.append(f"{shown}: images.{key}: missing; the build made {digest}")
        elif locked != digest:
            problems.append(f"{shown}: images.{key}: the lock says {locked}, the build made {digest}")
    if complete:
        problems += [
            f"{shown}: images.{key}: no image is built as {key} any more" for key in sorted(set(lock) - set(built))
        ]
    if problems:
        raise LockError(
            "the images built are not the ones the environments deploy:\n  "
            + "\n  ".join(problems)
            + "\nEither a pin or a recipe changed (images.yaml, recipes/): run `make images-lock` and commit "
            f"{shown} with the change; or the build is not reproducible (same inputs, another digest): "
            "`python -m smartnation.tooling.images build --rebuild` compares, and the lock must not be "
            "rewritten to hide it."
        )
