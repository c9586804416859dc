"""Selecting an environment's stack through the Automation API, with the toolchain's environment.

Where the project, the environments and the policy pack are is ``smartnation.paths``."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from pulumi import automation as auto

from smartnation.paths import ENVIRONMENTS_DIR_VARIABLE, environments_dir, project_dir
from smartnation.settings import Settings, SettingsError, load_settings
from smartnation.settings.stack_secrets import CONFIG_NAMESPACE
from smartnation.tooling.toolchain.env import exports


def tool_environment() -> dict[str, str]:
    """Our toolchain first on PATH, local defaults for what the caller did not set."""
    env = exports()
    os.environ.update(env)
    return env


def workspace_options(environments: Path | None = None) -> auto.LocalWorkspaceOptions:
    """Workspace options; ``environments`` points the program at another environments/ copy.

    The program (infra/__main__.py) reads its settings from $SMARTNATION_ENVIRONMENTS_DIR, so
    the variable always goes to the engine explicitly: the CLI and the program must read the
    same files (promote previews the target with a temporary copy of environments/).
    """
    env = tool_environment()
    env_vars: Mapping[str, str] = {**env, ENVIRONMENTS_DIR_VARIABLE: str(environments or environments_dir())}
    return auto.LocalWorkspaceOptions(
        work_dir=str(project_dir()), env_vars=dict(env_vars), pulumi_home=env["PULUMI_HOME"]
    )


def select(environment: str, create: bool = True, environments: Path | None = None) -> tuple[auto.Stack, Settings]:
    """The environment's settings (validated first: nothing is touched on bad input) and stack."""
    settings = load_settings(environment, environments or environments_dir())
    opts = workspace_options(environments)
    work_dir = str(project_dir())
    secrets = secrets_from_environment(environment)
    if create:
        stack = auto.create_or_select_stack(stack_name=environment, work_dir=work_dir, opts=opts)
    else:
        stack = auto.select_stack(stack_name=environment, work_dir=work_dir, opts=opts)
    if secrets:
        existing = stack.get_all_config()
        missing = {k: v for k, v in secrets.items() if f"{CONFIG_NAMESPACE}:{k}" not in existing}
        if missing:
            stack.set_all_config(
                {f"{CONFIG_NAMESPACE}:{k}": auto.ConfigValue(value=v, secret=True) for k, v in missing.items()}
            )
    return stack, settings


def secrets_variable(environment: str) -> str:
    return f"SMARTNATION_SECRETS_{environment.upper().replace('-', '_')}"


def secrets_from_environment(environment: str) -> dict[str, str]:
    """An environment's secrets handed in by CI, where no stack file is checked out.

    Stack files are never committed, so a workflow passes each environment's secrets as one
    JSON object in SMARTNATION_SECRETS_<ENV> (a repository or GitHub-environment secret); they
    fill in whatever the stack file lacks. Checked before anything is touched."""
    name = secrets_variable(environment)
    raw = os.environ.get(name)
    if not raw:
        return {}
    try:
        values = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise SettingsError(f"${name}", "<json>", f"expected a JSON object of secret key to value: {exc}") from None
    if not isinstance(values, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in values.items()):
        raise SettingsError(f"${name}", "<json>", "expected a JSON object mapping each secret key to a string")
    return {k.removeprefix(f"{CONFIG_NAMESPACE}:"): v for k, v in values.items()}
