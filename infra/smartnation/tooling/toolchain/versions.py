"""The pinned versions file, read into frozen records and checked before anything is built."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from smartnation.settings.errors import SettingsError
from smartnation.settings.validation import Origins, convert, setting
from smartnation.settings.yaml_files import read_yaml

VERSIONS_FILE = Path(__file__).with_name("versions.yaml")

VersionsError = SettingsError
"""What a malformed versions file raises (the name bootstrap reports under): the settings'
own error, naming the file and the key path."""

_VERSION = r"[0-9][0-9A-Za-z.+-]*"


@dataclass(frozen=True, kw_only=True)
class Pin:
    """One tool's pin."""

    name: str = setting(from_key=True)
    """The tool, as versions.yaml lists it (not written inside the entry)."""
    version: str = setting(pattern=_VERSION, describe="a version without a leading 'v', such as 1.37.2")
    """The version the tool reports about itself, without a leading v."""
    module: str = setting(default="")
    """The Go module the tool is built from."""
    module_version: str = setting(default="")
    """The exact module version (a tag or a pseudo-version) asked of the Go proxy."""
    exec_module: str = setting(default="")
    """A second module a tool needs a binary from (the Python language host's executor)."""
    exec_module_version: str = setting(default="")
    """Its exact module version."""
    sdk_module_version: str = setting(default="")
    """The SDK module version a module's go.mod replaces with a path outside the module."""
    requires: tuple[str, ...] = setting(
        default=(),
        pattern=r"[a-z0-9.-]+(/[A-Za-z0-9._~-]+)*@v[0-9][0-9A-Za-z.+-]*",
        describe="module@version, such as golang.org/x/net@v0.62.0",
        unique=True,
    )
    """Dependencies raised above what the module's go.mod asks (MODULE@VERSION): fixes that its
    newest release the proxy serves predates. The wrapper module requires them; Go takes the highest."""


@dataclass(frozen=True, kw_only=True)
class ToolPins:
    """versions.yaml: every tool smartnation builds, in build order (the provider plugin is
    installed by the CLI, so the CLI comes first). Any other key is a typo and is refused."""

    pulumi: Pin
    pulumi_language_python: Pin = setting(key="pulumi-language-python")
    pulumi_resource_kubernetes: Pin = setting(key="pulumi-resource-kubernetes")
    kubernetes: Pin
    etcd: Pin
    kwok: Pin
    helm: Pin
    actionlint: Pin
    coredns: Pin
    kube_router: Pin = setting(key="kube-router")
    cert_manager: Pin = setting(key="cert-manager")


TOOLS: tuple[str, ...] = tuple(field.metadata.get("key") or field.name for field in dataclasses.fields(ToolPins))
"""Every tool smartnation builds, in build order."""


def load_pins(path: Path = VERSIONS_FILE) -> dict[str, Pin]:
    """The pins of ``path`` by tool name, in build order; SettingsError names the file and key."""
    pins = convert(ToolPins, read_yaml(path), (), Origins(str(path)))
    return {pin.name: pin for pin in (getattr(pins, field.name) for field in dataclasses.fields(ToolPins))}
