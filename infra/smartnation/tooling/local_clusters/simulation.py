"""What a local stand-in cluster looks like: nodes, storage classes and kwok stages, from a profile.

The stand-ins behave like their real counterparts through what Kubernetes and kwok already
offer: kwok Stages play the simulated nodes' kubelets, the cloud load balancer or MetalLB (an
address on every Service of type LoadBalancer) and the ingress controller (an address in every
Ingress status). The CSI provisioner is played by a process of ours instead
(volume_provisioner.py): a real kubelet must mount the volumes, and a kwok stage can only make
objects. cert-manager's own controller issues the certificates (cert_manager.py), as at both sites.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from smartnation.settings.errors import SettingsError
from smartnation.settings.loader import read_cluster_profile
from smartnation.settings.models import ClusterProfile, Simulation
from smartnation.settings.yaml_files import read_yaml_documents
from smartnation.tooling.local_clusters.kwok_patches import real_node_component_patches
from smartnation.tooling.local_clusters.node_plan import REAL_NODE_LABEL

# kwok's own default stages for nodes and pods, copied from its module by `make bootstrap`;
# kwok drops its defaults as soon as any custom stage is configured, so we pass them again.
KWOK_DEFAULT_STAGES = (
    "node-initialize.yaml",
    "node-heartbeat-with-lease.yaml",
    "pod-ready.yaml",
    "pod-complete.yaml",
    "pod-delete.yaml",
)


class ClusterError(RuntimeError):
    """A local stand-in cannot be made or started; the message says what to do."""


@dataclass(frozen=True)
class LocalCluster:
    """A cluster profile `make clusters` stands in for: the validated profile and its file.

    Only a view: the profile is read by the settings loader like every other, and this adds
    the file (for messages) and the guarantee that the profile has a ``simulation`` block.
    """

    profile: ClusterProfile
    source: Path

    def __post_init__(self) -> None:
        if self.profile.simulation is None:
            raise SettingsError(
                str(self.source), "simulation", "required key is missing (needed to simulate this cluster locally)"
            )

    @classmethod
    def read(cls, profile_file: Path) -> LocalCluster:
        """The stand-in of the profile in ``profile_file``; SettingsError names the file and key."""
        return cls(read_cluster_profile(profile_file, str(profile_file)), profile_file)

    @property
    def name(self) -> str:
        return self.profile.name

    @property
    def context(self) -> str:
        return self.profile.context

    @property
    def simulation(self) -> Simulation:
        assert self.profile.simulation is not None  # checked in __post_init__
        return self.profile.simulation


def nodes(cluster: LocalCluster) -> list[dict]:
    """kwok-managed Node objects: every pool spread round-robin over the zones."""
    out = []
    profile = cluster.profile
    for pool in profile.node_pools:
        for i in range(pool.count):
            zone = profile.zones[i % len(profile.zones)]
            name = f"{cluster.name}-{pool.name}-{i}"
            capacity = {"cpu": pool.cpu, "memory": pool.memory, "pods": str(pool.pods), "ephemeral-storage": "200Gi"}
            out.append(
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {
                        "name": name,
                        # kwokctl's kwok controller manages nodes carrying this annotation.
                        "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
                        "labels": {
                            "kubernetes.io/hostname": name,
                            "kubernetes.io/os": "linux",
                            "kubernetes.io/arch": "amd64",
                            "node.kubernetes.io/instance-type": f"{pool.name}.{pool.cpu}c{pool.memory}",
                            "topology.kubernetes.io/region": profile.site.region,
                            "topology.kubernetes.io/zone": zone,
                            "type": "kwok",
                            REAL_NODE_LABEL: "simulated",
                            **pool.label,
                        },
                    },
                    "spec": {},
                    "status": {"capacity": capacity, "allocatable": capacity},
                }
            )
    return out


def storage_classes(cluster: LocalCluster) -> list[dict]:
    storage = cluster.profile.storage
    return [
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {
                "name": sc.name,
                "annotations": {
                    "storageclass.kubernetes.io/is-default-class": str(sc.name == storage.default_class).lower()
                },
            },
            "provisioner": sc.provisioner,
            "parameters": dict(sc.parameters),
            "reclaimPolicy": sc.reclaim_policy,
            "volumeBindingMode": sc.binding_mode,
            "allowVolumeExpansion": True,
        }
        for sc in storage.classes
    ]


def ingress_class(cluster: LocalCluster) -> dict:
    name = cluster.profile.ingress.ingress_class
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": {
            "name": name,
            "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"},
        },
        "spec": {"controller": f"smartnation.local/{name}-simulated"},
    }


def _stage(name: str, kind: str, api_group: str, expressions: list[str], steps: list[dict]) -> dict:
    return {
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "Stage",
        "metadata": {"name": name},
        "spec": {
            "resourceRef": {"apiGroup": api_group, "kind": kind},
            "selector": {"matchExpressions": [{"cel": {"expression": e}} for e in expressions]},
            "steps": steps,
        },
    }


def network_stages(cluster: LocalCluster) -> list[dict]:
    """Addresses for LoadBalancer Services (ELB or MetalLB) and Ingresses (the ingress controller)."""
    prefix = ".".join(str(cluster.simulation.load_balancer_pool.network_address).split(".")[:3])
    return [
        _stage(
            "smartnation-service-load-balancer",
            "Service",
            "v1",
            [
                "self.spec.type == 'LoadBalancer'",
                "!has(self.metadata.deletionTimestamp)",
                "!has(self.status.loadBalancer.ingress)",
            ],
            [
                {
                    "patch": {
                        "root": "status",
                        "subresource": "status",
                        # One address per Service from the pool: the Service's own cluster IP's
                        # last octet, unique within the /24 service range kwokctl configures.
                        "template": "loadBalancer:\n  ingress:\n"
                        f'  - ip: "{prefix}.{{{{ last (splitList "." .spec.clusterIP) }}}}"\n'
                        "    ipMode: VIP\n",
                    }
                }
            ],
        ),
        _stage(
            "smartnation-ingress-address",
            "Ingress",
            "networking.k8s.io/v1",
            [
                f"self.spec.ingressClassName == '{cluster.profile.ingress.ingress_class}'",
                "!has(self.metadata.deletionTimestamp)",
                "!has(self.status.loadBalancer.ingress)",
            ],
            [
                {
                    "patch": {
                        "root": "status",
                        "subresource": "status",
                        "template": f'loadBalancer:\n  ingress:\n  - ip: "{cluster.simulation.ingress_address}"\n',
                    }
                }
            ],
        ),
    ]


def kwok_stage_documents(cluster: LocalCluster, kwok_stage_dir: Path) -> list[dict]:
    docs: list[dict] = []
    for name in KWOK_DEFAULT_STAGES:
        path = kwok_stage_dir / name
        if not path.is_file():
            raise ClusterError(f"{path} is missing: run `make bootstrap` (it copies kwok's default stages)")
        docs.extend(read_yaml_documents(path))
    return docs + network_stages(cluster)


def kwokctl_configuration(cluster: LocalCluster, kube_version: str, pki_dir: Path) -> dict:
    """kwokctl's configuration; ``pki_dir`` is kwokctl's <cluster>/pki (the patches for real nodes
    name the certificates it makes there)."""
    return {
        "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
        "kind": "KwokctlConfiguration",
        "options": {
            "runtime": "binary",
            "kubeVersion": f"v{kube_version}",
            "kubeApiserverPort": cluster.simulation.apiserver_port,
            # Every component listens on loopback only.
            "bindAddress": "127.0.0.1",
            # Pod Security admission and RBAC as on the real clusters.
            "kubeAdmission": True,
            "kubeAuthorization": True,
            "nodeLeaseDurationSeconds": 40,
            # Stages live in the cluster as objects, so `make clusters` can update them on a
            # cluster that keeps its data, instead of only at creation.
            "enableCRDs": ["Stage"],
        },
        "componentsPatches": real_node_component_patches(pki_dir),
    }
