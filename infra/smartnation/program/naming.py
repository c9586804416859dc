"""Kubernetes names and labels, derived from the environment and a role in one place.

Components, NetworkPolicies and the chart values all ask this module, so a Service name,
a Secret name or a pod selector is never spelled twice.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

PART_OF = "smartnation"
ENVIRONMENT_LABEL = "smartnation.mc/environment"
# Pods of every city API carry this label (set through the chart's podLabels) so one
# NetworkPolicy peer matches all APIs whatever their release name.
TIER_LABEL = "smartnation.mc/tier"
API_TIER = "city-api"

# Roles: the `app.kubernetes.io/name` of each workload.
BROKER = "broker"
DATABASE = "database"
OBJECT_STORAGE = "object-storage"

# Components: the `app.kubernetes.io/component` within a role.
SERVER = "server"
PRIMARY = "primary"
REPLICA = "replica"
BACKUP = "backup"
SETUP = "setup"


def namespace(environment: str) -> str:
    """The namespace of an environment: ``<project>-<env>`` (``smartnation-staging``).

    The Pulumi project name is part of it so that a second copy of the project (the
    integration tests run one, named ``smartnation-it``) never shares a namespace with the
    environments deployed from the real project on the same cluster."""
    return f"{pulumi.get_project()}-{environment}"


@dataclass(frozen=True)
class Names:
    """Names and labels of one role (``broker``, ``database``...) in one environment."""

    environment: str
    role: str

    @property
    def namespace(self) -> str:
        return namespace(self.environment)

    @property
    def name(self) -> str:
        """Base Kubernetes name, ``<env>-<role>`` (``staging-broker``)."""
        return f"{self.environment}-{self.role}"

    def child(self, suffix: str) -> str:
        """``<env>-<role>-<suffix>`` (``staging-broker-headless``)."""
        return f"{self.name}-{suffix}"

    def host(self, service: str, port: int | None = None) -> str:
        """Fully qualified in-cluster DNS name of a Service of this role."""
        fqdn = f"{service}.{self.namespace}.svc.cluster.local"
        return f"{fqdn}:{port}" if port else fqdn

    def selector(self, component: str | None = None) -> dict[str, str]:
        """Labels that select this role's pods (and only them); immutable once deployed."""
        labels = {
            "app.kubernetes.io/name": self.role,
            "app.kubernetes.io/instance": self.name,
        }
        if component:
            labels["app.kubernetes.io/component"] = component
        return labels

    def labels(self, component: str | None = None, version: str | None = None) -> dict[str, str]:
        """Full label set for objects of this role."""
        labels = {
            **self.selector(component),
            "app.kubernetes.io/part-of": PART_OF,
            "app.kubernetes.io/managed-by": "pulumi",
            ENVIRONMENT_LABEL: self.environment,
        }
        if version:
            labels["app.kubernetes.io/version"] = version
        return labels


def names(environment: str, role: str) -> Names:
    """Names of ``role`` in ``environment``."""
    return Names(environment, role)


def api_hostname(app: str, environment: str, base_domain: str) -> str:
    """Public hostname of a city API: ``<app>.<env>.<base domain>``."""
    return f"{app}.{environment}.{base_domain}"


def mqtt_hostname(environment: str, base_domain: str) -> str:
    """Public hostname of the broker (the name in its TLS certificate)."""
    return f"mqtt.{environment}.{base_domain}"
