"""`smartnation audit [--last N] [--json]`: the promotions recorded in environments/audit/."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from smartnation.cli import exit_codes
from smartnation.cli.audit_log import read_audit, render_audit
from smartnation.paths import environments_dir

log = logging.getLogger("smartnation")


def cmd_audit(args: argparse.Namespace) -> int:
    entries = read_audit(environments_dir())
    if args.last:
        entries = entries[-args.last :]
    if args.json:
        for entry in entries:
            print(json.dumps(entry, ensure_ascii=False))
    elif entries:
        sys.stdout.write(render_audit(entries))
    else:
        log.info("no promotion recorded yet")
    return exit_codes.OK


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("audit", help="list recorded promotions (environments/audit/promotions.jsonl)")
    parser.add_argument("--last", type=int, metavar="N", help="only the last N entries")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.set_defaults(func=cmd_audit)
