"""The rollback phase of a move (docs/move.md, section 10), built under mocks: both sites stay as the
cutover deployed them (the new site's database promoted, no bucket mirror, backed up), except that
the outputs give the old site's endpoints again and the broker bridge turns: the telemetry of the
devices that reconnected to the new site crosses to the old one, the old site's commands to them.
With two broker pods, as staging and production have more: each message crosses once."""

from __future__ import annotations

from pathlib import Path

import pulumi
import pytest

from smartnation.program import naming
from smartnation.program.components import broker_bridge
from tests.unit.harness import BuiltStack, Registered, edit
from tests.unit.test_move_bridge import COMMANDS, HOME, OTHER, TELEMETRY, _acl_of, _build, _conf, _on

pytestmark = pytest.mark.unit


@pytest.fixture
def phases(envdir: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[BuiltStack, BuiltStack]:
    """dev with two broker pods in cutover, then the same stack in rollback."""
    edit(envdir, "dev.yaml", "broker.replicas", 2)
    return _build(envdir, monkeypatch, "cutover", "replicate"), _build(envdir, monkeypatch, "rollback", "cutover")


def _connections(conf: str) -> dict[str, list[str]]:
    """Each ``connection`` block's lines, by its name."""
    blocks: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in conf.splitlines():
        if line.startswith("connection "):
            current = blocks.setdefault(line.split()[1], [])
        elif current is not None and line and not line.startswith("#"):
            current.append(line)
    return blocks


def _value(block: list[str], key: str) -> str:
    return next(line.split(" ", 1)[1] for line in block if line.startswith(f"{key} "))


def _changed(before: dict[str, Registered], after: dict[str, Registered]) -> list[str]:
    assert set(before) == set(after), "nothing created or deleted"
    return sorted(name for name in before if before[name].plain != after[name].plain)


def test_the_old_site_stays_as_the_cutover_left_it(phases) -> None:
    cutover, rollback = phases
    assert _changed(_on(cutover, HOME), _on(rollback, HOME)) == []


def test_on_the_new_site_only_the_bridge_turns(phases) -> None:
    cutover, rollback = phases
    before, after = _on(cutover, OTHER), _on(rollback, OTHER)
    # Its database promoted in place, backed up, no mirror: as in the cutover.
    assert _changed(before, after) == [f"{OTHER}-broker-bridge", f"{OTHER}-broker-bridge-config"]
    assert after[f"{OTHER}-database-backup"].kind == "CronJob"
    assert not [name for name in after if "mirror" in name]
    annotations = [
        side[f"{OTHER}-broker-bridge"].plain["spec"]["template"]["metadata"]["annotations"] for side in (before, after)
    ]
    assert annotations[0][broker_bridge.CONFIG_HASH] != annotations[1][broker_bridge.CONFIG_HASH], "it rolls"


def test_the_outputs_serve_the_old_site_again(phases) -> None:
    cutover, rollback = phases
    move = rollback.outputs["move"][0]
    assert (move["to"], move["phase"], move["serving"]) == (OTHER, "rollback", HOME)
    public = _on(rollback, HOME)[f"{HOME}-broker-tls"].plain["spec"]["dnsNames"][0]
    assert rollback.outputs["mqtt_endpoint"][0] == f"mqtts://{public}:8883" != move["target_mqtt_endpoint"]
    assert not set(rollback.outputs["api_urls"][0].values()) & set(move["target_api_urls"].values())
    for key in ("mqtt_endpoint", "api_urls"):  # (s3_endpoint is the same in-cluster name on both sites)
        assert rollback.outputs[key][0] != cutover.outputs[key][0], f"{key}: the cutover gave the new site's"
    assert rollback.outputs["cluster"][0] == HOME


def test_telemetry_crosses_from_every_new_pod_to_the_old_site_and_commands_back(phases) -> None:
    _, rollback = phases
    blocks = _connections(_conf(_on(rollback, OTHER)))
    assert list(blocks) == ["arrived-0", "arrived-1", "source-0"]
    topics = {name: [line for line in block if line.startswith("topic ")] for name, block in blocks.items()}
    per_new_pod = [f"topic {t} in 1" for t in TELEMETRY] + [f"topic {t} out 1" for t in COMMANDS]
    assert topics == {
        "arrived-0": per_new_pod,
        "arrived-1": per_new_pod,
        # One old pod: the old site's ingest reads every pod and its registry publishes on every pod.
        "source-0": [f"topic {t} out 1" for t in TELEMETRY] + [f"topic {t} in 1" for t in COMMANDS],
    }


def test_the_bridge_dials_each_new_pod_by_its_name_and_the_old_site_by_its_public_name(phases) -> None:
    cutover, rollback = phases
    new = _on(rollback, OTHER)
    blocks = _connections(_conf(new))
    headless = f"dev-broker-headless.{pulumi.get_project()}-dev.svc.cluster.local"
    public = _on(rollback, HOME)[f"{HOME}-broker-tls"].plain["spec"]["dnsNames"][0]
    assert public.startswith("mqtt.dev.") and public not in str(new[f"{OTHER}-broker-tls"].plain["spec"]["dnsNames"])
    assert {name: _value(block, "address") for name, block in blocks.items()} == {
        "arrived-0": f"dev-broker-0.{headless}:1883",
        "arrived-1": f"dev-broker-1.{headless}:1883",
        "source-0": f"{public}:1883",
    }
    assert {name: _value(block, "bridge_cafile") for name, block in blocks.items()} == {
        "arrived-0": "/mosquitto/cas/site.crt",
        "arrived-1": "/mosquitto/cas/site.crt",
        "source-0": "/mosquitto/cas/source.crt",
    }
    # The old pod 0 keeps the cutover's client id: its durable session there and the bridge's queue
    # towards it carry on; the new pods' sessions are their own.
    assert {name: _value(block, "remote_clientid") for name, block in blocks.items()} == {
        "arrived-0": "dev-move-bridge-arrived-0",
        "arrived-1": "dev-move-bridge-arrived-1",
        "source-0": "dev-move-bridge-0",
    }
    assert _value(_connections(_conf(_on(cutover, OTHER)))["source-0"], "remote_clientid") == "dev-move-bridge-0"
    # Only the public name resolves to the old site (pod 0's published address): the pods' names are
    # the new site's own pods now, which its DNS answers.
    pod = new[f"{OTHER}-broker-bridge"].plain["spec"]["template"]["spec"]
    published = rollback.outputs["move"][0]["broker_addresses"]
    assert pod["hostAliases"] == [{"ip": published[0], "hostnames": [public]}]


def test_the_bridge_users_rights_are_the_cutovers_on_both_sites(phases) -> None:
    cutover, rollback = phases
    for cluster in (HOME, OTHER):
        acl = _acl_of(_on(rollback, cluster), cluster, "move-bridge")
        assert acl == _acl_of(_on(cutover, cluster), cluster, "move-bridge")
        assert acl == [f"topic readwrite {t}" for t in (*TELEMETRY, *COMMANDS)], cluster


def test_a_rollback_source_without_the_old_sites_public_name_is_refused() -> None:
    source = broker_bridge.BridgeSource(("a",), ["10.0.0.1"], "ca", phase="rollback")
    names = naming.names("dev", naming.BROKER)
    with pytest.raises(ValueError, match="dials the old site by its public MQTT name"):
        broker_bridge._ends(source, names, "dev-broker-internal.x.svc", 1883)
