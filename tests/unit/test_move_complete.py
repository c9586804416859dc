"""The complete phase of a move (docs/move.md, section 9), built under mocks: the environment on the
new site alone, as any environment deployed there, and nothing registered on the old site (so
Pulumi deletes its resources); the outputs say where it is now."""

from __future__ import annotations

from pathlib import Path

import pytest

from smartnation.program import move_guard
from smartnation.program.move_guard import Deployed
from smartnation.settings import load_settings
from tests.unit.harness import BuiltStack, build_settings, edit
from tests.unit.test_move_cutover import HOME, OTHER, _on

pytestmark = pytest.mark.unit


def _build(envdir: Path, monkeypatch: pytest.MonkeyPatch, move: dict | None, deployed: Deployed) -> BuiltStack:
    monkeypatch.setenv("SMARTNATION_ENVIRONMENTS_DIR", str(envdir))
    monkeypatch.setattr(move_guard, "deployed_by_engine", lambda: deployed)
    edit(envdir, "dev.yaml", "move", move)
    return build_settings(load_settings("dev", envdir))


@pytest.fixture
def phases(envdir: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[BuiltStack, BuiltStack, BuiltStack]:
    """dev in cutover, then complete, then as deployed on the new site with `cluster:` alone."""
    edit(envdir, "dev.yaml", "database.replicas", 1)
    cutover = _build(envdir, monkeypatch, {"to": OTHER, "phase": "cutover"}, Deployed(HOME, OTHER, "replicate"))
    complete = _build(envdir, monkeypatch, {"to": OTHER, "phase": "complete"}, Deployed(HOME, OTHER, "cutover"))
    edit(envdir, "dev.yaml", "cluster", OTHER)
    alone = _build(envdir, monkeypatch, None, Deployed(OTHER, OTHER, "complete"))
    return cutover, complete, alone


def test_complete_registers_nothing_on_the_old_site_and_the_new_one_as_any_environment(phases) -> None:
    cutover, complete, alone = phases
    assert _on(complete, HOME) == {}, "every resource of the old site is deleted"
    after = _on(complete, OTHER)
    # Exactly what `cluster: monaco-onprem` alone deploys: the edit after it changes nothing.
    assert {name: r.plain for name, r in after.items()} == {name: r.plain for name, r in _on(alone, OTHER).items()}
    # A primary like any other now: its setup Job, its in-site replica, the APIs' migration Jobs.
    jobs = sorted(name for name, r in after.items() if r.kind == "Job")
    assert jobs == [
        f"{OTHER}-city-apis-device-registry-migrate",
        f"{OTHER}-city-apis-telemetry-ingest-migrate",
        f"{OTHER}-database-setup",
        f"{OTHER}-object-storage-setup-job",
    ], "the database's setup and the APIs' migrations run, idempotent against what replication brought"
    assert after[f"{OTHER}-database-replica-server"].kind == "StatefulSet"
    assert after[f"{OTHER}-database-backup"].kind == "CronJob"
    assert f"{OTHER}-database-source-ca" not in after and f"{OTHER}-guardrails-move-replication-target" not in after
    # The database's StatefulSet keeps its name (the same Pods' volume), its template becomes a primary's.
    server = f"{OTHER}-database-primary-server"
    before = _on(cutover, OTHER)[server].plain
    assert after[server].plain["metadata"]["name"] == before["metadata"]["name"]
    assert after[server].plain["spec"]["volumeClaimTemplates"] == before["spec"]["volumeClaimTemplates"]
    assert after[server].plain["spec"]["template"] != before["spec"]["template"]


def test_complete_outputs_say_the_environment_is_on_the_new_site(phases) -> None:
    _, complete, alone = phases
    outputs = {key: value for key, (value, _) in complete.outputs.items()}
    assert outputs["cluster"] == OTHER
    assert outputs["move"] == {
        "to": OTHER,
        "phase": "complete",
        "serving": OTHER,
        "namespace": outputs["namespace"],
        "moved_from": HOME,
    }
    for key in ("mqtt_endpoint", "api_urls", "s3_endpoint", "deployed_releases"):
        assert outputs[key] == alone.outputs[key][0], key
    assert ".mc." in outputs["mqtt_endpoint"]
