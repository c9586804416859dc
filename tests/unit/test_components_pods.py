"""Unit: the Pod building blocks every component uses (smartnation/program/components/pods.py).

tests/unit/test_stack.py checks the built stacks, where a container that leaves a field out may
still pass on the Pod's own setting; here each block is pinned as it is written once for all:
the restricted container profile (read-only root filesystem included, which admission requires
of every container: smartnation_policy), the Pod identity, the spread, the volumes.
"""

from __future__ import annotations

import dataclasses

import pytest

from smartnation.program.components import pods
from smartnation.settings import load_settings
from smartnation.settings.models import Compute, Resources
from tests.unit.harness import REPO_ENVIRONMENTS

pytestmark = pytest.mark.unit

RESTRICTED = {
    "run_as_non_root": True,
    "allow_privilege_escalation": False,
    "privileged": False,
    "read_only_root_filesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccomp_profile": {"type": "RuntimeDefault"},
}
SMALL = Resources(requests=Compute(cpu="10m", memory="16Mi"), limits=Compute(cpu="100m", memory="64Mi"))


@pytest.fixture(scope="module")
def dev():
    return load_settings("dev", REPO_ENVIRONMENTS)


def test_an_image_is_the_clusters_registry_the_repository_and_the_built_digest(dev) -> None:
    release = dev.releases.components["broker"]
    assert pods.image(dev.cluster, release) == f"{dev.cluster.registry.default}/mosquitto@{release.digest}"


def test_a_release_without_its_digest_is_refused(dev) -> None:
    release = dataclasses.replace(dev.releases.components["broker"], digest="")
    with pytest.raises(ValueError) as raised:
        pods.image(dev.cluster, release)
    assert str(raised.value) == (f"mosquitto:{release.tag} has no digest: load settings with the loader")


def test_a_container_runs_under_the_restricted_profile_with_a_read_only_root() -> None:
    assert pods.container_security_context() == RESTRICTED
    # Only what is asked for changes.
    assert pods.container_security_context(read_only_root=False) == RESTRICTED | {"read_only_root_filesystem": False}


def test_a_container_has_its_name_image_requests_limits_and_profile_and_the_fields_given() -> None:
    command = ["mosquitto", "-c", "/mosquitto/config/mosquitto.conf"]
    assert pods.container("broker", "registry.example/mosquitto@sha256:0", SMALL, command=command) == {
        "name": "broker",
        "image": "registry.example/mosquitto@sha256:0",
        "resources": {
            "requests": {"cpu": "10m", "memory": "16Mi"},
            "limits": {"cpu": "100m", "memory": "64Mi"},
        },
        "security_context": RESTRICTED,
        "command": command,
    }


@pytest.mark.parametrize(("gid", "group"), [(None, 1883), (70, 70), (0, 0)])
def test_a_pod_runs_as_its_uid_and_group_which_owns_its_volumes(gid: int | None, group: int) -> None:
    assert pods.pod_security_context(1883, gid) == {
        "run_as_non_root": True,
        "run_as_user": 1883,
        "run_as_group": group,
        "fs_group": group,
        "fs_group_change_policy": "OnRootMismatch",
        "seccomp_profile": {"type": "RuntimeDefault"},
    }


@pytest.mark.parametrize(("replicas", "zones"), [(1, "ScheduleAnyway"), (2, "DoNotSchedule"), (3, "DoNotSchedule")])
def test_replicas_spread_over_zones_strictly_from_two_on_and_over_nodes_when_they_can(
    replicas: int, zones: str
) -> None:
    selector = {"app.kubernetes.io/name": "broker"}
    assert pods.spread(selector, replicas) == [
        {
            "max_skew": 1,
            "topology_key": "topology.kubernetes.io/zone",
            "when_unsatisfiable": zones,
            "label_selector": {"match_labels": selector},
        },
        {
            "max_skew": 1,
            "topology_key": "kubernetes.io/hostname",
            "when_unsatisfiable": "ScheduleAnyway",
            "label_selector": {"match_labels": selector},
        },
    ]


def test_a_volume_claim_is_on_the_profiles_storage_class(dev) -> None:
    labels = {"app.kubernetes.io/name": "database"}
    assert pods.volume_claim("data", "10Gi", dev.cluster, labels) == {
        "metadata": {"name": "data", "labels": labels},
        "spec": {
            "access_modes": ["ReadWriteOnce"],
            "storage_class_name": dev.cluster.storage.default_class,
            "resources": {"requests": {"storage": "10Gi"}},
        },
    }


def test_the_small_volumes_and_the_secret_reference() -> None:
    assert pods.tmp_volume() == {"name": "tmp", "empty_dir": {"size_limit": "64Mi"}}
    assert pods.tmp_volume("run", "1Mi") == {"name": "run", "empty_dir": {"size_limit": "1Mi"}}
    assert pods.config_map_volume("config", "dev-broker") == {"name": "config", "config_map": {"name": "dev-broker"}}
    # Secret files readable by the Pod's user and group only.
    assert pods.secret_volume("tls", "dev-broker-tls") == {
        "name": "tls",
        "secret": {"secret_name": "dev-broker-tls", "default_mode": 0o440},
    }
    assert pods.secret_env("PGPASSWORD", "dev-database-role-parking", "password") == {
        "name": "PGPASSWORD",
        "value_from": {"secret_key_ref": {"name": "dev-database-role-parking", "key": "password"}},
    }
