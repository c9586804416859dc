"""What the local volume provisioner decides: which claims get a volume, what that volume is,
and which volumes go. Pure functions over the API's objects (plain dicts), so each decision is
unit-tested without a cluster; volume_provisioner.py runs them against the API.

A volume is a PersistentVolume of type ``local`` whose path is a directory of this host, under
the cluster's real-nodes folder. See volume_provisioner.py for why ``local`` and why a directory
here stands for the cloud's network disk.

Stdlib only: the provisioner is a long-running process and should stay small.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

NODE_KIND_LABEL = "smartnation.mc/node-kind"
"""Every node of a local cluster carries it (``real`` or ``simulated``); node_plan.REAL_NODE_LABEL."""
HOSTNAME_LABEL = "kubernetes.io/hostname"
SELECTED_NODE = "volume.kubernetes.io/selected-node"
"""Set on a claim by the scheduler once it placed the claim's first Pod (WaitForFirstConsumer)."""
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
"""Tells kube-controller-manager's PV controller that an external provisioner owns the volume,
so it leaves a Released one to us instead of looking for an in-tree deleter."""
OWNER_LABEL = "smartnation.mc/local-volume-provisioner"
"""On every PersistentVolume this provisioner made; its value is the cluster's name."""
NO_PROVISIONER = "kubernetes.io/no-provisioner"
"""A class without dynamic provisioning: the site pre-creates its volumes (local disks)."""


@dataclass(frozen=True)
class ClassPolicy:
    """What the provisioner needs of one storage class of the profile."""

    name: str
    provisioner: str
    binding_mode: str
    """``Immediate`` or ``WaitForFirstConsumer``."""
    reclaim_policy: str
    """``Delete`` or ``Retain``."""

    @property
    def dynamic(self) -> bool:
        """Whether claims of the class get a volume made for them (else they bind to a pre-made one)."""
        return self.provisioner != NO_PROVISIONER

    @property
    def waits_for_consumer(self) -> bool:
        return self.binding_mode == "WaitForFirstConsumer"


@dataclass(frozen=True)
class ProvisionerConfig:
    """Everything the provisioner process reads at start (written by volume_provisioner_service.py)."""

    cluster: str
    server: str
    """The API server's URL (https://127.0.0.1:PORT)."""
    ca_file: str
    cert_file: str
    key_file: str
    """The cluster's admin client certificate and key (kwokctl's pki)."""
    volumes_dir: str
    """Where the volumes' directories live; nothing outside it is ever removed."""
    classes: tuple[ClassPolicy, ...]
    static_size: str
    """Size of each pre-made volume of a class without dynamic provisioning (profile volume_pool.size)."""
    static_count: int
    """How many of those the site has per class (profile volume_pool.count)."""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ProvisionerConfig:
        data = json.loads(text)
        data["classes"] = tuple(ClassPolicy(**c) for c in data["classes"])
        return cls(**data)

    def policy(self, name: str | None) -> ClassPolicy | None:
        return next((c for c in self.classes if c.name == name), None)


@dataclass(frozen=True)
class CreateVolume:
    """Make the directory, then the PersistentVolume."""

    volume: dict
    directory: Path
    reason: str


@dataclass(frozen=True)
class DeleteVolume:
    """Remove the directory (when there is one of ours), then the PersistentVolume."""

    name: str
    uid: str
    directory: Path | None
    reason: str


Action = CreateVolume | DeleteVolume


def _meta(obj: Mapping) -> Mapping:
    return obj.get("metadata") or {}


def _spec(obj: Mapping) -> Mapping:
    return obj.get("spec") or {}


def claim_key(claim: Mapping) -> str:
    return f"{_meta(claim).get('namespace')}/{_meta(claim).get('name')}"


def volume_name(claim: Mapping) -> str:
    """The name of a claim's volume, as the CSI external-provisioner names it: one per claim UID."""
    return f"pvc-{_meta(claim)['uid']}"


def provision_node(claim: Mapping, config: ProvisionerConfig) -> tuple[bool, str | None, str]:
    """Whether ``claim`` gets a volume now: (yes, the node it is for or None, why).

    Like the CSI external-provisioner: claims of our dynamic classes only, not being deleted, not
    yet bound or pointed at a volume; for WaitForFirstConsumer only once the scheduler chose the
    node. Claims with a label selector or block volume mode are refused (a dynamic provisioner
    cannot honour a selector, and a directory is no block device); ``why`` says so for the log.
    """
    policy = config.policy(_spec(claim).get("storageClassName"))
    if policy is None:
        return False, None, "not one of the profile's storage classes"
    if not policy.dynamic:
        return False, None, f"class {policy.name} has no dynamic provisioning (pre-made volumes)"
    if _meta(claim).get("deletionTimestamp"):
        return False, None, "being deleted"
    if _spec(claim).get("volumeName") or (claim.get("status") or {}).get("phase") == "Bound":
        return False, None, "already has a volume"
    if _spec(claim).get("selector"):
        return False, None, "refused: a dynamically provisioned claim cannot have a selector"
    if _spec(claim).get("volumeMode", "Filesystem") != "Filesystem":
        return False, None, "refused: only volumeMode Filesystem is provisioned locally"
    if not (((_spec(claim).get("resources") or {}).get("requests") or {}).get("storage")):
        return False, None, "refused: no resources.requests.storage"
    if policy.waits_for_consumer:
        node = (_meta(claim).get("annotations") or {}).get(SELECTED_NODE)
        if not node:
            return False, None, "waiting for the first consumer (no selected node yet)"
        return True, node, f"scheduler selected {node}"
    return True, None, "immediate binding"


def node_affinity(node: str | None) -> dict:
    """Any node of the cluster (every real node reaches this host's directories), or the node the
    scheduler picked for a WaitForFirstConsumer claim."""
    expression = (
        {"key": HOSTNAME_LABEL, "operator": "In", "values": [node]}
        if node
        else {"key": NODE_KIND_LABEL, "operator": "Exists"}
    )
    return {"required": {"nodeSelectorTerms": [{"matchExpressions": [expression]}]}}


def claim_volume(claim: Mapping, policy: ClassPolicy, config: ProvisionerConfig, node: str | None) -> dict:
    """The PersistentVolume for ``claim``, pre-bound to it (claimRef with the UID): the PV
    controller then binds the claim, as with any external provisioner."""
    meta, spec = _meta(claim), _spec(claim)
    name = volume_name(claim)
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": name,
            "labels": {OWNER_LABEL: config.cluster},
            "annotations": {PROVISIONED_BY: policy.provisioner},
        },
        "spec": {
            "accessModes": list(spec.get("accessModes") or ["ReadWriteOnce"]),
            "capacity": {"storage": spec["resources"]["requests"]["storage"]},
            "persistentVolumeReclaimPolicy": policy.reclaim_policy,
            "storageClassName": policy.name,
            "volumeMode": "Filesystem",
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": meta["namespace"],
                "name": meta["name"],
                "uid": meta["uid"],
            },
            "local": {"path": str(Path(config.volumes_dir) / name)},
            "nodeAffinity": node_affinity(node),
        },
    }


def static_volume(name: str, policy: ClassPolicy, config: ProvisionerConfig) -> dict:
    """A pre-made volume of a class without dynamic provisioning (a site's local disk, as
    local-static-provisioner publishes them): unbound, any node, the scheduler picks it."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name, "labels": {OWNER_LABEL: config.cluster}},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "capacity": {"storage": config.static_size},
            "persistentVolumeReclaimPolicy": policy.reclaim_policy,
            "storageClassName": policy.name,
            "volumeMode": "Filesystem",
            "local": {"path": str(Path(config.volumes_dir) / name)},
            "nodeAffinity": node_affinity(None),
        },
    }


def ours(volume: Mapping, config: ProvisionerConfig) -> bool:
    """Made by this provisioner for this cluster, or by the kwok stage it replaces (a CSI volume
    of one of our classes whose handle is its own name), which nobody else would delete."""
    if (_meta(volume).get("labels") or {}).get(OWNER_LABEL) == config.cluster:
        return True
    csi = _spec(volume).get("csi") or {}
    return config.policy(_spec(volume).get("storageClassName")) is not None and csi.get("volumeHandle") == _meta(
        volume
    ).get("name")


def directory_of(volume: Mapping, config: ProvisionerConfig) -> Path | None:
    """The volume's directory if it is one of ours: directly under the volumes folder and named
    after the volume. Anything else is never removed, whatever the object says."""
    path = (_spec(volume).get("local") or {}).get("path")
    if not path:
        return None
    candidate = Path(path)
    if candidate.parent != Path(config.volumes_dir) or candidate.name != _meta(volume).get("name"):
        return None
    return candidate


def to_delete(volume: Mapping, config: ProvisionerConfig) -> bool:
    """A volume of ours whose claim is gone and whose policy says Delete (the PV controller marks
    such a volume Released, or Failed when it finds no deleter for a pre-made one)."""
    return (
        ours(volume, config)
        and not _meta(volume).get("deletionTimestamp")
        and _spec(volume).get("persistentVolumeReclaimPolicy") == "Delete"
        and (volume.get("status") or {}).get("phase") in ("Released", "Failed")
    )


def spare_needed(volumes: Iterable[Mapping], policy: ClassPolicy, config: ProvisionerConfig) -> bool:
    """Whether a class without dynamic provisioning needs one more pre-made volume: none of ours
    is free (unclaimed, not going), and the site has disks left (volume_pool.count)."""
    mine = [v for v in volumes if ours(v, config) and _spec(v).get("storageClassName") == policy.name]
    free = [v for v in mine if not _spec(v).get("claimRef") and not _meta(v).get("deletionTimestamp")]
    return not free and len(mine) < config.static_count


def plan(claims: Iterable[Mapping], volumes: Iterable[Mapping], config: ProvisionerConfig, new_name) -> list[Action]:
    """Every action the current claims and volumes call for. ``new_name(class)`` names a new
    pre-made volume (unique, so a retained directory is never handed to another claim)."""
    volumes = list(volumes)
    existing = {_meta(v).get("name") for v in volumes}
    actions: list[Action] = []
    for claim in claims:
        yes, node, why = provision_node(claim, config)
        if not yes or volume_name(claim) in existing:
            continue
        policy = config.policy(_spec(claim).get("storageClassName"))
        assert policy is not None  # provision_node said yes
        volume = claim_volume(claim, policy, config, node)
        actions.append(CreateVolume(volume, Path(volume["spec"]["local"]["path"]), f"{claim_key(claim)}: {why}"))
    for policy in config.classes:
        if not policy.dynamic and spare_needed(volumes, policy, config):
            volume = static_volume(new_name(policy.name), policy, config)
            actions.append(
                CreateVolume(volume, Path(volume["spec"]["local"]["path"]), f"no free pre-made {policy.name} volume")
            )
    for volume in volumes:
        if to_delete(volume, config):
            meta = _meta(volume)
            claim = (_spec(volume).get("claimRef") or {}).get("name", "?")
            actions.append(
                DeleteVolume(
                    meta["name"],
                    meta.get("uid", ""),
                    directory_of(volume, config),
                    f"{(volume.get('status') or {}).get('phase')} (claim {claim} gone), reclaim policy Delete",
                )
            )
    return actions
