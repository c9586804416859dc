"""The broker bridge of a move (docs/move.md), built under mocks: the old site publishes each broker
pod to the link address alone and admits the bridge's user without restarting its brokers; the
new site runs one bridge that dials every old pod by its certificate's name and hands each message
to its own brokers; commands cross back from the cutover on; complete removes it all."""

from __future__ import annotations

import base64
from pathlib import Path

import pulumi
import pytest

from smartnation.program import move_guard
from smartnation.program.components import broker_bridge
from smartnation.program.components.broker import CONFIG_HASH, PASSWORDS_HASH
from smartnation.program.daemon_config.mosquitto import hash_password
from smartnation.program.move_guard import Deployed
from smartnation.settings import load_settings
from tests.unit.harness import BuiltStack, Registered, build_settings, edit

pytestmark = pytest.mark.unit

HOME, OTHER = "dusseldorf-test", "monaco-onprem"
LINK_ADDRESS = "10.213.0.253/32"
TELEMETRY = ["city/traffic/+/telemetry", "city/parking/+/telemetry", "city/air/+/telemetry"]
COMMANDS = ["city/traffic/+/commands", "city/parking/+/commands"]


def _build(envdir: Path, monkeypatch: pytest.MonkeyPatch, phase: str | None, recorded: str | None) -> BuiltStack:
    monkeypatch.setenv("SMARTNATION_ENVIRONMENTS_DIR", str(envdir))
    monkeypatch.setattr(move_guard, "deployed_by_engine", lambda: Deployed(HOME, OTHER if recorded else None, recorded))
    if phase is not None:
        edit(envdir, "dev.yaml", "move", {"to": OTHER, "phase": phase})
    return build_settings(load_settings("dev", envdir))


@pytest.fixture
def stacks(envdir: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[BuiltStack, BuiltStack, BuiltStack]:
    """dev with two broker pods: as deployed, in replicate, in cutover."""
    edit(envdir, "dev.yaml", "broker.replicas", 2)
    return (
        _build(envdir, monkeypatch, None, None),
        _build(envdir, monkeypatch, "replicate", None),
        _build(envdir, monkeypatch, "cutover", "replicate"),
    )


def _on(stack: BuiltStack, cluster: str) -> dict[str, Registered]:
    return {r.name: r for r in stack.kubernetes() if r.provider.split("::")[-2:][0] == f"k8s-{cluster}"}


def _acl_of(resources: dict[str, Registered], cluster: str, user: str) -> list[str]:
    acl = resources[f"{cluster}-broker-config"].plain["data"]["acl"]
    block = acl.split(f"user {user}\n", 1)
    return block[1].split("\n\n", 1)[0].splitlines() if len(block) == 2 else []


def _conf(resources: dict[str, Registered]) -> str:
    return resources[f"{OTHER}-broker-bridge-config"].plain["stringData"]["mosquitto.conf"]


def test_the_old_site_publishes_each_broker_pod_to_the_link_address_alone(stacks) -> None:
    _, replicate, _ = stacks
    old = _on(replicate, HOME)
    for index in range(2):
        service = old[f"{HOME}-broker-published-{index}"].plain
        assert service["metadata"]["name"] == f"dev-broker-published-{index}"
        assert service["spec"]["type"] == "LoadBalancer"
        assert service["spec"]["loadBalancerSourceRanges"] == [LINK_ADDRESS]
        assert service["spec"]["externalTrafficPolicy"] == "Local"
        assert service["spec"]["selector"]["statefulset.kubernetes.io/pod-name"] == f"dev-broker-{index}"
        assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(1883, "mqtt")]
    assert f"{HOME}-broker-published-2" not in old
    policy = old[f"{HOME}-guardrails-move-bridge-source"].plain["spec"]
    assert policy["ingress"] == [
        {"from": [{"ipBlock": {"cidr": LINK_ADDRESS}}], "ports": [{"protocol": "TCP", "port": 1883}]}
    ]
    assert policy["podSelector"]["matchLabels"]["app.kubernetes.io/instance"] == "dev-broker"
    quota = old[f"{HOME}-guardrails-quota"].plain["spec"]["hard"]
    assert quota["services.loadbalancers"] == "5", "the devices', the database's, MinIO's and two broker pods'"


def test_the_old_site_admits_the_bridge_without_restarting_its_brokers(stacks) -> None:
    before, replicate, _ = stacks
    old_before, old = _on(before, HOME), _on(replicate, HOME)
    assert _acl_of(old_before, HOME, "move-bridge") == []
    # Both ways from the replicate phase on, on both sites: the cutover and the rollback change no ACL.
    assert _acl_of(old, HOME, "move-bridge") == [f"topic readwrite {t}" for t in (*TELEMETRY, *COMMANDS)]
    assert _acl_of(_on(replicate, OTHER), OTHER, "move-bridge") == _acl_of(old, HOME, "move-bridge")
    passwords = old[f"{HOME}-broker-passwords"].plain["stringData"]["passwords"]
    assert "move-bridge" in [line.split(":")[0] for line in passwords.splitlines()]
    server_before = old_before[f"{HOME}-broker-server"].plain
    server = old[f"{HOME}-broker-server"].plain
    assert server == server_before, "devices keep their connections: the reloader has the broker read the new user"
    annotations = server["spec"]["template"]["metadata"]["annotations"]
    assert {CONFIG_HASH, PASSWORDS_HASH} <= set(annotations)
    reloader = old[f"{HOME}-broker-config"].plain["data"]["reload-tls.sh"]
    assert 'reloaded="/mosquitto/passwords/passwords /mosquitto/config/acl"' in reloader


def test_the_new_site_runs_one_bridge_dialling_every_old_pod_by_its_certificates_name(stacks) -> None:
    _, replicate, _ = stacks
    new = _on(replicate, OTHER)
    deployment = new[f"{OTHER}-broker-bridge"].plain
    assert deployment["metadata"]["name"] == "dev-broker-bridge"
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    headless = f"dev-broker-headless.{pulumi.get_project()}-dev.svc.cluster.local"
    hosts = [f"dev-broker-{index}.{headless}" for index in range(2)]
    assert [alias["hostnames"] for alias in pod["hostAliases"]] == [[host] for host in hosts]
    (container,) = pod["containers"]
    assert container["command"] == ["mosquitto", "-c", "/mosquitto/bridge/mosquitto.conf"]
    assert container["image"].startswith("registry.smartnation.mc/"), "Monaco's registry"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    cas = next(v for v in pod["volumes"] if v["name"] == "cas")["projected"]["sources"]
    assert [(s["secret"]["name"], s["secret"]["items"]) for s in cas] == [
        ("dev-broker-source-ca", [{"key": "ca.crt", "path": "source.crt"}]),
        ("dev-broker-tls", [{"key": "ca.crt", "path": "site.crt"}]),
    ]
    assert new[f"{OTHER}-broker-source-ca"].plain["stringData"]["ca.crt"].startswith("-----BEGIN")
    # Its queue on a claim of its own, which a new Pod of the bridge reads again (a phase change rolls it).
    data = next(v for v in pod["volumes"] if v["name"] == "data")
    assert data == {"name": "data", "persistentVolumeClaim": {"claimName": "dev-broker-bridge-data"}}
    claim = new[f"{OTHER}-broker-bridge-data"].plain
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"] and claim["spec"]["storageClassName"] == "ceph-block"
    assert claim["metadata"]["annotations"] == {"pulumi.com/skipAwait": "true"}, "bound on first consumer"
    assert {"name": "data", "mountPath": "/mosquitto/data"} in container["volumeMounts"]
    conf = _conf(new)
    addresses = [line.split()[1] for line in conf.splitlines() if line.startswith("address ")]
    internal = f"dev-broker-internal.{pulumi.get_project()}-dev.svc"
    assert addresses == [f"{hosts[0]}:1883", f"{hosts[1]}:1883", f"{internal}:1883"]
    assert conf.count("bridge_cafile /mosquitto/cas/source.crt") == 2
    assert conf.count("bridge_cafile /mosquitto/cas/site.crt") == 1
    assert conf.count("cleansession false") == 3 and conf.count("bridge_insecure false") == 3
    assert "remote_username move-bridge" in conf


def test_in_replicate_telemetry_crosses_to_the_new_site_and_commands_do_not(stacks) -> None:
    _, replicate, _ = stacks
    topics = [line for line in _conf(_on(replicate, OTHER)).splitlines() if line.startswith("topic ")]
    assert topics == [f"topic {t} in 1" for t in TELEMETRY] * 2 + [f"topic {t} out 1" for t in TELEMETRY]


def test_from_the_cutover_commands_cross_back_to_the_devices_still_on_the_old_site(stacks) -> None:
    _, replicate, cutover = stacks
    new_replicate, new = _on(replicate, OTHER), _on(cutover, OTHER)
    topics = [line for line in _conf(new).splitlines() if line.startswith("topic ")]
    per_source = [f"topic {t} in 1" for t in TELEMETRY] + [f"topic {t} out 1" for t in COMMANDS]
    assert topics == per_source * 2 + [f"topic {t} out 1" for t in TELEMETRY] + [f"topic {t} in 1" for t in COMMANDS]
    # The changed configuration rolls the bridge (its annotation), and only the bridge.
    hash_before = new_replicate[f"{OTHER}-broker-bridge"].plain["spec"]["template"]["metadata"]["annotations"]
    hash_after = new[f"{OTHER}-broker-bridge"].plain["spec"]["template"]["metadata"]["annotations"]
    assert hash_before[broker_bridge.CONFIG_HASH] != hash_after[broker_bridge.CONFIG_HASH]
    # The rights it needs for that were there since replicate: the cutover changes no ACL (a
    # broker reloads one a minute after the update, and would refuse the commands until then).
    for cluster, before, after in ((OTHER, new_replicate, new), (HOME, _on(replicate, HOME), _on(cutover, HOME))):
        assert _acl_of(after, cluster, "move-bridge") == _acl_of(before, cluster, "move-bridge"), cluster


def test_the_bridge_reaches_the_old_pods_and_its_own_brokers_alone(stacks) -> None:
    _, replicate, _ = stacks
    new = _on(replicate, OTHER)
    flows = new[f"{OTHER}-guardrails-move-bridge-target"].plain["spec"]
    bridge_labels = {
        "app.kubernetes.io/name": "broker",
        "app.kubernetes.io/instance": "dev-broker",
        "app.kubernetes.io/component": "bridge",
    }
    assert flows["podSelector"]["matchLabels"] == bridge_labels
    assert new[f"{OTHER}-broker-bridge"].plain["spec"]["selector"]["matchLabels"] == bridge_labels
    assert flows["ingress"] == []
    published = replicate.outputs["move"][0]["broker_addresses"]
    assert len(published) == 2
    assert flows["egress"][0]["to"] == [{"ipBlock": {"cidr": f"{address}/32"}} for address in published]
    assert [rule["ports"] for rule in flows["egress"]] == [[{"protocol": "TCP", "port": 1883}]] * 2
    admitted = new[f"{OTHER}-guardrails-move-bridge-broker"].plain["spec"]
    assert admitted["ingress"] == [
        {"from": [{"podSelector": {"matchLabels": bridge_labels}}], "ports": [{"protocol": "TCP", "port": 1883}]}
    ]


def test_the_bridge_password_comes_from_the_replication_secret_and_differs_from_it() -> None:
    derived = broker_bridge.derive_password("replication-secret")
    assert derived == broker_bridge.derive_password("replication-secret")
    assert len(derived) == 64 and "replication-secret" not in derived
    assert derived != broker_bridge.derive_password("another-secret")


def test_both_sites_and_the_bridge_agree_on_the_password(stacks) -> None:
    _, replicate, _ = stacks
    conf = _conf(_on(replicate, OTHER))
    password = next(line.split(" ", 1)[1] for line in conf.splitlines() if line.startswith("remote_password "))
    for cluster in (HOME, OTHER):
        passwords = _on(replicate, cluster)[f"{cluster}-broker-passwords"].plain["stringData"]["passwords"]
        line = next(line for line in passwords.splitlines() if line.startswith("move-bridge:"))
        salt = base64.b64decode(line.split("$")[3])
        assert line == "move-bridge:" + hash_password(password, salt=salt), cluster


def test_without_a_move_there_is_no_bridge_user_and_no_published_broker(stacks) -> None:
    before, _, _ = stacks
    old = _on(before, HOME)
    assert not [name for name in old if "published" in name or "bridge" in name]
    passwords = old[f"{HOME}-broker-passwords"].plain["stringData"]["passwords"]
    assert "move-bridge" not in passwords
