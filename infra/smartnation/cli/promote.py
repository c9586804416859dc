"""`smartnation promote SOURCE TARGET [--yes] [--apply] [--allow-stateful-changes]`.

Promotion copies SOURCE's `releases:` block into TARGET's file, after three gates:

(a) SOURCE's last update succeeded and deployed exactly the releases its file holds now;
(b) SOURCE has not drifted from its state (refresh preview);
(c) TARGET's preview with the new file has no mandatory policy violation and no replacement or
    deletion of a stateful resource (unless --allow-stateful-changes).

Then the file diff and the preview are shown, the operator confirms (or --yes), the file is
written and, with --apply, TARGET is updated. Every promotion that got past input validation
(the pair of environments is in promotion.yaml's order) leaves a line in the audit log.
"""

from __future__ import annotations

import argparse
import difflib
import logging
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

from pulumi import automation as auto

from smartnation.cli import exit_codes
from smartnation.cli.audit_log import (
    APPLIED,
    FAILED,
    REFUSED,
    WRITTEN_ONLY,
    AuditEntry,
    SourceUpdate,
    append_audit,
    operator,
    read_audit,
    utc_now,
)
from smartnation.cli.console import confirm, stream_to
from smartnation.cli.drift import drift
from smartnation.cli.engine_preview import preview_environment
from smartnation.cli.history import RELEASES_OUTPUT, deployed_releases, file_releases, last_update
from smartnation.cli.locks import StackLocked, check_unlocked
from smartnation.cli.policy import policy_args
from smartnation.cli.promotion_order import PROMOTION_FILE, check_promotion, load_order
from smartnation.cli.promotion_runs import INTERRUPTED, RUN_KEY, STARTED, unfinished, what_happened
from smartnation.cli.releases_copy import copy_releases, releases_of, unfinished_writes, write_atomically
from smartnation.cli.report import EnvironmentPreview, render_environment
from smartnation.cli.workspace import select
from smartnation.paths import environments_dir, project_dir
from smartnation.settings import load_settings
from smartnation.settings.stack_secrets import missing_secrets

log = logging.getLogger("smartnation")


class Refused(Exception):
    """A gate said no: recorded in the audit log, nothing else touched."""

    def __init__(self, reason: str, code: int = exit_codes.FAILED, source_update: SourceUpdate | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.source_update = source_update


def gate_source_deployed(source: str, environments: Path) -> tuple[SourceUpdate, auto.Stack]:
    """(a) SOURCE's last update succeeded and deployed what SOURCE's file says now."""
    try:
        stack, settings = select(source, create=False, environments=environments)
    except auto.StackNotFoundError as error:
        raise Refused(f"{source} was never deployed to this backend: nothing it ran can be promoted") from error
    last = last_update(stack)
    if last is None:
        raise Refused(f"{source} has no update in its history: nothing it ran can be promoted")
    update = SourceUpdate(version=last.version, time=last.time, result=last.result)
    if last.kind != "update":
        raise Refused(
            f"{source}'s last operation was a {last.kind} (#{last.version}), not an update", source_update=update
        )
    if last.result != "succeeded":
        raise Refused(
            f"{source}'s last update #{last.version} at {last.time} {last.result}: fix and redeploy {source} first",
            source_update=update,
        )
    deployed = deployed_releases(stack)
    if deployed is None:
        raise Refused(
            f"{source}'s stack has no `{RELEASES_OUTPUT}` output: redeploy {source} first", source_update=update
        )
    wanted = file_releases(settings)
    if deployed != wanted:
        differing = sorted(k for k in {*deployed, *wanted} if deployed.get(k) != wanted.get(k))
        raise Refused(
            f"{settings.source}: releases differ from what {source}'s last update #{last.version} deployed "
            f"({', '.join(differing)}): {source} never ran them; deploy {source} first",
            source_update=update,
        )
    log.info(
        "gate (a) passed: %s's last update #%s at %s deployed its current releases", source, last.version, last.time
    )
    return update, stack


def gate_no_drift(source: str, stack: auto.Stack) -> None:
    """(b) SOURCE's resources on the cluster are what its state says."""
    log.info("gate (b): checking %s for drift (refresh preview) ...", source)
    found = drift(stack)
    if found.error:
        raise Refused(f"the drift check of {source} failed: {found.error}")
    if found.drifted:
        listed = ", ".join(found.resources[:10]) + (
            f" and {len(found.resources) - 10} more" if len(found.resources) > 10 else ""
        )
        raise Refused(
            f"{source} has drifted from its state ({len(found.resources)} resource(s): {listed}); "
            f"run `smartnation up {source}` (or find who changed the cluster) first"
        )
    log.info("gate (b) passed: %s has no drift", source)


def gate_target_preview(target: str, new_text: str, environments: Path, allow_stateful: bool) -> EnvironmentPreview:
    """(c) TARGET's preview with the new file, from a temporary copy of environments/."""
    log.info("gate (c): previewing %s with the promoted releases ...", target)
    with tempfile.TemporaryDirectory(prefix="smartnation-promote-") as tmp:
        copy = Path(tmp) / environments.name
        shutil.copytree(environments, copy, ignore=shutil.ignore_patterns("stacks", "audit"))
        (copy / f"{target}.yaml").write_text(new_text, encoding="utf-8")
        load_settings(target, copy)  # the promoted file must be valid before the engine sees it
        result = preview_environment(target, (f"{environments.name}/{target}.yaml",), environments=copy)
    if result.result == "error":
        raise Refused(f"the preview of {target} failed: {(result.errors or ['see the output above'])[-1]}")
    if result.mandatory_violations:
        names = sorted({v.policy for v in result.mandatory_violations})
        raise Refused(
            f"the preview of {target} has {len(result.mandatory_violations)} mandatory policy violation(s): "
            + ", ".join(names),
            exit_codes.POLICY_VIOLATION,
        )
    if result.destructive and not allow_stateful:
        listed = ", ".join(f"{s.kind} {s.type.removeprefix('kubernetes:')} {s.name}" for s in result.destructive[:10])
        raise Refused(
            f"the promotion would replace or delete {len(result.destructive)} stateful resource(s) of {target} "
            f"({listed}); re-run with --allow-stateful-changes if that is intended"
        )
    log.info(
        "gate (c) passed: %s's preview has no mandatory violation%s",
        target,
        "" if not result.destructive else " (stateful changes allowed by --allow-stateful-changes)",
    )
    return result


def check_target(target: str, environments: Path) -> None:
    """Before --apply writes anything: TARGET is still not locked, its stack file has every secret
    its settings need, and whether it drifted (the update compares with the state, not the
    cluster; the operator should know)."""
    check_unlocked(target)
    stack, settings = select(target, create=False, environments=environments)
    # As `up` checks before its engine: an update that fails in the program for want of a secret is
    # still recorded (its config without the key, a new encryption salt), and here the promoted
    # file would already be written.
    missing = missing_secrets(settings, stack.get_all_config())
    if missing is not None:
        raise Refused(str(missing))
    found = drift(stack)
    if found.error:
        raise Refused(f"the drift check of {target} failed: {found.error}")
    if found.drifted:
        log.warning(
            "%s has drifted from its state (%s); the update compares with the state, not the cluster",
            target,
            ", ".join(found.resources[:10]),
        )


def cmd_promote(args: argparse.Namespace) -> int:
    environments = environments_dir()
    project = project_dir()
    source, target = args.source, args.target
    # Input first: nothing is read from the backend and nothing is recorded for a malformed request.
    order = load_order(environments)
    check_promotion(source, target, order, f"{environments.name}/{PROMOTION_FILE}")
    source_settings = load_settings(source, environments)
    target_settings = load_settings(target, environments)
    source_path, target_path = (environments / f"{e}.yaml" for e in (source, target))
    source_text = source_path.read_text(encoding="utf-8")
    target_text = target_path.read_text(encoding="utf-8")
    new_text = copy_releases(source_text, target_text, source_settings.source, target_settings.source)
    releases = releases_of(source_text, source_settings.source)

    who = operator(project)
    update: SourceUpdate | None = None
    run = uuid.uuid4().hex[:12]

    def record(result: str, reason: str, target_update: SourceUpdate | None = None, entry_run: str = run) -> None:
        entry = AuditEntry(
            when=utc_now(),
            who=who,
            source=source,
            target=target,
            result=result,
            reason=reason,
            source_update=update,
            releases=releases,
            target_update=target_update,
            extra={RUN_KEY: entry_run},
        )
        path = append_audit(environments, entry)
        log.info("recorded in %s: %s", path, result)

    report_interrupted(target, target_path, target_settings.source, record)
    record(STARTED, f"promotion of {source}'s releases into {target_settings.source} started")
    try:
        # Nobody may be changing either stack while the gates judge them (previews do not lock).
        check_unlocked(source)
        check_unlocked(target)
        update, source_stack = gate_source_deployed(source, environments)
        gate_no_drift(source, source_stack)
        preview = gate_target_preview(target, new_text, environments, args.allow_stateful_changes)
        if args.apply:
            check_target(target, environments)
    except Refused as refusal:
        log.error("promotion %s -> %s refused: %s", source, target, refusal.reason)
        update = update or refusal.source_update
        record(REFUSED, refusal.reason)
        return refusal.code
    except (auto.ConcurrentUpdateError, StackLocked) as locked:
        record(REFUSED, str(locked) if isinstance(locked, StackLocked) else "a stack is locked by another update")
        raise

    diff = "".join(
        difflib.unified_diff(
            target_text.splitlines(keepends=True),
            new_text.splitlines(keepends=True),
            fromfile=f"a/{target_settings.source}",
            tofile=f"b/{target_settings.source}",
        )
    )
    print(diff or f"(no change: {target_settings.source} already has {source}'s releases)")
    print("\n".join(render_environment(preview)))
    sys.stdout.flush()

    action = "write the file and update" if args.apply else "write the file for"
    if not confirm(f"Promote {source} -> {target}: {action} {target}?", args.yes):
        record(REFUSED, "not confirmed by the operator")
        return exit_codes.ABORTED

    try:
        check_unlocked(target)  # the confirmation may have taken a while
    except StackLocked as locked:
        record(REFUSED, str(locked))
        raise
    if target_path.read_text(encoding="utf-8") != target_text:
        # Someone edited the file while the gates ran: writing now would lose their change.
        reason = f"{target_settings.source} changed since it was read; nothing written: run the promotion again"
        log.error("promotion %s -> %s refused: %s", source, target, reason)
        record(REFUSED, reason)
        return exit_codes.FAILED
    write_atomically(target_path, new_text)
    log.info("%s written", target_settings.source)
    if not args.apply:
        record(WRITTEN_ONLY, f"{target_settings.source} written; deploy with `smartnation up {target}`")
        return exit_codes.OK

    stack, settings = select(target, create=True, environments=environments)
    log.info("updating %s on %s ...", target, settings.cluster.name)
    try:
        with policy_args(settings) as policy:
            stack.up(color="never", on_output=stream_to(sys.stderr), **policy)
    except auto.ConcurrentUpdateError:
        record(FAILED, f"{target_settings.source} written; the update of {target} found the stack locked")
        raise
    except auto.CommandError as error:
        tail = (str(error).strip().splitlines() or ["?"])[-1]
        record(FAILED, f"{target_settings.source} written; the update of {target} failed: {tail}", _last(stack))
        log.error("the update of %s failed: %s", target, tail)
        return exit_codes.FAILED
    record(APPLIED, f"{target} updated", _last(stack))
    log.info("%s now runs %s's releases", target, source)
    return exit_codes.OK


def report_interrupted(target: str, target_path: Path, shown: str, record) -> None:
    """Say what an earlier, killed promotion into ``target`` left, and close its run in the log.

    A temporary file left by a killed write is removed: the rename never happened, so the target
    file is the old one, whole."""
    for leftover in unfinished_writes(target_path):
        log.warning(
            "an earlier write of %s was killed before its rename; %s is intact, removing %s",
            shown,
            shown,
            leftover.name,
        )
        leftover.unlink(missing_ok=True)
    entries = read_audit(target_path.parent)
    if not entries:
        return
    current = releases_of(target_path.read_text(encoding="utf-8"), shown)
    for started in unfinished(entries, target):
        finding = what_happened(started, current, shown)
        log.warning("%s", finding.message)
        record(INTERRUPTED, finding.message, entry_run=finding.run)


def _last(stack: auto.Stack) -> SourceUpdate | None:
    last = last_update(stack)
    return SourceUpdate(version=last.version, time=last.time, result=last.result) if last else None


def add_parser(sub: argparse._SubParsersAction) -> None:
    promote = sub.add_parser(
        "promote",
        help="copy SOURCE's releases into TARGET's file after the gates (order: environments/promotion.yaml)",
    )
    promote.add_argument("source", metavar="SOURCE")
    promote.add_argument("target", metavar="TARGET")
    promote.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    promote.add_argument("--apply", action="store_true", help="also update TARGET once the file is written")
    promote.add_argument(
        "--allow-stateful-changes",
        action="store_true",
        help="accept replacing or deleting StatefulSets, volumes, namespaces or data-service resources",
    )
    promote.set_defaults(func=cmd_promote)
