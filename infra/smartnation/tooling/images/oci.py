"""OCI image layouts: one layer plus a configuration, assembled with umoci, with every timestamp fixed."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from smartnation.tooling.images.steps import StepRunner

_REF_NAME = "org.opencontainers.image.ref.name"


@dataclass(frozen=True)
class ImageConfig:
    """What the runtime needs to start the image: the entrypoint contract."""

    user: str
    """``uid:gid``, numeric, so runAsNonRoot can check it without reading /etc/passwd."""
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    """``NAME=value`` lines; PATH among them."""
    workdir: str = "/"
    ports: tuple[str, ...] = ()
    """``1883/tcp`` and the like (documentation only: Kubernetes does not read them)."""
    labels: dict[str, str] = field(default_factory=dict)

    def describe(self) -> dict:
        """The contract as data, part of each image's cache key and of its built.json."""
        return {
            "user": self.user,
            "entrypoint": list(self.entrypoint),
            "cmd": list(self.cmd),
            "env": list(self.env),
            "workdir": self.workdir,
            "ports": list(self.ports),
            "labels": dict(sorted(self.labels.items())),
        }


def iso(epoch: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def assemble(runner: StepRunner, layout: Path, tag: str, layer: Path, config: ImageConfig, epoch: int) -> str:
    """Builds ``layout:tag`` from one uncompressed layer and ``config``; returns the manifest digest."""
    shutil.rmtree(layout, ignore_errors=True)
    image = f"{layout}:{tag}"
    created = iso(epoch)
    runner.run("oci-layout", ["umoci", "init", "--layout", str(layout)])
    runner.run("oci-layout", ["umoci", "new", "--image", image])
    runner.run(
        "oci-layer",
        [
            "umoci",
            "raw",
            "add-layer",
            "--image",
            image,
            "--history.created",
            created,
            "--history.created_by",
            "smartnation images (infra/smartnation/tooling/images)",
            str(layer),
        ],
    )
    args = ["umoci", "config", "--image", image, "--no-history", "--created", created]
    args += ["--author", "smartnation", "--os", "linux", "--architecture", "amd64"]
    args += ["--config.user", config.user, "--config.workingdir", config.workdir]
    for part in config.entrypoint:
        args += ["--config.entrypoint", part]
    for part in config.cmd:
        args += ["--config.cmd", part]
    for line in config.env:
        args += ["--config.env", line]
    for port in config.ports:
        args += ["--config.exposedports", port]
    for key, value in sorted(config.labels.items()):
        args += ["--config.label", f"{key}={value}"]
    runner.run("oci-config", args)
    # Each umoci step wrote a new config and manifest: keep only the blobs the final one uses.
    runner.run("oci-layout", ["umoci", "gc", "--layout", str(layout)])
    return manifest_digest(layout, tag)


def manifest_digest(layout: Path, tag: str) -> str:
    index = json.loads((layout / "index.json").read_text())
    for entry in index.get("manifests", []):
        if (entry.get("annotations") or {}).get(_REF_NAME) == tag:
            return entry["digest"]
    raise KeyError(f"{layout} has no image tagged {tag}")


def blob(layout: Path, digest: str) -> Path:
    algorithm, _, hexdigest = digest.partition(":")
    return layout / "blobs" / algorithm / hexdigest


def image_size(layout: Path, tag: str) -> int:
    """Bytes a registry stores and a node pulls: the manifest, the configuration and the layers."""
    digest = manifest_digest(layout, tag)
    manifest = json.loads(blob(layout, digest).read_text())
    return blob(layout, digest).stat().st_size + sum(
        d["size"] for d in [manifest["config"], *manifest.get("layers", [])]
    )


def image_config(layout: Path, tag: str) -> dict:
    manifest = json.loads(blob(layout, manifest_digest(layout, tag)).read_text())
    return json.loads(blob(layout, manifest["config"]["digest"]).read_text())


def umoci_version() -> str:
    out = subprocess.run(["umoci", "--version"], capture_output=True, text=True)
    return out.stdout.strip() or out.stderr.strip()
