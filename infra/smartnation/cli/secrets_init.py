"""`smartnation secrets init ENV`: a random value for every required secret the stack file lacks."""

from __future__ import annotations

import argparse
import logging

from smartnation.cli import exit_codes
from smartnation.cli.workspace import seed_secrets, select
from smartnation.settings.stack_secrets import generate_missing

log = logging.getLogger("smartnation")


def cmd_secrets_init(args: argparse.Namespace) -> int:
    stack, settings = select(args.environment)
    keys = seed_secrets(stack, generate_missing(settings))
    log.info("%s: %d secret(s) generated%s", args.environment, len(keys), (": " + ", ".join(keys)) if keys else "")
    return exit_codes.OK


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("secrets", help="manage an environment's secrets")
    actions = parser.add_subparsers(dest="action", required=True)
    init = actions.add_parser("init", help="generate every missing secret into the stack file")
    init.add_argument("environment")
    init.set_defaults(func=cmd_secrets_init)
