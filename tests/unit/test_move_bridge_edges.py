"""The broker bridge's Deployment (components/broker_bridge.py) at the edges test_move_bridge.py
leaves open: the client id it holds a durable session under on each side, the files it only
reads, and what it waits for before it starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.test_move_bridge import OTHER, _build, _conf, _on

pytestmark = pytest.mark.unit


@pytest.fixture
def new_site(envdir: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """dev with two broker pods in replicate: the new site's resources."""
    from tests.unit.harness import edit

    edit(envdir, "dev.yaml", "broker.replicas", 2)
    return _on(_build(envdir, monkeypatch, "replicate", None), OTHER)


def test_the_bridge_holds_a_session_of_its_own_per_connection_under_a_stable_client_id(new_site) -> None:
    # Stable (the environment's name, no random part): a restarted bridge finds the durable
    # session the far side kept for it; one per connection: two would take each other's over.
    client_ids = [line.split()[1] for line in _conf(new_site).splitlines() if line.startswith("remote_clientid ")]
    assert client_ids == ["dev-move-bridge-0", "dev-move-bridge-1", "dev-move-bridge"]


def test_the_bridge_reads_its_configuration_and_the_cas_read_only(new_site) -> None:
    pod = new_site[f"{OTHER}-broker-bridge"].plain["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["config"] == {"name": "config", "mountPath": "/mosquitto/bridge", "readOnly": True}
    assert mounts["cas"] == {"name": "cas", "mountPath": "/mosquitto/cas", "readOnly": True}
    cas = next(v for v in pod["volumes"] if v["name"] == "cas")
    assert cas["projected"]["defaultMode"] == 0o444, "certificates: readable, written by no one"


def test_the_bridge_starts_after_the_old_sites_ca_and_its_own_brokers(new_site) -> None:
    deployment = new_site[f"{OTHER}-broker-bridge"]
    needed = [f"{OTHER}-broker-source-ca", f"{OTHER}-broker-server", f"{OTHER}-broker-bridge-data"]
    assert {new_site[name].urn for name in needed} <= set(deployment.dependencies)
    labels = deployment.plain["spec"]["template"]["metadata"]["labels"]
    server = new_site[f"{OTHER}-broker-server"].plain["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/version"] == server["app.kubernetes.io/version"], "the release's version"
