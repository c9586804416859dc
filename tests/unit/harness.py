"""Pulumi mocks that record every registered resource, and helpers to build a whole stack.

The mocks are installed by fixtures in conftest.py (never at import), so each test starts
from a clean runtime and a clean record. Each record holds what the engine would receive:
the inputs and the resource options (parent, provider, protect, dependencies, aliases), so a
test can check that production's data is protected, not only how its objects look.
``build_stack(environment, cluster)`` runs
``smartnation.program.city_platform.build`` for the environment file with its ``cluster:`` line
switched to ``cluster``, exactly what moving an environment between sites means.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import rpc
from pulumi.runtime.mocks import MockMonitor
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from smartnation.paths import environments_dir
from smartnation.settings.models import Settings
from smartnation.settings.stack_secrets import CONFIG_NAMESPACE, required_secrets

ENVIRONMENTS = ("dev", "staging", "production")
CLUSTERS = ("dusseldorf-test", "monaco-onprem")
REPO_ENVIRONMENTS = environments_dir()

# Pulumi's wire marker for a secret value (rpc._special_sig_key / _special_secret_sig).
SECRET_SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"


def fake_secret(key: str) -> str:
    """A recognisable fake value, so a test can find it wherever it leaks.

    Derived with sha256 rather than ``hash()`` so that two runs (and two renderings of the
    same tree, tests/tools/render_environments.py) see the same values."""
    digest = int(hashlib.sha256(key.encode()).hexdigest(), 16) % 10**8
    return f"FAKE{digest:08d}x{key.replace('-', '')[:20]}"


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SECRET_SIG_KEY) == SECRET_SIG


def reveal(value: Any) -> Any:
    """The value with Pulumi's secret wrappers removed (to inspect structure)."""
    if is_secret(value):
        return reveal(value.get("value"))
    if isinstance(value, dict):
        return {k: reveal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [reveal(v) for v in value]
    return value


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
class Registered:
    """One resource registration as the engine would have seen it: inputs and options."""

    type: str
    name: str
    inputs: dict[str, Any]
    provider: str
    custom: bool
    urn: str = ""
    parent: str = ""
    """URN of the parent ("" for none, which the engine reads as the stack)."""
    protect: bool | None = None
    """The protect option, None when the program did not set it."""
    dependencies: tuple[str, ...] = ()
    """URNs this resource depends on (explicit depends_on and those its inputs carry), sorted."""
    aliases: tuple[str, ...] = ()
    """The aliases, each as one line of text, sorted."""
    delete_before_replace: bool = False
    ignore_changes: tuple[str, ...] = ()

    @property
    def plain(self) -> dict[str, Any]:
        return reveal(self.inputs)

    @property
    def kind(self) -> str:
        return self.type.split(":")[-1]


@dataclass
class Recorder(pulumi.runtime.Mocks):
    """The mocks: answer every resource with its inputs; ``RecordingMonitor`` fills ``resources``."""

    resources: list[Registered] = field(default_factory=list)

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, list | None]:
        return {}, None


class RecordingMonitor(MockMonitor):
    """Pulumi's mock resource monitor, recording each RegisterResource request it answers.

    The mocks' ``new_resource`` sees only type, name, inputs and provider; the request also
    carries the options (protect, parent, dependencies, aliases) a refactor must keep."""

    def __init__(self, recorder: Recorder) -> None:
        super().__init__(recorder)
        self.recorder = recorder

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - the gRPC method name
        response = super().RegisterResource(request)
        # The root stack is the engine's own resource: MockMonitor answers it without the mocks.
        if request.type != "pulumi:pulumi:Stack":
            self.recorder.resources.append(
                Registered(
                    type=request.type,
                    name=request.name,
                    inputs=rpc.deserialize_properties(request.object, keep_unknowns=True),
                    provider=request.provider,
                    custom=request.custom,
                    urn=response.urn,
                    parent=request.parent,
                    protect=request.protect if request.HasField("protect") else None,
                    dependencies=tuple(sorted(request.dependencies)),
                    aliases=tuple(sorted(str(a).replace("\n", " ") for a in request.aliases)),
                    delete_before_replace=request.deleteBeforeReplace,
                    ignore_changes=tuple(request.ignoreChanges),
                )
            )
        return response


def install_mocks(stack: str = "test") -> Recorder:
    """Fresh mocks and a fresh record; Pulumi's runtime settings are global, so one at a time."""
    recorder = Recorder()
    pulumi.runtime.set_mocks(
        recorder, project="smartnation", stack=stack, preview=False, monitor=RecordingMonitor(recorder)
    )
    return recorder


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


def set_secrets(values: dict[str, str]) -> None:
    keys = [f"{CONFIG_NAMESPACE}:{k}" for k in values]
    pulumi.runtime.set_all_config(
        {f"{CONFIG_NAMESPACE}:{k}": v for k, v in values.items()},
        secret_keys=keys,
    )


def secrets_for(settings: Settings) -> dict[str, str]:
    return {key: fake_secret(key) for key in required_secrets(settings)}


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


def run(recorder: Recorder, program: Callable[[], Any]) -> dict[str, Any]:
    """Run ``program`` under the mocks, wait for every registration, resolve its outputs."""
    result: dict[str, Any] = {}

    def body() -> None:
        result["value"] = program()

    _sync_await(run_pulumi_func(body))
    outputs = {}
    for key, value in (result.get("value") or {}).items():
        out = pulumi.Output.from_input(value)
        outputs[key] = (_sync_await(out.future()), _sync_await(out.is_secret()))
    return outputs
