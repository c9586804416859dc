"""Where one environment's components go: ``Placement``, built once per cluster in city_platform.py.

Every component needs the same four facts (the environment, its namespace, the cluster profile
and whether its state is protected); they travel together so no component is told them one by
one, and none can be told a different protect flag than its neighbours.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import pulumi

from smartnation.program import naming
from smartnation.settings.models import REAL_NODE_SELECTOR, ClusterProfile


@dataclass(frozen=True)
class Placement:
    """One environment on one cluster, as every component sees it."""

    environment: str
    """Environment name; Kubernetes names and labels derive from it (naming.py)."""
    cluster: ClusterProfile
    """Target cluster: registry, storage class, node pools, load balancer, ingress and DNS zone."""
    protect_state: bool
    """Protect what holds data (the namespace, the StatefulSets) from deletion: production."""
    namespace: pulumi.Input[str]
    """Namespace to deploy into. Guardrails creates it; the other components get its output
    (``inside``), so each of their objects waits for the namespace to exist."""

    @classmethod
    def of(cls, environment: str, cluster: ClusterProfile, protect_state: bool) -> Placement:
        """The placement before the namespace exists: its name only, for Guardrails to create."""
        return cls(environment, cluster, protect_state, naming.namespace(environment))

    def inside(self, namespace: pulumi.Input[str]) -> Placement:
        """The same placement, in the namespace Guardrails created (its output, not the name)."""
        return dataclasses.replace(self, namespace=namespace)

    def node_selector(self, kind: Literal["stateless", "stateful"]) -> dict[str, str]:
        """Where this environment's Pods of ``kind`` run: the profile's pool for the kind, or, on a
        local stand-in whose local section runs this environment on its real nodes, those nodes."""
        if self.cluster.simulation is not None and self.cluster.simulation.runs_on_real_nodes(self.environment):
            return dict(REAL_NODE_SELECTOR)
        return dict(getattr(self.cluster.workload_node_selector, kind))

    def names(self, role: str) -> naming.Names:
        """Names and labels of ``role`` (``naming.BROKER``...) in this environment."""
        return naming.names(self.environment, role)
