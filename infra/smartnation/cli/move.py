"""`smartnation move ENV --status`: where an environment's move to another cluster stands.

Reads, changes nothing, anywhere: the move declared in the environment file (`move: {to,
phase}`, or none), then live from each cluster with kubectl (the contexts of the cluster
profiles): whether the environment's namespace exists there; on the source, the primary's
walsenders (pg_stat_replication: client address, state, sent and replayed WAL, lag in bytes,
replay lag); on the target, whether its database is in recovery (a hot standby), how far it
replayed and how long ago its last replayed transaction was. `--json` prints the same as one
JSON object (for scripts and the mover to come).

Exit 0 when everything was read; 8 (UNREADABLE) naming what could not be (no kubeconfig
context, namespace missing, no Running database primary Pod, psql failing), after printing
what was read; 2 for an unknown environment or a malformed file.

Only --status exists yet: the phases are declared in the environment file and applied by a
reviewed update each (docs/move.md); driving them from here comes next.
"""

from __future__ import annotations

import argparse
import json
import logging
import os

from smartnation.cli import exit_codes
from smartnation.cli.move_status import MoveStatus, Site, read_site, report_lines
from smartnation.cli.restore import project_name
from smartnation.paths import environments_dir
from smartnation.settings import load_cluster_profile, load_settings
from smartnation.tooling.toolchain.bootstrap import tool_env
from smartnation.tooling.toolchain.cache import layout

log = logging.getLogger("smartnation")


def kubectl_env() -> dict[str, str]:
    """Our kubectl on PATH and the local clusters' kubeconfig, unless SMARTNATION_KUBECONFIG names
    another (compare and restore reach the clusters the same way)."""
    cache = layout()
    env = tool_env(cache)
    env["KUBECONFIG"] = os.environ.get("SMARTNATION_KUBECONFIG") or str(cache.kubeconfig)
    return env


def move_status(environment: str, namespace: str | None = None) -> MoveStatus:
    """The declared move and what each cluster shows of it; SettingsError for bad input."""
    settings = load_settings(environment, environments_dir())
    namespace = namespace or f"{project_name()}-{environment}"
    env = kubectl_env()
    source = read_site(Site("source", settings.cluster.name, settings.cluster.context, namespace), environment, env)
    target = None
    if settings.move is not None:
        profile = load_cluster_profile(settings.move.to, environments_dir())
        target = read_site(Site("target", profile.name, profile.context, namespace), environment, env)
    return MoveStatus(
        environment=environment,
        file=settings.source,
        to=settings.move.to if settings.move else None,
        phase=settings.move.phase if settings.move else None,
        source=source,
        target=target,
    )


def cmd_move(args: argparse.Namespace) -> int:
    if not args.status:
        log.error(
            "`smartnation move %s` needs --status: only the status exists yet; the phases are declared in the "
            "environment file (`move: {to: CLUSTER, phase: replicate}`) and applied by a reviewed update each "
            "(docs/move.md)",
            args.environment,
        )
        return exit_codes.BAD_INPUT
    status = move_status(args.environment, args.namespace)
    if args.json:
        print(json.dumps(status.as_json(), indent=2))
    else:
        for line in report_lines(status):
            print(line)
    for problem in status.problems:
        log.error("could not read %s", problem)
    return exit_codes.UNREADABLE if status.problems else exit_codes.OK


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "move",
        help="where an environment's move to another cluster stands (--status; reads only, changes nothing)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("environment")
    parser.add_argument(
        "--status",
        action="store_true",
        help="print the declared phase and each cluster's namespace, replication and recovery (changes nothing)",
    )
    parser.add_argument("--json", action="store_true", help="the status as one JSON object on stdout")
    parser.add_argument("--namespace", help="the namespace on both clusters (default: <project>-<env>)")
    parser.set_defaults(func=cmd_move)
