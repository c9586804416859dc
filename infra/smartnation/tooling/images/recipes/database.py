"""The database image: Debian's PostgreSQL 15 with TimescaleDB built here from the vendored source.

Entrypoint contract (what components/database.py runs):
- user 70:70 (``postgres``, the UID of the upstream Alpine-based image the component was written for);
- the server container gives only ``args`` (``postgres -c hba_file=... -c wal_level=...``) and
  relies on the ENTRYPOINT, ``/usr/local/bin/docker-entrypoint.sh``, which does what the upstream
  image's entrypoint does for that use: when ``$PGDATA/PG_VERSION`` is missing it runs initdb
  (superuser ``postgres``, password ``$POSTGRES_PASSWORD``, required; SCRAM; UTF8; locale C), then
  ``exec postgres ARGS``. Arguments that start with ``-`` mean ``postgres ARGS``; any other command
  runs as given. No /docker-entrypoint-initdb.d, POSTGRES_USER, POSTGRES_DB or
  POSTGRES_HOST_AUTH_METHOD: the component uses none of them;
- every new cluster preloads TimescaleDB and listens on every address (postgresql.conf.sample);
  telemetry is off by default (nothing leaves a sealed site);
- PATH starts with /usr/lib/postgresql/15/bin: ``postgres``, ``initdb``, ``pg_ctl``, ``psql``,
  ``pg_isready``, ``pg_dump``, ``pg_dumpall``, ``pg_restore``, ``pg_basebackup`` are the real
  programs (Debian's /usr/bin wrappers are perl scripts and are not in the image);
- ``sh`` (dash), ``gzip``, ``ls``, ``date``, ``sleep``, ``cat``, ``mkdir``, ``chmod``, ``rm``, ``env``,
  ``id``: what the setup Job, the replica clone and the backup dump run;
- /var/run/postgresql (the socket directory) and /var/lib/postgresql/data exist, owned by 70.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

from smartnation.tooling.images import rootfs
from smartnation.tooling.images.builder import BuildContext, Recipe, vendor_dir
from smartnation.tooling.images.oci import ImageConfig
from smartnation.tooling.images.pins import ImagePin, Pins
from smartnation.tooling.images.recipes import labels

UID = 70
MAJOR = 15
PG_BIN = f"/usr/lib/postgresql/{MAJOR}/bin"
PG_CONFIG = f"{PG_BIN}/pg_config"
ENTRYPOINT = "/usr/local/bin/docker-entrypoint.sh"
PGDATA = "/var/lib/postgresql/data/pgdata"
CMAKE_FLAGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DREGRESS_CHECKS=OFF",
    "-DTAP_CHECKS=OFF",
    "-DWARNINGS_AS_ERRORS=OFF",
    # A sealed site reaches nothing; the upstream image asks the operator instead.
    "-DSEND_TELEMETRY_DEFAULT=OFF",
    # No GNU build-id note (TimescaleDB's libraries are MODULE libraries): the linker hashes it
    # over the unstripped output. Built in a root with what the mirror serves a fresh machine today
    # (libssl-dev 3.0.22 where this host has 3.0.19, another build path), timescaledb-2.17.2.so
    # differed from this host's in those 20 bytes alone, and so did the image digest; without the
    # note both builds are byte for byte the same. The libraries ship stripped; nothing reads it.
    "-DCMAKE_MODULE_LINKER_FLAGS=-Wl,--build-id=none",
)
# The tools the component's scripts and the entrypoint call, besides PostgreSQL's own.
SHELL_TOOLS = (
    "bin/sh",
    "bin/dash",
    "bin/gzip",
    "bin/ls",
    "bin/date",
    "bin/sleep",
    "bin/cat",
    "bin/mkdir",
    "bin/chmod",
    "bin/rm",
    "usr/bin/env",
    "usr/bin/id",
)
# LLVM only serves PostgreSQL's optional JIT (off when llvmjit.so is absent): 100 MB for nothing.
NOT_NEEDED = (
    f"usr/lib/postgresql/{MAJOR}/lib/llvmjit*",
    f"usr/lib/postgresql/{MAJOR}/lib/bitcode",
    "usr/lib/x86_64-linux-gnu/libLLVM*",
    "usr/lib/x86_64-linux-gnu/libz3*",
    "usr/lib/llvm-*",
    "etc/postgresql",
    "etc/logcheck",
    "etc/sysctl.d",
    "usr/lib/x86_64-linux-gnu/libperl*",
    "usr/share/i18n",  # locale sources for locale-gen; clusters are created with locale C
)

ENTRYPOINT_SCRIPT = r"""#!/bin/sh
# Entrypoint of smartnation's database image (infra/smartnation/tooling/images/recipes/database.py).
# `postgres ARGS` (or just options): create the cluster in $PGDATA on first start, then run the
# server; any other command runs as given.
set -eu

if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then
    set -- postgres "$@"
fi
if [ "$1" != postgres ]; then
    exec "$@"
fi
shift

: "${PGDATA:?PGDATA must name the data directory}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "${POSTGRES_PASSWORD:-}" ]; then
        echo "database: POSTGRES_PASSWORD is empty; refusing to create a cluster without a superuser password" >&2
        exit 1
    fi
    mkdir -p "$PGDATA"
    chmod 700 "$PGDATA"
    echo "database: creating the cluster in $PGDATA"
    # The password goes through a pipe, never onto a command line or into a file; /proc is
    # mounted in every container (/dev/stdin, a link into it, is the runtime's choice).
    # shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a list of options
    printf '%s\n' "$POSTGRES_PASSWORD" | initdb --username=postgres --pwfile=/proc/self/fd/0 \
        --auth=scram-sha-256 --encoding=UTF8 --locale=C -D "$PGDATA" ${POSTGRES_INITDB_ARGS:-}
fi
# PostgreSQL refuses a data directory others may read; a volume's fsGroup can widen it.
chmod 700 "$PGDATA" 2>/dev/null || :
unset POSTGRES_PASSWORD
exec postgres "$@"
"""


def _host_package_version(package: str) -> str:
    out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else ""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _server_version(pin: ImagePin) -> str:
    versions = dict(pin.debian_packages)
    return versions[f"postgresql-{MAJOR}"]


def _build_timescaledb(ctx: BuildContext, pin: ImagePin, out: Path) -> None:
    """TimescaleDB from the vendored archive against the host's postgresql-server-dev-15 (the same
    Debian version as the image's server), installed under ``out`` as it would be under /."""
    assert pin.source is not None
    archive = vendor_dir() / pin.source.archive
    if not archive.is_file():
        raise ctx.runner.fail("timescaledb-source", f"{archive} is missing (see shared/vendor/README.md)")
    actual = _sha256(archive)
    if actual != pin.source.sha256:
        raise ctx.runner.fail(
            "timescaledb-source", f"{archive} has sha256 {actual}, images.yaml pins {pin.source.sha256}"
        )
    work = ctx.cache.work / "timescaledb"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    ctx.progress(f"building TimescaleDB {pin.source.version} from {archive.name}")
    with tarfile.open(archive) as tar:
        tar.extractall(work, filter="data")
    (src,) = [p for p in work.iterdir() if p.is_dir()]
    build = work / "build"
    # Paths of this machine stay out of the binary (__FILE__ in error reports).
    prefix_map = f"-ffile-prefix-map={src}=timescaledb-{pin.source.version} -ffile-prefix-map={build}=build"
    ctx.runner.run(
        "timescaledb-configure",
        [
            "cmake",
            "-S",
            str(src),
            "-B",
            str(build),
            f"-DPG_CONFIG={PG_CONFIG}",
            *CMAKE_FLAGS,
            f"-DCMAKE_C_FLAGS={prefix_map}",
        ],
        env={"SOURCE_DATE_EPOCH": str(ctx.pins.source_date_epoch)},
    )
    ctx.runner.run("timescaledb-build", ["cmake", "--build", str(build), "-j2"])
    ctx.runner.run("timescaledb-install", ["cmake", "--install", str(build)], env={"DESTDIR": str(out)})
    for library in sorted(out.rglob("*.so")):
        ctx.runner.run("timescaledb-install", ["strip", "--strip-unneeded", str(library)])
    shutil.rmtree(work, ignore_errors=True)


def recipe(pins: Pins) -> Recipe:
    pin = pins.images["database"]
    assert pin.source is not None
    server_version = _server_version(pin)
    packages = [f"{name}={version}" for name, version in pin.debian_packages]
    packages += ["dash", "coreutils", "gzip", "tzdata"]
    host_tools = {name: _host_package_version(name) for name in ("gcc", "cmake", f"postgresql-server-dev-{MAJOR}")}
    timescaledb_inputs = {
        "sha256": pin.source.sha256,
        "cmake_flags": CMAKE_FLAGS,
        "host": host_tools,
        "epoch": pins.source_date_epoch,
    }

    def make(ctx: BuildContext, tree: Path) -> list[str]:
        dev = host_tools[f"postgresql-server-dev-{MAJOR}"]
        if dev != server_version:
            raise ctx.runner.fail(
                "timescaledb-headers",
                f"the host has postgresql-server-dev-{MAJOR} {dev or '(not installed)'}, the image pins "
                f"postgresql-{MAJOR} {server_version}: run `bash .ci/image-deps.sh` after `apt-get update`, "
                "or move the pin in images.yaml to what Debian now ships",
            )
        extension = ctx.program(
            f"timescaledb-{pin.source.version}-pg{MAJOR}",
            timescaledb_inputs,
            lambda out: _build_timescaledb(ctx, pin, out),
        )
        manifest = rootfs.debian_rootfs(ctx.runner, pins, packages, tree)
        ctx.progress("adding TimescaleDB, trimming")
        shutil.copytree(extension, tree, dirs_exist_ok=True, symlinks=True)
        rootfs.trim(tree, keep_executables=SHELL_TOOLS, extra=NOT_NEEDED)
        if not (tree / "bin/sh").exists():
            (tree / "bin/sh").symlink_to("dash")
        rootfs.write_accounts(tree, [rootfs.Account("postgres", UID, "/var/lib/postgresql")])
        _preload_timescaledb(tree)
        rootfs.install_file(tree, ENTRYPOINT, ENTRYPOINT_SCRIPT, mode=0o755)
        if not (tree / "var/run").exists():
            (tree / "var/run").symlink_to("/run")
        rootfs.make_dirs(
            tree,
            [
                ("run/postgresql", UID, 0o2775),
                ("var/lib/postgresql", UID, 0o755),
                ("var/lib/postgresql/data", UID, 0o700),
            ],
        )
        rootfs.finish(ctx.runner, tree, [*manifest, f"timescaledb {pin.source.version} (built from source)"])
        return manifest

    return Recipe(
        pin=pin,
        config=ImageConfig(
            user=f"{UID}:{UID}",
            entrypoint=(ENTRYPOINT,),
            cmd=("postgres",),
            env=(
                f"PATH={PG_BIN}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                f"PGDATA={PGDATA}",
                "LANG=C.UTF-8",
            ),
            workdir="/var/lib/postgresql",
            ports=("5432/tcp",),
            labels=labels(
                pin,
                pins,
                "timescaledb",
                f"Debian postgresql-{MAJOR} {server_version}; TimescaleDB {pin.source.version} from source",
                "PostgreSQL AND Apache-2.0 AND LicenseRef-Timescale",
            ),
        ),
        make_rootfs=make,
        inputs={"debian_packages": packages, "timescaledb": timescaledb_inputs},
        module_file=__file__,
        linked=(f"usr/lib/postgresql/{MAJOR}/bin/*", f"usr/lib/postgresql/{MAJOR}/lib/*.so", "bin/*", "usr/bin/*"),
        smoke=(
            ("postgres", "--version"),
            ("initdb", "--version"),
            ("psql", "--version"),
            ("pg_dumpall", "--version"),
            ("sh", "-c", "gzip --version && date -u +%Y && ls /"),
        ),
    )


def _preload_timescaledb(tree: Path) -> None:
    """initdb copies postgresql.conf.sample: make every new cluster preload TimescaleDB and listen
    on every address (the upstream images do the same; pg_hba still decides who gets in)."""
    sample = tree / f"usr/share/postgresql/{MAJOR}/postgresql.conf.sample"
    text = sample.read_text()
    text, n1 = re.subn(r"^#?listen_addresses = '[^']*'", "listen_addresses = '*'", text, flags=re.M)
    text, n2 = re.subn(
        r"^#?shared_preload_libraries = '[^']*'", "shared_preload_libraries = 'timescaledb'", text, flags=re.M
    )
    if (n1, n2) != (1, 1):
        raise ValueError(f"{sample}: listen_addresses or shared_preload_libraries not found once")
    sample.write_text(text)
