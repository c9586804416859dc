"""`smartnation restore ENV [--list | --backup NAME|latest] [--into SUFFIX] [--cleanup]`: prove a backup
restores, table by table.

Runs one-off Jobs in the environment's namespace cut from its backup CronJob (restore_pod.py): one
lists the backups in the bucket, one downloads a backup set and restores every database into a
scratch database ``<database>_<suffix>`` on the environment's primary, with TimescaleDB's pre/post
restore steps, then counts rows and checksums every table of the source and of the restore. The
report has one line a table; any difference exits 1.

By default it never writes over a live database: the scratch databases sit beside them and the live
ones are only read, so proving a backup (which should happen often) cannot hurt the city. Only
``--over-live`` (confirmed, or ``--yes``) puts the restore in place: after the restore into the
scratch databases it renames each live database to ``<database>_replaced_<time>`` (kept, not
dropped) and the restored one to the live name, with new sessions refused and the open ones ended
for the moment of the swap (docs/operations.md, "Backups and restore").
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from smartnation.cli import exit_codes
from smartnation.cli.console import confirm, render_table
from smartnation.cli.restore_pod import (
    DEFAULT_TIMEOUT_SECONDS,
    BackupSet,
    RestoreError,
    TableCheck,
    check_backup,
    check_suffix,
    compare,
    list_job,
    parse_listing,
    parse_rows,
    restore_job,
)
from smartnation.paths import environments_dir, project_dir
from smartnation.program import naming
from smartnation.settings import load_settings
from smartnation.tooling.toolchain.bootstrap import tool_env
from smartnation.tooling.toolchain.cache import layout

log = logging.getLogger("smartnation")

LATEST = "latest"
DEFAULT_SUFFIX = "restore"


@dataclass(frozen=True)
class Target:
    """Where an environment's backup CronJob runs: kubeconfig context and namespace."""

    context: str
    namespace: str
    env: Mapping[str, str]

    def kubectl(self, *args: str, input: str | None = None, timeout: float = 60, check: bool = True) -> str:
        argv = ["kubectl", "--context", self.context, "-n", self.namespace, *args]
        done = subprocess.run(argv, env=dict(self.env), input=input, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise RestoreError(f"`kubectl {' '.join(args)}` failed: {done.stderr.strip()[-600:]}")
        return done.stdout


def project_name() -> str:
    """The Pulumi project's name (Pulumi.yaml): the namespace is ``<project>-<env>`` (naming.namespace)."""
    return str(yaml.safe_load((project_dir() / "Pulumi.yaml").read_text())["name"])


def target_of(environment: str) -> Target:
    settings = load_settings(environment, environments_dir())
    cache = layout()
    env = {**os.environ, **tool_env(cache)}
    env["KUBECONFIG"] = os.environ.get("SMARTNATION_KUBECONFIG") or str(cache.kubeconfig)
    return Target(settings.cluster.context, f"{project_name()}-{environment}", env)


def backup_cronjob(target: Target, environment: str) -> dict[str, Any]:
    name = naming.names(environment, naming.DATABASE).child("backup")
    found = target.kubectl("get", "cronjob", name, "-o", "json", check=False)
    if not found:
        raise RestoreError(f"no CronJob {name} in {target.namespace} on {target.context}: is {environment} deployed?")
    return json.loads(found)


@dataclass(frozen=True)
class JobResult:
    succeeded: bool
    seconds: float
    logs: str
    """The main container's log; on failure every container's, each under a header."""
    reason: str = ""
    """Why a failed Job failed, from its Failed condition (DeadlineExceeded, BackoffLimitExceeded)."""


def run_job(target: Target, job: dict[str, Any], timeout: float) -> JobResult:
    """Create ``job``, wait for it to finish (progress every 30 s), read its logs; delete it when
    it succeeded (a failed one stays for `kubectl describe` until its TTL)."""
    name = job["metadata"]["name"]
    started = time.monotonic()
    target.kubectl("create", "-f", "-", input=json.dumps(job))
    log.info("job %s started in %s", name, target.namespace)
    last_said = started
    while True:
        status = json.loads(target.kubectl("get", "job", name, "-o", "json"))["status"]
        done = [c["type"] for c in status.get("conditions") or [] if c.get("status") == "True"]
        if "Complete" in done or "Failed" in done or status.get("failed"):
            failed = [c for c in status.get("conditions") or [] if c["type"] == "Failed" and c.get("status") == "True"]
            reason = ": ".join(filter(None, (failed[0].get("reason"), failed[0].get("message")))) if failed else ""
            break
        if time.monotonic() - started > timeout:
            raise RestoreError(f"job {name} did not finish in {timeout:g}s; see `kubectl -n {target.namespace} "
                               f"describe job {name}`")  # fmt: skip
        if time.monotonic() - last_said > 30:
            log.info("job %s running for %.0fs", name, time.monotonic() - started)
            last_said = time.monotonic()
        time.sleep(2)
    seconds = time.monotonic() - started
    succeeded = "Complete" in done
    main = job["spec"]["template"]["spec"]["containers"][0]["name"]
    if succeeded:
        logs = target.kubectl("logs", f"job/{name}", "-c", main, timeout=120)
        target.kubectl("delete", "job", name, "--wait=false", check=False)
        return JobResult(True, seconds, logs)
    spec = job["spec"]["template"]["spec"]
    parts = []
    for container in [*(spec.get("initContainers") or []), *spec["containers"]]:
        text = target.kubectl("logs", f"job/{name}", "-c", container["name"], timeout=120, check=False)
        parts.append(f"--- {container['name']} ---\n{text.rstrip()}")
    return JobResult(False, seconds, "\n".join(parts), reason or "a Pod failed")


def _job_name(environment: str, what: str) -> str:
    return f"{naming.names(environment, naming.DATABASE).child(what)}-{uuid.uuid4().hex[:6]}"


def list_backups(target: Target, environment: str, cronjob: dict[str, Any]) -> list[BackupSet]:
    result = run_job(target, list_job(cronjob, _job_name(environment, "backups")), timeout=600)
    if not result.succeeded:
        raise RestoreError(f"listing the backups failed:\n{result.logs}")
    return parse_listing(result.logs)


def render_backups(backups: list[BackupSet]) -> str:
    rows = [["backup", "databases", "size", "complete"]]
    for backup in backups:
        databases = sorted(f.removesuffix(".dump") for f in backup.files if f.endswith(".dump"))
        complete = "yes" if backup.complete else "NO (no manifest: the run did not finish)"
        rows.append([backup.name, ", ".join(databases), _size(backup.size), complete])
    return render_table(rows)


def _size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    scaled, unit = size / 1024, "KiB"
    for bigger in ("MiB", "GiB"):
        if scaled < 1024:
            break
        scaled, unit = scaled / 1024, bigger
    return f"{scaled:.1f} {unit}"


def render_report(checks: list[TableCheck]) -> str:
    """One line a table: rows and checksum on each side, ok or DIFFERENT."""
    rows = [["database", "table", "source rows", "restored rows", "checksums", "result"]]
    for check in checks:
        source = str(check.source[0]) if check.source else "(missing)"
        restored = str(check.restored[0]) if check.restored else "(missing)"
        sums = "equal" if check.source and check.restored and check.source[1] == check.restored[1] else "differ"
        rows.append([check.database, check.table, source, restored, sums, "ok" if check.same else "DIFFERENT"])
    return render_table(rows)


def choose(backups: list[BackupSet], wanted: str) -> BackupSet:
    complete = [b for b in backups if b.complete]
    if wanted == LATEST:
        if not complete:
            raise RestoreError("no complete backup in the bucket yet (see --list)")
        return complete[-1]
    for backup in backups:
        if backup.name == wanted:
            if not backup.complete:
                raise RestoreError(f"backup {wanted} has no manifest: its run did not finish; choose another")
            return backup
    raise RestoreError(f"no backup {wanted} (see --list)")


def cmd_restore(args: argparse.Namespace) -> int:
    try:
        check_suffix(args.into)
        if args.over_live and (args.cleanup or args.backup is None):
            raise RestoreError("--over-live needs --backup and keeps the restore as the live databases (no --cleanup)")
        if args.backup not in (None, LATEST):
            check_backup(args.backup)
        target = target_of(args.environment)
        cronjob = backup_cronjob(target, args.environment)
        if args.list or args.backup is None:
            backups = list_backups(target, args.environment, cronjob)
            print(render_backups(backups) if backups else "no backups yet", end="" if backups else "\n")
            return exit_codes.OK
        backups = list_backups(target, args.environment, cronjob)
        backup = choose(backups, args.backup)
        replaced = time.strftime("replaced_%Y%m%d%H%M%S", time.gmtime()) if args.over_live else ""
        question = (
            f"replace every live database of {args.environment} with backup {backup.name} "
            f"(the live ones are kept as <database>_{replaced})?"
        )
        if args.over_live and not confirm(question, args.yes):
            return exit_codes.ABORTED
        log.info("restoring %s of %s (%s) into *_%s", backup.name, args.environment, _size(backup.size), args.into)
        job = restore_job(
            cronjob,
            _job_name(args.environment, "restore"),
            backup.name,
            args.into,
            compare=not (args.no_compare or args.over_live),
            cleanup=args.cleanup,
            over_live=replaced,
            deadline=int(args.timeout),
        )
        result = run_job(target, job, timeout=args.timeout + 60)
    except RestoreError as error:
        log.error("%s", error)
        return exit_codes.FAILED
    if not result.succeeded:
        print(result.logs)
        log.error("restore of %s failed after %.0fs (logs above)", backup.name, result.seconds)
        return exit_codes.FAILED
    checks = compare(parse_rows(result.logs))
    if checks:
        print(render_report(checks), end="")
    different = [c for c in checks if not c.same]
    rows = sum(c.restored[0] for c in checks if c.restored)
    where = "dropped again" if args.cleanup else f"kept as *_{args.into}"
    if args.over_live:
        where = "renamed to the live names"
    print(
        f"backup {backup.name}: {len(checks)} tables, {rows} rows restored in {result.seconds:.0f}s "
        f"({_size(backup.size)}), {len(different)} different; scratch databases {where}"
    )
    if args.over_live:
        print(f"the live databases of {args.environment} are now backup {backup.name}; the replaced ones are "
              f"<database>_{replaced}")  # fmt: skip
        return exit_codes.OK
    if args.no_compare:
        return exit_codes.OK
    if not checks:
        log.error("the restore printed no table to compare")
        return exit_codes.FAILED
    return exit_codes.FAILED if different else exit_codes.OK


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "restore",
        help="list backups, or restore one into scratch databases and compare it with the live ones",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("environment")
    parser.add_argument("--list", action="store_true", help="list the backups in the bucket (the default)")
    parser.add_argument("--backup", metavar="NAME", help=f"the backup to restore (a name from --list, or {LATEST})")
    parser.add_argument(
        "--into",
        metavar="SUFFIX",
        default=DEFAULT_SUFFIX,
        help=f"restore each database into <database>_SUFFIX (default {DEFAULT_SUFFIX}); must not exist yet",
    )
    parser.add_argument("--cleanup", action="store_true", help="drop the scratch databases after the comparison")
    parser.add_argument(
        "--no-compare", action="store_true", help="restore only (the live database is gone or not comparable)"
    )
    parser.add_argument(
        "--over-live",
        action="store_true",
        help="put the restore in place of the live databases (kept renamed); asks first unless --yes",
    )
    parser.add_argument("--yes", action="store_true", help="do not ask before --over-live")
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT_SECONDS, help="seconds the restore Job may run"
    )
    parser.set_defaults(func=cmd_restore)
