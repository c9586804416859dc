"""What a local stand-in cluster looks like: nodes, storage classes and kwok stages, from a profile.

The stand-ins behave like their real counterparts only through what Kubernetes and kwok already
offer: kwok Stages play the kubelets, the CSI provisioner (a PV per claim, like EVS or Ceph), the
cloud load balancer or MetalLB (an address on every Service of type LoadBalancer) and the ingress
controller (an address in every Ingress status). No controller of our own runs.
"""

from __future__ import annotations

import base64
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

# kwok's own default stages for nodes and pods, copied from its module by `make bootstrap`;
# kwok drops its defaults as soon as any custom stage is configured, so we pass them again.
KWOK_DEFAULT_STAGES = (
    "node-initialize.yaml",
    "node-heartbeat-with-lease.yaml",
    "pod-ready.yaml",
    "pod-complete.yaml",
    "pod-delete.yaml",
)


class ProfileError(ValueError):
    """A cluster profile lacks what the simulation needs; the message names the file and key."""


@dataclass(frozen=True)
class StorageClassSpec:
    name: str
    provisioner: str
    parameters: dict[str, str]
    binding_mode: str
    reclaim_policy: str


@dataclass(frozen=True)
class NodePool:
    name: str
    label: dict[str, str]
    count: int
    cpu: str
    memory: str
    pods: int


@dataclass(frozen=True)
class SimulatedCluster:
    """The parts of a cluster profile that the local stand-in reproduces."""

    name: str
    context: str
    source: Path
    zones: tuple[str, ...]
    region: str
    node_pools: tuple[NodePool, ...]
    storage_classes: tuple[StorageClassSpec, ...]
    default_storage_class: str
    ingress_class: str
    tls_issuer: str
    apiserver_port: int
    load_balancer_pool: ipaddress.IPv4Network
    ingress_address: str


def _need(data: dict, path: str, source: Path) -> Any:
    node: Any = data
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ProfileError(f"{source}: key '{path}' is missing (needed to simulate this cluster locally)")
        node = node[part]
    return node


def load_simulation(profile_file: Path) -> SimulatedCluster:
    try:
        data = yaml.safe_load(profile_file.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ProfileError(f"{profile_file}: cannot read: {exc}") from exc
    if not isinstance(data, dict):
        raise ProfileError(f"{profile_file}: expected a mapping at the top level")
    pools = tuple(
        NodePool(
            name=str(_need(p, "name", profile_file)),
            label={str(k): str(v) for k, v in _need(p, "label", profile_file).items()},
            count=int(_need(p, "count", profile_file)),
            cpu=str(_need(p, "cpu", profile_file)),
            memory=str(_need(p, "memory", profile_file)),
            pods=int(_need(p, "pods", profile_file)),
        )
        for p in _need(data, "node_pools", profile_file)
    )
    classes = tuple(
        StorageClassSpec(
            name=str(c["name"]),
            provisioner=str(c["provisioner"]),
            parameters={str(k): str(v) for k, v in (c.get("parameters") or {}).items()},
            binding_mode=str(c.get("binding_mode", "Immediate")),
            reclaim_policy=str(c.get("reclaim_policy", "Delete")),
        )
        for c in _need(data, "storage.classes", profile_file)
    )
    try:
        pool = ipaddress.IPv4Network(str(_need(data, "simulation.load_balancer_pool", profile_file)))
    except ValueError as exc:
        raise ProfileError(f"{profile_file}: key 'simulation.load_balancer_pool': {exc}") from exc
    if pool.prefixlen != 24:
        raise ProfileError(f"{profile_file}: key 'simulation.load_balancer_pool' must be a /24, got {pool}")
    return SimulatedCluster(
        name=str(_need(data, "name", profile_file)),
        context=str(_need(data, "context", profile_file)),
        source=profile_file,
        zones=tuple(str(z) for z in _need(data, "zones", profile_file)),
        region=str(_need(data, "site.region", profile_file)),
        node_pools=pools,
        storage_classes=classes,
        default_storage_class=str(_need(data, "storage.default_class", profile_file)),
        ingress_class=str(_need(data, "ingress.class", profile_file)),
        tls_issuer=str(_need(data, "ingress.tls_issuer", profile_file)),
        apiserver_port=int(_need(data, "simulation.apiserver_port", profile_file)),
        load_balancer_pool=pool,
        ingress_address=str(_need(data, "simulation.ingress_address", profile_file)),
    )


def nodes(cluster: SimulatedCluster) -> list[dict]:
    """kwok-managed Node objects: every pool spread round-robin over the zones."""
    out = []
    for pool in cluster.node_pools:
        for i in range(pool.count):
            zone = cluster.zones[i % len(cluster.zones)]
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
                            "topology.kubernetes.io/region": cluster.region,
                            "topology.kubernetes.io/zone": zone,
                            "type": "kwok",
                            **pool.label,
                        },
                    },
                    "spec": {},
                    "status": {"capacity": capacity, "allocatable": capacity},
                }
            )
    return out


def storage_classes(cluster: SimulatedCluster) -> list[dict]:
    return [
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {
                "name": sc.name,
                "annotations": {
                    "storageclass.kubernetes.io/is-default-class": str(sc.name == cluster.default_storage_class).lower()
                },
            },
            "provisioner": sc.provisioner,
            "parameters": sc.parameters,
            "reclaimPolicy": sc.reclaim_policy,
            "volumeBindingMode": sc.binding_mode,
            "allowVolumeExpansion": True,
        }
        for sc in cluster.storage_classes
    ]


def ingress_class(cluster: SimulatedCluster) -> dict:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": {
            "name": cluster.ingress_class,
            "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"},
        },
        "spec": {"controller": f"smartnation.local/{cluster.ingress_class}-simulated"},
    }


def _cel_in(field: str, values: list[str]) -> str:
    quoted = ", ".join(f"'{v}'" for v in values)
    return f"{field} in [{quoted}]"


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


def volume_stages(cluster: SimulatedCluster) -> list[dict]:
    """A PV per claim on our classes, deleted with its claim when the class says Delete: the
    everest or Ceph CSI provisioner's part; kube-controller-manager's PV controller binds."""
    classes = [sc.name for sc in cluster.storage_classes]
    drivers = {
        sc.name: sc.parameters.get("csi.storage.k8s.io/csi-driver-name", sc.provisioner)
        for sc in cluster.storage_classes
    }
    reclaim = {sc.name: sc.reclaim_policy for sc in cluster.storage_classes}
    driver_lookup = " ".join(f'"{k}" "{v}"' for k, v in drivers.items())
    reclaim_lookup = " ".join(f'"{k}" "{v}"' for k, v in reclaim.items())
    on_our_classes = _cel_in("self.spec.storageClassName", classes)
    pv_template = (
        "apiVersion: v1\n"
        "kind: PersistentVolume\n"
        "metadata:\n"
        "  name: pvc-{{ .metadata.uid }}\n"
        "  annotations:\n"
        "    pv.kubernetes.io/provisioned-by: {{ .spec.storageClassName | Quote }}\n"
        "spec:\n"
        # YAML's second argument indents every line by that many pairs of spaces, starting
        # with a line break: 2 puts the values under keys that sit at column 2.
        "  accessModes:\n"
        "  {{ YAML .spec.accessModes 2 }}\n"
        "  capacity:\n"
        "  {{ YAML .spec.resources.requests 2 }}\n"
        f"  persistentVolumeReclaimPolicy: {{{{ get (dict {reclaim_lookup}) .spec.storageClassName | Quote }}}}\n"
        "  storageClassName: {{ .spec.storageClassName | Quote }}\n"
        '  volumeMode: {{ default "Filesystem" .spec.volumeMode | Quote }}\n'
        "  claimRef:\n"
        "    apiVersion: v1\n"
        "    kind: PersistentVolumeClaim\n"
        "    name: {{ .metadata.name | Quote }}\n"
        "    namespace: {{ .metadata.namespace | Quote }}\n"
        "    resourceVersion: {{ .metadata.resourceVersion | Quote }}\n"
        "    uid: {{ .metadata.uid | Quote }}\n"
        "  csi:\n"
        f"    driver: {{{{ get (dict {driver_lookup}) .spec.storageClassName | Quote }}}}\n"
        "    volumeHandle: pvc-{{ .metadata.uid }}\n"
    )
    return [
        _stage(
            "smartnation-pvc-provision",
            "PersistentVolumeClaim",
            "v1",
            [
                on_our_classes,
                "!has(self.metadata.deletionTimestamp)",
                "!has(self.spec.volumeName)",
                "self.status.phase != 'Bound'",
            ],
            [
                # Only the provisioner's part: a volume pre-bound to the claim. The real PV
                # controller then binds the claim, as with a CSI provisioner; setting the claim's
                # volumeName here too raced with it and left claims "Lost" for a resync period.
                {"apply": {"template": pv_template}},
            ],
        ),
        _stage(
            "smartnation-pv-delete",
            "PersistentVolume",
            "v1",
            [
                on_our_classes,
                "!has(self.metadata.deletionTimestamp)",
                "self.spec.persistentVolumeReclaimPolicy == 'Delete'",
                "self.status.phase == 'Released'",
            ],
            [{"delete": True}],
        ),
    ]


def network_stages(cluster: SimulatedCluster) -> list[dict]:
    """Addresses for LoadBalancer Services (ELB or MetalLB) and Ingresses (the ingress controller)."""
    prefix = ".".join(str(cluster.load_balancer_pool.network_address).split(".")[:3])
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
                f"self.spec.ingressClassName == '{cluster.ingress_class}'",
                "!has(self.metadata.deletionTimestamp)",
                "!has(self.status.loadBalancer.ingress)",
            ],
            [
                {
                    "patch": {
                        "root": "status",
                        "subresource": "status",
                        "template": f'loadBalancer:\n  ingress:\n  - ip: "{cluster.ingress_address}"\n',
                    }
                }
            ],
        ),
    ]


def _crd(kind: str, plural: str, scope: str) -> dict:
    """A cert-manager CRD as the cluster serves it; the schema is left open (the real one is
    cert-manager's to validate), the status subresource is real."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.cert-manager.io"},
        "spec": {
            "group": "cert-manager.io",
            "names": {"kind": kind, "listKind": f"{kind}List", "plural": plural, "singular": kind.lower()},
            "scope": scope,
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                }
            ],
        },
    }


def cert_manager_crds() -> list[dict]:
    """Both sites run cert-manager; the stand-ins serve its API so Certificates can be created."""
    return [_crd("Certificate", "certificates", "Namespaced"), _crd("ClusterIssuer", "clusterissuers", "Cluster")]


def cluster_issuer(cluster: SimulatedCluster) -> dict:
    return {
        "apiVersion": "cert-manager.io/v1",
        "kind": "ClusterIssuer",
        "metadata": {"name": cluster.tls_issuer},
        "spec": {"selfSigned": {}},
    }


def certificate_stages(cluster: SimulatedCluster) -> list[dict]:
    """The issuer's part: a key pair Secret for every Certificate naming the profile's issuer,
    then the Ready condition. The data is a marked placeholder: kwok's pods never read it."""
    placeholder = base64.b64encode(f"placeholder issued by the local stand-in of {cluster.tls_issuer}".encode())
    return [
        _stage(
            "smartnation-certificate-issue",
            "Certificate",
            "cert-manager.io/v1",
            [
                f"self.spec.issuerRef.name == '{cluster.tls_issuer}'",
                "!has(self.metadata.deletionTimestamp)",
                # A new custom resource has no status at all until someone writes one.
                "!has(self.status) || !has(self.status.conditions)",
            ],
            [
                {
                    "apply": {
                        "template": "apiVersion: v1\n"
                        "kind: Secret\n"
                        "type: kubernetes.io/tls\n"
                        "metadata:\n"
                        "  name: {{ .spec.secretName | Quote }}\n"
                        "  namespace: {{ .metadata.namespace | Quote }}\n"
                        "  annotations:\n"
                        "    cert-manager.io/certificate-name: {{ .metadata.name | Quote }}\n"
                        f"    cert-manager.io/issuer-name: {cluster.tls_issuer}\n"
                        "data:\n"
                        f"  tls.crt: {placeholder.decode()}\n"
                        f"  tls.key: {placeholder.decode()}\n"
                    }
                },
                {
                    "patch": {
                        "root": "status",
                        "subresource": "status",
                        "template": "conditions:\n"
                        "- type: Ready\n"
                        '  status: "True"\n'
                        "  reason: Ready\n"
                        "  message: Certificate is up to date and has not expired\n"
                        "  lastTransitionTime: {{ Now | Quote }}\n",
                    }
                },
            ],
        )
    ]


def kwok_stage_documents(cluster: SimulatedCluster, kwok_stage_dir: Path) -> list[dict]:
    docs: list[dict] = []
    for name in KWOK_DEFAULT_STAGES:
        path = kwok_stage_dir / name
        if not path.is_file():
            raise ProfileError(f"{path} is missing: run `make bootstrap` (it copies kwok's default stages)")
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs + volume_stages(cluster) + network_stages(cluster) + certificate_stages(cluster)


def kwokctl_configuration(cluster: SimulatedCluster, kube_version: str) -> dict:
    return {
        "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
        "kind": "KwokctlConfiguration",
        "options": {
            "runtime": "binary",
            "kubeVersion": f"v{kube_version}",
            "kubeApiserverPort": cluster.apiserver_port,
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
    }
