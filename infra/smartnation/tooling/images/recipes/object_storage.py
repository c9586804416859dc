"""The object-storage images: MinIO server and the mc client, built from their Go modules.

Both are static Go programs (CGO_ENABLED=0, -trimpath) built by the toolchain's wrapper-module
builder (tooling/toolchain/gobuild.py) at the pseudo-versions images.yaml pins, with the version
stamps MinIO's own build script would set, derived from the pseudo-version (commit time and hash).

Entrypoint contracts (components/object_storage.py and database.py):
- server ``minio``: user 1000:1000; ENTRYPOINT ``/usr/bin/minio``, the StatefulSet gives ``args``
  (``server --address :9000 ... /data``); no shell (nothing runs one in that pod); /data exists,
  owned by 1000; HOME=/tmp (the only writable path besides /data under a read-only root);
- client ``mc``: user 1000:1000; ENTRYPOINT ``/usr/bin/mc``; ``sh`` (dash) and ``date`` for the
  bucket setup Job (``sh /setup/setup.sh``) and the backup upload (``sh -c 'mc cp ... $(date ...)'``);
  MC_CONFIG_DIR=/tmp/mc by default (the component sets the same).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from smartnation.tooling.images import rootfs
from smartnation.tooling.images.builder import BuildContext, Recipe
from smartnation.tooling.images.oci import ImageConfig
from smartnation.tooling.images.pins import ImagePin, Pins
from smartnation.tooling.images.recipes import DEBIAN_PATH, labels
from smartnation.tooling.toolchain.gobuild import StepError, build_in_wrapper

UID = 1000
_PSEUDO = re.compile(r"v0\.0\.0-(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})-([0-9a-f]{12})")
CLIENT_TOOLS = ("bin/sh", "bin/dash", "bin/date", "bin/cat", "bin/ls", "bin/sleep", "usr/bin/mc")


def version_stamps(pin: ImagePin, package: str) -> str:
    """-ldflags for MinIO's and mc's version variables, as their buildscripts/gen-ldflags.go sets
    them, from the pseudo-version's commit time and hash. Stripped of symbol tables like theirs."""
    match = _PSEUDO.fullmatch(pin.module_version)
    if not match:
        raise ValueError(f"{pin.name}: {pin.module_version} is not a Go pseudo-version v0.0.0-YYYYMMDDhhmmss-hash")
    year, month, day, hour, minute, second, commit = match.groups()
    version = f"{year}-{month}-{day}T{hour}:{minute}:{second}Z"
    release = f"DEVELOPMENT.{year}-{month}-{day}T{hour}-{minute}-{second}Z"
    stamps = {"Version": version, "ReleaseTag": release, "CommitID": commit, "ShortCommitID": commit}
    stamps["CopyrightYear"] = year
    return "-s -w " + " ".join(f"-X {package}/cmd.{key}={value}" for key, value in sorted(stamps.items()))


def _go_program(ctx: BuildContext, pin: ImagePin, binary: str) -> Path:
    """The static binary of ``pin.module`` at its pinned version, cached under programs/."""
    ldflags = version_stamps(pin, pin.module)
    go_version = subprocess.run(
        ["go", "env", "GOVERSION"], capture_output=True, text=True, env={**os.environ, "GOTOOLCHAIN": "local"}
    ).stdout.strip()

    def build(out: Path) -> None:
        go = ctx.go_runner()
        try:
            build_in_wrapper(
                go,
                tool=f"image-{binary}",
                module=pin.module,
                version=pin.module_version,
                packages=[pin.module],
                out_dir=out,
                ldflags=ldflags,
                progress=lambda message: ctx.progress(f"{binary}: {message}"),
            )
        except StepError as exc:
            raise ctx.runner.fail(f"go-{exc.step}", str(exc)) from exc

    folder = ctx.program(
        binary, {"module": pin.module, "version": pin.module_version, "ldflags": ldflags, "go": go_version}, build
    )
    return folder / binary


def server_recipe(pins: Pins) -> Recipe:
    pin = pins.images["object_storage"]

    def make(ctx: BuildContext, tree: Path) -> list[str]:
        binary = _go_program(ctx, pin, "minio")
        rootfs.install_file(tree, "usr/bin/minio", binary.read_bytes(), mode=0o755)
        rootfs.write_accounts(tree, [rootfs.Account("minio", UID, "/tmp")])
        rootfs.make_dirs(tree, [("data", UID, 0o750), ("tmp", 0, 0o1777)])
        return []

    return Recipe(
        pin=pin,
        config=ImageConfig(
            user=f"{UID}:{UID}",
            entrypoint=("/usr/bin/minio",),
            cmd=("server", "/data"),
            env=(DEBIAN_PATH, "HOME=/tmp"),
            workdir="/",
            ports=("9000/tcp", "9001/tcp"),
            labels=labels(pin, pins, "minio", f"Go module {pin.module}@{pin.module_version}", "AGPL-3.0-or-later"),
        ),
        make_rootfs=make,
        inputs={"module": pin.module, "version": pin.module_version},
        module_file=__file__,
        smoke=(("/usr/bin/minio", "--version"),),
    )


def client_recipe(pins: Pins) -> Recipe:
    pin = pins.images["object_storage_client"]
    packages = ["dash", "coreutils"]

    def make(ctx: BuildContext, tree: Path) -> list[str]:
        binary = _go_program(ctx, pin, "mc")
        manifest = rootfs.debian_rootfs(ctx.runner, pins, packages, tree)
        rootfs.install_file(tree, "usr/bin/mc", binary.read_bytes(), mode=0o755)
        ctx.progress("trimming")
        rootfs.trim(tree, keep_executables=CLIENT_TOOLS)
        if not (tree / "bin/sh").exists():
            (tree / "bin/sh").symlink_to("dash")
        rootfs.write_accounts(tree, [rootfs.Account("mc", UID, "/tmp")])
        rootfs.finish(ctx.runner, tree, [*manifest, f"mc {pin.module_version} (built from its Go module)"])
        return manifest

    return Recipe(
        pin=pin,
        config=ImageConfig(
            user=f"{UID}:{UID}",
            entrypoint=("/usr/bin/mc",),
            cmd=("--help",),
            env=(DEBIAN_PATH, "HOME=/tmp", "MC_CONFIG_DIR=/tmp/mc"),
            workdir="/tmp",
            labels=labels(pin, pins, "mc", f"Go module {pin.module}@{pin.module_version}", "AGPL-3.0-or-later"),
        ),
        make_rootfs=make,
        inputs={"module": pin.module, "version": pin.module_version, "debian_packages": packages},
        module_file=__file__,
        linked=("bin/dash", "bin/date"),
        smoke=(("mc", "--version"), ("sh", "-c", "date -u +%Y%m%dT%H%M%SZ")),
    )
