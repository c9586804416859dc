"""Reading Kubernetes objects as the policy engine hands them over.

The engine passes a resource's inputs in Kubernetes' own (camelCase) shape, wrapped in
pulumi_policy proxies: mappings and sequences that are not `dict`/`list` and that raise
`UnknownValueError` when a value is not known yet during a preview. Everything here therefore
tests for `Mapping`/`Sequence`, never for `dict`/`list`, and lets unknowns propagate so that the
engine reports "can't run policy during preview" instead of a wrong verdict.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# Where each workload kind keeps its pod template. Patch resources (`...Patch`) are partial by
# design, so judging them as whole workloads would report fields they merely leave alone.
POD_SPEC_PATHS: dict[str, tuple[str, ...]] = {
    "kubernetes:core/v1:Pod": ("spec",),
    "kubernetes:core/v1:PodTemplate": ("template", "spec"),
    "kubernetes:core/v1:ReplicationController": ("spec", "template", "spec"),
    "kubernetes:apps/v1:Deployment": ("spec", "template", "spec"),
    "kubernetes:apps/v1:StatefulSet": ("spec", "template", "spec"),
    "kubernetes:apps/v1:DaemonSet": ("spec", "template", "spec"),
    "kubernetes:apps/v1:ReplicaSet": ("spec", "template", "spec"),
    "kubernetes:batch/v1:Job": ("spec", "template", "spec"),
    "kubernetes:batch/v1:CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
WORKLOAD_TYPES: tuple[str, ...] = tuple(POD_SPEC_PATHS)

# Workloads that keep a replica count and are meant to stay up while nodes drain.
REPLICATED_TYPES: tuple[str, ...] = ("kubernetes:apps/v1:Deployment", "kubernetes:apps/v1:StatefulSet")

CONFIG_MAP_TYPE = "kubernetes:core/v1:ConfigMap"
NAMESPACE_TYPE = "kubernetes:core/v1:Namespace"
NETWORK_POLICY_TYPE = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
PDB_TYPE = "kubernetes:policy/v1:PodDisruptionBudget"
PVC_TYPE = "kubernetes:core/v1:PersistentVolumeClaim"
PV_TYPE = "kubernetes:core/v1:PersistentVolume"
SERVICE_TYPE = "kubernetes:core/v1:Service"
STATEFULSET_TYPE = "kubernetes:apps/v1:StatefulSet"

ZONE_KEY = "topology.kubernetes.io/zone"


def dig(value: Any, *path: str | int) -> Any:
    """`value[path[0]][path[1]]...`, or None as soon as a step is missing or of the wrong shape."""
    for key in path:
        if isinstance(key, int):
            if isinstance(value, str) or not isinstance(value, Sequence) or not -len(value) <= key < len(value):
                return None
            value = value[key]
        else:
            if not isinstance(value, Mapping):
                return None
            value = value.get(key)
        if value is None:
            return None
    return value


def items(value: Any) -> list[Any]:
    """The elements of a sequence property; an absent or malformed one counts as empty."""
    if value is None or isinstance(value, str) or not isinstance(value, Sequence):
        return []
    return list(value)


def kind_of(resource_type: str) -> str:
    """`kubernetes:apps/v1:Deployment` -> `Deployment`."""
    return resource_type.rsplit(":", 1)[-1]


def pod_spec(resource_type: str, props: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The pod spec of a workload, wherever its kind nests it; None for other resources."""
    path = POD_SPEC_PATHS.get(resource_type)
    if path is None:
        return None
    spec = dig(props, *path)
    return spec if isinstance(spec, Mapping) else None


def pod_labels(resource_type: str, props: Mapping[str, Any]) -> Mapping[str, Any]:
    """Labels the workload's pods carry (from the pod template's metadata)."""
    path = POD_SPEC_PATHS.get(resource_type)
    if path is None:
        return {}
    labels = dig(props, *path[:-1], "metadata", "labels")
    return labels if isinstance(labels, Mapping) else {}


@dataclass(frozen=True)
class Container:
    """One container of a pod spec, with what the messages need to name it."""

    role: str
    """`container`, `init container` or `ephemeral container`."""
    name: str
    spec: Mapping[str, Any]

    def __str__(self) -> str:
        return f"{self.role} '{self.name}'"


def containers(spec: Mapping[str, Any]) -> Iterator[Container]:
    """Every container of a pod spec, init and ephemeral containers included."""
    for key, role in (
        ("initContainers", "init container"),
        ("containers", "container"),
        ("ephemeralContainers", "ephemeral container"),
    ):
        for index, container in enumerate(items(spec.get(key))):
            if isinstance(container, Mapping):
                name = container.get("name")
                yield Container(role, name if isinstance(name, str) and name else f"#{index}", container)


@dataclass(frozen=True)
class ImageReference:
    """An image reference split the way the container runtime reads it."""

    repository: str
    tag: str | None
    digest: str | None


def parse_image(image: str) -> ImageReference:
    """Splits `host[:port]/path[:tag][@digest]`; a colon before the last `/` is a registry port."""
    name, _, digest = image.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return ImageReference(name[:colon], name[colon + 1 :] or None, digest or None)
    return ImageReference(name, None, digest or None)


def replicas(props: Mapping[str, Any]) -> int:
    """Desired replicas; Kubernetes defaults an absent count to 1 (numbers arrive as floats)."""
    value = dig(props, "spec", "replicas")
    return 1 if value is None else int(value)


def namespace_of(metadata_namespace: Any, provider_props: Mapping[str, Any] | None) -> str:
    """The namespace a namespaced object lands in: its own, else its provider's, else `default`."""
    if isinstance(metadata_namespace, str) and metadata_namespace:
        return metadata_namespace
    provider_namespace = dig(provider_props, "namespace") if provider_props is not None else None
    if isinstance(provider_namespace, str) and provider_namespace:
        return provider_namespace
    return "default"


def selector_matches(selector: Any, labels: Mapping[str, Any]) -> bool:
    """Whether a LabelSelector selects pods with `labels`. An empty selector selects everything."""
    if not isinstance(selector, Mapping):
        return False
    for key, value in (dig(selector, "matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in items(selector.get("matchExpressions")):
        key = dig(expression, "key")
        operator = dig(expression, "operator")
        values = set(items(dig(expression, "values")))
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True
