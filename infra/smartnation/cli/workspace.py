"""Selecting an environment's stack through the Automation API, with the toolchain's environment,
and writing secrets into a stack's config.

Where the project, the environments and the policy pack are is ``smartnation.paths``."""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from pulumi import automation as auto

from smartnation.paths import ENVIRONMENTS_DIR_VARIABLE, environments_dir, project_dir
from smartnation.settings import Settings, SettingsError, load_settings
from smartnation.settings.stack_secrets import CONFIG_NAMESPACE, generate_missing
from smartnation.tooling.toolchain.env import BACKEND, exports
from smartnation.tooling.toolchain.file_backend import TornStateFiles, remove_torn_sidecars, torn_sidecars

log = logging.getLogger("smartnation")

_SKIP_VERSION_CHECK = "PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK"


def tool_environment(environment: str | None = None) -> dict[str, str]:
    """The variables our tools run with: the toolchain first on PATH, local defaults for what the
    caller did not set. This process's own environment is left as it is; whoever starts the engine
    or a tool passes these explicitly (``env_vars`` of the workspace, ``env=`` of a subprocess).

    ``environment``, when the caller opens that stack, picks its own passphrase
    (SMARTNATION_PASSPHRASE_<ENV>, else PULUMI_CONFIG_PASSPHRASE): one promote job opens staging
    and production, each under its own."""
    return exports(environment)


def pulumi_command(env: Mapping[str, str]) -> auto.PulumiCommand:
    """The `pulumi` found on ``env``'s PATH (the toolchain's), not on this process's PATH.

    The Automation API looks for `pulumi` on the process's PATH unless it is handed the command,
    and this process's PATH is not changed for it.
    """
    found = shutil.which("pulumi", path=env.get("PATH"))
    root = str(Path(found).parent.parent) if found and Path(found).parent.name == "bin" else None
    return auto.PulumiCommand(root=root, skip_version_check=_SKIP_VERSION_CHECK in env)


def workspace_options(environments: Path | None = None, environment: str | None = None) -> auto.LocalWorkspaceOptions:
    """Workspace options; ``environments`` points the program at another environments/ copy,
    ``environment`` picks that stack's passphrase (``tool_environment``).

    The program (infra/__main__.py) reads its settings from $SMARTNATION_ENVIRONMENTS_DIR, so
    the variable always goes to the engine explicitly: the CLI and the program must read the
    same files (promote previews the target with a temporary copy of environments/).
    """
    env = {**tool_environment(environment), ENVIRONMENTS_DIR_VARIABLE: str(environments or environments_dir())}
    return auto.LocalWorkspaceOptions(
        work_dir=str(project_dir()),
        env_vars=env,
        pulumi_home=env["PULUMI_HOME"],
        pulumi_command=pulumi_command(env),
    )


def select(
    environment: str, create: bool = True, environments: Path | None = None, remove_torn: bool = False
) -> tuple[auto.Stack, Settings]:
    """The environment's settings (validated first: nothing is touched on bad input) and stack.

    Secrets CI hands in (SMARTNATION_SECRETS_<ENV>) fill in whatever the stack config lacks.
    ``remove_torn`` (`up --recover`) removes the state's unreadable metadata sidecars instead of
    refusing with TornStateFiles."""
    settings = load_settings(environment, environments or environments_dir())
    opts = workspace_options(environments, environment)
    # Before the engine reads the state: a sidecar a killed write left empty fails every read with
    # a bare `EOF`; name it and the way out instead (file_backend.py).
    backend = (opts.env_vars or {}).get(BACKEND, "")
    if remove_torn:
        for path in remove_torn_sidecars(backend):
            log.warning("removed %s: a metadata file a killed write left unreadable", path)
    elif torn := torn_sidecars(backend):
        raise TornStateFiles(environment, torn)
    work_dir = str(project_dir())
    secrets = secrets_from_environment(environment)
    if create:
        stack = auto.create_or_select_stack(stack_name=environment, work_dir=work_dir, opts=opts)
    else:
        stack = auto.select_stack(stack_name=environment, work_dir=work_dir, opts=opts)
    if secrets:
        seed_secrets(stack, secrets)
    return stack, settings


def open_stack(environment: str, environments: Path | None = None) -> tuple[auto.Stack, Settings, bool]:
    """(stack, settings, created): the stack, created with fresh secrets if it never existed.

    A preview of an environment that was never deployed runs against an empty stack; the program
    needs its secrets to run, so they are generated into its stack file (environments/stacks/
    Pulumi.<env>.yaml) as `smartnation secrets init` would. An existing stack is never altered.
    """
    try:
        stack, settings = select(environment, create=False, environments=environments)
        return stack, settings, False
    except auto.StackNotFoundError:
        stack, settings = select(environment, create=True, environments=environments)
    generated = seed_secrets(stack, generate_missing(settings))
    log.info("%s: no stack in this backend yet; created it with %d generated secret(s)", environment, len(generated))
    return stack, settings, True


def seed_secrets(stack: auto.Stack, values: Mapping[str, str]) -> list[str]:
    """Write each of ``values`` (secret key -> value) the stack config lacks, as a secret.

    Keys may carry the ``smartnation:`` namespace or not. A key the stack already has keeps its
    value: seeding never rotates a secret. Returns the keys written, sorted.
    """
    existing = stack.get_all_config()
    missing = {}
    for key, value in values.items():
        name = key.removeprefix(f"{CONFIG_NAMESPACE}:")
        if f"{CONFIG_NAMESPACE}:{name}" not in existing:
            missing[name] = value
    if missing:
        stack.set_all_config(
            {f"{CONFIG_NAMESPACE}:{key}": auto.ConfigValue(value=value, secret=True) for key, value in missing.items()}
        )
    return sorted(missing)


def command_error_tail(error: auto.CommandError, lines: int = 25) -> str:
    """The last ``lines`` of what a failed engine command printed (where it says why)."""
    text = str(error).strip().splitlines()
    return "\n".join(text[-lines:])


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
