"""What the program checks of a move against what is deployed, before it registers anything.

Changing ``cluster:`` alone makes Pulumi create an empty copy on the new cluster and delete the
old namespace, its volumes and its in-cluster backups in the same update. So on an environment
the stack shows deployed on another cluster (its ``cluster`` output), a plain change of
``cluster:`` is refused, pointing to the move (docs/move.md). A declared ``move:`` is checked
against the phase the stack last recorded (its ``move`` output): no phase may be skipped.
Once the stack recorded the cutover there is no way back (the new site took writes), and once it
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

from smartnation.program import naming
from smartnation.settings import SettingsError, load_cluster_profile
from smartnation.settings.models import MOVE_PHASES, Settings


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


def check_move(settings: Settings, deployed: Callable[[], Deployed | None] | None = None) -> None:
    """Raise SettingsError naming the file and the key when the settings would move the
    environment other than by the declared phases; ``deployed`` reads the stack (default: the
    engine's backend, nothing under mocks)."""
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
            f"{'no move' if move is None else 'replicate'} would lose; a rollback from the cutover is not "
            f"available yet: keep `phase: cutover` (docs/move.md)",
        )
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


FINAL_BACKUP = "move-final-backup"
"""``<env>-move-final-backup``: the ConfigMap the driver writes on the new site once the old site's
final backup, copied into the new site's object storage, restored there equal to the old site's
data (cli/move_complete.py): the complete phase deletes the old site only after it."""


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
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise SettingsError("Pulumi.yaml", "<program>", "cannot find kubectl on PATH to read the final backup's record")
    try:
        proc = subprocess.run(
            [kubectl, "--context", context, "-n", namespace, "get", "configmap", f"{environment}-{FINAL_BACKUP}",
             "--ignore-not-found", "-o", "json"],
            capture_output=True, text=True, timeout=60, env=os.environ,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise SettingsError("Pulumi.yaml", "<program>", "reading the final backup's record took over 60 s") from None
    if proc.returncode != 0:
        raise SettingsError(
            "Pulumi.yaml", "<program>", f"cannot read the final backup's record: {proc.stderr.strip()[-300:]}"
        )
    try:
        found = json.loads(proc.stdout) if proc.stdout.strip() else {}
    except json.JSONDecodeError:
        raise SettingsError(
            "Pulumi.yaml", "<program>", f"the final backup's record is not JSON: {proc.stdout.strip()[-200:]!r}"
        ) from None
    return found.get("data") if isinstance(found, dict) else None
