"""What `make clusters` builds from a cluster profile: nodes, storage classes and kwok stages."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from smartnation.tooling.local_clusters.simulation import (
    ProfileError,
    kwokctl_configuration,
    load_simulation,
    network_stages,
    nodes,
    storage_classes,
    volume_stages,
)

pytestmark = pytest.mark.unit
PROFILES = sorted((Path(__file__).resolve().parents[2] / "environments" / "clusters").glob("*.yaml"))


@pytest.fixture(params=PROFILES, ids=lambda p: p.stem)
def cluster(request):
    return load_simulation(request.param)


def test_every_pool_is_spread_over_the_zones_with_the_profiles_labels(cluster):
    made = nodes(cluster)
    assert len(made) == sum(p.count for p in cluster.node_pools)
    for pool in cluster.node_pools:
        members = [n for n in made if all(n["metadata"]["labels"].get(k) == v for k, v in pool.label.items())]
        assert len(members) == pool.count
        zones = {n["metadata"]["labels"]["topology.kubernetes.io/zone"] for n in members}
        assert zones == set(cluster.zones[: pool.count])
        assert all(n["status"]["capacity"]["memory"] == pool.memory for n in members)
    assert all(n["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake" for n in made)


def test_exactly_one_default_storage_class_the_profiles(cluster):
    classes = storage_classes(cluster)
    defaults = [
        c["metadata"]["name"]
        for c in classes
        if c["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"
    ]
    assert defaults == [cluster.default_storage_class]


def test_volume_stages_cover_the_profiles_classes_only(cluster):
    for stage in volume_stages(cluster):
        expressions = [m["cel"]["expression"] for m in stage["spec"]["selector"]["matchExpressions"]]
        class_filter = next(e for e in expressions if "storageClassName" in e)
        for sc in cluster.storage_classes:
            assert f"'{sc.name}'" in class_filter
        assert "kwok-volume" not in class_filter


def test_load_balancer_addresses_come_from_the_profiles_pool(cluster):
    lb, ingress = network_stages(cluster)
    template = lb["spec"]["steps"][0]["patch"]["template"]
    prefix = ".".join(str(cluster.load_balancer_pool.network_address).split(".")[:3])
    assert f'ip: "{prefix}.' in template
    assert cluster.ingress_address in ingress["spec"]["steps"][0]["patch"]["template"]
    assert f"'{cluster.ingress_class}'" in ingress["spec"]["selector"]["matchExpressions"][0]["cel"]["expression"]


def test_control_plane_binds_loopback_with_admission_and_rbac(cluster):
    options = kwokctl_configuration(cluster, "1.37.2")["options"]
    assert options["bindAddress"] == "127.0.0.1"
    assert options["kubeAdmission"] is True and options["kubeAuthorization"] is True
    assert options["kubeApiserverPort"] == cluster.apiserver_port


def test_a_profile_without_the_simulation_block_names_file_and_key(tmp_path):
    profile = yaml.safe_load(PROFILES[0].read_text())
    del profile["simulation"]["apiserver_port"]
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(profile))
    with pytest.raises(ProfileError) as err:
        load_simulation(path)
    assert str(path) in str(err.value) and "simulation.apiserver_port" in str(err.value)
