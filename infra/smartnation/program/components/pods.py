"""Pod and container building blocks every component uses, so the hardening is written once.

Each function returns the input dicts ``pulumi_kubernetes`` accepts (snake_case keys).
"""

from __future__ import annotations

from typing import Any

import pulumi

from smartnation.settings.models import ClusterProfile, ComponentRelease, Compute, Resources

ZONE_KEY = "topology.kubernetes.io/zone"
HOSTNAME_KEY = "kubernetes.io/hostname"

# Jobs (bucket setup, backups) are short and not sized per environment; this is enough for
# mc and for pg_dumpall streaming to a file, and it counts against the namespace quota.
JOB_RESOURCES = Resources(
    requests=Compute(cpu="50m", memory="128Mi"),
    limits=Compute(cpu="1", memory="1Gi"),
)


def image(cluster: ClusterProfile, release: ComponentRelease) -> str:
    """``<cluster registry>/<repository>@<digest>``: every image comes from the cluster's registry,
    named by the digest the build made (environments/images.lock.yaml), so what runs is exactly
    what was built and tested, whatever a tag points at later."""
    if not release.digest:
        raise ValueError(f"{release.repository}:{release.tag} has no digest: load settings with the loader")
    return f"{cluster.registry.default}/{release.repository}@{release.digest}"


def container_security_context(*, read_only_root: bool = True) -> dict[str, Any]:
    """Restricted Pod Security profile for one container."""
    return {
        "run_as_non_root": True,
        "allow_privilege_escalation": False,
        "privileged": False,
        "read_only_root_filesystem": read_only_root,
        "capabilities": {"drop": ["ALL"]},
        "seccomp_profile": {"type": "RuntimeDefault"},
    }


def pod_security_context(uid: int, gid: int | None = None) -> dict[str, Any]:
    """Pod-level identity: a fixed non-root UID, and fsGroup so mounted volumes are writable."""
    group = gid if gid is not None else uid
    return {
        "run_as_non_root": True,
        "run_as_user": uid,
        "run_as_group": group,
        "fs_group": group,
        "fs_group_change_policy": "OnRootMismatch",
        "seccomp_profile": {"type": "RuntimeDefault"},
    }


def container(name: str, image: str, resources_spec: Resources, **fields: Any) -> dict[str, Any]:
    """A container under the restricted profile, with requests and limits: ``fields`` add the rest."""
    return {
        "name": name,
        "image": image,
        "resources": resources(resources_spec),
        "security_context": container_security_context(),
        **fields,
    }


def resources(spec: Resources) -> dict[str, Any]:
    """Requests and limits, both always set."""
    return {
        "requests": {"cpu": spec.requests.cpu, "memory": spec.requests.memory},
        "limits": {"cpu": spec.limits.cpu, "memory": spec.limits.memory},
    }


def spread(selector: dict[str, str], replicas: int) -> list[dict[str, Any]]:
    """Spread replicas across zones, then across nodes.

    Zones are a hard constraint once there are several replicas: the point of N pods is
    that losing a zone loses at most a third of them. A single replica may land anywhere.
    """
    return [
        {
            "max_skew": 1,
            "topology_key": ZONE_KEY,
            "when_unsatisfiable": "DoNotSchedule" if replicas > 1 else "ScheduleAnyway",
            "label_selector": {"match_labels": selector},
        },
        {
            "max_skew": 1,
            "topology_key": HOSTNAME_KEY,
            "when_unsatisfiable": "ScheduleAnyway",
            "label_selector": {"match_labels": selector},
        },
    ]


def volume_claim(name: str, size: str, cluster: ClusterProfile, labels: dict[str, str]) -> dict[str, Any]:
    """A StatefulSet volumeClaimTemplate on the profile's storage class."""
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "access_modes": ["ReadWriteOnce"],
            "storage_class_name": cluster.storage.default_class,
            "resources": {"requests": {"storage": size}},
        },
    }


def tmp_volume(name: str = "tmp", size: str = "64Mi") -> dict[str, Any]:
    """A small emptyDir for the scratch paths a read-only root filesystem lacks."""
    return {"name": name, "empty_dir": {"size_limit": size}}


def config_map_volume(name: str, config_map: pulumi.Input[str]) -> dict[str, Any]:
    """A volume holding the files of ConfigMap ``config_map``."""
    return {"name": name, "config_map": {"name": config_map}}


def secret_volume(name: str, secret: pulumi.Input[str]) -> dict[str, Any]:
    """A volume holding the keys of Secret ``secret``, readable by the pod's user and group only."""
    return {"name": name, "secret": {"secret_name": secret, "default_mode": 0o440}}


def secret_env(name: str, secret: str, key: str) -> dict[str, Any]:
    """An environment variable read from a Secret key (never a literal value)."""
    return {"name": name, "value_from": {"secret_key_ref": {"name": secret, "key": key}}}
