"""The engine operations `preview`, `promote` and `status` share: a preview with the policy pack,
the drift check, and what a stack's history and outputs say was deployed."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pulumi import automation as auto

from smartnation.cli import workspace
from smartnation.cli.report import EnvironmentPreview, EventCollector, urn_name
from smartnation.paths import POLICY_PACK, environments_dir, project_dir
from smartnation.settings import Settings, SettingsError
from smartnation.settings.stack_secrets import CONFIG_NAMESPACE, generate_missing

log = logging.getLogger("smartnation")

RELEASES_OUTPUT = "deployed_releases"
"""The stack output (infra/smartnation/program/city_platform.py) recording the releases the last update deployed."""
_DERIVED_RELEASE_KEYS = ("helm_releases",)  # outputs of the deployment, not of the settings


# --- policy ---------------------------------------------------------------------------------------

_POLICY_CONFIG_SCRIPT = """
import json, sys
import yaml
from smartnation_policy.target import policy_config_for
environment, profile_path = sys.argv[1], sys.argv[2]
with open(profile_path, encoding="utf-8") as stream:
    profile = yaml.safe_load(stream)
json.dump(policy_config_for(environment, profile), sys.stdout)
"""


def policy_config(environment: str, profile_path: Path) -> dict[str, Any]:
    """`policy_config_for(env, profile)` of the pack in policy/.

    The pack is not part of the installed package (the engine loads it from its directory), so
    it runs in a child interpreter with policy/ on its path, exactly as policy/README.md shows,
    rather than altering this process's sys.path.
    """
    proc = subprocess.run(
        [sys.executable, "-c", _POLICY_CONFIG_SCRIPT, environment, str(profile_path)],
        cwd=POLICY_PACK,
        env={**workspace.tool_environment(), "PYTHONPATH": str(POLICY_PACK)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise SettingsError(str(profile_path.name), "<policy target>", last)
    return json.loads(proc.stdout)


@contextmanager
def policy_args(settings: Settings, environments: Path) -> Iterator[dict[str, list[str]]]:
    """Keyword arguments for preview/up that run the policy pack against this environment's target."""
    profile = environments / "clusters" / f"{settings.cluster.name}.yaml"
    config = policy_config(settings.environment, profile)
    with tempfile.TemporaryDirectory(prefix="smartnation-policy-") as tmp:
        path = Path(tmp) / f"{settings.environment}-policy.json"
        path.write_text(json.dumps(config, indent=2), encoding="utf-8")
        yield {"policy_packs": [str(POLICY_PACK)], "policy_pack_configs": [str(path)]}


# --- stacks ---------------------------------------------------------------------------------------


def open_stack(environment: str, environments: Path | None = None) -> tuple[auto.Stack, Settings, bool]:
    """(stack, settings, created): the stack, created with fresh secrets if it never existed.

    A preview of an environment that was never deployed runs against an empty stack; the program
    needs its secrets to run, so they are generated into its stack file (environments/stacks/
    Pulumi.<env>.yaml) as `smartnation secrets init` would. An existing stack is never altered.
    """
    try:
        stack, settings = workspace.select(environment, create=False, environments=environments)
        return stack, settings, False
    except auto.StackNotFoundError:
        stack, settings = workspace.select(environment, create=True, environments=environments)
    generated = generate_missing(environment, stack.get_all_config().keys(), root=environments)
    if generated:
        stack.set_all_config(
            {f"{CONFIG_NAMESPACE}:{k}": auto.ConfigValue(value=v, secret=True) for k, v in generated.items()}
        )
    log.info("%s: no stack in this backend yet; created it with %d generated secret(s)", environment, len(generated))
    return stack, settings, True


def _tail(error: auto.CommandError, lines: int = 25) -> str:
    text = str(error).strip().splitlines()
    return "\n".join(text[-lines:])


def preview(
    environment: str,
    reasons: tuple[str, ...] = (),
    environments: Path | None = None,
    on_output: Callable[[str], None] | None = None,
) -> EnvironmentPreview:
    """Preview one environment with diff and the policy pack; never raises for engine failures.

    ConcurrentUpdateError and SettingsError do propagate: they are the caller's exit codes.
    """
    envdir = environments or environments_dir()
    stack, settings, created = open_stack(environment, envdir)
    collector = EventCollector()
    failed, tail = False, ""
    with policy_args(settings, envdir) as policy:
        try:
            stack.preview(diff=True, color="never", on_event=collector, on_output=on_output, **policy)
        except auto.ConcurrentUpdateError:
            raise
        except auto.CommandError as error:
            failed, tail = True, _tail(error)
    result = EnvironmentPreview.from_collector(
        environment, settings.cluster.name, collector, reasons=reasons, new_stack=created
    )
    result.finish(engine_failed=failed, output_tail=tail)
    return result


# --- drift ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Drift:
    """What a refresh would change in the state: the resources that no longer match the cluster."""

    resources: tuple[str, ...]
    """`<type> <name>` of each drifted resource."""
    error: str | None = None

    @property
    def drifted(self) -> bool:
        return bool(self.resources)


class DriftCollector:
    """`on_event` of a refresh preview: a resource drifted if the refresh would change its state.

    The engine reports it as an `update` (or `delete`, when the object is gone) with the
    differing properties. With server-side apply the provider compares only the fields Pulumi
    manages: a label someone else added is not drift, a replica count someone changed is.
    """

    def __init__(self) -> None:
        self.drifted: dict[str, str] = {}

    def __call__(self, event: auto.EngineEvent) -> None:
        meta = None
        if event.resource_pre_event is not None:
            meta = event.resource_pre_event.metadata
        elif event.res_outputs_event is not None:
            meta = event.res_outputs_event.metadata
        if meta is None or meta.type.startswith(("pulumi:pulumi:Stack", "pulumi:providers:")):
            return
        op = str(getattr(meta.op, "value", meta.op))
        fields = list(meta.detailed_diff or ()) or list(meta.diffs or ())
        if op in ("same", "read", "refresh") and not fields:
            return
        if op in ("refresh", "update", "delete", "create", "replace"):
            what = f"{meta.type.removeprefix('kubernetes:')} {urn_name(meta.urn)}"
            if op == "delete":
                what += " (gone)"
            elif fields:
                what += " (" + ", ".join(fields[:3]) + (", ..." if len(fields) > 3 else "") + ")"
            self.drifted[meta.urn] = what


def drift(stack: auto.Stack) -> Drift:
    """`pulumi refresh --preview-only` through the Automation API; names the drifted resources."""
    collector = DriftCollector()
    try:
        stack.preview_refresh(color="never", on_event=collector, diff=True)
    except auto.ConcurrentUpdateError:
        raise
    except auto.CommandError as error:
        return Drift(tuple(sorted(collector.drifted.values())), error=_tail(error, 5))
    return Drift(tuple(sorted(collector.drifted.values())))


# --- locks ---------------------------------------------------------------------------------------


class StackLocked(Exception):
    """Another update holds the stack's lock (exit code STACK_LOCKED, like ConcurrentUpdateError)."""


def lock_holders(environment: str) -> list[dict[str, Any]] | None:
    """The lock files of the environment's stack in a file backend; None if it cannot be told.

    Previews and refresh previews do not take the lock (pulumi >= 3.2xx), so a gate that must not
    run during someone else's update looks at the lock itself. The file backend keeps it at
    `.pulumi/locks/<org>/<project>/<stack>/<id>.json` (older layout: `.pulumi/locks/<stack>/`).
    Other backends (S3) are not listed here: there the update itself refuses with STACK_LOCKED.
    """
    url = workspace.tool_environment().get("PULUMI_BACKEND_URL", "")
    if not url.startswith("file://"):
        return None
    root = Path(url.removeprefix("file://")).expanduser() / ".pulumi" / "locks"
    project = _project_name()
    candidates = [*root.glob(f"*/{project}/{environment}/*.json"), *root.glob(f"{environment}/*.json")]
    holders = []
    for path in candidates:
        try:
            holders.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            holders.append({"file": str(path)})
    return holders


def _project_name() -> str:
    import yaml

    data = yaml.safe_load((project_dir() / "Pulumi.yaml").read_text(encoding="utf-8"))
    return str(data["name"])


def check_unlocked(environment: str) -> None:
    """Raise StackLocked naming who holds the lock, if anyone does."""
    holders = lock_holders(environment)
    if holders:
        who = holders[0]
        detail = ", ".join(f"{k} {who[k]}" for k in ("username", "hostname", "pid", "timestamp") if k in who)
        raise StackLocked(f"the stack {environment!r} is locked by another update ({detail or who})")


# --- history and outputs --------------------------------------------------------------------------


@dataclass(frozen=True)
class LastUpdate:
    kind: str
    result: str
    version: int | None
    time: str | None
    """End time (start time while in progress), UTC ISO 8601."""


def last_update(stack: auto.Stack, kinds: tuple[str, ...] = ("update", "destroy")) -> LastUpdate | None:
    """The newest history entry of one of ``kinds`` (refreshes do not deploy anything).

    ``version`` is the engine's update version where the backend numbers updates; the file and
    S3 backends report 0 for every entry, so there it is the entry's position in the history
    (1 = the stack's first operation), which is as stable as the history itself.
    """
    history = stack.history(show_secrets=False)
    for index, entry in enumerate(history):
        if entry.kind in kinds:
            when = entry.end_time or entry.start_time
            return LastUpdate(
                kind=entry.kind,
                result=entry.result,
                version=entry.version or len(history) - index,
                time=when.strftime("%Y-%m-%dT%H:%M:%SZ") if when else None,
            )
    return None


def deployed_releases(stack: auto.Stack) -> dict[str, Any] | None:
    """The releases output of the last successful update, without what the deployment derived."""
    outputs = stack.outputs()
    if RELEASES_OUTPUT not in outputs:
        return None
    value = outputs[RELEASES_OUTPUT].value
    if not isinstance(value, dict):
        return None
    return {k: v for k, v in value.items() if k not in _DERIVED_RELEASE_KEYS}


def file_releases(settings: Settings) -> dict[str, Any]:
    """What the releases output would be for the settings as they are in the files now."""
    # Imported late: the stack module pulls in the Kubernetes SDK and every component.
    from smartnation.program.city_platform import release_summary

    return json.loads(json.dumps(release_summary(settings)))
