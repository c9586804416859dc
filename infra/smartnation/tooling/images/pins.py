"""images.yaml read into frozen records and checked before anything is built."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from smartnation.tooling.images import debian_lock

PINS_FILE = Path(__file__).with_name("images.yaml")

API_NAMES = ("device_registry", "telemetry_ingest", "open_data_api")
"""The city APIs: one image each (the environments' release names), from one shared root filesystem."""
IMAGE_NAMES = ("broker", "database", "object_storage", "object_storage_client", *API_NAMES)
"""Every image `make images` builds."""
API_GROUP = "city_apis"
"""The images.yaml entry that pins the three API images together."""

_REPOSITORY = re.compile(r"[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*")
_TAG = re.compile(r"(?!latest$)[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_COMMON_KEYS = {"repository", "version", "tag"}
_ALLOWED = {
    "broker": _COMMON_KEYS | {"debian_packages"},
    "database": _COMMON_KEYS | {"debian_packages", "timescaledb"},
    "object_storage": {"repository", "module", "module_version"},
    "object_storage_client": {"repository", "module", "module_version"},
    API_GROUP: _COMMON_KEYS | {"debian_packages", "python_constraints", "repositories"},
}


class PinsError(ValueError):
    """images.yaml is malformed; the message names the file and the key."""


@dataclass(frozen=True)
class SourceArchive:
    """A vendored source archive (../shared/vendor), checked against its sha256 before use."""

    version: str
    archive: str
    sha256: str


@dataclass(frozen=True)
class ImagePin:
    """What one image is built from."""

    name: str
    repository: str
    """Repository under the site registry (the cluster profile's registry.default)."""
    version: str
    """Upstream version of what runs in the image (the environments' release version)."""
    debian_packages: tuple[tuple[str, str], ...] = ()
    """(package, exact Debian version) installed into the root filesystem."""
    module: str = ""
    """Go module the image's program is built from."""
    module_version: str = ""
    source: SourceArchive | None = None
    also_pushed_as: tuple[tuple[str, str], ...] = ()
    """(release name, repository): further repositories the same image is pushed under."""
    explicit_tag: str = ""
    """The tag, when it says more than the version (the Debian revision of a Debian-built image)."""
    python_constraints: str = ""
    """Exact Python package pins (a file relative to the repository) installed into the image."""

    @property
    def tag(self) -> str:
        """The OCI tag: explicit, else the version (Debian's '+' and a Go pseudo-version's 'v' do not belong in one)."""
        return self.explicit_tag or self.version.removeprefix("v").replace("+", "-").replace("~", "-")

    def repositories(self) -> dict[str, str]:
        """Release name -> repository, for every repository this image is pushed under."""
        return {self.name: self.repository, **dict(self.also_pushed_as)}


@dataclass(frozen=True)
class Pins:
    """Every image pin and the Debian suite they come from. (The site registries' ports are the
    cluster profiles' ``simulation.registry_port``: tooling/images/registry.py.)"""

    source_date_epoch: int
    suite: str
    apt_sources: Path
    images: dict[str, ImagePin]
    debian_lock: tuple[tuple[str, str], ...] | None = None
    """(package, version) of every Debian package an image may contain (debian-packages.lock.yaml);
    None while `make images-debian-update` takes the newest versions the mirror offers."""


def _need(raw: dict, key: str, kind: type, where: str) -> Any:
    value = raw.get(key)
    if not isinstance(value, kind) or isinstance(value, bool) or (isinstance(value, str) and not value):
        raise PinsError(f"{where}.{key} must be a non-empty {kind.__name__}")
    return value


def _string_map(value: Any, where: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict) or not value:
        raise PinsError(f"{where} must be a non-empty mapping")
    for key, item in value.items():
        if not isinstance(key, str) or not isinstance(item, str) or not item:
            raise PinsError(f"{where}.{key} must map to a non-empty string")
    return tuple(sorted(value.items()))


def _image(name: str, raw: Any, where: str) -> ImagePin:
    if not isinstance(raw, dict):
        raise PinsError(f"{where} must be a mapping")
    unknown = set(raw) - _ALLOWED[name]
    if unknown:
        raise PinsError(f"{where}.{sorted(unknown)[0]} is unknown (allowed: {', '.join(sorted(_ALLOWED[name]))})")
    repository = _need(raw, "repository", str, where)
    if not _REPOSITORY.fullmatch(repository):
        raise PinsError(f"{where}.repository {repository!r} is not an image repository path")
    if "module" in _ALLOWED[name]:
        module = _need(raw, "module", str, where)
        module_version = _need(raw, "module_version", str, where)
        if not module_version.startswith("v"):
            raise PinsError(f"{where}.module_version must be a Go module version (v...)")
        return ImagePin(name, repository, module_version, module=module, module_version=module_version)
    version = str(_need(raw, "version", str, where))
    packages = _string_map(raw["debian_packages"], f"{where}.debian_packages") if "debian_packages" in raw else ()
    source = None
    if "timescaledb" in raw:
        archive = raw["timescaledb"]
        if not isinstance(archive, dict) or set(archive) != {"version", "archive", "sha256"}:
            raise PinsError(f"{where}.timescaledb must have exactly version, archive and sha256")
        if not _SHA256.fullmatch(str(archive["sha256"])):
            raise PinsError(f"{where}.timescaledb.sha256 must be 64 lowercase hex digits")
        source = SourceArchive(str(archive["version"]), str(archive["archive"]), str(archive["sha256"]))
    also = _string_map(raw["also_pushed_as"], f"{where}.also_pushed_as") if "also_pushed_as" in raw else ()
    for release, repo in also:
        if not _REPOSITORY.fullmatch(repo):
            raise PinsError(f"{where}.also_pushed_as.{release} {repo!r} is not an image repository path")
    tag = str(raw.get("tag", ""))
    if tag and not _TAG.fullmatch(tag):
        raise PinsError(f"{where}.tag {tag!r} is not an image tag")
    return ImagePin(
        name, repository, version, debian_packages=packages, source=source, also_pushed_as=also, explicit_tag=tag
    )


def _api_images(raw: Any, where: str) -> dict[str, ImagePin]:
    """The city_apis entry: one pin per API, sharing version, tag, Debian and Python pins."""
    if not isinstance(raw, dict):
        raise PinsError(f"{where} must be a mapping")
    allowed = _ALLOWED[API_GROUP] - {"repository"}  # one per API, under repositories
    unknown = set(raw) - allowed
    if unknown:
        raise PinsError(f"{where}.{sorted(unknown)[0]} is unknown (allowed: {', '.join(sorted(allowed))})")
    repositories = dict(_string_map(raw.get("repositories"), f"{where}.repositories"))
    if set(repositories) != set(API_NAMES):
        raise PinsError(f"{where}.repositories must name exactly {', '.join(API_NAMES)}")
    constraints = _need(raw, "python_constraints", str, where)
    if constraints.startswith("/") or ".." in Path(constraints).parts:
        raise PinsError(f"{where}.python_constraints must be a path inside the repository")
    shared = _image(API_GROUP, {k: v for k, v in raw.items() if k not in ("repositories", "python_constraints")}
                    | {"repository": repositories[API_NAMES[0]]}, where)  # fmt: skip
    for api, repository in repositories.items():
        if not _REPOSITORY.fullmatch(repository):
            raise PinsError(f"{where}.repositories.{api} {repository!r} is not an image repository path")
    return {
        api: ImagePin(
            api,
            repositories[api],
            shared.version,
            debian_packages=shared.debian_packages,
            explicit_tag=shared.explicit_tag,
            python_constraints=constraints,
        )
        for api in API_NAMES
    }


def load_pins(path: Path = PINS_FILE, debian_lock_file: Path = debian_lock.LOCK_FILE) -> Pins:
    """Reads and checks images.yaml and the Debian package lock; every error names the file and the key."""
    shown = debian_lock.SHOWN if debian_lock_file == debian_lock.LOCK_FILE else str(debian_lock_file)
    locked = tuple(sorted(debian_lock.read(debian_lock_file, shown).items()))
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise PinsError(f"{path}: cannot read: {exc}") from exc
    try:
        if not isinstance(raw, dict):
            raise PinsError("expected a mapping")
        if "registries" in raw:
            raise PinsError("registries moved to the cluster profiles (environments/clusters/*.yaml: "
                            "simulation.registry_port)")  # fmt: skip
        unknown = set(raw) - {"source_date_epoch", "debian", "images"}
        if unknown:
            raise PinsError(f"{sorted(unknown)[0]} is unknown")
        epoch = _need(raw, "source_date_epoch", int, "")
        debian = raw.get("debian")
        if not isinstance(debian, dict):
            raise PinsError("debian must be a mapping with suite and sources")
        images_raw = raw.get("images")
        if not isinstance(images_raw, dict):
            raise PinsError("images must be a mapping of image name to pin")
        entries = [name for name in IMAGE_NAMES if name not in API_NAMES] + [API_GROUP]
        for name in images_raw:
            if name not in entries:
                raise PinsError(f"images.{name} is not an image smartnation builds ({', '.join(entries)})")
        missing = [name for name in entries if name not in images_raw]
        if missing:
            raise PinsError(f"images.{missing[0]} is missing")
        images = {name: _image(name, images_raw[name], f"images.{name}") for name in entries if name != API_GROUP}
        images |= _api_images(images_raw[API_GROUP], f"images.{API_GROUP}")
        return Pins(
            source_date_epoch=epoch,
            suite=_need(debian, "suite", str, "debian"),
            apt_sources=Path(_need(debian, "sources", str, "debian")),
            images=images,
            debian_lock=locked,
        )
    except PinsError as exc:
        raise PinsError(f"{path}: {exc}") from exc
