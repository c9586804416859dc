"""Where an environment's move stands, read live from both clusters (`smartnation move ENV --status`).

Read only, with what an operator has against any site: kubectl with each cluster's context.
Per cluster, one after the other: is the context in the kubeconfig, does the environment's
namespace exist, which database primary Pod runs, and one query (STATUS_SQL) run by psql in that
Pod's own container as the superuser, whose password (from the environment's credentials
Secret) goes in on stdin, never in an argument (as compare.py does). The same query on both
sides: the source's walsenders (pg_stat_replication) and the target's recovery state are both
columns of it, so it stays true when the cutover swaps the roles.

Whatever cannot be read is a *problem* naming the cluster and what was missing; the other side
is still read, so a status shows as much as there is.
"""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from smartnation.cli import compare
from smartnation.cli.kubectl import Kubectl, KubectlError
from smartnation.program import naming
from smartnation.program.components import broker_bridge, object_mirror
from smartnation.program.components.database import SUPERUSER

STATUS_SQL = """\
WITH here AS (
  SELECT pg_is_in_recovery() AS in_recovery,
         CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END AS lsn
)
SELECT json_build_object(
  'in_recovery', here.in_recovery,
  'read_only', current_setting('default_transaction_read_only') = 'on',
  'wal_lsn', here.lsn::text,
  'receive_lsn', pg_last_wal_receive_lsn()::text,
  'last_replay_at', pg_last_xact_replay_timestamp(),
  'seconds_since_last_replay', extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp()),
  'receiver_status', (SELECT status FROM pg_stat_wal_receiver LIMIT 1),
  'replication', COALESCE((
    SELECT json_agg(json_build_object(
      'client_address', host(r.client_addr),
      'application_name', r.application_name,
      'state', r.state,
      'sent_lsn', r.sent_lsn::text,
      'replay_lsn', r.replay_lsn::text,
      'lag_bytes', pg_wal_lsn_diff(here.lsn, r.replay_lsn),
      'replay_lag_seconds', extract(epoch FROM r.replay_lag)
    ) ORDER BY r.client_addr, r.pid)
    FROM pg_stat_replication r), '[]'::json)
)
FROM here;
"""
"""One JSON line about the server it runs on. ``wal_lsn``: a primary's current WAL position, a
standby's last replayed one (pg_current_wal_lsn() fails in recovery, hence the CASE); a walsender's
``lag_bytes`` is measured from it to what that standby replayed."""

DATABASE_FIELDS = (
    "in_recovery",
    "read_only",
    "wal_lsn",
    "receive_lsn",
    "last_replay_at",
    "seconds_since_last_replay",
    "receiver_status",
    "replication",
)
"""The keys STATUS_SQL answers with; a side that was not read has None for each."""

# The password is the first line of stdin (`read`), the SQL the rest: neither in an argument.
PSQL_SCRIPT = 'read -r PGPASSWORD; export PGPASSWORD; exec psql -X -A -t -q -v ON_ERROR_STOP=1 -U "$1" -d postgres'


class Unreadable(Exception):
    """Something a status needs could not be read; the message says what (read_site adds the cluster)."""


@dataclass
class Site:
    """What was read of one cluster: each field None until read."""

    role: str
    """``source`` (where the environment is, its ``cluster:``) or ``target`` (``move.to``)."""
    cluster: str
    context: str
    namespace: str
    namespace_exists: bool | None = None
    primary_pod: str | None = None
    database: dict[str, Any] = field(default_factory=lambda: dict.fromkeys(DATABASE_FIELDS))
    mirror: dict[str, Any] | None = None
    """The target's bucket mirror Pod during a move (MIRROR_FIELDS); None on the source, or not read."""
    bridge: dict[str, Any] | None = None
    """The target's broker bridge Pod during a move (MIRROR_FIELDS); None on the source, or not read."""
    problem: str | None = None
    """Why the read stopped, naming the cluster and what could not be read; None: all read."""

    def as_json(self) -> dict[str, Any]:
        fields = asdict(self)
        return {**{k: v for k, v in fields.items() if k != "database"}, **fields["database"]}


@dataclass(frozen=True)
class MoveStatus:
    """The move declared in the environment file and what each cluster showed of it."""

    environment: str
    file: str
    """The environment file the declared move is read from, as the loader names it."""
    to: str | None
    phase: str | None
    source: Site
    target: Site | None
    applied: dict[str, Any] | None = None
    """The stack's `move` output ({to, phase, ...}): the phase last applied; None if none (or not read)."""
    stack_problem: str | None = None
    """Why the stack's outputs could not be read; None: read (or not asked for)."""
    driver: dict[str, Any] | None = None
    """What `move --to` recorded of the declared phase in its progress file (cli/move.py's
    driver_progress): file, phase, to, finished steps in order, next, and the fence (fenced_at,
    fence_lsn, write_pause_s; fenced_site: the source in a cutover, the target in a rollback); None
    when there is no such file."""
    driver_problem: str | None = None
    """Why the progress file could not be read (torn); None: read, or none there."""

    @property
    def problems(self) -> list[str]:
        sites = [site.problem for site in (self.source, self.target) if site is not None and site.problem]
        others = [problem for problem in (self.stack_problem, self.driver_problem) if problem]
        return sites + others

    def as_json(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "file": self.file,
            "move": {"to": self.to, "phase": self.phase} if self.phase else None,
            "phase": self.phase,
            "applied_phase": self.applied.get("phase") if self.applied else None,
            "applied": {"to": self.applied.get("to"), "phase": self.applied.get("phase")} if self.applied else None,
            "source": self.source.as_json(),
            "target": self.target.as_json() if self.target else None,
            "driver": self.driver,
            "readable": not self.problems,
            "problems": self.problems,
        }


MIRROR_FIELDS = ("pod", "phase", "ready", "restarts", "waiting")
"""What a status shows of the bucket mirror's Pod (components/object_mirror.py): its name and
phase, whether its mirror container is ready, how often it restarted, why it waits (a reason
such as CrashLoopBackOff), each None when there is nothing to say."""


def read_site(
    site: Site,
    environment: str,
    env: Mapping[str, str],
    timeout: float = 60,
    mirror: bool = False,
    bridge: bool = False,
) -> Site:
    """Fill ``site`` from its cluster; a failure sets ``site.problem`` and stops there. ``mirror``,
    ``bridge``: the site is a move's target, which runs the bucket mirror (replicate) and the broker
    bridge (replicate and cutover); their Pods are read after the database."""
    kubectl = Kubectl(site.context, site.namespace, env)
    try:
        _read(site, kubectl, environment, timeout)
        if mirror:
            site.mirror = _pod_state(kubectl, compare.mirror_reader(environment)[0], object_mirror.MIRROR,
                                     "bucket mirror", "the replicate phase", timeout)  # fmt: skip
        if bridge:
            site.bridge = _pod_state(kubectl, bridge_selector(environment), "mosquitto", "broker bridge",
                                     "the replicate or cutover phase", timeout)  # fmt: skip
    except (Unreadable, KubectlError) as error:
        site.problem = f"{site.role} {site.cluster}: {error}"
    return site


def bridge_selector(environment: str) -> str:
    """The broker bridge's Pod on a move's target (components/broker_bridge.py)."""
    broker = naming.names(environment, naming.BROKER)
    return f"app.kubernetes.io/instance={broker.name},app.kubernetes.io/component={broker_bridge.BRIDGE}"


def _pod_state(
    kubectl: Kubectl, selector: str, container_name: str, what: str, applied_by: str, timeout: float
) -> dict[str, Any]:
    """MIRROR_FIELDS of the first Pod ``selector`` finds, for its container ``container_name``;
    none is a problem naming ``what`` and the phase that deploys it (``applied_by``)."""
    pods = sorted(kubectl.items("pods", "-l", selector, timeout=timeout), key=lambda p: p["metadata"]["name"])
    if not pods:
        raise Unreadable(f"no {what} Pod in {kubectl.namespace} ({selector}): is {applied_by} applied?")
    pod = pods[0]
    statuses = {c.get("name"): c for c in pod["status"].get("containerStatuses") or []}
    container = statuses.get(container_name, {})
    waiting = (container.get("state") or {}).get("waiting") or {}
    return {
        "pod": pod["metadata"]["name"],
        "phase": pod["status"].get("phase"),
        "ready": bool(container.get("ready")),
        "restarts": container.get("restartCount", 0),
        "waiting": waiting.get("reason"),
    }


def _read(site: Site, kubectl: Kubectl, environment: str, timeout: float) -> None:
    answer = _query(site, kubectl, environment, STATUS_SQL, timeout)
    site.database.update({key: answer.get(key) for key in DATABASE_FIELDS})


def _query(site: Site, kubectl: Kubectl, environment: str, sql: str, timeout: float) -> dict[str, Any]:
    """Run ``sql`` (its last line of output one JSON object) by psql in the site's Running primary
    Pod as the superuser; sets ``site.namespace_exists`` and ``site.primary_pod`` on the way."""
    contexts = kubectl.run("config", "get-contexts", "-o", "name", namespaced=False, timeout=timeout).split()
    if site.context not in contexts:
        where = kubectl.process_env().get("KUBECONFIG", "the default kubeconfig")
        raise Unreadable(f"no context {site.context!r} in the kubeconfig ({where}); it has: {', '.join(contexts)}")
    found = kubectl.run(
        "get", "namespace", site.namespace, "--ignore-not-found", "-o", "name", namespaced=False, timeout=timeout
    )
    site.namespace_exists = bool(found.strip())
    if not site.namespace_exists:
        raise Unreadable(f"namespace {site.namespace} does not exist (context {site.context})")
    database = naming.names(environment, naming.DATABASE)
    selector = f"app.kubernetes.io/instance={database.name},app.kubernetes.io/component={naming.PRIMARY}"
    pods = kubectl.items("pods", "-l", selector, timeout=timeout)
    running = sorted(
        (p for p in pods if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")),
        key=lambda p: p["metadata"]["name"],
    )
    if not running:
        seen = ", ".join(f"{p['metadata']['name']} {p['status'].get('phase', '?')}" for p in pods) or "none"
        raise Unreadable(f"no Running database primary Pod in {site.namespace} ({selector}; found: {seen})")
    pod = running[0]
    site.primary_pod = pod["metadata"]["name"]
    password = _superuser_password(kubectl, database.child("credentials"), timeout)
    return _psql(kubectl, site.primary_pod, pod["spec"]["containers"][0]["name"], password, timeout, sql)


def run_sql(site: Site, environment: str, env: Mapping[str, str], sql: str, timeout: float = 60) -> dict[str, Any]:
    """``sql`` on the site's primary (a move's fence and promotion, cli/move_cutover.py), answered
    with one JSON object on its last line; Unreadable or KubectlError naming what failed."""
    try:
        return _query(site, Kubectl(site.context, site.namespace, env), environment, sql, timeout)
    except (Unreadable, KubectlError) as error:
        raise Unreadable(f"{site.role} {site.cluster}: {error}") from None


def _superuser_password(kubectl: Kubectl, secret: str, timeout: float) -> str:
    data = json.loads(kubectl.run("get", "secret", secret, "-o", "json", timeout=timeout)).get("data") or {}
    if "POSTGRES_PASSWORD" not in data:
        raise Unreadable(f"Secret {secret} in {kubectl.namespace} has no POSTGRES_PASSWORD")
    return base64.b64decode(data["POSTGRES_PASSWORD"]).decode()


def _psql(
    kubectl: Kubectl, pod: str, container: str, password: str, timeout: float, sql: str = STATUS_SQL
) -> dict[str, Any]:
    argv = kubectl.argv("exec", "-i", pod, "-c", container, "--", "sh", "-c", PSQL_SCRIPT, "sh", SUPERUSER)
    try:
        done = subprocess.run(
            argv,
            env=kubectl.process_env(),
            input=f"{password}\n{sql}",
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise Unreadable(f"psql in {pod} took longer than {timeout:g}s") from None
    except OSError as error:
        raise Unreadable(f"cannot run kubectl: {error}") from None
    if done.returncode != 0:
        raise Unreadable(f"psql in {pod} failed: {done.stderr.strip()[-400:] or 'no message'}")
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    try:
        answer = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        answer = None
    if not isinstance(answer, dict):
        raise Unreadable(f"psql in {pod} answered no JSON object: {done.stdout.strip()[-200:] or 'nothing'}")
    return answer


def report_lines(status: MoveStatus) -> list[str]:
    """The status for a terminal: one line per fact, problems last."""
    if status.phase:
        head = f"moving from {status.source.cluster} to {status.to}, phase {status.phase}"
    else:
        head = f"no move declared; on {status.source.cluster}"
    lines = [f"{status.environment} ({status.file}): {head}"]
    if status.stack_problem is None:
        applied = status.applied or {}
        last = f"{applied.get('phase')} (to {applied.get('to')})" if applied.get("phase") else "none"
        lines.append(
            f"phase declared: {status.phase or 'none'}; phase last applied: {last} (the stack's `move` output)"
        )
    if status.driver is not None:
        lines.append(_driver_line(status.driver))
    for site in (status.source, status.target):
        if site is not None:
            lines += _site_lines(site)
    lines += [f"not read: {problem}" for problem in status.problems]
    lines.append("read only: nothing was changed")
    return lines


def _driver_line(driver: dict[str, Any]) -> str:
    """Where `move --to` stands in the phase it ran last (its progress file)."""
    finished = ", ".join(driver["finished"]) or "none"
    line = (
        f"driver ({driver['file']}): phase {driver['phase']} to {driver['to']}, steps finished: {finished}; "
        f"next: {driver['next'] or 'none, the phase is done'}"
    )
    # The cutover fences the source and resumes on the target; a rollback the other way round.
    stopped = driver.get("fenced_site", "source")
    resumed = "source" if stopped == "target" else "target"
    if driver.get("fenced_at"):
        line += f"; writes stopped on the {stopped} at {driver['fenced_at']} (fence {driver.get('fence_lsn') or '?'})"
    if driver.get("write_pause_s") is not None:
        line += f", resumed on the {resumed} after {driver['write_pause_s']} s"
    return line


def _site_lines(site: Site) -> list[str]:
    exists = {True: "present", False: "missing", None: "not read"}[site.namespace_exists]
    lines = [f"{site.role} {site.cluster} (context {site.context}), namespace {site.namespace}: {exists}"]
    db = site.database
    if db["in_recovery"] is None:
        return lines
    if db["in_recovery"]:
        since = db["seconds_since_last_replay"]
        replayed = "no transaction replayed yet" if since is None else f"last replayed transaction {since:.1f} s ago"
        lines.append(
            f"  database {site.primary_pod}: in recovery (standby), replayed up to {db['wal_lsn']}, "
            f"received up to {db['receive_lsn']}, receiver {db['receiver_status'] or 'not running'}, {replayed}"
        )
    else:
        # A move's cutover fences the old site with default_transaction_read_only (cli/move_cutover.py).
        fenced = ", read-only (fenced: writes stopped)" if db["read_only"] else ""
        lines.append(f"  database {site.primary_pod}: primary (not in recovery){fenced}, WAL at {db['wal_lsn']}")
    for row in db["replication"] or []:
        lag = "unknown" if row["lag_bytes"] is None else f"{row['lag_bytes']:.0f} bytes"
        replay_lag = "none measured" if row["replay_lag_seconds"] is None else f"{row['replay_lag_seconds']:.3f} s"
        sent, replayed = (row[key] or "nothing yet" for key in ("sent_lsn", "replay_lsn"))
        lines.append(
            f"  replication to {row['client_address'] or 'a local socket'}: {row['state']}, sent {sent}, "
            f"replayed {replayed}, lag {lag}, replay lag {replay_lag}"
        )
    if not db["replication"] and not db["in_recovery"]:
        lines.append("  replication: no standby connected")
    for what, pod in (("bucket mirror", site.mirror), ("broker bridge", site.bridge)):
        if pod is not None:
            state = "ready" if pod["ready"] else f"not ready ({pod['waiting']})" if pod["waiting"] else "not ready"
            lines.append(f"  {what} {pod['pod']}: {pod['phase']}, {state}, {pod['restarts']} restarts")
    return lines
