"""`smartnation up ENV [--yes] [--init-secrets]`: deploy an environment, with the policy pack."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from smartnation.cli import exit_codes
from smartnation.cli.console import confirm, stream_to
from smartnation.cli.history import shown_outputs
from smartnation.cli.policy import policy_args
from smartnation.cli.workspace import seed_secrets, select
from smartnation.settings.stack_secrets import generate_missing

log = logging.getLogger("smartnation")


def cmd_up(args: argparse.Namespace) -> int:
    stack, settings = select(args.environment)
    if args.init_secrets:
        seed_secrets(stack, generate_missing(settings))
    log.info("deploying %s to %s", args.environment, settings.cluster.name)
    if not confirm(f"Deploy {args.environment} to {settings.cluster.name}?", args.yes):
        return exit_codes.ABORTED
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
        help="first generate every missing secret (local clusters and fresh sites)",
    )
    parser.set_defaults(func=cmd_up)
