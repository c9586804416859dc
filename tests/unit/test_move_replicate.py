"""The replicate phase of a move (docs/move.md), built under mocks: the source environment stays
as it was (every object the same, bar the three the move must change in place), its database is
published to the other site's link address alone, and the new site holds a hot standby of it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pulumi
import pytest

from smartnation.program import move_guard
from smartnation.program.components.database import (
    REPLICATION_PASSWORD_HASH,
    REPLICATION_USER,
    SUPERUSER_PASSWORD_HASH,
    admit_replication_from,
)
from smartnation.program.move_guard import Deployed, check_move
from smartnation.settings import SettingsError, load_settings
from tests.unit.harness import BuiltStack, Registered, build_settings, edit

pytestmark = pytest.mark.unit

HOME, OTHER = "dusseldorf-test", "monaco-onprem"
LINK_ADDRESS = "10.213.0.253/32"
"""Where Monaco's connections reach Düsseldorf over the site link (site 0 in the profiles' order)."""
CHANGED_IN_PLACE = {
    # pg_hba.conf with the standby's line; the init ConfigMap's reload script that expects it;
    # the quota for the published database's, MinIO's and broker pod's LoadBalancers; the
    # broker's ACL and password file with the bridge's user (read by the running broker on its
    # reloader's SIGHUP, not by a restart). All updated in place.
    f"{HOME}-database-config",
    f"{HOME}-database-init",
    f"{HOME}-guardrails-quota",
    f"{HOME}-broker-config",
    f"{HOME}-broker-passwords",
}


def _build(envdir: Path, monkeypatch: pytest.MonkeyPatch, deployed: Deployed | None) -> BuiltStack:
    monkeypatch.setenv("SMARTNATION_ENVIRONMENTS_DIR", str(envdir))
    monkeypatch.setattr(move_guard, "deployed_by_engine", lambda: deployed)
    settings = load_settings("dev", envdir)
    return build_settings(settings)


@pytest.fixture
def both(envdir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[BuiltStack, BuiltStack]]:
    """dev as deployed, then the same with ``move: {to: monaco-onprem, phase: replicate}``."""
    before = _build(envdir, monkeypatch, Deployed(HOME))
    edit(envdir, "dev.yaml", "move", {"to": OTHER, "phase": "replicate"})
    yield before, _build(envdir, monkeypatch, Deployed(HOME))


def _on(stack: BuiltStack, cluster: str) -> dict[str, Registered]:
    return {r.name: r for r in stack.kubernetes() if r.provider.split("::")[-2:][0] == f"k8s-{cluster}"}


def _by_name(stack: BuiltStack, name: str) -> Registered:
    return next(r for r in stack.resources if r.name == name)


def test_the_source_keeps_every_object_and_changes_three_in_place(both) -> None:
    before, during = both
    old, new = _on(before, HOME), _on(during, HOME)
    assert old and set(old) <= set(new), "no object of the source may go"
    changed = {name for name in old if old[name].plain != new[name].plain}
    assert changed == CHANGED_IN_PLACE
    # Not replaced: the same Kubernetes name (a Job's or StatefulSet's would be a replacement).
    for name in changed:
        assert old[name].plain["metadata"]["name"] == new[name].plain["metadata"]["name"]
    added = {name: new[name].kind for name in set(new) - set(old)}
    assert added == {
        f"{HOME}-database-published": "Service",
        f"{HOME}-object-storage-published": "Service",
        f"{HOME}-guardrails-move-replication-source": "NetworkPolicy",
        f"{HOME}-guardrails-move-mirror-source": "NetworkPolicy",
        f"{HOME}-broker-published-0": "Service",
        f"{HOME}-guardrails-move-bridge-source": "NetworkPolicy",
    }


def test_the_source_publishes_its_primary_to_the_link_address_for_replication_only(both) -> None:
    _, during = both
    source = _on(during, HOME)
    service = source[f"{HOME}-database-published"].plain
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["spec"]["loadBalancerSourceRanges"] == [LINK_ADDRESS]
    assert service["spec"]["externalTrafficPolicy"] == "Local", "pg_hba must see the link address"
    assert service["spec"]["selector"]["app.kubernetes.io/component"] == "primary"
    policy = source[f"{HOME}-guardrails-move-replication-source"].plain["spec"]
    assert policy["ingress"] == [
        {"from": [{"ipBlock": {"cidr": LINK_ADDRESS}}], "ports": [{"protocol": "TCP", "port": 5432}]}
    ]
    hba = source[f"{HOME}-database-config"].plain["data"]["pg_hba.conf"]
    lines = [line.split() for line in hba.splitlines() if LINK_ADDRESS in line]
    assert lines == [["hostssl", "replication", REPLICATION_USER, LINK_ADDRESS, "scram-sha-256"]]
    rows = [line.split() for line in hba.splitlines() if line and not line.startswith("#")]
    first_reject = next(i for i, row in enumerate(rows) if row[-1] == "reject")
    assert rows.index(lines[0]) < first_reject, "after a reject line it would never match"
    quota = source[f"{HOME}-guardrails-quota"].plain["spec"]["hard"]
    assert quota["services.loadbalancers"] == "4", "the broker's, the database's, MinIO's and the broker pod's"


def test_the_source_publishes_its_object_storage_to_the_link_address_alone(both) -> None:
    _, during = both
    source = _on(during, HOME)
    service = source[f"{HOME}-object-storage-published"].plain
    assert service["metadata"]["name"] == "dev-object-storage-published"
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["spec"]["loadBalancerSourceRanges"] == [LINK_ADDRESS]
    assert service["spec"]["externalTrafficPolicy"] == "Local", "the NetworkPolicy must see the link address"
    assert service["spec"]["selector"] == {
        "app.kubernetes.io/name": "object-storage",
        "app.kubernetes.io/instance": "dev-object-storage",
        "app.kubernetes.io/component": "server",
    }
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(9000, "s3")]
    policy = source[f"{HOME}-guardrails-move-mirror-source"].plain["spec"]
    assert policy["podSelector"]["matchLabels"] == service["spec"]["selector"]
    assert policy["policyTypes"] == ["Ingress"]
    assert policy["ingress"] == [
        {"from": [{"ipBlock": {"cidr": LINK_ADDRESS}}], "ports": [{"protocol": "TCP", "port": 9000}]}
    ]


def test_the_new_site_holds_a_hot_standby_of_the_source_and_no_database_setup(both) -> None:
    _, during = both
    target = _on(during, OTHER)
    kinds = sorted({r.type.split(":")[-1] for r in target.values()})
    # MinIO's own setup (buckets, users) runs; the database's setup and backup do not: a standby
    # converges nothing and dumps nothing.
    assert [name for name, r in target.items() if r.kind == "Job"] == [f"{OTHER}-object-storage-setup-job"]
    assert "CronJob" not in kinds and "Release" not in kinds
    assert sorted(name for name, r in target.items() if r.kind == "Deployment") == [
        f"{OTHER}-broker-bridge",
        f"{OTHER}-object-storage-mirror",
    ]
    primary = target[f"{OTHER}-database-primary-server"].plain["spec"]["template"]["spec"]
    source_host = f"dev-database-primary.{pulumi.get_project()}-dev.svc.cluster.local"
    server = next(c for c in primary["containers"] if c["name"] == "postgres")
    conninfo = next(a for a in server["args"] if a.startswith("primary_conninfo="))
    assert f"host={source_host} " in conninfo and "sslmode=verify-full" in conninfo
    assert primary["hostAliases"][0]["hostnames"] == [source_host]
    annotations = target[f"{OTHER}-database-primary-server"].plain["spec"]["template"]["metadata"]["annotations"]
    assert set(annotations) == {REPLICATION_PASSWORD_HASH, SUPERUSER_PASSWORD_HASH}, "a new password rolls it"
    assert "standby.signal" in primary["initContainers"][0]["command"][-1]
    sources = primary["volumes"][1]["projected"]["sources"]
    assert sources[1]["secret"]["name"] == "dev-database-source-ca"
    assert target[f"{OTHER}-database-source-ca"].plain["stringData"]["ca.crt"].startswith("-----BEGIN")
    egress = target[f"{OTHER}-guardrails-move-replication-target"].plain["spec"]["egress"]
    assert egress[0]["ports"] == [{"protocol": "TCP", "port": 5432}]
    assert during.outputs["move"][0]["to"] == OTHER and during.outputs["move"][0]["phase"] == "replicate"
    assert during.outputs["cluster"][0] == HOME


def test_the_new_site_mirrors_every_bucket_of_the_sources_published_object_storage(both) -> None:
    _, during = both
    target = _on(during, OTHER)
    deployment = target[f"{OTHER}-object-storage-mirror"].plain
    assert deployment["metadata"]["name"] == "dev-object-storage-mirror"
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    source_host = f"dev-object-storage.{pulumi.get_project()}-dev.svc.cluster.local"
    assert [alias["hostnames"] for alias in pod["hostAliases"]] == [[source_host]]
    mirror, reader = pod["containers"]
    env = {e["name"]: e.get("value") for e in mirror["env"]}
    assert env["SOURCE_ENDPOINT"] == f"https://{source_host}:9000"
    assert env["TARGET_ENDPOINT"] == f"https://dev-object-storage.{pulumi.get_project()}-dev.svc:9000"
    assert env["SSL_CERT_DIR"] == "/etc/smartnation/mirror-cas"
    secrets = {e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in mirror["env"] if "valueFrom" in e}
    assert secrets == {"MINIO_ROOT_USER": "dev-object-storage-root", "MINIO_ROOT_PASSWORD": "dev-object-storage-root"}
    script = mirror["command"][-1]
    assert "    mc mirror --overwrite --remove --retry source/ target/ & wait $! \\" in script.splitlines()
    assert env["MIRROR_INTERVAL"] == "5"
    assert mirror["image"].startswith("registry.smartnation.mc/mirror/mc@sha256:"), "Monaco's registry, by digest"
    cas = next(v for v in pod["volumes"] if v["name"] == "cas")["projected"]["sources"]
    assert [(s["secret"]["name"], s["secret"]["items"]) for s in cas] == [
        ("dev-object-storage-source-ca", [{"key": "ca.crt", "path": "source.crt"}]),
        ("dev-object-storage-tls", [{"key": "ca.crt", "path": "site.crt"}]),
    ]
    assert target[f"{OTHER}-object-storage-source-ca"].plain["stringData"]["ca.crt"].startswith("-----BEGIN")
    # The verification's object reader: a city API's image from Monaco's registry, its own MinIO.
    assert reader["name"] == "reader" and "/telemetry-ingest@sha256:" in reader["image"]
    assert reader["image"].split("/")[0] == mirror["image"].split("/")[0]
    reader_env = {e["name"]: e.get("value") for e in reader["env"]}
    assert reader_env["S3_ENDPOINT"] == env["TARGET_ENDPOINT"]
    assert reader_env["AWS_CA_BUNDLE"] == "/etc/smartnation/mirror-cas/site.crt"
    assert reader["securityContext"]["runAsUser"] == 10001
    # The mirror reaches the source's published MinIO and its own, nothing else; its own MinIO admits it.
    mirror_labels = {
        "app.kubernetes.io/name": "object-storage",
        "app.kubernetes.io/instance": "dev-object-storage",
        "app.kubernetes.io/component": "mirror",
    }
    flows = target[f"{OTHER}-guardrails-move-mirror-target"].plain["spec"]
    assert flows["podSelector"]["matchLabels"] == mirror_labels == deployment["spec"]["selector"]["matchLabels"]
    assert [rule["ports"] for rule in flows["egress"]] == [[{"protocol": "TCP", "port": 9000}]] * 2
    assert flows["egress"][1]["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "server"
    admitted = target[f"{OTHER}-guardrails-move-mirror-object-storage"].plain["spec"]
    assert admitted["ingress"] == [
        {"from": [{"podSelector": {"matchLabels": mirror_labels}}], "ports": [{"protocol": "TCP", "port": 9000}]}
    ]
    assert during.outputs["move"][0]["object_storage_address"] is not None


def test_the_replication_line_goes_before_the_rejects_and_nothing_without_sources() -> None:
    hba = "# x\n  local all all  scram-sha-256\n  host all all 0.0.0.0/0 reject\n"
    assert admit_replication_from(hba, ()) == hba
    added = admit_replication_from(hba, ("10.213.0.253/32",)).splitlines()
    assert added[-1].split()[-1] == "reject" and added[-2].split()[:4] == [
        "hostssl",
        "replication",
        REPLICATION_USER,
        "10.213.0.253/32",
    ]


def test_replicate_needs_the_environment_deployed_where_it_is(envdir: Path) -> None:
    edit(envdir, "dev.yaml", "move", {"to": OTHER, "phase": "replicate"})
    settings = load_settings("dev", envdir)
    with pytest.raises(SettingsError) as caught:
        check_move(settings, lambda: None)
    assert caught.value.key_path == "move" and "not deployed" in caught.value.detail
    check_move(settings, lambda: Deployed(HOME))
    check_move(settings, lambda: Deployed(HOME, OTHER, "replicate"))  # re-run of the same phase
