"""`smartnation destroy ENV [--yes]`: remove every resource of an environment."""

from __future__ import annotations

import argparse
import sys

from smartnation.cli import exit_codes
from smartnation.cli.console import confirm, stream_to
from smartnation.cli.workspace import select


def cmd_destroy(args: argparse.Namespace) -> int:
    stack, settings = select(args.environment, create=False)
    if not confirm(f"Destroy every resource of {args.environment} on {settings.cluster.name}?", args.yes):
        return exit_codes.ABORTED
    stack.destroy(on_output=stream_to(sys.stdout), color="never")
    return exit_codes.OK


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("destroy", help="remove an environment's resources")
    parser.add_argument("environment")
    parser.add_argument("--yes", action="store_true")
    parser.set_defaults(func=cmd_destroy)
