"""The city APIs (services/): one root filesystem built once, one image per API over its one layer.

The root filesystem: Debian's python3.11 (pinned in images.yaml) trimmed to the interpreter and
its standard library; the ``services`` extra's dependencies at the exact versions of
services/constraints.txt, wheels only, installed from PyPI with the host's pip into
/usr/local/lib/python3.11/dist-packages (``--target``, ``--no-deps``, ``--no-cache-dir``: no pip,
compiler or build tool reaches the image); our packages (service_common and the three services,
without their tests, without service_testing) under /opt/city-apis; everything byte-compiled by
the image's own interpreter into hash-based .pyc files (no timestamps in them, and a read-only
root with PYTHONDONTWRITEBYTECODE=1 would otherwise recompile every module at each start).

Why three images and not one: the chart runs the image's ENTRYPOINT (it sets no command), so each
API's repository needs a manifest whose entrypoint starts that API. The three manifests share the
one layer blob (same bytes, same digest): a registry stores it once and a node pulls it once.

Entrypoint contract (charts/city-api, components/city_apis.py): user 10001:10001; ENTRYPOINT
``/usr/bin/python3.11 -m <package>``; listens on ``$PORT`` (8080); ``/healthz`` (and
``/healthz/live``) answers while the process lives, ``/readyz`` (and ``/healthz/ready``) 503
until its dependencies answer; writes nothing outside /tmp. No shell: nothing in the services
starts one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import shutil
import sys
from pathlib import Path

from smartnation.paths import REPO
from smartnation.tooling.images import python_lock, rootfs
from smartnation.tooling.images.builder import BuildContext, Recipe
from smartnation.tooling.images.oci import ImageConfig
from smartnation.tooling.images.pins import API_NAMES, ImagePin, Pins
from smartnation.tooling.images.recipes import DEBIAN_PATH, labels

UID = 10001
PYTHON = "/usr/bin/python3.11"
SCRIPTS_IN_RECORD = "../../bin/"
"""How a RECORD names pip's console scripts, relative to the dist-packages it installed into."""
SITE_PACKAGES = "usr/local/lib/python3.11/dist-packages"
"""On Debian's sys.path by default: the dependencies need no PYTHONPATH."""
APP_DIR = "/opt/city-apis"
SERVICES = REPO / "services"
SHARED_PACKAGES = ("service_common",)
# Installed for the host's glibc-compatible tags of the image's interpreter, whatever Python runs
# the build: bookworm's glibc is 2.36, so every manylinux wheel up to that.
WHEEL_TAGS = ("--python-version", "3.11", "--implementation", "cp", "--abi", "cp311")
WHEEL_PLATFORMS = tuple(f"manylinux_2_{minor}_x86_64" for minor in range(36, 16, -1)) + ("manylinux2014_x86_64",)
# Never needed by a service at run time: the test suite, IDLE, 2to3, pydoc's topics; and, of
# botocore's and boto3's API models, every service but S3 (25 MB of JSON).
NOT_NEEDED = (
    "usr/lib/python3.11/test",
    "usr/lib/python3.11/idlelib",
    "usr/lib/python3.11/turtledemo",
    "usr/lib/python3.11/lib2to3",
    "usr/lib/python3.11/pydoc_data",
    "usr/lib/python3.11/ensurepip",
    "usr/lib/python3.11/config-*",
    "usr/share/python3",
    "usr/share/binfmts",
    "usr/share/applications",
)
KEPT_BOTO_MODELS = {"s3"}
SMOKE_S3 = (
    "import boto3; boto3.client('s3', endpoint_url='http://127.0.0.1:9', region_name='us-east-1',"
    " aws_access_key_id='k', aws_secret_access_key='s')"
)
_built_this_run: set[str] = set()
"""Root filesystems built by this process: a --rebuild makes the shared one once, not per API."""


def _package_files() -> dict[str, str]:
    """Relative path -> sha256 of every file that goes under APP_DIR (tests and caches left out)."""
    files: dict[str, str] = {}
    for package in (*SHARED_PACKAGES, *API_NAMES):
        for path in sorted((SERVICES / package).rglob("*")):
            rel = path.relative_to(SERVICES)
            if path.is_dir() or "tests" in rel.parts or "__pycache__" in rel.parts or path.suffix == ".pyc":
                continue
            files[rel.as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files


def _pip_version() -> str:
    return importlib.metadata.version("pip")


def _install_wheels(ctx: BuildContext, constraints: Path, target: Path) -> None:
    """The constraints' wheels from the package index into ``target``: nothing compiled, no
    scripts, no other dependency, no cache."""
    platforms = [arg for platform in WHEEL_PLATFORMS for arg in ("--platform", platform)]
    ctx.runner.run(
        "python-packages",
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-cache-dir",
            "--no-deps",
            "--only-binary=:all:",
            "--no-compile",
            "--disable-pip-version-check",
            "--no-input",
            "--progress-bar",
            "off",
            *WHEEL_TAGS,
            *platforms,
            "--target",
            str(target),
            "--requirement",
            str(constraints),
        ],
        env={"PIP_NO_CACHE_DIR": "1", "PYTHONDONTWRITEBYTECODE": "1"},
    )
    shutil.rmtree(target / "bin", ignore_errors=True)  # console scripts: the images run `python -m`
    # Their RECORD lines go too: pip wrote each script with the HOST interpreter's path in its
    # shebang, so their hashes differed between checkouts and the image was not reproducible.
    for record in sorted(target.glob("*.dist-info/RECORD")):
        lines = record.read_text().splitlines(keepends=True)
        kept = [line for line in lines if not line.startswith(SCRIPTS_IN_RECORD)]
        if kept != lines:
            record.write_text("".join(kept))
    for library, top in (("botocore", "data"), ("boto3", "data")):
        models = target / library / top
        for entry in sorted(models.iterdir()) if models.is_dir() else []:
            if entry.is_dir() and entry.name not in KEPT_BOTO_MODELS:
                shutil.rmtree(entry)


def _build_rootfs(ctx: BuildContext, pin: ImagePin, packages: list[str], constraints: Path, out: Path) -> None:
    manifest = rootfs.debian_rootfs(ctx.runner, ctx.pins, packages, out)
    ctx.progress("trimming, installing the Python packages")
    rootfs.trim(out, keep_executables=[PYTHON.lstrip("/")], extra=NOT_NEEDED)
    _install_wheels(ctx, constraints, out / SITE_PACKAGES)
    app = out / APP_DIR.lstrip("/")
    for rel in _package_files():
        rootfs.install_file(out, f"{APP_DIR}/{rel}", (SERVICES / rel).read_bytes())
    rootfs.write_accounts(out, [rootfs.Account("api", UID, "/nonexistent")])
    pinned = python_lock.read(constraints)
    python_manifest = [f"python:{name} {version}" for name, version in sorted(pinned.items())]
    rootfs.finish(ctx.runner, out, [*manifest, *python_manifest])
    ctx.progress("byte-compiling with the image's interpreter")
    # Hash-based .pyc (no source mtime inside) and a fixed hash seed (set and frozenset
    # constants marshal in hash order): the same sources give the same bytes every build.
    ctx.runner.run(
        "byte-compile",
        [
            shutil.which("chroot") or "chroot",
            str(out),
            PYTHON,
            "-m",
            "compileall",
            "-q",
            "-j",
            "1",
            "--invalidation-mode",
            "unchecked-hash",
            "/usr/lib/python3.11",
            f"/{SITE_PACKAGES}",
            str(Path("/") / app.relative_to(out)),
        ],
        env={"PYTHONHASHSEED": "0", "SOURCE_DATE_EPOCH": str(ctx.pins.source_date_epoch), "LC_ALL": "C.UTF-8"},
    )


def recipe(pins: Pins, api: str) -> Recipe:
    pin = pins.images[api]
    packages = [f"{name}={version}" for name, version in pin.debian_packages] + ["tzdata"]
    constraints = REPO / pin.python_constraints
    inputs = {
        "debian_packages": packages,
        "python_constraints": constraints.read_text() if constraints.is_file() else "(missing)",
        "wheel_tags": [*WHEEL_TAGS, *WHEEL_PLATFORMS],
        "pip": _pip_version(),
        "services": _package_files(),
        "not_needed": NOT_NEEDED,
        "boto_models": sorted(KEPT_BOTO_MODELS),
        "records": f"without {SCRIPTS_IN_RECORD}",  # a rootfs built before that fix is not reused
        "debian_lock": pins.debian_lock,  # the shared root filesystem holds Debian's python3.11
    }

    def make(ctx: BuildContext, tree: Path) -> list[str]:
        if not constraints.is_file():
            raise ctx.runner.fail("python-packages", f"{constraints} is missing (python -m {python_lock.__name__})")
        key = hashlib.sha256(repr(sorted(inputs.items())).encode()).hexdigest()
        shared = ctx if key not in _built_this_run else dataclasses.replace(ctx, rebuild=False)
        folder = shared.program(
            "city-apis-rootfs", inputs, lambda out: _build_rootfs(ctx, pin, packages, constraints, out)
        )
        _built_this_run.add(key)
        shutil.copytree(folder, tree, symlinks=True, dirs_exist_ok=True)
        return [line for line in (tree / rootfs.PACKAGE_MANIFEST).read_text().splitlines() if line.strip()]

    title = api.replace("_", "-")
    return Recipe(
        pin=pin,
        config=ImageConfig(
            user=f"{UID}:{UID}",
            entrypoint=(PYTHON, "-m", api),
            env=(
                DEBIAN_PATH,
                f"PYTHONPATH={APP_DIR}",
                "PYTHONDONTWRITEBYTECODE=1",
                "PYTHONUNBUFFERED=1",
                "HOME=/nonexistent",
                "LANG=C.UTF-8",
                "PORT=8080",
            ),
            ports=("8080/tcp",),
            labels=labels(pin, pins, title, f"services/{api} (smartnation)", "")
            | {"org.opencontainers.image.description": f"smartnation city API {title}: python3.11 -m {api}"},
        ),
        make_rootfs=make,
        inputs=inputs,
        module_file=__file__,
        linked=(PYTHON.lstrip("/"), "usr/lib/python3.11/lib-dynload/*.so", f"{SITE_PACKAGES}/**/*.so"),
        smoke=(
            (PYTHON, "-c", f"import {api}.__main__, {api}.app"),
            (PYTHON, "-c", SMOKE_S3),
        ),
    )
