"""Selecting an environment's stack through the Automation API, with the toolchain's environment."""

from __future__ import annotations

import os
from pathlib import Path

from pulumi import automation as auto

from smartnation.settings import Settings, load_settings
from smartnation.toolchain.env import exports

REPO = Path(__file__).resolve().parents[3]


def tool_environment() -> dict[str, str]:
    """Our toolchain first on PATH, local defaults for what the caller did not set."""
    env = exports()
    os.environ.update(env)
    return env


def workspace_options() -> auto.LocalWorkspaceOptions:
    env = tool_environment()
    return auto.LocalWorkspaceOptions(work_dir=str(REPO), env_vars=env, pulumi_home=env["PULUMI_HOME"])


def select(environment: str, create: bool = True) -> tuple[auto.Stack, Settings]:
    """The environment's settings (validated first: nothing is touched on bad input) and stack."""
    settings = load_settings(environment)
    opts = workspace_options()
    if create:
        stack = auto.create_or_select_stack(stack_name=environment, work_dir=str(REPO), opts=opts)
    else:
        stack = auto.select_stack(stack_name=environment, work_dir=str(REPO), opts=opts)
    return stack, settings
