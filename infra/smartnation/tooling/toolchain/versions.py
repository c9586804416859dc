"""The pinned versions file, read into frozen records and checked before anything is built."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

VERSIONS_FILE = Path(__file__).with_name("versions.yaml")

# Keys each entry may carry; anything else is a typo that would silently be ignored.
_ALLOWED = {
    "version",
    "module",
    "module_version",
    "exec_module",
    "exec_module_version",
    "sdk_module_version",
}
# Every tool smartnation builds, in build order: the provider plugin is installed by the CLI,
# so the CLI comes first.
TOOLS = (
    "pulumi",
    "pulumi-language-python",
    "pulumi-resource-kubernetes",
    "kubernetes",
    "etcd",
    "kwok",
    "helm",
    "actionlint",
)


class VersionsError(ValueError):
    """The versions file is malformed; the message names the file and the key."""


@dataclass(frozen=True)
class Pin:
    """One tool's pin."""

    name: str
    version: str
    """The version the tool reports about itself, without a leading v."""
    module: str = ""
    """The Go module the tool is built from."""
    module_version: str = ""
    """The exact module version (a tag or a pseudo-version) asked of the Go proxy."""
    exec_module: str = ""
    exec_module_version: str = ""
    sdk_module_version: str = ""


def load_pins(path: Path = VERSIONS_FILE) -> dict[str, Pin]:
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise VersionsError(f"{path}: cannot read: {exc}") from exc
    if not isinstance(raw, dict):
        raise VersionsError(f"{path}: expected a mapping of tool name to pin, got {type(raw).__name__}")
    pins: dict[str, Pin] = {}
    for name in TOOLS:
        if name not in raw:
            raise VersionsError(f"{path}: key '{name}' is missing")
    for name, entry in raw.items():
        if name not in TOOLS:
            raise VersionsError(f"{path}: key '{name}' is not a tool smartnation builds ({', '.join(TOOLS)})")
        if not isinstance(entry, dict):
            raise VersionsError(f"{path}: key '{name}' must be a mapping")
        unknown = set(entry) - _ALLOWED
        if unknown:
            raise VersionsError(
                f"{path}: key '{name}.{sorted(unknown)[0]}' is unknown (allowed: {', '.join(sorted(_ALLOWED))})"
            )
        if not isinstance(entry.get("version"), str) or not entry["version"]:
            raise VersionsError(f"{path}: key '{name}.version' must be a non-empty string")
        if entry["version"].startswith("v"):
            raise VersionsError(f"{path}: key '{name}.version' is written without a leading 'v'")
        pins[name] = Pin(name=name, **{k: str(v) for k, v in entry.items()})
    return pins
