"""Seeding an environment's secrets without rotating those its deployment already uses.

Stack files (``environments/stacks/Pulumi.<env>.yaml``) are never committed, so a second checkout,
or a checkout that lost the file, meets a deployed stack without its secrets. Generating every
secret the file lacks would then rotate all of them at once behind the operator's back (a new
superuser password, a new password for every role, broker client and storage user). The backend
keeps the configuration of every update with the stack (what ``pulumi config refresh`` reads), so
a key the last update had is taken from there; only a key no update ever had, one the settings
added since, is generated. Nothing is generated or written, and the error names the stack, the
file and what to do, when the last update's configuration cannot be read (no update history,
another passphrase) or when that update ran without a key an earlier one had (a plain `pulumi
up` that failed for want of the stack file records an update with none: its value is then only
in the deploying checkout's stack file).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pulumi import automation as auto

from smartnation.cli.workspace import command_error_tail, seed_secrets
from smartnation.paths import project_dir
from smartnation.settings import Settings, SettingsError
from smartnation.settings.stack_secrets import CONFIG_NAMESPACE, STACK_FILE, generate_missing, required_secrets

log = logging.getLogger("smartnation")


class DeployedSecretsUnreadable(SettingsError):
    """A deployed stack lacks secrets in its stack file and its last update's cannot be read."""


@dataclass(frozen=True)
class SeededSecrets:
    """What seeding wrote into the stack file (key names only: the values never leave it)."""

    recovered: list[str] = field(default_factory=list)
    """Keys taken from the stack's last update (the values its deployment uses)."""
    generated: list[str] = field(default_factory=list)
    """Keys no update ever had: new random values."""


def deployed_resources(deployment: Mapping[str, Any]) -> int:
    """How many resources the stack's state holds (an exported ``deployment``)."""
    return len(deployment.get("resources") or [])


def stack_file(environment: str) -> Path:
    """The stack file of ``environment`` in the project the CLI works on."""
    return project_dir() / STACK_FILE.format(environment=environment)


def recover_from_updates(stack: auto.Stack, lacking: list[str]) -> dict[str, str]:
    """The values the stack's last update had for the ``lacking`` keys (those it had).

    ``pulumi config refresh`` writes the last update's configuration into the stack file, which
    is then put back as it was (kept only when there was none: it is then the file the deploying
    checkout had, with the same encryption salt); the history (key names only, nothing
    decrypted) tells which keys earlier updates had. Raises DeployedSecretsUnreadable, the stack
    file left as it was, if the backend has no update history for the stack, its secrets do not
    decrypt with this passphrase, or the last update lacks a key an earlier one had."""
    path = stack_file(stack.name)
    before = path.read_bytes() if path.exists() else None
    try:
        stack.workspace.refresh_config(stack.name)
        last = {key: item.value for key, item in stack.get_all_config().items()}
        # After the refresh: without a stack file `pulumi stack history` would write a new one.
        ever = {key for update in stack.history(show_secrets=False) for key in (update.config or {})}
    except auto.CommandError as error:
        _put_back(path, before)
        why = f"its last update's configuration could not be read ({command_error_tail(error, 3)})"
        raise _unreadable(stack.name, why) from None
    named = {key: f"{CONFIG_NAMESPACE}:{key}" for key in lacking}
    dropped = [name for key, name in named.items() if name not in last and name in ever]
    if dropped:
        _put_back(path, before)
        why = (
            f"its last update ran without {', '.join(dropped)}, which an earlier update had (the value is not in "
            "the last update's configuration)"
        )
        raise _unreadable(stack.name, why, refresh_helps=False)
    if before is not None:
        _put_back(path, before)
    return {key: last[name] for key, name in named.items() if name in last}


def _unreadable(environment: str, why: str, *, refresh_helps: bool = True) -> DeployedSecretsUnreadable:
    refresh = (
        f", or run `pulumi config refresh --stack {environment}` with the stack's passphrase" if refresh_helps else ""
    )
    return DeployedSecretsUnreadable(
        STACK_FILE.format(environment=environment),
        f"config.{CONFIG_NAMESPACE}",
        f"stack {environment} is deployed, but {why}; nothing was generated or written. Copy that file from "
        f"the checkout that deployed {environment}{refresh}, then run this command again",
    )


def _put_back(path: Path, before: bytes | None) -> None:
    if before is None:
        path.unlink(missing_ok=True)
    else:
        path.write_bytes(before)


def seed_missing_secrets(stack: auto.Stack, settings: Settings, deployment: Mapping[str, Any]) -> SeededSecrets:
    """Write every secret ``settings`` require that the stack file lacks: for a deployed stack (its
    exported ``deployment`` holds resources) the value its last update used, a new random value
    only for a key that update never had; for a stack never deployed, new values for all."""
    present = set(stack.get_all_config())
    lacking = [key for key in required_secrets(settings) if f"{CONFIG_NAMESPACE}:{key}" not in present]
    if not lacking:
        return SeededSecrets()
    recovered: dict[str, str] = {}
    resources = deployed_resources(deployment)
    if resources:
        recovered = recover_from_updates(stack, lacking)
        log.warning(
            "%s: %s lacks %d secret(s) of the deployed stack (%d resources): taken from its last update: %s",
            stack.name,
            STACK_FILE.format(environment=stack.name),
            len(lacking),
            resources,
            ", ".join(sorted(recovered)) or "none",
        )
    generated = generate_missing(settings, [*present, *recovered])
    seed_secrets(stack, {**recovered, **generated})
    return SeededSecrets(sorted(recovered), sorted(generated))
