"""The local volume provisioner's decisions and the volumes it renders (local_volumes.py), and its
loop over watch events against a recording API (volume_provisioner.py), without a cluster."""

from __future__ import annotations

import json
import queue
import threading
from pathlib import Path

import pytest
import yaml

from smartnation.tooling.local_clusters.local_volumes import (
    NODE_KIND_LABEL,
    OWNER_LABEL,
    PROVISIONED_BY,
    SELECTED_NODE,
    ClassPolicy,
    CreateVolume,
    DeleteVolume,
    ProvisionerConfig,
    plan,
    provision_node,
)
from smartnation.tooling.local_clusters.node_plan import REAL_NODE_LABEL
from smartnation.tooling.local_clusters.simulation import LocalCluster, nodes
from smartnation.tooling.local_clusters.volume_provisioner import CLAIMS, VOLUMES, Provisioner, watch_forever
from smartnation.tooling.local_clusters.volume_provisioner_service import provisioner_config

pytestmark = pytest.mark.unit
PROFILES = sorted((Path(__file__).resolve().parents[2] / "environments" / "clusters").glob("*.yaml"))

IMMEDIATE = ClassPolicy("disk", "everest-csi-provisioner", "Immediate", "Delete")
TOPOLOGY = ClassPolicy("disk-topology", "everest-csi-provisioner", "WaitForFirstConsumer", "Delete")
KEPT = ClassPolicy("block", "rook-ceph.rbd.csi.ceph.com", "Immediate", "Retain")
LOCAL = ClassPolicy("local-nvme", "kubernetes.io/no-provisioner", "WaitForFirstConsumer", "Retain")


@pytest.fixture
def config(tmp_path) -> ProvisionerConfig:
    return ProvisionerConfig(
        cluster="c1",
        server="https://127.0.0.1:1",
        ca_file="ca",
        cert_file="crt",
        key_file="key",
        volumes_dir=str(tmp_path / "volumes"),
        classes=(IMMEDIATE, TOPOLOGY, KEPT, LOCAL),
        static_size="100Gi",
        static_count=2,
    )


def claim(name: str = "data", storage_class: str | None = "disk", uid: str = "u-1", **extra) -> dict:
    spec = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "3Gi"}}}
    if storage_class is not None:
        spec["storageClassName"] = storage_class
    spec.update(extra.pop("spec", {}))
    meta = {"name": name, "namespace": "ns", "uid": uid, **extra.pop("metadata", {})}
    return {"metadata": meta, "spec": spec, "status": extra.pop("status", {"phase": "Pending"})}


def names():
    """Names pre-made volumes <class>-0, -1... (the provisioner uses random suffixes)."""
    counter = iter(range(100))
    return lambda storage_class: f"{storage_class}-{next(counter)}"


def creates(actions) -> list[dict]:
    return [a.volume for a in actions if isinstance(a, CreateVolume)]


def deletes(actions) -> list[DeleteVolume]:
    return [a for a in actions if isinstance(a, DeleteVolume)]


def for_claims(actions) -> list[dict]:
    """The volumes made for a claim (not the pre-made ones of a class without provisioning)."""
    return [v for v in creates(actions) if v["spec"].get("claimRef")]


def test_an_immediate_claim_gets_a_local_volume_prebound_to_it(config):
    (action,) = [a for a in plan([claim()], [], config, names()) if a.volume["spec"].get("claimRef")]
    volume, spec = action.volume, action.volume["spec"]
    assert volume["metadata"]["name"] == "pvc-u-1"
    assert spec["claimRef"] == {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "namespace": "ns",
        "name": "data",
        "uid": "u-1",
    }
    assert spec["capacity"] == {"storage": "3Gi"}
    assert spec["accessModes"] == ["ReadWriteOnce"]
    assert spec["persistentVolumeReclaimPolicy"] == "Delete" and spec["storageClassName"] == "disk"
    # A local volume (fsGroup applies to it), on a directory of its own under the volumes folder.
    assert spec["local"]["path"] == str(action.directory)
    assert action.directory.parent == Path(config.volumes_dir) and action.directory.name == "pvc-u-1"
    assert "hostPath" not in spec and "csi" not in spec
    # The PV controller must leave a Released one to us, not look for an in-tree deleter.
    assert volume["metadata"]["annotations"][PROVISIONED_BY] == IMMEDIATE.provisioner
    assert volume["metadata"]["labels"][OWNER_LABEL] == "c1"


def test_the_class_reclaim_policy_is_the_volumes(config):
    (volume,) = for_claims(plan([claim(storage_class="block")], [], config, names()))
    assert volume["spec"]["persistentVolumeReclaimPolicy"] == "Retain"


def _terms(volume: dict) -> list[dict]:
    (term,) = volume["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
    return term["matchExpressions"]


def test_an_immediate_volume_admits_every_node_of_the_cluster(config):
    (volume,) = for_claims(plan([claim()], [], config, names()))
    assert _terms(volume) == [{"key": NODE_KIND_LABEL, "operator": "Exists"}]
    # The label every node carries is the one the real nodes and kwok's nodes are given.
    assert NODE_KIND_LABEL == REAL_NODE_LABEL
    for profile in PROFILES:
        assert all(NODE_KIND_LABEL in n["metadata"]["labels"] for n in nodes(LocalCluster.read(profile)))


def test_a_wait_for_first_consumer_claim_waits_for_the_schedulers_node(config):
    pending = claim(storage_class="disk-topology")
    assert for_claims(plan([pending], [], config, names())) == []
    assert provision_node(pending, config)[0] is False
    chosen = claim(storage_class="disk-topology", metadata={"annotations": {SELECTED_NODE: "c1-real-0"}})
    (volume,) = for_claims(plan([chosen], [], config, names()))
    assert _terms(volume) == [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["c1-real-0"]}]


@pytest.mark.parametrize(
    "unprovisioned",
    [
        claim(storage_class="someone-elses"),
        claim(storage_class=None),
        claim(metadata={"deletionTimestamp": "2026-11-29T00:00:00Z"}),
        claim(spec={"volumeName": "chosen-by-hand"}),
        claim(status={"phase": "Bound"}),
        claim(spec={"selector": {"matchLabels": {"disk": "fast"}}}),
        claim(spec={"volumeMode": "Block"}),
        claim(spec={"resources": {}}),
        claim(storage_class="local-nvme", metadata={"annotations": {SELECTED_NODE: "c1-real-0"}}),
    ],
    ids=["other-class", "no-class", "deleted", "volume-named", "bound", "selector", "block", "no-size", "static"],
)
def test_claims_a_provisioner_must_not_serve_get_nothing(config, unprovisioned):
    assert for_claims(plan([unprovisioned], [], config, names())) == []


def test_a_claim_whose_volume_exists_gets_no_second_one(config):
    (volume,) = for_claims(plan([claim()], [], config, names()))
    assert for_claims(plan([claim()], [volume], config, names())) == []


def released(volume: dict, phase: str = "Released") -> dict:
    return {**volume, "metadata": {**volume["metadata"], "uid": "pv-uid"}, "status": {"phase": phase}}


@pytest.mark.parametrize("phase", ["Released", "Failed"])
def test_a_released_volume_with_policy_delete_goes_with_its_directory(config, phase):
    (volume,) = for_claims(plan([claim()], [], config, names()))
    (action,) = deletes(plan([], [released(volume, phase)], config, names()))
    assert isinstance(action, DeleteVolume)
    assert (action.name, action.uid) == ("pvc-u-1", "pv-uid")
    assert action.directory == Path(config.volumes_dir) / "pvc-u-1"


def test_retained_bound_and_foreign_volumes_stay(config):
    (kept,) = for_claims(plan([claim(storage_class="block")], [], config, names()))
    (bound,) = for_claims(plan([claim()], [], config, names()))
    foreign = json.loads(json.dumps(bound))
    del foreign["metadata"]["labels"]
    foreign["metadata"]["name"] = "pvc-someone-elses"
    volumes = [released(kept), {**bound, "status": {"phase": "Bound"}}, released(foreign)]
    assert deletes(plan([], volumes, config, names())) == []


def test_a_directory_outside_the_volumes_folder_is_never_removed(config):
    (volume,) = for_claims(plan([claim()], [], config, names()))
    volume["spec"]["local"]["path"] = "/var/lib/pvc-u-1"  # its name, elsewhere
    (action,) = deletes(plan([], [released(volume)], config, names()))
    assert isinstance(action, DeleteVolume) and action.directory is None


def test_volumes_the_replaced_kwok_stage_made_are_still_deleted_when_released(config):
    legacy = {
        "metadata": {"name": "pvc-old", "uid": "x"},
        "spec": {
            "storageClassName": "disk",
            "persistentVolumeReclaimPolicy": "Delete",
            "csi": {"driver": "disk.csi.everest.io", "volumeHandle": "pvc-old"},
        },
        "status": {"phase": "Released"},
    }
    (action,) = deletes(plan([], [legacy], config, names()))
    assert isinstance(action, DeleteVolume) and action.directory is None


def test_a_class_without_dynamic_provisioning_keeps_one_premade_volume_free(config):
    (spare,) = creates(plan([], [], config, names()))
    assert spare["metadata"]["name"] == "local-nvme-0"
    assert spare["spec"]["storageClassName"] == "local-nvme"
    assert spare["spec"]["capacity"] == {"storage": config.static_size}
    assert "claimRef" not in spare["spec"] and spare["spec"]["local"]["path"].endswith("/local-nvme-0")
    assert creates(plan([], [spare], config, names())) == []  # one free is enough
    taken = {**spare, "spec": {**spare["spec"], "claimRef": {"name": "data", "namespace": "ns", "uid": "u"}}}
    (another,) = creates(plan([], [taken], config, names()))
    assert another["spec"]["storageClassName"] == "local-nvme"
    second = {**taken, "metadata": {**taken["metadata"], "name": "local-nvme-1"}}
    assert creates(plan([], [taken, second], config, names())) == []  # the site's static_count disks are used


def test_the_configuration_round_trips_and_follows_the_profile(tmp_path):
    kubeconfig = tmp_path / "kubeconfig.yaml"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "clusters": [{"cluster": {"server": "https://127.0.0.1:16443", "certificate-authority": "/p/ca.crt"}}],
                "users": [{"user": {"client-certificate": "/p/admin.crt", "client-key": "/p/admin.key"}}],
            }
        )
    )
    for profile_file in PROFILES:
        cluster = LocalCluster.read(profile_file)
        config = provisioner_config(cluster, kubeconfig, tmp_path / "volumes")
        assert ProvisionerConfig.from_json(config.to_json()) == config
        assert [(c.name, c.binding_mode, c.reclaim_policy) for c in config.classes] == [
            (s.name, s.binding_mode, s.reclaim_policy) for s in cluster.profile.storage.classes
        ]
        assert (config.cert_file, config.key_file, config.ca_file) == ("/p/admin.crt", "/p/admin.key", "/p/ca.crt")
        assert config.static_count == cluster.simulation.volume_pool.count


class RecordingApi:
    """Answers like the API server: 201 with the object on create, 200 on delete."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict | None]] = []

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        self.calls.append((method, path, body))
        if method == "POST":
            return 201, {**body, "metadata": {**body["metadata"], "uid": "pv-uid"}}
        return 200, {}


def test_the_loop_provisions_on_events_and_deletes_a_released_volume_with_its_data(config):
    api = RecordingApi()
    provisioner = Provisioner(config, api)
    provisioner.take(("sync", CLAIMS, []))
    provisioner.take(("sync", VOLUMES, []))
    provisioner.take(("event", CLAIMS, "ADDED", claim()))
    assert provisioner.reconcile()
    posted = [body for method, _, body in api.calls if method == "POST" and body["spec"].get("claimRef")]
    assert [v["metadata"]["name"] for v in posted] == ["pvc-u-1"]
    directory = Path(config.volumes_dir) / "pvc-u-1"
    assert directory.is_dir()
    (directory / "written-by-a-pod").write_text("data")
    # The same claim again (a MODIFIED event) makes nothing new: the created volume is known.
    api.calls.clear()
    provisioner.take(("event", CLAIMS, "MODIFIED", claim()))
    assert provisioner.reconcile() and api.calls == []
    # The claim goes, the PV controller marks its volume Released: directory first, then the object.
    provisioner.take(("event", CLAIMS, "DELETED", claim()))
    provisioner.take(("event", VOLUMES, "MODIFIED", released(posted[0])))
    assert provisioner.reconcile()
    assert not directory.exists()
    assert api.calls == [
        (
            "DELETE",
            "/api/v1/persistentvolumes/pvc-u-1",
            {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"uid": "pv-uid"}},
        )
    ]


def test_the_loop_waits_for_both_lists_before_acting(config):
    api = RecordingApi()
    provisioner = Provisioner(config, api)
    provisioner.take(("sync", CLAIMS, [claim()]))
    assert provisioner.reconcile() and api.calls == []  # the volumes are not known yet


class ScriptedApi:
    """Lists and watches as scripted: each watch yields its events, then the stream ends."""

    def __init__(self, watches: list[list[dict]], stopping: threading.Event) -> None:
        self.watches = watches
        self.stopping = stopping
        self.lists = 0
        self.watched_from: list[str] = []

    def list(self, resource: str) -> tuple[list[dict], str]:
        self.lists += 1
        return [{"metadata": {"name": f"listed-{self.lists}"}}], f"{self.lists}00"

    def watch(self, resource: str, version: str):
        self.watched_from.append(version)
        if not self.watches:
            self.stopping.set()
            return
        yield from self.watches.pop(0)


class Stopping(threading.Event):
    """Records every back-off the watcher waits (a failure), without waiting."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        return self.is_set()


def test_a_watch_resumes_where_it_was_and_lists_again_when_its_version_is_gone():
    stopping = Stopping()
    added = {"type": "ADDED", "object": {"metadata": {"name": "a", "resourceVersion": "101"}}}
    bookmark = {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "150"}}}
    gone = {"type": "ERROR", "object": {"kind": "Status", "code": 410, "message": "too old resource version"}}
    api = ScriptedApi([[added, bookmark], [gone]], stopping)
    events: queue.Queue = queue.Queue()
    watch_forever(api, VOLUMES, events, stopping)
    got = [events.get_nowait() for _ in range(events.qsize())]
    # The list, the one real event (a bookmark only moves the version), then a relist after 410.
    assert got == [
        ("sync", VOLUMES, [{"metadata": {"name": "listed-1"}}]),
        ("event", VOLUMES, "ADDED", added["object"]),
        ("sync", VOLUMES, [{"metadata": {"name": "listed-2"}}]),
    ]
    # Resumed from the bookmark's version after the stream ended; from the new list's after 410.
    assert api.watched_from == ["100", "150", "200"]
    assert stopping.waits == []  # 410 is expected, not a failure to back off from


def test_a_failing_watch_backs_off_before_listing_again():
    stopping = Stopping()
    refused = {"type": "ERROR", "object": {"kind": "Status", "code": 500, "message": "etcd unavailable"}}
    api = ScriptedApi([[refused], [refused]], stopping)
    watch_forever(api, CLAIMS, queue.Queue(), stopping)
    assert stopping.waits == [1.0, 2.0] and api.lists == 3
