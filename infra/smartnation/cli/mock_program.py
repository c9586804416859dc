"""The program run under Pulumi's mocks, every registration recorded as the engine would see it.

One copy for three users: the unit tests' harness (tests/unit/harness.py), the rendering of every
environment that checks a refactor (tests/tools/render_environments.py), and the redacted
preview (smartnation.cli.redacted_preview), which renders the base and the head of a change
without any engine, backend or passphrase.

The redacted preview runs THIS file against ANOTHER checkout's program (the base revision, in a
git worktree): ``python -c 'runpy.run_path(<this file>)' OUT ENV ENVIRONMENTS PROJECT`` with
that checkout's ``infra/`` first on PYTHONPATH. So this module imports nothing of smartnation
beyond what every revision has (settings, stack_secrets and the program's ``build``) and is
self-contained otherwise.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import rpc
from pulumi.runtime.mocks import MockMonitor
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

# Pulumi's wire marker for a secret value (rpc._special_sig_key / _special_secret_sig).
SECRET_SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
CONFIG_NAMESPACE = "smartnation"


def placeholder_secret(key: str) -> str:
    """A recognisable stand-in for the secret ``key``, so a test can find it wherever it leaks.

    Derived with sha256 rather than ``hash()`` so that two runs (two renderings of the same tree,
    the base and the head of a redacted preview) see the same values."""
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


def install_mocks(stack: str = "test", project: str = "smartnation") -> Recorder:
    """Fresh mocks and a fresh record; Pulumi's runtime settings are global, so one at a time."""
    recorder = Recorder()
    pulumi.runtime.set_mocks(recorder, project=project, stack=stack, preview=False, monitor=RecordingMonitor(recorder))
    return recorder


def set_secrets(values: dict[str, str]) -> None:
    keys = [f"{CONFIG_NAMESPACE}:{k}" for k in values]
    pulumi.runtime.set_all_config(
        {f"{CONFIG_NAMESPACE}:{k}": v for k, v in values.items()},
        secret_keys=keys,
    )


def placeholder_secrets(keys: Iterable[str]) -> dict[str, str]:
    """One placeholder per secret key (the same for the same key, in every run)."""
    return {key: placeholder_secret(key) for key in keys}


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


def record(registered: Registered) -> dict[str, Any]:
    """One registration as the engine receives it: URN, options and inputs (secrets kept as markers)."""
    return {
        "urn": registered.urn,
        "parent": registered.parent,
        "provider": registered.provider,
        "protect": registered.protect,
        "aliases": list(registered.aliases),
        "dependencies": list(registered.dependencies),
        "delete_before_replace": registered.delete_before_replace,
        "ignore_changes": list(registered.ignore_changes),
        "inputs": registered.inputs,
    }


def from_record(data: dict[str, Any]) -> Registered:
    """A registration back from ``record`` (type and name are in the URN)."""
    urn = data["urn"]
    parts = urn.split("::", 3)
    return Registered(
        type=parts[2].split("$")[-1] if len(parts) == 4 else "",
        name=parts[3] if len(parts) == 4 else urn,
        inputs=data["inputs"],
        provider=data["provider"],
        custom=bool(data.get("custom", True)),
        urn=urn,
        parent=data["parent"],
        protect=data["protect"],
        dependencies=tuple(data["dependencies"]),
        aliases=tuple(data["aliases"]),
        delete_before_replace=data["delete_before_replace"],
        ignore_changes=tuple(data["ignore_changes"]),
    )


def _program_build() -> Callable[[Any], Any]:
    try:
        from smartnation.program.city_platform import build
    except ImportError:  # a revision from before the layout by concern
        from smartnation.program.platform import build  # type: ignore[no-redef]
    return build


def render(environment: str, environments: Path | None = None, project: str = "smartnation") -> list[Registered]:
    """Every registration of the program for ``environment`` (settings from ``environments``),
    with one placeholder per secret the settings require."""
    from smartnation.settings import load_settings
    from smartnation.settings.stack_secrets import required_secrets

    settings = load_settings(environment, environments)
    build = _program_build()
    recorder = install_mocks(stack=environment, project=project)
    set_secrets(placeholder_secrets(required_secrets(settings)))
    try:
        run(recorder, lambda: build(settings))
    finally:
        pulumi.runtime.set_all_config({})
    return list(recorder.resources)


def records(resources: Iterable[Registered]) -> list[dict[str, Any]]:
    """Every registration as a JSON-ready record, sorted by URN (two renderings compare byte for byte)."""
    return sorted((record(r) for r in resources), key=lambda r: r["urn"])


def dump(resources: Iterable[Registered]) -> str:
    return json.dumps(records(resources), indent=1, sort_keys=True, default=str) + "\n"


def main(argv: list[str]) -> int:
    """``OUT ENVIRONMENT ENVIRONMENTS_DIR PROJECT``: the registrations as JSON in OUT."""
    out, environment, environments, project = argv
    Path(out).write_text(dump(render(environment, Path(environments), project)), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
