"""`smartnation status [ENV ...] [--json] [--no-drift]`: what runs where, from the state itself.

Per environment: the cluster its settings target, the releases its last successful update
deployed (the `deployed_releases` stack output), whether they are still what the file says, the
last update from the stack's history, drift (a refresh preview), and health from the cluster: ready
against desired replicas of every Deployment and StatefulSet, and when `smartnation verify` last
passed (recorded on the namespace, see health.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict, dataclass
from typing import Any

from pulumi import automation as auto

from smartnation.cli import exit_codes
from smartnation.cli.console import render_table
from smartnation.cli.drift import drift
from smartnation.cli.environment_names import check_environments, known_environments
from smartnation.cli.health import (
    LAST_PASSED_ANNOTATION,
    WorkloadReadiness,
    summarise,
    verify_record,
    workload_readiness,
)
from smartnation.cli.history import deployed_releases, file_releases, last_update
from smartnation.cli.kubectl import Kubectl, KubectlError
from smartnation.cli.workspace import select, tool_environment
from smartnation.paths import environments_dir
from smartnation.settings import ClusterProfile, SettingsError, load_cluster_profile, load_settings

log = logging.getLogger("smartnation")

NOT_DEPLOYED = "not deployed"


@dataclass
class EnvironmentStatus:
    environment: str
    cluster: str
    deployed: bool
    releases: dict[str, Any] | None = None
    """The deployed_releases output (chart version; per component version and image)."""
    releases_match_file: bool | None = None
    last_update: dict[str, Any] | None = None
    drift: list[str] | None = None
    """Drifted resources; None when not checked."""
    drift_error: str | None = None
    workloads: list[dict[str, Any]] | None = None
    """Ready against desired replicas per Deployment/StatefulSet; None when not read."""
    last_verify_passed: str | None = None
    """UTC time the last complete `smartnation verify` passed (namespace annotation)."""
    health_error: str | None = None
    """Why the cluster could not be read (health unknown)."""


def environment_status(environment: str, check_drift: bool, check_health: bool = True) -> EnvironmentStatus:
    environments = environments_dir()
    settings = load_settings(environment, environments)
    status = EnvironmentStatus(environment, settings.cluster.name, deployed=False)
    try:
        stack, _ = select(environment, create=False, environments=environments)
    except auto.StackNotFoundError:
        return status
    last = last_update(stack)
    if last is None:
        return status
    status.last_update = asdict(last)
    releases = deployed_releases(stack)
    status.deployed = releases is not None and not (last.kind == "destroy" and last.result == "succeeded")
    if not status.deployed:
        return status
    status.releases = releases
    status.releases_match_file = releases == file_releases(settings)
    if check_drift:
        found = drift(stack)
        status.drift, status.drift_error = list(found.resources), found.error
    if check_health:
        read_health(status, {key: value.value for key, value in stack.outputs().items()}, settings.cluster)
    return status


def read_health(status: EnvironmentStatus, outputs: dict[str, Any], files_cluster: ClusterProfile) -> None:
    """Fill in the health fields from the cluster the stack was deployed to (outputs `cluster` and
    `namespace`); a cluster that cannot be read leaves health unknown with the reason."""
    try:
        cluster, namespace = str(outputs["cluster"]), str(outputs["namespace"])
        profile = files_cluster if files_cluster.name == cluster else load_cluster_profile(cluster)
        kubectl = Kubectl(profile.context, namespace, env=tool_environment(status.environment))
        status.workloads = [asdict(w) for w in workload_readiness(kubectl)]
        status.last_verify_passed = verify_record(kubectl).get(LAST_PASSED_ANNOTATION)
    except (KeyError, KubectlError, SettingsError, ValueError) as error:
        status.health_error = f"{type(error).__name__}: {error}"


def health_text(s: EnvironmentStatus) -> str:
    """`15/15 ready, verified 2026-11-29T02:10:00Z` (or `never verified`), or why it is unknown."""
    if s.health_error:
        return f"unknown ({s.health_error.splitlines()[-1][:80]})"
    if s.workloads is None:
        return "not checked"
    ready = summarise([WorkloadReadiness(**w) for w in s.workloads])
    return f"{ready}, " + (f"verified {s.last_verify_passed}" if s.last_verify_passed else "never verified")


def _versions(releases: dict[str, Any]) -> list[str]:
    lines = [f"chart {releases.get('chart_version', '?')}"]
    for name, release in releases.items():
        if isinstance(release, dict) and "version" in release:
            lines.append(f"{name} {release['version']} ({release.get('image', '?')})")
    return lines


def render(statuses: list[EnvironmentStatus]) -> str:
    """One row per environment, then the deployed releases of each deployed one."""
    rows = [("environment", "cluster", "deployed", "releases as in file", "last update", "drift", "health")]
    for s in statuses:
        update = s.last_update
        last = f"{update['kind']} #{update['version']} {update['result']} {update['time']}" if update else "-"
        if not s.deployed:
            rows.append((s.environment, s.cluster, NOT_DEPLOYED, "-", last, "-", "-"))
            continue
        if s.drift_error:
            drift_text = f"unknown ({s.drift_error.splitlines()[-1][:80]})"
        elif s.drift is None:
            drift_text = "not checked"
        elif not s.drift:
            drift_text = "none"
        else:
            drift_text = f"{len(s.drift)}: " + "; ".join(s.drift[:3]) + (" ..." if len(s.drift) > 3 else "")
        match = "yes" if s.releases_match_file else "NO (file changed since)"
        rows.append((s.environment, s.cluster, "yes", match, last, drift_text, health_text(s)))
    out = [render_table(rows)]
    for s in statuses:
        if s.deployed and s.releases:
            out.append(f"\n{s.environment} runs:\n" + "".join(f"  {line}\n" for line in _versions(s.releases)))
    return "".join(out)


def cmd_status(args: argparse.Namespace) -> int:
    environments = environments_dir()
    names = args.environments or list(known_environments(environments))
    check_environments(names, environments)
    statuses = []
    for name in names:
        log.info("reading %s ...", name)
        statuses.append(environment_status(name, check_drift=not args.no_drift, check_health=not args.no_health))
    if args.json:
        json.dump([asdict(s) for s in statuses], sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render(statuses))
    return exit_codes.OK


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("status", help="what each environment runs, its last update and drift")
    parser.add_argument("environments", nargs="*", metavar="ENV", help="default: every environment")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--no-drift", action="store_true", help="skip the drift check (a refresh preview each)")
    parser.add_argument("--no-health", action="store_true", help="skip the cluster (ready replicas, last verify)")
    parser.set_defaults(func=cmd_status)
