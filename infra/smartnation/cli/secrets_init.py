"""`smartnation secrets init ENV`: every required secret the stack file lacks; for a deployed stack the
value its last update used, a random value only for a key no update had (deployed_secrets)."""

from __future__ import annotations

import argparse
import logging

from smartnation.cli import exit_codes
from smartnation.cli.deployed_secrets import seed_missing_secrets
from smartnation.cli.workspace import select

log = logging.getLogger("smartnation")


def cmd_secrets_init(args: argparse.Namespace) -> int:
    stack, settings = select(args.environment)
    seeded = seed_missing_secrets(stack, settings, stack.export_stack().deployment)
    for what, keys in (("taken from the last update", seeded.recovered), ("generated", seeded.generated)):
        log.info("%s: %d secret(s) %s%s", args.environment, len(keys), what, (": " + ", ".join(keys)) if keys else "")
    return exit_codes.OK


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("secrets", help="manage an environment's secrets")
    actions = parser.add_subparsers(dest="action", required=True)
    init = actions.add_parser("init", help="fill in every missing secret (a deployed stack's from its last update)")
    init.add_argument("environment")
    init.set_defaults(func=cmd_secrets_init)
