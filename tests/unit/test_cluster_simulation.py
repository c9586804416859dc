"""What `make clusters` builds from a cluster profile: nodes, storage classes and kwok stages."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from smartnation.settings import SettingsError, load_cluster_profile
from smartnation.tooling.local_clusters.simulation import (
    KWOK_DEFAULT_STAGES,
    LocalCluster,
    ingress_class,
    kwok_stage_documents,
    kwokctl_configuration,
    network_stages,
    nodes,
    storage_classes,
)

pytestmark = pytest.mark.unit
PROFILES = sorted((Path(__file__).resolve().parents[2] / "environments" / "clusters").glob("*.yaml"))


@pytest.fixture(params=PROFILES, ids=lambda p: p.stem)
def cluster(request):
    return LocalCluster.read(request.param)


def test_every_pool_is_spread_over_the_zones_with_the_profiles_labels(cluster):
    made = nodes(cluster)
    profile = cluster.profile
    assert len(made) == sum(p.count for p in profile.node_pools)
    for pool in profile.node_pools:
        members = [n for n in made if all(n["metadata"]["labels"].get(k) == v for k, v in pool.label.items())]
        assert len(members) == pool.count
        zones = {n["metadata"]["labels"]["topology.kubernetes.io/zone"] for n in members}
        assert zones == set(profile.zones[: pool.count])
        assert all(n["status"]["capacity"]["memory"] == pool.memory for n in members)
    assert all(n["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake" for n in made)


def test_exactly_one_default_storage_class_the_profiles(cluster):
    classes = storage_classes(cluster)
    defaults = [
        c["metadata"]["name"]
        for c in classes
        if c["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"
    ]
    assert defaults == [cluster.profile.storage.default_class]


def test_no_kwok_stage_plays_the_storage_provisioner(cluster, tmp_path):
    # Volumes are made by volume_provisioner.py as real directories a kubelet can mount; a kwok
    # stage making PersistentVolumes as well would race it and hand out unmountable ones.
    for name in KWOK_DEFAULT_STAGES:
        (tmp_path / name).write_text("")
    stages = kwok_stage_documents(cluster, tmp_path)
    kinds = {s["spec"]["resourceRef"]["kind"] for s in stages}
    assert kinds and not kinds & {"PersistentVolumeClaim", "PersistentVolume"}


def test_no_kwok_stage_plays_cert_manager(cluster, tmp_path):
    # cert-manager's own controller issues real key pairs (cert_manager.py); a stage writing a
    # Secret or a Ready condition as well would hand Mosquitto bytes its TLS listener refuses.
    for name in KWOK_DEFAULT_STAGES:
        (tmp_path / name).write_text("")
    stages = kwok_stage_documents(cluster, tmp_path)
    assert not [s for s in stages if "cert-manager.io" in s["spec"]["resourceRef"]["apiGroup"]]
    assert not [s for s in stages if s["spec"]["resourceRef"]["kind"] in ("Certificate", "Secret")]


def test_load_balancer_addresses_come_from_the_profiles_pool(cluster):
    lb, ingress = network_stages(cluster)
    template = lb["spec"]["steps"][0]["patch"]["template"]
    prefix = ".".join(str(cluster.simulation.load_balancer_pool.network_address).split(".")[:3])
    assert f'ip: "{prefix}.' in template
    assert str(cluster.simulation.ingress_address) in ingress["spec"]["steps"][0]["patch"]["template"]
    assert (
        f"'{cluster.profile.ingress.ingress_class}'"
        in ingress["spec"]["selector"]["matchExpressions"][0]["cel"]["expression"]
    )


def test_control_plane_binds_loopback_with_admission_and_rbac(cluster):
    options = kwokctl_configuration(cluster, "1.37.2", Path("/tmp/pki"))["options"]
    assert options["bindAddress"] == "127.0.0.1"
    assert options["kubeAdmission"] is True and options["kubeAuthorization"] is True
    assert options["kubeApiserverPort"] == cluster.simulation.apiserver_port


def test_everything_applied_to_a_stand_in_is_plain_yaml(cluster):
    # `make clusters` pipes these through yaml.safe_dump_all into kubectl; the profile's
    # read-only mappings must not leak into them.
    docs = [
        kwokctl_configuration(cluster, "1.37.2", Path("/tmp/pki")),
        *nodes(cluster),
        *storage_classes(cluster),
        ingress_class(cluster),
        *network_stages(cluster),
    ]
    assert list(yaml.safe_load_all(yaml.safe_dump_all(docs))) == docs


def _broken_profile(tmp_path, mutate) -> Path:
    profile = yaml.safe_load(PROFILES[0].read_text())
    mutate(profile)
    path = tmp_path / PROFILES[0].name
    path.write_text(yaml.safe_dump(profile))
    return path


@pytest.mark.parametrize(
    ("mutate", "key_path", "words"),
    [
        (lambda p: p["simulation"].pop("apiserver_port"), "simulation.apiserver_port", "required key is missing"),
        (lambda p: p.pop("simulation"), "simulation", "needed to simulate this cluster locally"),
        (lambda p: p["simulation"].update(apiserver_port="auto"), "simulation.apiserver_port", "integer"),
        (lambda p: p["simulation"].update(load_balancer_pool="10.0.0.0/16"), "simulation.load_balancer_pool", "/24"),
        (lambda p: p["simulation"].update(load_balancer_pool="10.0.0.1/24"), "simulation.load_balancer_pool", "/24"),
        (lambda p: p["simulation"].update(ingress_address="local"), "simulation.ingress_address", "IPv4 address"),
        (lambda p: p["simulation"]["volume_pool"].update(size="big"), "simulation.volume_pool.size", "size"),
        (lambda p: p["node_pools"][0].pop("pods"), "node_pools.0.pods", "required key is missing"),
    ],
)
def test_a_profile_the_stand_in_cannot_use_names_file_and_key(tmp_path, mutate, key_path, words):
    path = _broken_profile(tmp_path, mutate)
    with pytest.raises(SettingsError) as err:
        LocalCluster.read(path)
    assert str(err.value).startswith(f"{path}: {key_path}: "), err.value
    assert words in str(err.value)


def test_the_stand_in_reads_the_profile_the_program_reads():
    for path in PROFILES:
        assert LocalCluster.read(path).profile == load_cluster_profile(path.stem)


def test_kwok_plays_only_the_simulated_nodes_and_labels_them(cluster):
    # A real node's Pods must never be reported Running by kwok (FACTS.md): kwok manages only
    # nodes with its annotation, and every simulated node carries it and says it is simulated.
    config = kwokctl_configuration(cluster, "1.37.2", Path("/tmp/pki"))
    controller = next(p for p in config["componentsPatches"] if p["name"] == "kwok-controller")
    args = {a["key"]: a["value"] for a in controller["extraArgs"]}
    assert args["manage-all-nodes"] == "false"
    assert args["manage-nodes-with-annotation-selector"] == "kwok.x-k8s.io/node=fake"
    for node in nodes(cluster):
        assert node["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"
        assert node["metadata"]["labels"]["smartnation.mc/node-kind"] == "simulated"


def test_kwok_patches_replace_only_what_kwokctl_sets_and_append_the_rest(cluster):
    # kwokctl drops an `override` patch whose argument it does not set itself; those must be
    # appended, or a new cluster's kwok-controller runs with no node selector and exits.
    config = kwokctl_configuration(cluster, "1.37.2", Path("/tmp/pki"))
    for patch in config["componentsPatches"]:
        for arg in patch["extraArgs"]:
            assert arg["override"] == (arg["key"] == "manage-all-nodes"), (patch["name"], arg)
