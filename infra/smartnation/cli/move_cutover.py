"""The cutover's own steps (docs/move.md, section 8): stop the writes on the old site, wait for the
new site to replay up to that point, and promote it, measuring the pause in between.

- ``fence``: the old site's primary becomes read-only for every new transaction
  (``ALTER SYSTEM SET default_transaction_read_only = on``, reloaded, kept on its volume across a
  restart), every client session is ended (a transaction begun read-write before the reload
  would otherwise go on writing), and the WAL position after that is the *fence*: nothing written
  on the old site lies past it. The APIs there reconnect and find a database that refuses writes:
  the telemetry ingest keeps each batch, unacknowledged, and retries; the archive writes no
  object (services/telemetry_ingest/archive.py). Run again, it fences again: the position only
  grows, the time writes stopped stays the first one recorded.
- ``catch-up``: until the new site's standby has replayed the fence (its replay position at or
  past it, read as `move --status` reads), then until its buckets list the old site's objects
  (the mirror's last pass after the fence).
- ``promote``: the bucket mirror is stopped first (its ``--remove`` would delete what the new
  site's APIs write from now on), then ``pg_promote()`` on the new site; done when the server is
  out of recovery. The write pause is from the fence to here: measured, printed, audited.

The driver's ``verify`` runs between catch-up and promote, when both sides are still.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from smartnation.cli import compare
from smartnation.cli.kubectl import Kubectl, KubectlError
from smartnation.cli.move_status import Site, Unreadable, run_sql
from smartnation.program import naming
from smartnation.program.components import object_mirror

if TYPE_CHECKING:
    from smartnation.cli.move_driver import Run

FENCE_SQL = """\
ALTER SYSTEM SET default_transaction_read_only = on;
SELECT pg_reload_conf();
"""
"""Every transaction begun from now on is read-only unless it asks otherwise (none of the APIs
does); postgresql.auto.conf keeps it on the volume. Not a transaction: ALTER SYSTEM cannot run in one."""
UNFENCE_SQL = """\
ALTER SYSTEM RESET default_transaction_read_only;
SELECT pg_reload_conf();
"""
"""The fence undone (a rollback's last step, cli/move_rollback.py): the server's own default again,
removed from postgresql.auto.conf. ALTER SYSTEM is allowed in a read-only session."""
FENCED_SQL = (
    "SELECT json_build_object('read_only', current_setting('default_transaction_read_only') = 'on', "
    "'in_recovery', pg_is_in_recovery())"
)
"""Whether a new session already sees the fence (the reload reaches the server's processes a moment after)."""
END_SESSIONS_SQL = """\
SELECT json_build_object('ended', count(*) FILTER (WHERE pg_terminate_backend(pid, 5000)))
FROM (SELECT pid FROM pg_stat_activity
      WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() OFFSET 0) AS others;
"""
FENCE_LSN_SQL = "SELECT json_build_object('fence_lsn', pg_current_wal_lsn()::text)"
"""End every other client session (waiting up to 5 s for each to go), then the WAL position: each
transaction that committed is before it. Walsenders are no client backends: replication goes on.
OFFSET 0 keeps the filter on the session list apart from the terminations (the planner may not
merge the two and end a walsender or this session)."""
PROMOTE_SQL = (
    "SELECT json_build_object('promoted', CASE WHEN pg_is_in_recovery() THEN pg_promote(true, 60) ELSE true END, "
    "'in_recovery', pg_is_in_recovery())"
)
"""Promote a standby (waiting up to 60 s for it); a server already promoted is left as it is."""

FENCE_WAIT_S = 10.0
"""How long a new session may take to see the reloaded fence before the step fails."""
FENCED_AT, FENCE_LSN = "fenced_at", "fence_lsn"
"""The marks the fence leaves in the progress file (move_progress.Progress.marks)."""


class StepFailure(Exception):
    """A cutover step could not do its job (move_driver turns it into its StepFailed);
    ``timed_out``: it waited --timeout in vain (exit 9, like the replicate's wait)."""

    def __init__(self, message: str, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


def lsn(text: str | None) -> int | None:
    """A WAL position (``16/B374D848``) as a number, None for none."""
    if not text:
        return None
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) + int(low, 16)


def _site(run: Run, role: str) -> Site:
    cluster = run.settings.cluster if role == "source" else run.target_profile
    return Site(role, cluster.name, cluster.context, run.namespace)


def _sql(run: Run, role: str, sql: str) -> dict[str, Any]:
    try:
        return run_sql(_site(run, role), run.environment, run.kubectl_env, sql)
    except Unreadable as error:
        raise StepFailure(str(error)) from None


def fence(run: Run, role: str = "source") -> str:
    """Stop the writes on ``role``'s primary: the source in the cutover, the target in a rollback
    (cli/move_rollback.py), with the same SQL and the same marks."""
    where = _site(run, role).cluster
    first = run.marks.get(FENCED_AT)
    # When writes stopped: the first fence's time, so a re-run after a crash does not shorten the
    # pause; taken before the statement (a kill -9 right after it must not lose it) and dropped
    # again when this first attempt never stopped a primary's writes (psql failed, or a standby).
    run.marks.setdefault(FENCED_AT, time.time())
    try:
        _until_fenced(run, role)
    except StepFailure:
        if first is None:
            run.marks.pop(FENCED_AT, None)  # no primary's writes were seen stopped by this attempt
        raise
    ended = _sql(run, role, END_SESSIONS_SQL)
    position = _sql(run, role, FENCE_LSN_SQL).get("fence_lsn")
    if lsn(position) is None:
        raise StepFailure(f"{where}'s database gave no WAL position after the fence")
    run.marks[FENCE_LSN] = position
    again = " (again: writes stopped at the first fence)" if first is not None else ""
    return (
        f"writes stopped on {where}{again}: its database is read-only, {ended.get('ended', 0)} client "
        f"session(s) ended, fence at WAL {position}"
    )


def _until_fenced(run: Run, role: str) -> None:
    """The fence statement, then until a new session sees it (at most FENCE_WAIT_S)."""
    where = _site(run, role).cluster
    comes = "this move comes from" if role == "source" else "the rollback fences"
    _until_read_only(
        run, role, FENCE_SQL, True,
        in_recovery=f"{where}'s database is in recovery: it is not the primary {comes}",
        too_long=f"{where}'s database did not turn read-only within {FENCE_WAIT_S:g} s of the reload "
        "(default_transaction_read_only)",
    )  # fmt: skip


def unfence(run: Run, role: str) -> None:
    """UNFENCE_SQL on ``role``'s primary, then until a new session sees writes allowed again (at
    most FENCE_WAIT_S); run again, it resets an already reset setting, harmless."""
    where = _site(run, role).cluster
    _until_read_only(
        run, role, UNFENCE_SQL, False,
        in_recovery=f"{where}'s database is in recovery: there is no primary to take writes again",
        too_long=f"{where}'s database still refused writes {FENCE_WAIT_S:g} s after the fence was reset "
        "(default_transaction_read_only: set elsewhere too, in postgresql.conf or per database?)",
    )  # fmt: skip


def _until_read_only(run: Run, role: str, statement: str, wanted: bool, *, in_recovery: str, too_long: str) -> None:
    """``statement`` (the fence or its reset) on ``role``'s primary, then until a new session's
    ``read_only`` is ``wanted`` (at most FENCE_WAIT_S); a standby found there is refused."""
    _sql(run, role, statement + FENCED_SQL)
    began = time.monotonic()
    while True:
        seen = _sql(run, role, FENCED_SQL)
        if seen.get("in_recovery"):
            raise StepFailure(in_recovery)
        if seen.get("read_only") is wanted:
            return
        if time.monotonic() - began > FENCE_WAIT_S:
            raise StepFailure(too_long)
        time.sleep(0.2)


def catch_up(run: Run) -> str:
    fence_lsn = run.marks.get(FENCE_LSN)
    if lsn(fence_lsn) is None:
        raise StepFailure("no fence recorded in the progress file: the fence step runs first")
    timeout, interval = run.args.timeout, run.args.interval
    began = time.monotonic()
    while True:
        status = run.read_status()
        target = status.target
        elapsed = time.monotonic() - began
        replayed = target.database["wal_lsn"] if target is not None else None
        if target is not None and target.database["in_recovery"] is False:
            raise StepFailure(
                f"{run.to}'s database is out of recovery before this driver promoted it: promoted by hand? "
                "Compare both sides (`smartnation compare`) before going on"
            )
        behind = None if lsn(replayed) is None else max(lsn(fence_lsn) - lsn(replayed), 0)
        said = "not read" if behind is None else f"{behind} bytes to go"
        line = f"  replayed {replayed or 'nothing'} of the fence {fence_lsn}: {said} ({elapsed:.0f} of {timeout:.0f} s)"
        if status.problems:
            line += "; not read: " + "; ".join(status.problems)
        print(line, flush=True)
        if behind == 0 and not status.problems:
            break
        if elapsed + interval > timeout:
            raise StepFailure(
                f"{run.to} did not replay up to the fence {fence_lsn} within --timeout {timeout:g} s (last: "
                f"{said}); run `smartnation move {run.environment} --to {run.to}` again to keep waiting",
                timed_out=True,
            )
        time.sleep(interval)
    return f"{run.to} replayed up to the fence {fence_lsn} after {elapsed:.0f} s"


def stop_mirror(run: Run) -> str:
    """Scale the bucket mirror to none and wait for its Pod to go (the apply deletes it)."""
    kubectl = Kubectl(run.target_profile.context, run.namespace, run.kubectl_env)
    name = f"{naming.names(run.environment, naming.OBJECT_STORAGE).child(object_mirror.MIRROR)}"
    selector = compare.mirror_reader(run.environment)[0]
    try:
        found = kubectl.run("get", "deployment", name, "--ignore-not-found", "-o", "name")
        if found.strip():
            kubectl.run("scale", "deployment", name, "--replicas=0")
        kubectl.run("wait", "--for=delete", "pod", "-l", selector, "--timeout=60s", timeout=90, check=False)
        left = kubectl.items("pods", "-l", selector)
    except KubectlError as error:
        raise StepFailure(f"could not stop the bucket mirror on {run.to}: {error}") from None
    if left:
        raise StepFailure(f"the bucket mirror's Pod {left[0]['metadata']['name']} on {run.to} is still there")
    return "bucket mirror stopped" if found.strip() else "no bucket mirror"


def promote(run: Run) -> str:
    fenced_at = run.marks.get(FENCED_AT)
    if not isinstance(fenced_at, int | float):
        raise StepFailure("no fence recorded in the progress file: the fence step runs first")
    mirror = stop_mirror(run)
    answer = _sql(run, "target", PROMOTE_SQL)
    if answer.get("promoted") is not True or answer.get("in_recovery") is not False:
        raise StepFailure(f"{run.to}'s database was not promoted within 60 s: {answer}")
    pause = time.time() - fenced_at
    run.marks["write_pause_s"] = round(pause, 1)
    stopped = datetime.fromtimestamp(fenced_at, UTC).strftime("%H:%M:%S")
    return (
        f"{mirror}; {run.to}'s database promoted and taking writes: the write pause was {pause:.1f} s "
        f"(writes stopped on {run.settings.cluster.name} at {stopped} UTC)"
    )
