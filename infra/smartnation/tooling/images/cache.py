"""Where images, the programs built for them and the site registries live in the cache."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from smartnation.paths import cache_root


@dataclass(frozen=True)
class ImageCache:
    """``<cache>/images``: nothing here is ever committed; delete it to rebuild from scratch."""

    root: Path

    @property
    def oci(self) -> Path:
        """Finished images, one OCI layout per image and input digest, renamed into place when complete."""
        return self.root / "oci"

    @property
    def programs(self) -> Path:
        """Built programs (TimescaleDB, MinIO, mc, the city APIs' root filesystem), one directory per input digest."""
        return self.root / "programs"

    @property
    def work(self) -> Path:
        """Scratch space: root filesystems and layers being built."""
        return self.root / "work"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def registries(self) -> Path:
        """One directory per site registry: its config, data, PID and log."""
        return self.root / "registries"

    @property
    def digests(self) -> Path:
        """The last build's release name -> repository@sha256 map."""
        return self.root / "digests.json"

    @property
    def build_times(self) -> Path:
        return self.logs / "build-times.json"

    def image_dir(self, name: str, key: str) -> Path:
        return self.oci / f"{name}-{key[:16]}"

    def log_file(self, name: str) -> Path:
        return self.logs / f"{name}.log"


def image_cache() -> ImageCache:
    return ImageCache(cache_root() / "images")
