"""Selecting an environment's stack through the Automation API, with the toolchain's environment.

Where things are, so that tests (and a second checkout) can point the CLI elsewhere:

- the code (infra/, policy/, charts/) is always this checkout (``REPO``);
- the *project* (Pulumi.yaml, the stack files under environments/stacks, the git history that
  ``preview`` diffs) is ``$SMARTNATION_PROJECT_DIR``, by default this checkout;
- the environment files are ``$SMARTNATION_ENVIRONMENTS_DIR``, by default ``<project>/environments``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pulumi import automation as auto

from smartnation.settings import Settings, load_settings
from smartnation.settings.loader import ENVIRONMENTS_DIR_VARIABLE
from smartnation.toolchain.env import exports

REPO = Path(__file__).resolve().parents[3]
PROJECT_DIR_VARIABLE = "SMARTNATION_PROJECT_DIR"
POLICY_PACK = REPO / "policy"


def project_dir() -> Path:
    """The Pulumi project directory: $SMARTNATION_PROJECT_DIR, else this checkout."""
    configured = os.environ.get(PROJECT_DIR_VARIABLE)
    return Path(configured).resolve() if configured else REPO


def environments_dir() -> Path:
    """The environment files: $SMARTNATION_ENVIRONMENTS_DIR, else <project>/environments."""
    configured = os.environ.get(ENVIRONMENTS_DIR_VARIABLE)
    return Path(configured).resolve() if configured else project_dir() / "environments"


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
    if create:
        stack = auto.create_or_select_stack(stack_name=environment, work_dir=work_dir, opts=opts)
    else:
        stack = auto.select_stack(stack_name=environment, work_dir=work_dir, opts=opts)
    return stack, settings
