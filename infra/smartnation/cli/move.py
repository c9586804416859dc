"""`smartnation move ENV --status | --to CLUSTER`: an environment's move to another cluster.

`--status` reads, changes nothing, anywhere: the move declared in the environment file (`move: {to,
phase}`, or none) beside the phase last applied (the stack's `move` output), then live from each
cluster with kubectl (the contexts of the cluster profiles): whether the environment's namespace
exists there; on the source, the primary's walsenders (pg_stat_replication: client address,
state, sent and replayed WAL, lag in bytes, replay lag); on the target, whether its database is in
recovery (a hot standby), how far it replayed and how long ago its last replayed transaction was.
`--json` prints the same as one JSON object. Exit 0 when everything was read; 8 (UNREADABLE)
naming what could not be, after printing what was read; 2 for an unknown environment or a
malformed file.

`--to CLUSTER` drives the phase the environment file declares (it must declare `move.to:
CLUSTER`; the file is never edited here): for replicate, preview, apply (`smartnation up`), wait
until the target streams with lag 0 and its buckets list the source's objects (--timeout, exit 9),
verify the data (a JSON report, exit 1 on any difference); for cutover, preview, hash the objects,
stop the writes on the source (the fence), wait until the target replayed up to it, verify,
promote the target, apply (cli/move_cutover.py); for rollback (back from the cutover), preview,
apply, fence the target, back it up, copy the set back, restore it over the source's live
databases, copy the objects back, verify, unfence the source (cli/move_rollback.py). Each step
goes to the audit log; a re-run resumes after the last finished step (docs/move.md, sections 7
to 10). `--status` also shows where
the driver stands (its progress file).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from typing import Any

from pulumi import automation as auto

from smartnation.cli import exit_codes, move_cutover, move_progress, workspace
from smartnation.cli.move_driver import PHASE_STEPS, drive
from smartnation.cli.move_status import MoveStatus, Site, read_site, report_lines
from smartnation.cli.restore import project_name
from smartnation.paths import environments_dir
from smartnation.settings import SettingsError, load_cluster_profile, load_settings
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


def applied_move(environment: str) -> tuple[dict[str, Any] | None, str | None]:
    """The stack's `move` output (the phase last applied) and why it could not be read (or None)."""
    try:
        stack, _ = workspace.select(environment, create=False)
        output = stack.outputs().get("move")
    except auto.StackNotFoundError:
        return None, None  # never deployed here: no phase applied
    except (auto.CommandError, OSError, SettingsError) as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        # The engine's own `error:` line says why (the CommandError around it says stdout/stderr/code).
        said = [line[line.lower().index("error:") :] for line in lines if "error:" in line.lower()]
        reason = (said or lines or ["no message"])[-1][-400:]
        return None, f"stack {environment}: cannot read its `move` output: {reason}"
    value = output.value if output is not None else None
    return (value if isinstance(value, dict) else None), None


def driver_progress(environment: str) -> tuple[dict[str, Any] | None, str | None]:
    """What `move --to` recorded (its progress file), ready for the status; and why it could not
    be read. Steps in the phase's order, the next one, the fence: the source's in a cutover, the
    target's in a rollback (which resumes the writes on the source)."""
    try:
        progress = move_progress.load(environment)
    except move_progress.TornProgress as error:
        return None, f"the driver's progress file: {error}"
    if progress is None:
        return None, None
    steps = [name for name, _ in PHASE_STEPS.get(progress.phase, ())]
    finished = [name for name in steps if name in progress.finished]
    fenced_at = progress.marks.get(move_cutover.FENCED_AT)
    return {
        "file": str(move_progress.progress_file(environment)),
        "phase": progress.phase,
        "to": progress.to,
        "finished": finished,
        "next": next((name for name in steps if name not in progress.finished), None),
        "fenced_at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(fenced_at))
        if isinstance(fenced_at, int | float)
        else None,
        "fence_lsn": progress.marks.get(move_cutover.FENCE_LSN),
        "write_pause_s": progress.marks.get("write_pause_s"),
        "fenced_site": "target" if progress.phase == "rollback" else "source",
    }, None


def move_status(environment: str, namespace: str | None = None, with_stack: bool = True) -> MoveStatus:
    """The declared move and what each cluster shows of it (and, ``with_stack``, the phase last
    applied); SettingsError for bad input."""
    settings = load_settings(environment, environments_dir())
    namespace = namespace or f"{project_name()}-{environment}"
    env = kubectl_env()
    source = read_site(Site("source", settings.cluster.name, settings.cluster.context, namespace), environment, env)
    target = None
    if settings.move is not None:
        profile = load_cluster_profile(settings.move.to, environments_dir())
        # The bucket mirror runs on the target while replicate is declared, the broker bridge in
        # replicate, cutover and rollback (docs/move.md). The bridge is the operator's to see, not the
        # driver's to wait for: its polls (with_stack False) skip it, one kubectl call fewer in the
        # cutover's write pause.
        phase = settings.move.phase
        bridge = with_stack and phase in ("replicate", "cutover", "rollback")
        target = read_site(Site("target", profile.name, profile.context, namespace), environment, env,
                           mirror=phase == "replicate", bridge=bridge)  # fmt: skip
    applied, stack_problem = applied_move(environment) if with_stack else (None, None)
    driver, driver_problem = driver_progress(environment) if with_stack else (None, None)
    return MoveStatus(
        applied=applied,
        stack_problem=stack_problem,
        driver=driver,
        driver_problem=driver_problem,
        environment=environment,
        file=settings.source,
        to=settings.move.to if settings.move else None,
        phase=settings.move.phase if settings.move else None,
        source=source,
        target=target,
    )


def cmd_move(args: argparse.Namespace) -> int:
    if args.to:
        if args.status:
            log.error("`smartnation move %s`: --status reads, --to drives; give one of them", args.environment)
            return exit_codes.BAD_INPUT
        return drive(args, lambda: move_status(args.environment, args.namespace, with_stack=False), kubectl_env())
    if not args.status:
        log.error(
            "`smartnation move %s` needs --status (where the move stands) or --to CLUSTER (drive the phase the "
            "environment file declares: `move: {to: CLUSTER, phase: replicate}`; docs/move.md)",
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
        help="an environment's move to another cluster: --status (reads only, changes nothing) or --to CLUSTER "
        "(drives the declared phase)",
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
    parser.add_argument(
        "--to",
        metavar="CLUSTER",
        help="drive the phase the environment file declares (its `move.to` must be CLUSTER): replicate (preview, "
        "apply, wait for lag 0, verify by data), cutover (preview, hash the objects, stop the writes, catch up, "
        "verify, promote, apply), complete or rollback (back from the cutover: preview, apply, fence the target, "
        "back it up, copy and restore it over the source, copy the objects back, verify, unfence the source); "
        "resumable, each step in the audit log",
    )
    parser.add_argument(
        "--yes", action="store_true", help="with --to: apply without asking (as `smartnation up --yes`)"
    )
    parser.add_argument(
        "--timeout", type=float, default=1800, help="with --to: seconds to wait for lag 0 bytes (default 1800)"
    )
    parser.add_argument("--interval", type=float, default=2.0, help="with --to: seconds between lag readings")
    parser.add_argument("--report", metavar="FILE", help="with --to: the verification's JSON report (default under "
                        ".smartnation/move/ in the project)")  # fmt: skip
    parser.add_argument("--namespace", help="the namespace on both clusters (default: <project>-<env>)")
    parser.set_defaults(func=cmd_move)
