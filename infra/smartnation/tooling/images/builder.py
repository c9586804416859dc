"""The shared builder: each image is built once per input digest into the cache, and reused after.

An image's *input digest* covers everything that decides its bytes: its pins, its entrypoint
contract, the fixed timestamp, the Debian suite, the host tools that compile into it, and the
source of the recipe and of the shared modules. A finished image is an OCI layout under
``<cache>/images/oci/<image>-<input digest>`` with a ``built.json`` beside it; it is renamed into
place only when complete, so an interrupted build never passes for a finished one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from smartnation.paths import REPO
from smartnation.tooling.images import oci, rootfs
from smartnation.tooling.images.cache import ImageCache
from smartnation.tooling.images.oci import ImageConfig
from smartnation.tooling.images.pins import ImagePin, Pins
from smartnation.tooling.images.steps import ImageBuildError, StepRunner
from smartnation.tooling.toolchain.cache import CacheLayout
from smartnation.tooling.toolchain.gobuild import GoRunner

VENDOR_VARIABLE = "SMARTNATION_VENDOR_DIR"
_SHARED_MODULES = ("builder.py", "rootfs.py", "oci.py")
LOADER = "/lib64/ld-linux-x86-64.so.2"
"""The dynamic loader inside a Debian amd64 root filesystem; `--list` resolves a program's libraries."""

Progress = Callable[[str], None]


def vendor_dir(environ: dict[str, str] | os._Environ = os.environ) -> Path:
    """Vendored third-party sources: $SMARTNATION_VENDOR_DIR, else ../shared/vendor beside the checkout."""
    configured = environ.get(VENDOR_VARIABLE)
    return Path(configured) if configured else REPO.parent / "shared" / "vendor"


@dataclass
class BuildContext:
    """What a recipe may use while it builds: pins, the cache, its log, progress lines."""

    pins: Pins
    cache: ImageCache
    toolchain: CacheLayout
    """The toolchain's cache: its Go module and build caches are shared with the images' Go builds."""
    runner: StepRunner
    progress: Progress
    rebuild: bool = False
    """Build every program again even when a finished one is cached (the reproducibility check)."""
    go_env: dict[str, str] = field(default_factory=dict)
    """Overrides for Go builds (a fresh GOCACHE for a rebuild that proves the compile, too)."""

    def go_runner(self) -> GoRunner:
        """The toolchain's Go runner (its module and build caches), logging to this image's log,
        with ``go_env`` on top."""
        return _OverriddenGoRunner(self.toolchain, self.runner.log, self.go_env)

    def program(self, name: str, inputs: dict, build: Callable[[Path], None]) -> Path:
        """A built program's directory, cached by its inputs; ``build(out_dir)`` fills it on a miss."""
        key = _digest({"program": name, "inputs": inputs})
        final = self.cache.programs / f"{name}-{key[:16]}"
        if final.is_dir() and not self.rebuild:
            self.progress(f"{name}: cached")
            return final
        scratch = self.cache.programs / f".partial-{name}-{os.getpid()}"
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        build(scratch)
        if final.exists():
            shutil.rmtree(final)
        os.replace(scratch, final)
        for stale in self.cache.programs.glob(f"{name}-*"):
            if stale != final:
                shutil.rmtree(stale, ignore_errors=True)
        return final


class _OverriddenGoRunner(GoRunner):
    def __init__(self, cache: CacheLayout, log: Path, overrides: dict[str, str]) -> None:
        super().__init__(cache, log)
        self.overrides = dict(overrides)

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return {**super().env(extra), **self.overrides}


@dataclass(frozen=True)
class Recipe:
    """One image: what it is built from, how its root filesystem is made, how it is started."""

    pin: ImagePin
    config: ImageConfig
    make_rootfs: Callable[[BuildContext, Path], list[str]]
    """Fills the (empty) directory with the image's files; returns its Debian package manifest."""
    inputs: dict
    """Everything outside this package's code that decides the image's bytes."""
    module_file: str
    """The recipe's source file: editing it changes the input digest."""
    smoke: tuple[tuple[str, ...], ...] = ()
    """Commands run in the finished root filesystem as the image's user: the build fails if one fails."""
    linked: tuple[str, ...] = ()
    """Globs of dynamically linked files whose libraries must all resolve inside the image (what
    the trimming removed must not be something they load)."""

    @property
    def name(self) -> str:
        return self.pin.name


@dataclass(frozen=True)
class BuiltImage:
    """A finished image in the cache."""

    name: str
    repositories: dict[str, str]
    tag: str
    version: str
    digest: str
    size: int
    layout: Path
    status: str
    """'cached' or 'built'."""
    seconds: float = 0.0
    reproduced: bool | None = None
    """After a rebuild: whether it gave the same digest as the build it replaced."""

    def reference(self, repository: str) -> str:
        return f"{repository}@{self.digest}"


def _digest(data: object) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def input_digest(recipe: Recipe, pins: Pins) -> str:
    here = Path(__file__).parent
    code = {name: hashlib.sha256((here / name).read_bytes()).hexdigest() for name in _SHARED_MODULES}
    code[recipe.module_file] = hashlib.sha256(Path(recipe.module_file).read_bytes()).hexdigest()
    code = {Path(k).name: v for k, v in code.items()}
    # What apt unpacks (debian_lock.py) decides a Debian-based image's bytes as much as its pins.
    debian = {"debian_lock": pins.debian_lock} if "debian_packages" in recipe.inputs else {}
    return _digest(
        {
            **debian,
            "image": recipe.name,
            "repository": recipe.pin.repository,
            "tag": recipe.pin.tag,
            "inputs": recipe.inputs,
            "config": recipe.config.describe(),
            "epoch": pins.source_date_epoch,
            "suite": pins.suite,
            "smoke": recipe.smoke,
            "linked": recipe.linked,
            "code": code,
            "umoci": oci.umoci_version(),
        }
    )


class Builder:
    """Builds or reuses each image in order, printing one progress line per step."""

    def __init__(self, pins: Pins, cache: ImageCache, toolchain: CacheLayout, total: int) -> None:
        self.pins = pins
        self.cache = cache
        self.toolchain = toolchain
        self.total = total
        self.index = 0
        self.started = time.monotonic()

    def say(self, recipe: Recipe, message: str) -> None:
        elapsed = time.monotonic() - self.started
        sys.stdout.write(f"[{elapsed:6.0f}s] [{self.index}/{self.total}] {recipe.name} {recipe.pin.tag}: {message}\n")
        sys.stdout.flush()

    def ensure(self, recipe: Recipe, *, rebuild: bool = False, go_env: dict[str, str] | None = None) -> BuiltImage:
        self.index += 1
        key = input_digest(recipe, self.pins)
        final = self.cache.image_dir(recipe.name, key)
        record = final / "built.json"
        previous = json.loads(record.read_text()) if record.is_file() else None
        if previous and not rebuild:
            self.say(recipe, f"cached ({previous['digest'][:19]}, {previous['size'] / 2**20:.1f} MiB)")
            return self._built(recipe, final, previous, "cached")
        for folder in (self.cache.oci, self.cache.programs, self.cache.work, self.cache.logs):
            folder.mkdir(parents=True, exist_ok=True)
        log = self.cache.log_file(recipe.name)
        log.write_text(f"smartnation images: {recipe.name} {recipe.pin.tag}, input digest {key}\n")
        runner = StepRunner(recipe.name, log)
        ctx = BuildContext(
            self.pins,
            self.cache,
            self.toolchain,
            runner,
            lambda message: self.say(recipe, message),
            rebuild=rebuild,
            go_env=dict(go_env or {}),
        )
        began = time.monotonic()
        try:
            data = self._build(recipe, ctx, key)
        except ImageBuildError as exc:
            self.say(recipe, f"FAILED at step '{exc.step}' (log: {exc.log})")
            raise
        seconds = time.monotonic() - began
        reproduced = None if previous is None else previous["digest"] == data["digest"]
        data["seconds"] = round(seconds, 1)
        scratch_layout = Path(data.pop("scratch"))
        (scratch_layout / "built.json").write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        if final.exists():
            shutil.rmtree(final)
        os.replace(scratch_layout, final)
        for stale in self.cache.oci.glob(f"{recipe.name}-*"):
            if stale != final:
                shutil.rmtree(stale, ignore_errors=True)
        verdict = ""
        if reproduced is not None:
            verdict = ", same digest as before" if reproduced else f", DIFFERENT from before ({previous['digest']})"
        self.say(recipe, f"built in {seconds:.0f}s: {data['digest']} ({data['size'] / 2**20:.1f} MiB{verdict})")
        self._record_time(recipe, data)
        return self._built(recipe, final, data, "built", seconds, reproduced)

    def _build(self, recipe: Recipe, ctx: BuildContext, key: str) -> dict:
        work = self.cache.work / recipe.name
        shutil.rmtree(work, ignore_errors=True)
        tree = work / "rootfs"
        tree.mkdir(parents=True)
        ctx.progress("making the root filesystem")
        try:
            manifest = recipe.make_rootfs(ctx, tree)
        except (OSError, ValueError) as exc:
            raise ctx.runner.fail("rootfs", str(exc)) from exc
        rootfs.base_dirs(tree)
        self._check_linking(recipe, ctx, tree)
        ctx.progress("writing the layer")
        layer = work / "layer.tar"
        content = rootfs.write_layer(tree, layer, self.pins.source_date_epoch)
        # After the layer is written: what a smoke command writes stays out of the image.
        for command in recipe.smoke:
            ctx.progress(f"smoke test: {' '.join(command)}")
            # The image's own environment (PATH first): the command resolves as it would in a container.
            env = dict(line.split("=", 1) for line in recipe.config.env)
            chroot = shutil.which("chroot") or "chroot"
            ctx.runner.run("smoke", [chroot, f"--userspec={recipe.config.user}", str(tree), *command], env=env)
        ctx.progress("assembling the OCI image")
        scratch = self.cache.oci / f".partial-{recipe.name}-{os.getpid()}"
        digest = oci.assemble(ctx.runner, scratch, recipe.pin.tag, layer, recipe.config, self.pins.source_date_epoch)
        size = oci.image_size(scratch, recipe.pin.tag)
        shutil.rmtree(work, ignore_errors=True)
        return {
            "name": recipe.name,
            "repositories": recipe.pin.repositories(),
            "tag": recipe.pin.tag,
            "version": recipe.pin.version,
            "digest": digest,
            "size": size,
            "uncompressed": content,
            "input_digest": key,
            "contract": recipe.config.describe(),
            "debian_packages": manifest,
            "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "scratch": str(scratch),
        }

    def _check_linking(self, recipe: Recipe, ctx: BuildContext, tree: Path) -> None:
        files = sorted({p for pattern in recipe.linked for p in tree.glob(pattern.lstrip("/")) if p.is_file()})
        if recipe.linked and not files:
            raise ctx.runner.fail("linking", f"no file matches {recipe.linked}")
        if files:
            ctx.progress(f"checking the libraries of {len(files)} programs and modules")
        for path in files:
            inside = "/" + path.relative_to(tree).as_posix()
            out = ctx.runner.run("linking", [shutil.which("chroot") or "chroot", str(tree), LOADER, "--list", inside])
            missing = [line.strip() for line in out.splitlines() if "not found" in line]
            if missing:
                raise ctx.runner.fail("linking", f"{inside} needs what the image lacks: {missing}")

    def _built(
        self,
        recipe: Recipe,
        final: Path,
        data: dict,
        status: str,
        seconds: float = 0.0,
        reproduced: bool | None = None,
    ) -> BuiltImage:
        return BuiltImage(
            name=recipe.name,
            repositories=dict(data["repositories"]),
            tag=data["tag"],
            version=data["version"],
            digest=data["digest"],
            size=int(data["size"]),
            layout=final,
            status=status,
            seconds=seconds,
            reproduced=reproduced,
        )

    def _record_time(self, recipe: Recipe, data: dict) -> None:
        """Each image's last build time and size, for BENCHMARKS.md (a warm run builds nothing)."""
        path = self.cache.build_times
        times = json.loads(path.read_text()) if path.is_file() else {}
        times[recipe.name] = {
            "tag": data["tag"],
            "digest": data["digest"],
            "seconds": data["seconds"],
            "bytes": data["size"],
            "uncompressed_bytes": data["uncompressed"],
            "when": data["built"],
        }
        path.write_text(json.dumps(times, indent=2, sort_keys=True) + "\n")
