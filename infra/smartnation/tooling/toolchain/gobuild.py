"""Building Go programs from the module proxy, the only source a sealed site can reach.

`go install MOD@VERSION` refuses any module whose go.mod carries replace directives (Kubernetes,
etcd and the Pulumi CLI all do), so each tool is built inside a small wrapper module that
requires the target and carries over its replaces: local-path replaces (`=> ./staging/...`,
`=> ../sdk`) point outside the module zip and become the published module instead.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from smartnation.tooling.toolchain.cache import CacheLayout


class StepError(RuntimeError):
    """A build step failed; `step` names it and the log holds the command's output."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(message)
        self.step = step


def goproxy(downloads: Path) -> str:
    """The cache's own downloads first, then whatever proxy the machine names (a sealed site's
    mirror, or the public proxy by default)."""
    ours = f"file://{downloads}"
    configured = os.environ.get("GOPROXY", "").strip() or "https://proxy.golang.org,direct"
    if configured == ours or configured.startswith(ours + ","):
        return configured  # already ours first (a nested build)
    return f"{ours},{configured}"


class GoRunner:
    """Runs go with a cache-local environment and appends everything it prints to one log."""

    def __init__(self, cache: CacheLayout, log: Path) -> None:
        self.cache = cache
        self.log = log

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                # Never fetch another Go toolchain: the machine's Go must do, or we say so.
                "GOTOOLCHAIN": "local",
                "GOMODCACHE": str(self.cache.gomodcache),
                "GOCACHE": str(self.cache.gocache),
                "GOFLAGS": "-mod=mod -buildvcs=false",
                # Modules downloaded once are read from the cache's own downloads first (all that
                # `make cache-trim` keeps), the network proxy only for what is not there.
                "GOPROXY": goproxy(self.cache.gomodcache / "cache" / "download"),
                "CGO_ENABLED": "0",
                "GOWORK": "off",
            }
        )
        env.update(extra or {})
        return env

    def run(self, step: str, args: Sequence[str], cwd: Path, extra_env: Mapping[str, str] | None = None) -> str:
        with self.log.open("a") as fh:
            fh.write(f"\n$ (cd {cwd} && {' '.join(args)})\n")
            fh.flush()
            proc = subprocess.run(
                list(args),
                cwd=cwd,
                env=self.env(extra_env),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            fh.write(proc.stdout)
        if proc.returncode != 0:
            tail = "\n".join(proc.stdout.strip().splitlines()[-8:])
            raise StepError(step, f"`{' '.join(args[:3])} ...` exited {proc.returncode}:\n{tail}")
        return proc.stdout


def download_module(go: GoRunner, module: str, version: str, cwd: Path) -> dict:
    """Fetches one module version from the proxy and returns `go mod download -json` for it."""
    out = go.run("download", ["go", "mod", "download", "-json", f"{module}@{version}"], cwd)
    info = json.loads(out[out.index("{") :])
    if info.get("Error"):
        raise StepError("download", f"{module}@{version}: {info['Error']}")
    return info


def read_go_mod(go: GoRunner, go_mod: Path, cwd: Path) -> dict:
    return json.loads(go.run("download", ["go", "mod", "edit", "-json", str(go_mod)], cwd))


def staging_version(kubernetes_version: str) -> str:
    """k8s.io/kubernetes v1.X.Y publishes its staging modules as v0.X.Y."""
    match = re.fullmatch(r"v1\.(\d+)\.(\d+)", kubernetes_version)
    if not match:
        raise StepError("resolve", f"cannot map {kubernetes_version} to staging module versions")
    return f"v0.{match.group(1)}.{match.group(2)}"


def carried_replaces(target: dict, target_version: str) -> list[str]:
    """The `-replace=` edits that make the target's own replaces valid in a wrapper module."""
    required = {r["Path"]: r["Version"] for r in target.get("Require") or []}
    edits: list[str] = []
    for rep in target.get("Replace") or []:
        old, new = rep["Old"], rep["New"]
        if new["Path"].startswith("."):
            # A directory inside the target's repository, absent from the module zip.
            if required.get(old["Path"]) == "v0.0.0":
                edits.append(f"-replace={old['Path']}={old['Path']}@{staging_version(target_version)}")
            # Otherwise the required version is the published twin of that directory: drop it.
            continue
        lhs = old["Path"] + (f"@{old['Version']}" if old.get("Version") else "")
        rhs = new["Path"] + (f"@{new['Version']}" if new.get("Version") else "")
        edits.append(f"-replace={lhs}={rhs}")
    return edits


def build_in_wrapper(
    go: GoRunner,
    *,
    tool: str,
    module: str,
    version: str,
    packages: Sequence[str],
    out_dir: Path,
    ldflags: str = "",
    extra_requires: Sequence[str] = (),
    progress: Callable[[str], None] = lambda _: None,
) -> None:
    """Builds `packages` of `module@version` into out_dir through a wrapper module."""
    work = go.cache.work / f"{tool}-{version}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    progress("downloading module")
    info = download_module(go, module, version, work)
    target = read_go_mod(go, Path(info["GoMod"]), work)
    go_directive = target.get("Go") or "1.22"
    (work / "go.mod").write_text(f"module smartnation.local/toolchain/{tool}\n\ngo {go_directive}\n")
    imports = "\n".join(f'\t_ "{p}"' for p in packages)
    # The tools.go pattern: never compiled, but it makes `go mod tidy` keep what the programs need.
    (work / "tools.go").write_text(f"//go:build tools\n\npackage tools\n\nimport (\n{imports}\n)\n")
    edits = [f"-require={module}@{version}", *(f"-require={r}" for r in extra_requires)]
    edits += carried_replaces(target, version)
    go.run("resolve", ["go", "mod", "edit", *edits], work)
    progress("resolving dependencies")
    go.run("resolve", ["go", "mod", "tidy"], work)
    progress("compiling")
    args = ["go", "build", "-trimpath", "-o", str(out_dir) + "/"]
    if ldflags:
        args += ["-ldflags", ldflags]
    go.run("build", [*args, *packages], work)


def writable_module_copy(go: GoRunner, tool: str, module: str, version: str) -> Path:
    """A writable copy of a module, for builds that must generate files first."""
    work = go.cache.work / f"{tool}-{version}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    info = download_module(go, module, version, work)
    src = work / "src"
    shutil.copytree(info["Dir"], src)
    for path in [src, *src.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o200)
    return src
