"""`make images`: build or reuse every image, start each site's registry, push what it lacks.

    python -m smartnation.tooling.images [build] [--only NAME ...] [--rebuild] [--no-push]
    python -m smartnation.tooling.images digests       # release name -> repository@sha256 (JSON)
    python -m smartnation.tooling.images lock          # rewrite environments/images.lock.yaml from the last build
    python -m smartnation.tooling.images debian-update # rewrite debian-packages.lock.yaml from Debian's newest
    python -m smartnation.tooling.images registry start|stop|status

A warm run builds nothing, pushes nothing and says so. ``--rebuild`` builds again what is cached
and reports whether each image came out with the same digest (the reproducibility check). Every
build checks what it made against environments/images.lock.yaml (the digests the environments
deploy, lock.py) and fails, before pushing, when an image is missing there or has another digest.
Every Debian package an image unpacks is pinned by debian-packages.lock.yaml (debian_lock.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from smartnation.paths import images_lock_file
from smartnation.settings.errors import SettingsError
from smartnation.tooling.images import debian_lock, lock
from smartnation.tooling.images.builder import Builder, BuiltImage
from smartnation.tooling.images.cache import ImageCache, image_cache
from smartnation.tooling.images.pins import IMAGE_NAMES, Pins, PinsError, load_pins
from smartnation.tooling.images.recipes import all_recipes
from smartnation.tooling.images.registry import RegistryError, site_registries
from smartnation.tooling.images.steps import ImageBuildError
from smartnation.tooling.toolchain.cache import layout

REQUIRED_COMMANDS = ("mmdebstrap", "umoci", "skopeo", "docker-registry", "cmake", "go", "chroot", "ldconfig")


class ImagesError(RuntimeError):
    pass


def digest_map(built: list[BuiltImage]) -> dict[str, str]:
    """Release name (environments' releases.components key) -> repository@sha256."""
    refs: dict[str, str] = {}
    for image in built:
        for release, repository in image.repositories.items():
            refs[release] = image.reference(repository)
    return dict(sorted(refs.items()))


def prune(cache: ImageCache, names: set[str]) -> None:
    """Removes finished images no recipe builds any more (a replaced image must not pass for a
    current one: the digests, the registries and the tests read every finished image)."""
    for finished in sorted(cache.oci.glob("*-*")) if cache.oci.is_dir() else []:
        name = finished.name.rpartition("-")[0]
        if finished.is_dir() and not name.startswith(".partial") and name not in names:
            print(f"images: removing {finished.name} (no longer built)")
            shutil.rmtree(finished, ignore_errors=True)


def check_commands() -> None:
    missing = [c for c in REQUIRED_COMMANDS if not shutil.which(c)]
    if missing:
        raise ImagesError(f"missing {', '.join(missing)}: run `bash .ci/image-deps.sh` (as root) first")


def build(pins: Pins, cache: ImageCache, only: list[str], rebuild: bool, fresh_go_cache: bool, push: bool) -> int:
    check_commands()
    recipes = [r for r in all_recipes(pins) if not only or r.name in only]
    builder = Builder(pins, cache, layout(), total=len(recipes))
    go_env: dict[str, str] = {}
    scratch_gocache = None
    if fresh_go_cache:
        scratch_gocache = Path(tempfile.mkdtemp(prefix="gocache-", dir=cache.root))
        go_env["GOCACHE"] = str(scratch_gocache)
    started = time.monotonic()
    if not only:
        prune(cache, {r.name for r in recipes})
    try:
        built = [builder.ensure(r, rebuild=rebuild, go_env=go_env) for r in recipes]
    finally:
        if scratch_gocache:
            shutil.rmtree(scratch_gocache, ignore_errors=True)
    if not only:
        # Before the lock check: `make images-lock` rewrites the lock from this record.
        cache.digests.write_text(json.dumps(digest_map(built), indent=2) + "\n")
    lock.verify(lock.built_entries(built), lock.read_lock(images_lock_file()), complete=not only)
    pushed = 0
    if push:
        for registry in site_registries(cache):
            registry.ensure_running(say=print)
            for image in built:
                pushed += registry.ensure_image(image, say=print)
    total = time.monotonic() - started
    rebuilt = [b for b in built if b.status == "built"]
    if not rebuilt and not pushed:
        print(f"images: nothing to do: {len(built)} images cached" + (", every registry holds them" if push else ""))
    else:
        print(f"images: {len(rebuilt)} built, {pushed} pushed in {total:.0f}s")
    differing = [b.name for b in built if b.reproduced is False]
    if differing:
        print(f"images: NOT reproduced (digest changed on rebuild): {', '.join(differing)}", file=sys.stderr)
        return 2
    if not only:
        print(f"images: digests in {cache.digests}")
    return 0


def write_lock(pins: Pins, cache: ImageCache) -> int:
    """`make images-lock`: the lock from the last full build, with the tags the pins give."""
    path = images_lock_file()
    entries = lock.last_build(pins, cache)
    changed = lock.write_lock(path, entries)
    print(f"images: {path} {'rewritten' if changed else 'already says so'}: {len(entries)} images")
    return 0


def debian_update(pins: Pins, cache: ImageCache) -> int:
    """`make images-debian-update`: build every Debian-based image with the newest package versions
    the mirror offers and rewrite debian-packages.lock.yaml from what went in.

    Nothing is pushed and environments/images.lock.yaml is left alone: the images then change on
    purpose, through `make images` and `make images-lock`, like any other pin change."""
    check_commands()
    unlocked = dataclasses.replace(pins, debian_lock=None)
    recipes = [r for r in all_recipes(unlocked) if "debian_packages" in r.inputs]
    builder = Builder(unlocked, cache, layout(), total=len(recipes))
    manifests: dict[str, dict[str, str]] = {}
    for recipe in recipes:
        image = builder.ensure(recipe)
        record = json.loads((image.layout / "built.json").read_text())
        manifests[recipe.name] = debian_lock.parse_manifest(record["debian_packages"])
    newest = debian_lock.union(manifests)
    before = dict(pins.debian_lock or ())
    debian_lock.write(debian_lock.LOCK_FILE, newest)
    changed = debian_lock.changes(before, newest)
    if not changed:
        print(f"images: {debian_lock.SHOWN} already says what Debian offers: {len(newest)} packages")
        return 0
    print(f"images: {debian_lock.SHOWN} rewritten: {len(changed)} of {len(newest)} packages changed:")
    for line in changed:
        print(f"  {line}")
    print("images: next: `make images` (the images' digests change with their packages, so it stops at "
          "environments/images.lock.yaml), `make images-lock`, commit both lock files")  # fmt: skip
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m smartnation.tooling.images", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    b = sub.add_parser("build", help="build or reuse every image and push it to each site registry (default)")
    for p in (parser, b):
        p.add_argument("--only", action="append", choices=IMAGE_NAMES, default=[], help="build only this image")
        p.add_argument("--rebuild", action="store_true", help="build again what is cached and compare digests")
        p.add_argument("--fresh-go-cache", action="store_true", help="with --rebuild: compile Go code from scratch")
        p.add_argument("--no-push", action="store_true", help="do not start the registries or push")
    sub.add_parser("digests", help="print release name -> repository@sha256 of the last build (JSON)")
    sub.add_parser("lock", help="rewrite environments/images.lock.yaml from the last build (make images-lock)")
    sub.add_parser(
        "debian-update",
        help="rewrite debian-packages.lock.yaml with the newest Debian packages (make images-debian-update)",
    )
    r = sub.add_parser("registry", help="the local site registries")
    r.add_argument("action", choices=("start", "stop", "status"))
    args = parser.parse_args(argv)
    cache = image_cache()
    try:
        pins = load_pins()
        if args.command == "digests":
            if not cache.digests.is_file():
                raise ImagesError("no images built yet: run `make images`")
            print(cache.digests.read_text(), end="")
            return 0
        if args.command == "lock":
            return write_lock(pins, cache)
        if args.command == "debian-update":
            return debian_update(pins, cache)
        if args.command == "registry":
            registries = site_registries(cache)
            for registry in registries:
                if args.action == "start":
                    registry.ensure_running(say=print)
                elif args.action == "stop":
                    registry.stop(say=print)
                else:
                    print(registry.describe())
            if args.action == "status":
                return 0 if all(reg.running() for reg in registries) else 3
            return 0
        return build(pins, cache, args.only, args.rebuild, args.fresh_go_cache, not args.no_push)
    except (
        ImagesError,
        PinsError,
        ImageBuildError,
        RegistryError,
        SettingsError,
        lock.LockError,
        debian_lock.DebianLockError,
    ) as exc:
        print(f"images failed: {exc}", file=sys.stderr)
        return 1
