"""`make bootstrap`: make every pinned tool available, building what is missing.

For each tool, in order: a finished build in the cache is reused; else a binary on PATH that
reports exactly the pinned version is linked; else the tool is built from its Go module into a
scratch directory that is renamed into place only when the build and its version check
succeeded, so an interrupted or failed run never leaves something a later run would take for
finished. Downloads of the next tools overlap the compile of the current one; compiles run one
at a time because two cores are all a CI machine has.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from smartnation.tooling.toolchain.cache import CacheLayout, layout
from smartnation.tooling.toolchain.gobuild import GoRunner, StepError
from smartnation.tooling.toolchain.recipes import LANGUAGE_HOST_MODULE, RECIPES, Recipe
from smartnation.tooling.toolchain.versions import TOOLS, Pin, VersionsError, load_pins

log = logging.getLogger("smartnation.bootstrap")

ORDER = TOOLS


class BootstrapError(RuntimeError):
    pass


class Bootstrap:
    def __init__(self, cache: CacheLayout, pins: dict[str, Pin], python: str) -> None:
        self.cache = cache
        self.pins = pins
        self.python = python
        self.compile_slot = threading.Semaphore(1)
        self.print_lock = threading.Lock()
        self.started = time.monotonic()
        self.timings: dict[str, float] = {}
        self.compile_timings: dict[str, float] = {}

    def say(self, tool: str, message: str) -> None:
        pin = self.pins[tool]
        elapsed = time.monotonic() - self.started
        index = ORDER.index(tool) + 1
        line = f"[{elapsed:6.0f}s] [{index}/{len(ORDER)}] {tool} {pin.version}: {message}\n"
        with self.print_lock:  # tools report from several threads; keep their lines whole
            sys.stdout.write(line)
            sys.stdout.flush()

    # -- one tool ---------------------------------------------------------------------------
    def ensure(self, tool: str) -> str:
        """Makes one tool available and returns how: 'cached', 'path' or 'built'."""
        pin, recipe = self.pins[tool], RECIPES[tool]
        final = self.cache.tool_dir(tool, pin.version)
        missing = recipe.missing_binaries(final / "bin") if final.is_dir() else []
        if final.is_dir() and not missing:
            self.link(recipe, final / "bin")
            self.say(tool, "cached")
            return "cached"
        if missing:
            # Built before the recipe named these binaries: build again (the Go build cache
            # makes it incremental) and replace the old build once the new one is verified.
            self.say(tool, f"cached build lacks {', '.join(missing)}: building again")
            self.build(tool, pin, recipe, final)
            return "built"
        on_path = self.matching_binary_on_path(recipe, pin)
        if on_path is not None:
            final.mkdir(parents=True)
            (final / "bin").mkdir()
            for name in recipe.binaries:
                os.symlink(shutil.which(name, path=on_path), final / "bin" / name)
            self.link(recipe, final / "bin")
            self.say(tool, f"using the binaries in {on_path}")
            return "path"
        self.build(tool, pin, recipe, final)
        return "built"

    def matching_binary_on_path(self, recipe: Recipe, pin: Pin) -> str | None:
        """The PATH directory holding every binary of the tool at the pinned version, if any."""
        if recipe.name in ("pulumi-language-python", "pulumi-resource-kubernetes", "kwok", "cert-manager"):
            # Ours; installed as a plugin; or needed with its module's stage files or CRDs: always built.
            return None
        dirs = [d for d in os.environ.get("PATH", "").split(os.pathsep) if d and Path(d).resolve() != self.cache.bin]
        first = shutil.which(recipe.binaries[0], path=os.pathsep.join(dirs))
        if not first:
            return None
        folder = str(Path(first).parent)
        if all(shutil.which(b, path=folder) for b in recipe.binaries) and all(
            recipe.reported_version(Path(folder) / b) == pin.version for b in recipe.versioned_binaries()
        ):
            return folder
        return None

    def build(self, tool: str, pin: Pin, recipe: Recipe, final: Path) -> None:
        logfile = self.cache.log_file(tool, pin.version)
        logfile.write_text(f"smartnation bootstrap: {tool} {pin.version} from {pin.module}@{pin.module_version}\n")
        scratch = self.cache.tools / f".partial-{tool}-{pin.version}-{os.getpid()}"
        shutil.rmtree(scratch, ignore_errors=True)
        (scratch / "bin").mkdir(parents=True)
        go = GoRunner(self.cache, logfile)
        began = time.monotonic()
        step = "build"

        gate = _CompileGate(self)

        def progress(message: str) -> None:
            if message == "compiling":
                gate.acquire()
            self.say(tool, message)

        try:
            # Downloads before the compile overlap with other tools' work; compiles take turns.
            with gate:
                recipe.build(go, pin, scratch / "bin", progress)
            step = "verify"
            for name in recipe.versioned_binaries():
                got = recipe.reported_version(scratch / "bin" / name)
                if got != pin.version:
                    raise StepError("verify", f"{name} reports version {got!r}, the versions file pins {pin.version}")
            if final.exists():
                # An incomplete earlier build: move it aside in one rename, then drop it.
                stale = self.cache.tools / f".stale-{tool}-{pin.version}-{os.getpid()}"
                os.replace(final, stale)
                os.replace(scratch, final)
                shutil.rmtree(stale, ignore_errors=True)
            else:
                os.replace(scratch, final)
        except StepError as exc:
            self.say(tool, f"FAILED at step '{exc.step}' (log: {logfile})")
            # The scratch directory stays for a look; its name never passes for a finished build,
            # and the next run clears it.
            raise BootstrapError(
                f"{tool} {pin.version} failed at step '{exc.step}': {exc}\n  full log: {logfile}"
                f"\n  what was built: {scratch}"
            ) from exc
        except Exception as exc:
            raise BootstrapError(f"{tool} {pin.version} failed at step '{step}': {exc}\n  full log: {logfile}") from exc
        ended = time.monotonic()
        self.timings[tool] = ended - began
        # Compile time alone (the slot held), apart from downloads and waiting for the slot.
        self.compile_timings[tool] = ended - (gate.acquired_at or began)
        self.link(recipe, final / "bin")
        self.say(tool, f"built in {self.timings[tool]:.0f}s (compiling {self.compile_timings[tool]:.0f}s)")

    def link(self, recipe: Recipe, bin_dir: Path) -> None:
        if not recipe.on_path:
            return
        self.cache.bin.mkdir(parents=True, exist_ok=True)
        for name in recipe.binaries:
            target = bin_dir / name
            link = self.cache.bin / name
            tmp = self.cache.bin / f".{name}.tmp"
            tmp.unlink(missing_ok=True)
            os.symlink(target, tmp)
            os.replace(tmp, link)

    def install_language_host(self) -> None:
        """The language host launcher goes beside the pulumi binary, where the CLI looks for the
        plugins it bundles; on PATH it would work too, but with an "ambient plugin" warning on
        every run. The launcher binds the host to the project's virtualenv python."""
        pulumi_bin = self.cache.tool_dir("pulumi", self.pins["pulumi"].version) / "bin"
        if (pulumi_bin / "pulumi").is_symlink():
            # A pulumi taken from PATH looks beside its real location, which is not ours to
            # write: fall back to PATH and live with the CLI's warning.
            pulumi_bin = self.cache.bin
        host_dir = self.cache.tool_dir("pulumi-language-python", self.pins["pulumi-language-python"].version) / "bin"
        launcher = pulumi_bin / "pulumi-language-python"
        tmp = pulumi_bin / ".pulumi-language-python.tmp"
        tmp.unlink(missing_ok=True)
        # The launcher names the host's module itself (rewritten on every bootstrap), so a cache
        # built by an older checkout still starts the host where this checkout keeps it.
        pin = self.pins["pulumi-language-python"]
        tmp.write_text(
            "#!/bin/sh\n"
            f'SMARTNATION_PYTHON="${{SMARTNATION_PYTHON:-{self.python}}}"\n'
            f'SMARTNATION_LANGUAGE_HOST_VERSION="{pin.version}"\n'
            f'SMARTNATION_LANGUAGE_DIR="{host_dir}"\n'
            "export SMARTNATION_PYTHON SMARTNATION_LANGUAGE_HOST_VERSION SMARTNATION_LANGUAGE_DIR\n"
            f'exec "$SMARTNATION_PYTHON" -m {LANGUAGE_HOST_MODULE} "$@"\n'
        )
        tmp.chmod(0o755)
        os.replace(tmp, launcher)
        if pulumi_bin != self.cache.bin:
            (self.cache.bin / "pulumi-language-python").unlink(missing_ok=True)

    # -- the provider plugin ----------------------------------------------------------------
    def install_provider_plugin(self) -> None:
        """Installs our provider build into PULUMI_HOME through the CLI, with no registry lookup."""
        pin = self.pins["pulumi-resource-kubernetes"]
        plugin_dir = self.cache.pulumi_home / "plugins" / f"resource-kubernetes-v{pin.version}"
        if (plugin_dir / "pulumi-resource-kubernetes").is_file():
            return
        binary = self.cache.tool_dir(pin.name, pin.version) / "bin" / "pulumi-resource-kubernetes"
        env = dict(os.environ, **tool_env(self.cache))
        proc = subprocess.run(
            [
                str(self.cache.bin / "pulumi"),
                "plugin",
                "install",
                "resource",
                "kubernetes",
                pin.version,
                "--file",
                str(binary),
            ],
            env=env,
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise BootstrapError(
                f"pulumi-resource-kubernetes {pin.version} failed at step 'plugin install': {proc.stderr.strip()}"
            )
        print(f"plugin resource kubernetes {pin.version} installed in {plugin_dir}", flush=True)

    def prune_bin(self) -> None:
        """Removes links that no pinned tool provides any more (a renamed or moved binary)."""
        wanted = {b for r in RECIPES.values() if r.on_path for b in r.binaries}
        if (self.cache.bin / "pulumi-language-python").exists() and not (
            self.cache.tool_dir("pulumi", self.pins["pulumi"].version) / "bin" / "pulumi-language-python"
        ).exists():
            wanted.add("pulumi-language-python")
        for entry in self.cache.bin.iterdir():
            if entry.name not in wanted and not entry.name.startswith("."):
                entry.unlink()

    def record_timings(self, total: float) -> None:
        """Keeps each tool's last build time for BENCHMARKS.md (a warm run builds nothing)."""
        path = self.cache.logs / "build-times.json"
        data = json.loads(path.read_text()) if path.exists() else {"tools": {}}
        for tool, seconds in self.timings.items():
            data["tools"][f"{tool} {self.pins[tool].version}"] = {
                "seconds": round(seconds, 1),
                "compile_seconds": round(self.compile_timings.get(tool, seconds), 1),
                "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
        data["last_run"] = {"seconds": round(total, 1), "built": sorted(self.timings)}
        path.write_text(json.dumps(data, indent=2, sort_keys=True))

    # -- all tools ----------------------------------------------------------------------------
    def run(self) -> None:
        check_go()
        # The language host shim runs under the project's virtualenv, also when we verify it.
        os.environ["SMARTNATION_PYTHON"] = self.python
        for d in (
            self.cache.tools,
            self.cache.logs,
            self.cache.work,
            self.cache.bin,
            self.cache.state,
            self.cache.clusters,
        ):
            d.mkdir(parents=True, exist_ok=True)
        for stale in [*self.cache.tools.glob(".partial-*"), *self.cache.tools.glob(".stale-*")]:
            shutil.rmtree(stale, ignore_errors=True)
        errors: list[str] = []
        with ThreadPoolExecutor(max_workers=3) as pool:
            futures = [pool.submit(self.ensure, tool) for tool in ORDER]
            for fut in futures:
                try:
                    fut.result()
                except BootstrapError as exc:
                    errors.append(str(exc))
        if errors:
            raise BootstrapError("\n".join(errors))
        self.install_language_host()
        self.install_provider_plugin()
        self.prune_bin()
        total = time.monotonic() - self.started
        self.record_timings(total)
        print(f"toolchain ready in {total:.0f}s: {self.cache.bin}", flush=True)


class _CompileGate:
    """Holds the single compile slot from the moment a recipe reports 'compiling' to its end."""

    def __init__(self, boot: Bootstrap) -> None:
        self.boot = boot
        self.held = False
        self.acquired_at: float | None = None

    def acquire(self) -> None:
        if not self.held:
            self.boot.compile_slot.acquire()
            self.held = True
            self.acquired_at = time.monotonic()

    def __enter__(self) -> _CompileGate:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.held:
            self.boot.compile_slot.release()


def check_go() -> None:
    if not shutil.which("go"):
        raise BootstrapError("go is not on PATH: the toolchain is built from Go modules and needs Go 1.26 or newer")
    out = subprocess.run(["go", "env", "GOVERSION"], capture_output=True, text=True).stdout.strip()
    parts = out.removeprefix("go").split(".")
    if len(parts) < 2 or (int(parts[0]), int(parts[1])) < (1, 26):
        raise BootstrapError(f"go is {out}; the pinned modules need Go 1.26 or newer")


def tool_env(cache: CacheLayout) -> dict[str, str]:
    """The environment under which our tools run: no update checks, no registry, local state."""
    return {
        "PATH": f"{cache.bin}{os.pathsep}{os.environ.get('PATH', '')}",
        "PULUMI_HOME": str(cache.pulumi_home),
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_REGISTRY_RESOLVE": "true",
        "PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK": "true",
        "KUBECONFIG": str(cache.kubeconfig),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bootstrap", description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable, help="the virtualenv python the language host runs with")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        pins = load_pins()
        Bootstrap(layout(), pins, args.python).run()
    except (BootstrapError, VersionsError) as exc:
        print(f"bootstrap failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
