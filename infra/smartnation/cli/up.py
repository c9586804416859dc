"""`smartnation up ENV [--yes] [--init-secrets] [--recover]`: deploy an environment, with the policy pack.

Before the engine starts, the stack is checked for what a killed update leaves behind: a lock
whose process is gone from this host (stale), pending operations in the state, and (a file
backend written without file_backend's options) a metadata sidecar left empty, which makes every
read of the state fail (workspace.select refuses with INTERRUPTED; `--recover` removes it first).
`up` then stops with INTERRUPTED, naming them and the exact steps; `--recover` takes those steps itself: it
removes only a lock proven dead, refreshes the state from the cluster dropping unfinished creates
(so the update re-creates them: every object has a fixed name, nothing is orphaned or doubled),
then updates. A lock held by a live process (or by another host) is never touched: STACK_LOCKED.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from pulumi import automation as auto

from smartnation.cli import exit_codes
from smartnation.cli.console import confirm, stream_to
from smartnation.cli.deployed_secrets import seed_missing_secrets
from smartnation.cli.history import shown_outputs
from smartnation.cli.interrupted import Interruption, classify
from smartnation.cli.locks import StackLocked, lock_holders, locked_message, pid_alive, remove_lock, this_host
from smartnation.cli.policy import policy_args
from smartnation.cli.state_marker import moved_to
from smartnation.cli.workspace import select
from smartnation.settings.stack_secrets import missing_secrets

log = logging.getLogger("smartnation")


def interruption(environment: str, stack: auto.Stack, deployment: dict) -> Interruption:
    """What an earlier, interrupted update left in the stack (nothing for a healthy one)."""
    holders = lock_holders(environment) or []
    return classify(environment, holders, deployment, this_host(), pid_alive)


def recover(stack: auto.Stack, found: Interruption) -> None:
    """Take the recovery steps (Interruption.recovery_steps) before the update."""
    for holder in found.stale:
        log.warning("removing the stale lock of %s", holder.describe())
        remove_lock(holder, found.environment)
    if found.pending:
        log.warning(
            "refreshing %s from the cluster, dropping %d unfinished operation(s)", found.environment, len(found.pending)
        )
        stack.refresh(clear_pending_creates=True, color="never", on_output=stream_to(sys.stderr))


def cmd_up(args: argparse.Namespace) -> int:
    moved = moved_to(args.environment)  # `smartnation state move` left this backend a read-only copy
    if moved is not None:
        raise StackLocked(moved.refusal(args.environment))
    # --recover: the state's metadata sidecars a killed write left unreadable go before the stack
    # is opened (the engine cannot read past them); without it, select refuses naming them.
    stack, settings = select(args.environment, remove_torn=args.recover)
    deployment = stack.export_stack().deployment
    found = interruption(args.environment, stack, deployment)
    if found.live:
        raise StackLocked(
            locked_message(args.environment, list(found.live))
            + " (a holder on another host cannot be proven gone from here: if it is, `pulumi cancel` removes it)"
        )
    if found.found and not args.recover:
        log.error("%s", found.describe())
        log.error(
            "nothing was changed. `smartnation up %s --recover` takes these steps:\n  %s",
            args.environment,
            "\n  ".join(found.recovery_steps()),
        )
        return exit_codes.INTERRUPTED
    if args.init_secrets:
        # A deployed stack keeps the secrets its last update used (deployed_secrets): a checkout
        # without the stack file must not rotate them all.
        seeded = seed_missing_secrets(stack, settings, deployment)
        if seeded.recovered or seeded.generated:
            log.info(
                "%s: secrets taken from the last update: %s; generated: %s",
                args.environment,
                ", ".join(seeded.recovered) or "none",
                ", ".join(seeded.generated) or "none",
            )
    # Before the engine: an update that fails in the program for want of a secret is still recorded
    # (its configuration without the key, and a new encryption salt), which is not "nothing touched".
    missing = missing_secrets(settings, stack.get_all_config())
    if missing is not None:
        raise missing
    log.info("deploying %s to %s", args.environment, settings.cluster.name)
    if not confirm(f"Deploy {args.environment} to {settings.cluster.name}?", args.yes):
        return exit_codes.ABORTED
    if found.found:
        log.warning("%s", found.describe())
        recover(stack, found)
    # The guardrails run on every update, as on every preview (policy/README.md).
    with policy_args(settings) as policy:
        result = stack.up(on_output=stream_to(sys.stdout), color="never", **policy)
    log.info("%s: %s", args.environment, json.dumps(result.summary.resource_changes or {}))
    print(json.dumps(shown_outputs(stack), indent=2, sort_keys=True))
    return exit_codes.OK


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("up", help="deploy an environment")
    parser.add_argument("environment")
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    parser.add_argument(
        "--init-secrets",
        action="store_true",
        help="first fill in every secret the stack file lacks: for a deployed stack the value its last update "
        "used, a new random value only for a key no update had (local clusters and fresh sites)",
    )
    parser.add_argument(
        "--recover",
        action="store_true",
        help="after an interrupted update: remove the state's metadata files a killed write left unreadable, "
        "remove its lock if its process is gone from this host, refresh the state from the cluster dropping "
        "unfinished creates, then update",
    )
    parser.set_defaults(func=cmd_up)
