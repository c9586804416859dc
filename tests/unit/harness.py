"""Pulumi mocks that record every registered resource, and helpers to build a whole stack.

The mocks and the recorder are ``smartnation.cli.mock_program`` (the redacted preview renders
with the same code); this module re-exports them with the tests' own helpers.

The mocks are installed by fixtures in conftest.py (never at import), so each test starts
from a clean runtime and a clean record. Each record holds what the engine would receive:
the inputs and the resource options (parent, provider, protect, dependencies, aliases), so a
test can check that production's data is protected, not only how its objects look.
``build_stack(environment, cluster)`` runs
``smartnation.program.city_platform.build`` for the environment file with its ``cluster:`` line
switched to ``cluster``, exactly what moving an environment between sites means.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import yaml

# One copy of the mocks and the recorder, shared with the render tool and the redacted preview.
from smartnation.cli.mock_program import (  # noqa: F401 - re-exported for the tests
    SECRET_SIG,
    SECRET_SIG_KEY,
    Recorder,
    RecordingMonitor,
    Registered,
    install_mocks,
    is_secret,
    reveal,
    run,
    set_secrets,
)
from smartnation.cli.mock_program import placeholder_secret as fake_secret
from smartnation.paths import environments_dir
from smartnation.program.city_platform import build
from smartnation.settings.models import Settings
from smartnation.settings.stack_secrets import required_secrets

ENVIRONMENTS = ("dev", "staging", "production")
CLUSTERS = ("dusseldorf-test", "monaco-onprem")
REPO_ENVIRONMENTS = environments_dir()


def plain_strings(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every string reachable without crossing a secret wrapper, with its path."""
    if is_secret(value):
        return
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from plain_strings(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from plain_strings(v, f"{path}[{i}]")


@dataclass
class BuiltStack:
    settings: Settings | None
    resources: list[Registered]
    outputs: dict[str, Any]
    """Stack outputs resolved: name -> (value, is_secret)."""

    def of_type(self, *types: str) -> list[Registered]:
        return [r for r in self.resources if r.type in types]

    def kubernetes(self) -> list[Registered]:
        return [r for r in self.resources if r.type.startswith("kubernetes:")]


def secrets_for(settings: Settings) -> dict[str, str]:
    return {key: fake_secret(key) for key in required_secrets(settings)}


def build_settings(settings: Settings, secrets: Mapping[str, str] | None = None) -> BuiltStack:
    """The whole program (``city_platform.build``) for ``settings`` under fresh mocks, with every
    stack secret at its placeholder and ``secrets`` over them; the runtime's config is cleared
    after, so the next build starts clean."""
    recorder = install_mocks()
    set_secrets(secrets_for(settings) | dict(secrets or {}))
    try:
        outputs = run(recorder, lambda: build(settings))
    finally:
        pulumi.runtime.set_all_config({})
    return BuiltStack(settings, list(recorder.resources), outputs)


def set_dotted(data: Any, path: str, value: Any) -> None:
    """Set ``path`` (dotted; list indexes allowed, missing mappings made) in ``data`` to ``value``."""
    node = data
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
    if isinstance(node, list):
        node[int(keys[-1])] = value
    else:
        node[keys[-1]] = value


def edit(root: Path, file: str, path: str, value: Any) -> None:
    """Set ``path`` (dotted; list indexes allowed) in the YAML file ``root/file`` to ``value``."""
    target = root / file
    data = yaml.safe_load(target.read_text(encoding="utf-8")) or {}
    set_dotted(data, path, value)
    target.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def environments_copy(tmp: Path, environment: str, cluster: str) -> Path:
    """A copy of environments/ with ``cluster:`` of ``environment`` switched to ``cluster``."""
    root = tmp / "environments"
    if not root.exists():
        shutil.copytree(REPO_ENVIRONMENTS, root, ignore=shutil.ignore_patterns("stacks"))
    env_file = root / f"{environment}.yaml"
    text = env_file.read_text(encoding="utf-8")
    new, count = re.subn(r"(?m)^cluster: .*$", f"cluster: {cluster}", text)
    assert count == 1, f"{env_file} should have exactly one top-level cluster: line"
    env_file.write_text(new, encoding="utf-8")
    return root
