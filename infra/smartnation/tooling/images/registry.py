"""A local OCI registry per site: Debian's docker-registry (CNCF distribution) on a loopback port.

Each stands for the registry its cluster profile names in ``registry.default``: the cloud's
registry for dusseldorf-test, the on-prem mirror for monaco-onprem. Its port is the profile's
``simulation.registry_port`` (the one place it is set). Images are pushed under the path of that
name (``swr.../smartnation`` -> ``smartnation/<repository>``), so a real node whose containerd
maps the site registry's host to this address (local_clusters/containerd_config.py) pulls
exactly what the program references. The registry's data lives in the cache and outlives a stop.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from smartnation.paths import cluster_profiles_dir
from smartnation.settings.loader import list_clusters, load_cluster_profile
from smartnation.tooling.images.builder import BuiltImage
from smartnation.tooling.images.cache import ImageCache

Say = Callable[[str], None]
MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
# Loopback only: never through a proxy the environment may name.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class RegistryError(RuntimeError):
    """A site registry did not start, or a push did not land with the expected digest."""


@dataclass(frozen=True)
class LocalRegistry:
    """One site's registry: where it listens, where it keeps its data, which PID serves it."""

    cluster: str
    port: int
    site_registry: str
    """The cluster profile's registry.default (``host/path``)."""
    home: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def path_prefix(self) -> str:
        """The path part of the site registry's name: the local registry serves the same paths."""
        return self.site_registry.partition("/")[2]

    @property
    def config_file(self) -> Path:
        return self.home / "config.yml"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def pid_file(self) -> Path:
        return self.home / "registry.pid"

    @property
    def log_file(self) -> Path:
        return self.home / "registry.log"

    @property
    def site_host(self) -> str:
        """The host part of the site registry's name (what an image reference starts with)."""
        return self.site_registry.partition("/")[0]

    def remote_repository(self, repository: str) -> str:
        return f"{self.path_prefix}/{repository}" if self.path_prefix else repository

    def config(self) -> str:
        return "\n".join(
            [
                "# Written by smartnation (tooling/images/registry.py) on every start.",
                "version: 0.1",
                "log:",
                "  level: info",
                "  formatter: text",
                f"  fields: {{service: registry, site: {self.cluster}}}",
                "storage:",
                "  filesystem:",
                f"    rootdirectory: {json.dumps(str(self.data_dir))}",
                "  delete:",
                "    enabled: true",
                "http:",
                f"  addr: {self.address}",
                "  headers:",
                "    X-Content-Type-Options: [nosniff]",
                "",
            ]
        )

    # -- processes --------------------------------------------------------------------------
    def pid(self) -> int | None:
        """The recorded PID, when that process is alive and is this site's registry."""
        try:
            pid = int(self.pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        return pid if str(self.config_file).encode() in cmdline else None

    def answers(self) -> bool:
        try:
            with _OPENER.open(f"http://{self.address}/v2/", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def running(self) -> bool:
        return self.pid() is not None and self.answers()

    def describe(self) -> str:
        pid = self.pid()
        if pid is None:
            return f"registry {self.cluster}: stopped (stands for {self.site_registry}; data {self.data_dir})"
        health = "answers" if self.answers() else "DOES NOT ANSWER"
        return (
            f"registry {self.cluster}: running, pid {pid}, http://{self.address} {health}"
            f" (stands for {self.site_registry})"
        )

    def ensure_running(self, say: Say) -> None:
        if self.running():
            say(f"registry {self.cluster}: running (pid {self.pid()}, {self.address})")
            return
        if self.pid() is not None:
            self.stop(say)
        self.home.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(exist_ok=True)
        self.config_file.write_text(self.config())
        with self.log_file.open("a") as log:
            proc = subprocess.Popen(
                ["docker-registry", "serve", str(self.config_file)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # outlives `make images`, like the clusters' processes
            )
        self.pid_file.write_text(f"{proc.pid}\n")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RegistryError(
                    f"registry {self.cluster} exited {proc.returncode} on start (port {self.port} taken?); "
                    f"log: {self.log_file}"
                )
            if self.answers():
                say(f"registry {self.cluster}: started (pid {proc.pid}, {self.address}, log {self.log_file})")
                return
            time.sleep(0.2)
        raise RegistryError(f"registry {self.cluster} did not answer on {self.address} in 20s; log: {self.log_file}")

    def stop(self, say: Say) -> None:
        pid = self.pid()
        if pid is None:
            say(f"registry {self.cluster}: not running")
            self.pid_file.unlink(missing_ok=True)
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            time.sleep(0.1)
            _reap(pid)
        if Path(f"/proc/{pid}").exists():
            os.kill(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        say(f"registry {self.cluster}: stopped (pid {pid}; data kept in {self.data_dir})")

    # -- content ------------------------------------------------------------------------------
    def manifest_digest(self, repository: str, reference: str) -> str | None:
        """The digest the registry serves for ``repository:reference`` (a tag or a digest), or None."""
        request = urllib.request.Request(
            f"http://{self.address}/v2/{self.remote_repository(repository)}/manifests/{reference}",
            method="HEAD",
            headers={"Accept": MANIFEST_TYPES},
        )
        try:
            with _OPENER.open(request, timeout=5) as response:
                return response.headers.get("Docker-Content-Digest")
        except (urllib.error.URLError, OSError):
            return None

    def ensure_image(self, image: BuiltImage, say: Say) -> int:
        """Pushes ``image`` under each of its repositories where the tag does not already name its
        digest; returns how many pushes that took."""
        pushed = 0
        for repository in sorted(set(image.repositories.values())):
            if self.manifest_digest(repository, image.tag) == image.digest:
                continue
            target = f"docker://{self.address}/{self.remote_repository(repository)}:{image.tag}"
            proc = subprocess.run(
                [
                    "skopeo",
                    "copy",
                    "--quiet",
                    "--preserve-digests",
                    "--dest-tls-verify=false",
                    f"oci:{image.layout}:{image.tag}",
                    target,
                ],
                capture_output=True,
                text=True,
                env={**os.environ, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"},
            )
            if proc.returncode != 0:
                raise RegistryError(f"push of {image.name} to {target} failed: {proc.stderr.strip()}")
            served = self.manifest_digest(repository, image.tag)
            if served != image.digest:
                raise RegistryError(f"{target} serves {served}, the build made {image.digest}")
            say(f"registry {self.cluster}: pushed {self.remote_repository(repository)}@{image.digest}")
            pushed += 1
        return pushed


def _reap(pid: int) -> None:
    """Collects the registry's exit status when this process started it (no zombie left behind)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def site_registries(cache: ImageCache, root: Path | None = None) -> list[LocalRegistry]:
    """One registry per cluster profile with a local section, on its ``simulation.registry_port``
    and named after its ``registry.default``. ``root``: the environments directory (tests)."""
    registries: list[LocalRegistry] = []
    for cluster in list_clusters(root):
        profile = load_cluster_profile(cluster, root)
        if profile.simulation is None:  # no local stand-in, so no local registry either
            continue
        registries.append(
            LocalRegistry(
                cluster=cluster,
                port=profile.simulation.registry_port,
                site_registry=profile.registry.default,
                home=cache.registries / cluster,
            )
        )
    by_port: dict[int, str] = {}
    for registry in registries:
        if registry.port in by_port:
            raise RegistryError(
                f"{cluster_profiles_dir(root) / registry.cluster}.yaml: simulation.registry_port {registry.port} is "
                f"also {by_port[registry.port]}'s: each site needs its own"
            )
        by_port[registry.port] = registry.cluster
    return registries
