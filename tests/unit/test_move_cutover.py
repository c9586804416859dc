"""The new site's whole platform during a move, and the cutover phase (docs/move.md), built under
mocks: in replicate the new site already runs the broker and the APIs, read-only against the
standby (no migration Job); the cutover keeps the database's Pods as they are (the driver promoted
it in place), stops the bucket mirror, leaves the old site untouched, and the outputs give the
new site's endpoints."""

from __future__ import annotations

from pathlib import Path

import pytest

from smartnation.program import move_guard
from smartnation.program.move_guard import Deployed
from smartnation.settings import load_settings
from tests.unit.harness import BuiltStack, Registered, build_settings, edit

pytestmark = pytest.mark.unit

HOME, OTHER = "dusseldorf-test", "monaco-onprem"


def _build(envdir: Path, monkeypatch: pytest.MonkeyPatch, phase: str, recorded: str | None) -> BuiltStack:
    monkeypatch.setenv("SMARTNATION_ENVIRONMENTS_DIR", str(envdir))
    monkeypatch.setattr(move_guard, "deployed_by_engine", lambda: Deployed(HOME, OTHER if recorded else None, recorded))
    edit(envdir, "dev.yaml", "move", {"to": OTHER, "phase": phase})
    return build_settings(load_settings("dev", envdir))


@pytest.fixture
def phases(envdir: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[BuiltStack, BuiltStack]:
    """dev in replicate, then the same stack in cutover; one in-site replica asked, as staging has."""
    edit(envdir, "dev.yaml", "database.replicas", 1)
    return _build(envdir, monkeypatch, "replicate", None), _build(envdir, monkeypatch, "cutover", "replicate")


def _on(stack: BuiltStack, cluster: str) -> dict[str, Registered]:
    return {r.name: r for r in stack.kubernetes() if r.provider.split("::")[-2:][0] == f"k8s-{cluster}"}


def _charts(stack: BuiltStack, cluster: str) -> list[str]:
    return sorted(r.name for r in stack.resources if r.type.endswith("helm.sh/v4:Chart") and r.name.startswith(cluster))


def test_in_replicate_the_new_site_runs_the_broker_and_the_apis_against_its_standby(phases) -> None:
    replicate, _ = phases
    target = _on(replicate, OTHER)
    apis = [name.removeprefix(f"{HOME}-") for name in _charts(replicate, HOME)]
    assert apis and [name.removeprefix(f"{OTHER}-") for name in _charts(replicate, OTHER)] == apis
    assert target[f"{OTHER}-broker-public"].plain["spec"]["type"] == "LoadBalancer", "devices may connect"
    assert target[f"{OTHER}-broker-server"].kind == "StatefulSet"
    # No migration Job: the standby refuses DDL and the schema arrives by replication.
    assert not [name for name in target if name.endswith("-migrate")]
    assert [name for name, r in _on(replicate, HOME).items() if name.endswith("-migrate")], "the source migrates"
    # Every API reads and writes the standby: it has no in-site replicas before the move completes.
    host = "dev-database-primary"
    for name, resource in target.items():
        if name.endswith("-connections") and "PGHOST" in resource.plain["data"]:
            data = resource.plain["data"]
            assert data["PGHOST"].startswith(host) and data["PGHOST_READONLY"] == data["PGHOST"], name
    assert not [name for name, r in target.items() if r.kind == "StatefulSet" and "replica" in name]
    assert f"{HOME}-database-replica-server" in _on(replicate, HOME), "the source's in-site replica"
    assert not [name for name, r in target.items() if r.kind == "CronJob"], "no backup on a standby"


def test_in_replicate_the_outputs_still_give_the_old_sites_endpoints(phases) -> None:
    replicate, _ = phases
    move = replicate.outputs["move"][0]
    assert move["serving"] == HOME and move["phase"] == "replicate"
    assert replicate.outputs["mqtt_endpoint"][0] != move["target_mqtt_endpoint"]
    urls, target_urls = replicate.outputs["api_urls"][0], move["target_api_urls"]
    assert set(urls) == set(target_urls) and not set(urls.values()) & set(target_urls.values())


def test_the_cutover_keeps_the_database_pods_and_stops_the_bucket_mirror(phases) -> None:
    replicate, cutover = phases
    before, after = _on(replicate, OTHER), _on(cutover, OTHER)
    # Promoted in place by the driver: the same StatefulSet, the same Pod template (no restart).
    server = f"{OTHER}-database-primary-server"
    assert after[server].plain == before[server].plain
    gone = sorted(set(before) - set(after))
    assert gone == [
        f"{OTHER}-guardrails-move-mirror-object-storage",
        f"{OTHER}-guardrails-move-mirror-target",
        f"{OTHER}-object-storage-mirror",
        f"{OTHER}-object-storage-source-ca",
    ]
    # It serves from now on: backed up like any primary (the one object the cutover adds there).
    assert sorted(set(after) - set(before)) == [f"{OTHER}-database-backup"]
    assert after[f"{OTHER}-database-backup"].kind == "CronJob"
    assert f"{OTHER}-guardrails-move-replication-target" in after, "the standby's source stays reachable"


def test_the_cutover_changes_nothing_on_the_old_site(phases) -> None:
    replicate, cutover = phases
    before, after = _on(replicate, HOME), _on(cutover, HOME)
    assert set(before) == set(after)
    # Not even the bridge user's rights: both ways since replicate (broker_bridge.bridge_user).
    assert [name for name in before if before[name].plain != after[name].plain] == []


def test_the_cutover_outputs_give_the_new_sites_endpoints(phases) -> None:
    _, cutover = phases
    move = cutover.outputs["move"][0]
    assert (move["to"], move["phase"], move["serving"]) == (OTHER, "cutover", OTHER)
    assert cutover.outputs["mqtt_endpoint"][0] == move["target_mqtt_endpoint"]
    assert cutover.outputs["api_urls"][0] == move["target_api_urls"]
    assert cutover.outputs["cluster"][0] == HOME, "`cluster:` stays where it was until the move completes"
