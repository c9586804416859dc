"""Where the toolchain lives: one cache directory outside the repository.

A fresh clone, CI and every later run on the same machine share it, so the cold build is paid
once per machine. Set SMARTNATION_CACHE to move it (for example onto a bigger disk at the
on-prem site).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from smartnation.paths import cache_root


@dataclass(frozen=True)
class CacheLayout:
    """The directories inside the cache; nothing here is ever committed."""

    root: Path

    @property
    def bin(self) -> Path:
        """The single PATH entry: links to the finished tools."""
        return self.root / "bin"

    @property
    def tools(self) -> Path:
        """Finished builds, one directory per tool and version, renamed into place when complete."""
        return self.root / "tools"

    @property
    def work(self) -> Path:
        """Scratch space for wrapper modules and writable module copies."""
        return self.root / "work"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def gomodcache(self) -> Path:
        return self.root / "go" / "mod"

    @property
    def gocache(self) -> Path:
        return self.root / "go" / "build"

    @property
    def pulumi_home(self) -> Path:
        """PULUMI_HOME: the plugins the CLI loads, installed from our own builds only."""
        return self.root / "pulumi-home"

    @property
    def state(self) -> Path:
        """The default self-managed state backend (file://)."""
        return self.root / "state"

    @property
    def clusters(self) -> Path:
        """kwokctl's home: the two local clusters, their etcd data and the shared kubeconfig."""
        return self.root / "clusters"

    @property
    def kubeconfig(self) -> Path:
        return self.clusters / "kubeconfig"

    def tool_dir(self, name: str, version: str) -> Path:
        return self.tools / f"{name}-{version}"

    def log_file(self, name: str, version: str) -> Path:
        return self.logs / f"{name}-{version}.log"


def layout() -> CacheLayout:
    return CacheLayout(cache_root())
