"""What the program checks of a move against what is deployed, before it registers anything.

Changing ``cluster:`` alone makes Pulumi create an empty copy on the new cluster and delete the
old namespace, its volumes and its in-cluster backups in the same update. So on an environment
the stack shows deployed on another cluster (its ``cluster`` output), a plain change of
``cluster:`` is refused, pointing to the move (docs/move.md). A declared ``move:`` is checked
against the phase the stack last recorded (its ``move`` output): no phase may be skipped.
Once the stack recorded the cutover the way back is the rollback phase, not replicate or no move
(the new site took writes); once it recorded the rollback, only removing ``move:`` follows, and
only after the driver's record that the old site got back what the new one took. Once it
recorded the complete phase the environment is where the move took it.

The deployed stack is read from the engine's own backend (`pulumi stack output`), because a
hand-typed `pulumi up` must meet the same checks as `smartnation up`. Under Pulumi's mocks (unit
tests) nothing is deployed and nothing is read.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

import pulumi

from smartnation.program import move_records, naming
from smartnation.program.move_records import FINAL_BACKUP
from smartnation.settings import SettingsError, load_cluster_profile
from smartnation.settings.models import MOVE_PHASES, MOVE_ROLLBACK, Settings

RecordReader = Callable[[str, str, str], dict | None]
"""``read(context, namespace, environment)``: a driver's record's data on one cluster, or None."""


@dataclass(frozen=True)
class Deployed:
    """What the stack's last update left, from its outputs."""

    cluster: str
    """The ``cluster`` output: where the environment runs (and holds its data)."""
    move_to: str | None = None
    move_phase: str | None = None
    """The ``move`` output ({to, phase}) of an update that ran a phase of a move."""

    @classmethod
    def from_outputs(cls, outputs: dict) -> Deployed | None:
        cluster = outputs.get("cluster")
        if not isinstance(cluster, str) or not cluster:
            return None  # never deployed, or destroyed: no data to lose
        move = outputs.get("move") if isinstance(outputs.get("move"), dict) else {}
        return cls(cluster, move.get("to"), move.get("phase"))


def check_move(
    settings: Settings,
    deployed: Callable[[], Deployed | None] | None = None,
    rollback_record: RecordReader | None = None,
) -> None:
    """Raise SettingsError naming the file and the key when the settings would move the
    environment other than by the declared phases; ``deployed`` reads the stack (default: the
    engine's backend, nothing under mocks); ``rollback_record`` the driver's record of a rollback
    on the old site (default: kubectl, in an update run by the engine only)."""
    previous = (deployed or deployed_by_engine)()
    move = settings.move
    here = settings.cluster.name
    if previous is not None and previous.move_phase == "complete" and previous.cluster != here:
        if move is not None and move.phase == "complete" and move.to == previous.cluster:
            return  # the complete phase again: the file names the old site until it is edited
        raise SettingsError(
            settings.source,
            "cluster",
            f"{settings.environment}'s move to {previous.cluster} is complete (the stack's `move` output): its data "
            f"is there now; set `cluster: {previous.cluster}` and remove `move:` (docs/move.md)",
        )
    # Any other cluster than the deployed one (no completed move above) is a plain change.
    if previous is not None and previous.cluster != here:
        if move is None:
            raise SettingsError(
                settings.source,
                "cluster",
                f"{settings.environment} is deployed on {previous.cluster} with its data (the stack's `cluster` "
                f"output); changing `cluster:` to {here} alone would create an empty copy there and delete "
                f"{previous.cluster}'s namespace, volumes and backups in the same update. Move it with its data: "
                f"keep `cluster: {previous.cluster}` and declare `move: {{to: {here}, phase: replicate}}` "
                "(docs/move.md)",
            )
        raise SettingsError(
            settings.source,
            "cluster",
            f"during a move `cluster:` stays where the environment is deployed ({previous.cluster}, the stack's "
            f"`cluster` output), got {here}; `move.to` names where it goes",
        )
    if previous is not None and previous.move_phase == "cutover" and (move is None or move.phase == "replicate"):
        # After the cutover the new site took writes: going back to replicate (or to no move)
        # would make it a standby again, or delete it, and lose them.
        raise SettingsError(
            settings.source,
            "move" if move is None else "move.phase",
            f"{settings.environment}'s cutover to {previous.move_to} ran (the stack's `move` output): "
            f"{previous.move_to} has taken writes since, which going back to "
            f"{'no move' if move is None else 'replicate'} would lose; to go back to {here}, declare "
            f"`move: {{to: {previous.move_to}, phase: {MOVE_ROLLBACK}}}` (docs/move.md)",
        )
    if previous is not None and previous.move_phase == MOVE_ROLLBACK:
        _after_rollback(settings, previous, rollback_record)
        return
    if move is None:
        return
    if previous is None:
        # Nothing to replicate from: a move starts from an environment deployed where it is.
        raise SettingsError(
            settings.source,
            "move",
            f"{settings.environment} is not deployed on {here} (the stack has no `cluster` output): a move "
            f"replicates a deployed environment's data; deploy it on {here} first, or change `cluster:` "
            "alone while it holds no data",
        )
    if move.phase == MOVE_ROLLBACK:
        _rollback_follows_cutover(settings, previous)
        return
    recorded = previous.move_phase if previous.move_to == move.to else None
    reachable = MOVE_PHASES.index(recorded) + 1 if recorded in MOVE_PHASES else 0
    if MOVE_PHASES.index(move.phase) > reachable:
        after = f"the stack's last recorded phase is {recorded}" if recorded else "no phase has run yet"
        raise SettingsError(
            settings.source,
            "move.phase",
            f"{move.phase} skips {MOVE_PHASES[reachable]} ({after}): the phases run "
            f"{' -> '.join(MOVE_PHASES)}, each its own reviewed update",
        )


def _after_rollback(settings: Settings, previous: Deployed, read: RecordReader | None) -> None:
    """The stack recorded a rollback: the old site serves again and the new site's database is a
    primary of its own, no standby. Only the rollback again, or removing ``move:`` once the
    driver's record is on the old site, may follow; a forward phase would start from a database
    that no longer follows the old site's."""
    move = settings.move
    came_from = previous.move_to
    if move is None:
        check_rollback_done(settings, came_from, read)
        return
    if move.phase == MOVE_ROLLBACK and move.to == came_from:
        return  # the rollback again
    raise SettingsError(
        settings.source,
        "move.phase" if move.phase != MOVE_ROLLBACK else "move.to",
        f"{settings.environment}'s rollback from {came_from} ran (the stack's `move` output): {came_from}'s "
        f"database is no longer a standby of {settings.cluster.name}'s, so `move: {{to: {move.to}, phase: "
        f"{move.phase}}}` cannot follow it; remove `move:` first (once `smartnation move {settings.environment} "
        f"--to {came_from}` drove the rollback: that deletes {came_from}'s side), then a new move starts with "
        "replicate (docs/move.md)",
    )


def _rollback_follows_cutover(settings: Settings, previous: Deployed) -> None:
    """``phase: rollback`` declared: only after the stack recorded the cutover to that same site.
    From replicate the new site took no writes: the way back is removing ``move:``."""
    move = settings.move
    assert move is not None
    recorded = previous.move_phase if previous.move_to == move.to else None
    if recorded == "cutover":
        return
    if recorded == "replicate":
        why = (
            f"from replicate {move.to} took no writes (its database is a standby): the rollback is removing "
            f"`move:`, which deletes {move.to}'s side and leaves {settings.cluster.name} as it is"
        )
    else:
        after = f"the stack's last recorded phase is {recorded}" if recorded else "no phase has run yet"
        why = f"it goes back from a cutover, and none ran ({after})"
    raise SettingsError(
        settings.source,
        "move.phase",
        f"{MOVE_ROLLBACK} applies only after the cutover to {move.to} (the stack's `move` output): {why} "
        "(docs/move.md)",
    )


def check_rollback_done(settings: Settings, came_from: str | None, read: RecordReader | None = None) -> None:
    """Removing ``move:`` after a recorded rollback deletes the new site's side: in an update (not a
    preview), only once the driver's record is on the old site (move_records.ROLLBACK: verified,
    from that new site). ``read(context, namespace, environment)`` answers the record's data
    (default: kubectl); under mocks and in a preview nothing is read."""
    if read is None:
        if _under_mocks() or pulumi.runtime.is_dry_run():
            return  # the driver previews before it carries the data back; mocks have no clusters
        read = _read_rollback
    here = settings.cluster
    record = read(here.context, naming.namespace(settings.environment), settings.environment) or {}
    if (
        record.get(move_records.ROLLBACK_VERIFIED) == move_records.VERIFIED
        and record.get(move_records.ROLLBACK_FROM) == came_from
    ):
        return
    name = move_records.record_name(settings.environment, move_records.ROLLBACK)
    raise SettingsError(
        settings.source,
        "move",
        f"removing `move:` after the rollback from {came_from} deletes {came_from}'s side, with what it took "
        f"since the cutover; it does so only once that was brought back to {here.name} and verified there, and "
        f"no such record is on {here.name} (ConfigMap {name}, `{move_records.ROLLBACK_VERIFIED}: "
        f'"{move_records.VERIFIED}"`, `{move_records.ROLLBACK_FROM}: {came_from}`): drive the rollback first, '
        f"`smartnation move {settings.environment} --to {came_from}`, then remove `move:`",
    )


def deployed_by_engine() -> Deployed | None:
    """The stack's outputs as the engine's backend holds them before this update (None under
    mocks, or for a stack never deployed)."""
    if _under_mocks():
        return None  # not run by the engine (unit tests, a direct call): nothing deployed to read
    pulumi_cli = shutil.which("pulumi")
    if pulumi_cli is None:
        raise SettingsError(
            "Pulumi.yaml", "<program>", "cannot find the pulumi CLI on PATH to read what the stack deployed"
        )
    try:
        proc = subprocess.run(
            [pulumi_cli, "stack", "output", "--json", "--stack", pulumi.get_stack(), "--non-interactive"],
            capture_output=True,
            text=True,
            env=os.environ,
            # The program runs in its `main` folder (infra/); the CLI must find this project's
            # Pulumi.yaml, not the repository's (another project name, other stacks).
            cwd=pulumi.get_root_directory(),
            timeout=120,
        )
    except subprocess.TimeoutExpired:
        raise SettingsError(
            "Pulumi.yaml", "<program>", "reading the stack's outputs to check for a move took over 120 s"
        ) from None
    if proc.returncode != 0:
        # Fails closed: without the outputs nobody can tell whether data would be lost.
        raise SettingsError(
            "Pulumi.yaml",
            "<program>",
            f"cannot read the stack's outputs to check for a move: {(proc.stderr or proc.stdout).strip()[-500:]}",
        )
    try:
        outputs = json.loads(proc.stdout or "{}")
    except json.JSONDecodeError:
        raise SettingsError(
            "Pulumi.yaml", "<program>", f"the stack's outputs are not JSON: {proc.stdout.strip()[-200:]!r}"
        ) from None
    return Deployed.from_outputs(outputs if isinstance(outputs, dict) else {})


def check_cutover_ran(settings: Settings, read: Callable[[str, str, str, str], dict] | None = None) -> None:
    """In an update (not a preview) of the cutover phase: the driver's steps before the apply ran,
    so a hand-typed `pulumi up` cannot switch the endpoints to a standby or leave the old site
    taking writes. Checked live: the old site's database is fenced (read-only by default), the new
    site's promoted (out of recovery). ``read(role, cluster, context)`` answers `move --status`'s
    reading of one side (default: that reader, by kubectl); under mocks and in a preview nothing
    is read."""
    move = settings.move
    if move is None or move.phase != "cutover":
        return
    if read is None:
        if _under_mocks() or pulumi.runtime.is_dry_run():
            return  # the driver previews before it fences; mocks have no clusters
        read = _read_side
    target = load_cluster_profile(move.to)
    source_db = read(settings.environment, "source", settings.cluster.name, settings.cluster.context)
    target_db = read(settings.environment, "target", target.name, target.context)
    how = (
        f"run `smartnation move {settings.environment} --to {move.to}`: it stops the writes, waits, verifies, promotes"
    )
    if target_db.get("in_recovery") is not False:
        raise SettingsError(
            settings.source,
            "move.phase",
            f"cutover applies only once {move.to}'s database is promoted, and it is still a standby (or was not "
            f"read: {target_db.get('problem') or 'in recovery'}); {how}, then applies this update itself",
        )
    if source_db.get("read_only") is not True:
        raise SettingsError(
            settings.source,
            "move.phase",
            f"cutover applies only once {settings.cluster.name}'s database is fenced (read-only), and it is not "
            f"(or was not read: {source_db.get('problem') or 'still takes writes'}); {how}",
        )


def _under_mocks() -> bool:
    from pulumi.runtime.mocks import MockMonitor
    from pulumi.runtime.settings import get_monitor

    monitor = get_monitor()
    return monitor is None or isinstance(monitor, MockMonitor)


def _read_side(environment: str, role: str, cluster: str, context: str) -> dict:
    """`move --status`'s reading of one side's database (kubectl, psql in the primary's Pod), with
    its problem if any. Imported here: the program reaches the CLI's reader only in a cutover."""
    from smartnation.cli.move_status import Site, read_site

    site = read_site(Site(role, cluster, context, naming.namespace(environment)), environment, dict(os.environ))
    return {**site.database, "problem": site.problem}


def check_final_backup(settings: Settings, read: Callable[[str, str, str], dict | None] | None = None) -> None:
    """In an update (not a preview) of the complete phase: the driver's record of a verified final
    backup of the old site is on the new site. ``read(context, namespace, environment)`` answers the
    record's data
    (default: kubectl); under mocks and in a preview nothing is read."""
    move = settings.move
    if move is None or move.phase != "complete":
        return
    if read is None:
        if _under_mocks() or pulumi.runtime.is_dry_run():
            return
        read = _read_final_backup
    target = load_cluster_profile(move.to)
    record = read(target.context, naming.namespace(settings.environment), settings.environment) or {}
    if record.get("verified") != "true" or record.get("source") != settings.cluster.name:
        raise SettingsError(
            settings.source,
            "move.phase",
            f"complete deletes {settings.cluster.name}'s resources, which it does only after a final backup of "
            f"{settings.cluster.name} was copied into {move.to}'s object storage and restored there equal to its "
            f"data; no such record on {move.to} (ConfigMap {settings.environment}-{FINAL_BACKUP}): run "
            f"`smartnation move {settings.environment} --to {move.to}`, which makes and checks it, then applies",
        )


def _read_final_backup(context: str, namespace: str, environment: str) -> dict | None:
    return _read_record(context, namespace, move_records.record_name(environment, FINAL_BACKUP), "the final backup")


def _read_rollback(context: str, namespace: str, environment: str) -> dict | None:
    return _read_record(
        context, namespace, move_records.record_name(environment, move_records.ROLLBACK), "the rollback"
    )


def _read_record(context: str, namespace: str, name: str, what: str) -> dict | None:
    """A driver's record (a ConfigMap's data) read with kubectl; None when there is none. Fails
    closed: a record that cannot be read refuses the update it guards."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise SettingsError("Pulumi.yaml", "<program>", f"cannot find kubectl on PATH to read {what}'s record")
    try:
        proc = subprocess.run(
            [kubectl, "--context", context, "-n", namespace, "get", "configmap", name,
             "--ignore-not-found", "-o", "json"],
            capture_output=True, text=True, timeout=60, env=os.environ,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise SettingsError("Pulumi.yaml", "<program>", f"reading {what}'s record took over 60 s") from None
    if proc.returncode != 0:
        raise SettingsError("Pulumi.yaml", "<program>", f"cannot read {what}'s record: {proc.stderr.strip()[-300:]}")
    try:
        found = json.loads(proc.stdout) if proc.stdout.strip() else {}
    except json.JSONDecodeError:
        raise SettingsError(
            "Pulumi.yaml", "<program>", f"{what}'s record is not JSON: {proc.stdout.strip()[-200:]!r}"
        ) from None
    return found.get("data") if isinstance(found, dict) else None
