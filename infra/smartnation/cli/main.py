"""`smartnation`: the operations CLI (Pulumi Automation API).

    smartnation up ENV [--yes]            deploy an environment (engineers, CI for dev/staging)
    smartnation destroy ENV [--yes]       remove an environment's resources
    smartnation secrets init ENV          fill in every missing secret (a deployed stack's from its last update)
    smartnation outputs ENV               print an environment's stack outputs
    smartnation preview [--base REF] [--output FILE] [ENV ...]
                                          what a change would do to the environments it affects
    smartnation promote SOURCE TARGET [--yes] [--apply] [--allow-stateful-changes]
                                          copy SOURCE's releases into TARGET's file, after gates
    smartnation status [ENV ...] [--json] what runs where, last update, drift
    smartnation audit [--last N]          the promotions recorded in environments/audit/
    smartnation restore ENV [--list | --backup NAME|latest] [--into SUFFIX] [--cleanup]
                                          restore a backup into scratch databases, compare with live
    smartnation verify ENV [--check NAME ...] [--skip NAME ...] [--reading-bound SECONDS]
                                          smoke-test a deployed environment (exit 1 on any failure)
    smartnation compare ENV --to CLUSTER [--from CLUSTER] [--namespace NS] [--report FILE]
                                          an environment's data on two clusters, item by item (exit 1 on any difference)
    smartnation state move ENV --to s3://BUCKET?endpoint=HOST:PORT&...
                                          the stack, its history and secrets into another backend, re-encrypted
    smartnation move ENV --status [--json] where a move to another cluster stands, read live (changes nothing)
    smartnation move ENV --to CLUSTER [--yes] [--timeout S]
                                          drive the declared phase: preview, apply, wait for lag 0, verify by data

Exit codes are in smartnation.cli.exit_codes; docs/operations.md explains each.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from pulumi import automation as auto

from smartnation.cli import (
    audit,
    compare,
    destroy,
    exit_codes,
    move,
    outputs,
    preview,
    promote,
    restore,
    secrets_init,
    state_move,
    status,
    up,
    verify,
)
from smartnation.cli.locks import StackLocked
from smartnation.cli.policy import mandatory_rules
from smartnation.settings import SettingsError
from smartnation.tooling.toolchain.file_backend import TornStateFiles

log = logging.getLogger("smartnation")

COMMANDS = (
    up,
    destroy,
    secrets_init,
    outputs,
    preview,
    promote,
    audit,
    status,
    verify,
    restore,
    compare,
    state_move,
    move,
)
"""One module per command, each adding its parser; in the order `smartnation --help` lists them."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smartnation", description="Operate the Smart Nation platform stacks")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def run(args: argparse.Namespace, handler: Callable[[argparse.Namespace], int]) -> int:
    try:
        return handler(args)
    except SettingsError as exc:
        log.error("%s", exc)
        return exit_codes.BAD_INPUT
    except auto.ConcurrentUpdateError as exc:
        log.error("the stack is locked by another update: %s", str(exc).strip().splitlines()[-1])
        return exit_codes.STACK_LOCKED
    except StackLocked as exc:
        log.error("%s; wait for it to finish and retry", exc)
        return exit_codes.STACK_LOCKED
    except TornStateFiles as exc:
        log.error("%s", exc)
        return exit_codes.INTERRUPTED
    except auto.StackNotFoundError:
        name = getattr(args, "environment", None) or getattr(args, "source", None)
        log.error("environment %r has no stack in this backend yet: deploy it first", name)
        return exit_codes.STACK_NOT_FOUND
    except auto.CommandError as exc:
        text = str(exc)
        # The engine's error says only "preview failed" or "update failed"; its output, which the
        # error carries, names each mandatory rule that was violated.
        rules = mandatory_rules(text)
        if rules or "mandatory policy violation" in text.lower() or "policy violations" in text.lower():
            log.error("a mandatory policy failed (%s); see the violations above", ", ".join(rules) or "named above")
            return exit_codes.POLICY_VIOLATION
        log.error("pulumi failed: %s", pulumi_failure(text))
        return exit_codes.FAILED


def pulumi_failure(text: str) -> str:
    """The reason in an automation CommandError: Pulumi's `error:` lines, else the last line that
    says something (the error's own last line is often an empty `stderr:`)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = list(dict.fromkeys(line for line in lines if "error:" in line.lower()))
    if errors:
        return "; ".join(errors)[-2000:]
    saying = [
        line for line in lines if not line.startswith("code:") and (line.partition(":")[2].strip() or ":" not in line)
    ]
    return saying[-1] if saying else "no output (see the engine log above)"


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="smartnation: %(message)s", stream=sys.stderr)
    parser = build_parser()
    args = parser.parse_args(argv)
    return run(args, args.func)


if __name__ == "__main__":
    sys.exit(main())
