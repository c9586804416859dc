"""`smartnation outputs ENV`: an environment's stack outputs as JSON, secrets masked."""

from __future__ import annotations

import argparse
import json

from smartnation.cli import exit_codes
from smartnation.cli.history import shown_outputs
from smartnation.cli.workspace import select


def cmd_outputs(args: argparse.Namespace) -> int:
    stack, _ = select(args.environment, create=False)
    print(json.dumps(shown_outputs(stack), indent=2, sort_keys=True))
    return exit_codes.OK


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("outputs", help="print an environment's stack outputs")
    parser.add_argument("environment")
    parser.set_defaults(func=cmd_outputs)
