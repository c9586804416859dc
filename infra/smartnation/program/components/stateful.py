"""What every stateful component (broker, database, object storage) writes the same way.

``Children`` is one component's view of the objects it creates: each child's Pulumi name
(``<component>-<role>``), its Kubernetes name and labels (naming.py), its metadata in the
environment namespace, and its options (parented to the component, on its provider, protected
when it holds data). Its methods write the objects whose shape the components share: Secrets
and ConfigMaps, the headless and ClusterIP Services, StatefulSets with their data claim,
disruption budgets and the hash-named setup Job.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from smartnation.program import naming
from smartnation.program.components import child_options, pods, require_provider, stateful_options
from smartnation.program.placement import Placement

# Setup Jobs converge state that already exists, so a few retries within half an hour cover a
# server that is still starting; past that, the failure is real.
_SETUP_BACKOFF_LIMIT = 6
_SETUP_DEADLINE_SECONDS = 1800


PUBLISHED_SUFFIX = "published"
"""``<env>-<role>-published``: a data service's LoadBalancer Service during a move."""


def ports(name: str, port: int) -> list[dict[str, Any]]:
    """A Service's one port, targeting the container port of the same name."""
    return [{"name": name, "port": port, "target_port": name}]


def secret_digest(values: Sequence[pulumi.Input[str]], digest: Callable[[list[str]], str]) -> pulumi.Output[str]:
    """``digest(values)`` as a plain Output: the values stay secret, only their one-way digest
    leaves (it may end up in a resource name)."""
    return pulumi.Output.unsecret(pulumi.Output.secret(pulumi.Output.all(*values))).apply(digest)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def load_balancer_address(status: object) -> str:
    """The address a LoadBalancer Service's status gives (its first IP or host name), or
    ``pending`` while the load balancer has none yet."""
    ingress = getattr(getattr(status, "load_balancer", None), "ingress", None) or []
    for entry in ingress:
        address = getattr(entry, "ip", None) or getattr(entry, "hostname", None)
        if address:
            return address
    return "pending"


@dataclass(frozen=True)
class Children:
    """The children of one component (see the module docstring)."""

    parent: pulumi.ComponentResource
    name: str
    """The component's Pulumi name; each child's is ``<name>-<role>``."""
    provider: pulumi.ProviderResource
    placement: Placement
    names: naming.Names
    version: str
    """The release version every object is labelled with."""

    @classmethod
    def of(
        cls,
        parent: pulumi.ComponentResource,
        name: str,
        opts: pulumi.ResourceOptions | None,
        placement: Placement,
        role: str,
        version: str,
    ) -> Children:
        """The children of ``parent``, on the provider it was given (never the default one)."""
        provider = require_provider(opts, type(parent).__name__)
        return cls(parent, name, provider, placement, placement.names(role), version)

    # --- names, metadata and options -------------------------------------------------------

    def resource_name(self, role: str) -> str:
        return f"{self.name}-{role}"

    def metadata(self, object_name: pulumi.Input[str], component: str | None = None) -> dict[str, Any]:
        """Name, namespace and the full label set of this role (and ``component`` within it)."""
        return {
            "namespace": self.placement.namespace,
            "name": object_name,
            "labels": self.names.labels(component, self.version),
        }

    def options(self, **kwargs: Any) -> pulumi.ResourceOptions:
        """Options of a child: parented to the component, on its provider."""
        return child_options(self.parent, self.provider, **kwargs)

    def stateful_options(self, **kwargs: Any) -> pulumi.ResourceOptions:
        """Options of a child that holds data: protected where the placement says so."""
        return stateful_options(self.options(**kwargs), self.placement.protect_state)

    def pod_spec(self, uid: int, **fields: Any) -> dict[str, Any]:
        """A pod on the profile's stateful node pool, as ``uid``, without a service account token."""
        return {
            "automount_service_account_token": False,
            "security_context": pods.pod_security_context(uid),
            "node_selector": self.placement.node_selector("stateful"),
            **fields,
        }

    # --- configuration and credentials -----------------------------------------------------

    def secret(
        self, role: str, data: Mapping[str, pulumi.Input[str]], component: str | None = None
    ) -> k8s.core.v1.Secret:
        """Secret ``<env>-<role>-<role suffix>`` holding ``data``."""
        return k8s.core.v1.Secret(
            self.resource_name(role),
            metadata=self.metadata(self.names.child(role), component),
            type="Opaque",
            string_data=dict(data),
            opts=self.options(),
        )

    def config_map(
        self, role: str, data: Mapping[str, pulumi.Input[str]], component: str | None = None
    ) -> k8s.core.v1.ConfigMap:
        """ConfigMap ``<env>-<role>-<role suffix>`` holding ``data``."""
        return k8s.core.v1.ConfigMap(
            self.resource_name(role),
            metadata=self.metadata(self.names.child(role), component),
            data=dict(data),
            opts=self.options(),
        )

    # --- Services ----------------------------------------------------------------------------

    def headless_service(
        self, port_name: str, port: int, component: str | None = None, *, publish_not_ready: bool = False
    ) -> k8s.core.v1.Service:
        """The headless Service a StatefulSet names: per-pod DNS names (``<pod>.<service>``)."""
        spec: dict[str, Any] = {
            "cluster_ip": "None",
            "selector": self.names.selector(component),
            "ports": ports(port_name, port),
        }
        if publish_not_ready:
            spec["publish_not_ready_addresses"] = True
        return k8s.core.v1.Service(
            self.resource_name("headless"),
            metadata=self.metadata(self.names.child("headless"), component),
            spec=spec,
            opts=self.options(),
        )

    def cluster_ip_service(
        self, role: str, port_name: str, port: int, component: str, object_name: str | None = None
    ) -> k8s.core.v1.Service:
        """An in-cluster Service over the pods of ``component`` (never reachable from outside)."""
        return k8s.core.v1.Service(
            self.resource_name(role),
            metadata=self.metadata(object_name or self.names.child(role), component),
            spec={"type": "ClusterIP", "selector": self.names.selector(component), "ports": ports(port_name, port)},
            opts=self.options(),
        )

    def load_balancer_service(
        self,
        role: str,
        object_name: str,
        component: str,
        port_name: str,
        port: int,
        source_ranges: Sequence[str] | None = None,
        selector: Mapping[str, str] | None = None,
    ) -> k8s.core.v1.Service:
        """A LoadBalancer Service over the pods of ``component``, with the profile's annotations.
        ``externalTrafficPolicy: Local`` keeps the client's own source address, which the
        NetworkPolicies (and pg_hba) match; ``source_ranges``: the load balancer itself drops
        every other source. ``selector``: a narrower one than the component's pods (one pod)."""
        load_balancer = self.placement.cluster.load_balancer
        spec: dict[str, Any] = {
            "type": "LoadBalancer",
            "external_traffic_policy": "Local",
            "allocate_load_balancer_node_ports": load_balancer.node_ports,
        }
        if source_ranges is not None:
            spec["load_balancer_source_ranges"] = list(source_ranges)
        spec["selector"] = dict(selector) if selector is not None else self.names.selector(component)
        spec["ports"] = [{"name": port_name, "port": port, "target_port": port_name, "protocol": "TCP"}]
        return k8s.core.v1.Service(
            self.resource_name(role),
            metadata={
                **self.metadata(object_name, component),
                "annotations": dict(load_balancer.service_annotations),
            },
            spec=spec,
            opts=self.options(),
        )

    def published(self, component: str, port_name: str, port: int, source_ranges: Sequence[str]) -> pulumi.Output[str]:
        """``<env>-<role>-published``: ``component``'s pods on a LoadBalancer address for another
        site during a move (docs/move.md), admitted from ``source_ranges`` alone; returns the
        address. ``externalTrafficPolicy: Local`` keeps the other site's source address, which the
        NetworkPolicies (and pg_hba) match. The policy pack admits it by this name, selector and
        port only (move_replication.published_services)."""
        service = self.load_balancer_service(
            PUBLISHED_SUFFIX,
            self.names.child(PUBLISHED_SUFFIX),
            component,
            port_name,
            port,
            source_ranges=source_ranges,
        )
        return service.status.apply(load_balancer_address)

    # --- workloads ---------------------------------------------------------------------------

    def data_claim(self, size: str, component: str | None = None) -> dict[str, Any]:
        """The ``data`` volumeClaimTemplate, on the profile's storage class."""
        return pods.volume_claim("data", size, self.placement.cluster, self.names.labels(component))

    def stateful_set(
        self,
        role: str,
        object_name: str,
        component: str,
        *,
        replicas: int,
        service_name: str,
        pod: dict[str, Any],
        claims: list[dict[str, Any]],
        parallel: bool = False,
        pod_annotations: Mapping[str, pulumi.Input[str]] | None = None,
        depends_on: Sequence[pulumi.Resource] | None = None,
    ) -> k8s.apps.v1.StatefulSet:
        """A StatefulSet of ``component``'s pods spread over zones, protected as the placement says.

        ``parallel`` starts and replaces pods together, for pods that do not wait on each other."""
        selector = self.names.selector(component)
        template_metadata: dict[str, Any] = {"labels": self.names.labels(component, self.version)}
        if pod_annotations:
            template_metadata["annotations"] = dict(pod_annotations)
        spec: dict[str, Any] = {
            "replicas": replicas,
            "service_name": service_name,
            "selector": {"match_labels": selector},
            "template": {
                "metadata": template_metadata,
                "spec": {**pod, "topology_spread_constraints": pods.spread(selector, replicas)},
            },
            "volume_claim_templates": claims,
        }
        if parallel:
            spec["pod_management_policy"] = "Parallel"
        return k8s.apps.v1.StatefulSet(
            self.resource_name(role),
            metadata=self.metadata(object_name, component),
            spec=spec,
            opts=self.stateful_options(depends_on=depends_on),
        )

    def disruption_budget(
        self, role: str, object_name: str, component: str, **limit: int
    ) -> k8s.policy.v1.PodDisruptionBudget:
        """A PodDisruptionBudget over ``component``'s pods; ``limit`` is max_unavailable or min_available."""
        return k8s.policy.v1.PodDisruptionBudget(
            self.resource_name(role),
            metadata=self.metadata(object_name, component),
            spec={**limit, "selector": {"match_labels": self.names.selector(component)}},
            opts=self.options(),
        )

    def hashed_name(self, stem: str, digest: pulumi.Output[str]) -> pulumi.Output[str]:
        """``<env>-<role>-<stem>-<10 hex digits of digest>``."""
        return digest.apply(lambda hexdigest: self.names.child(f"{stem}-{hexdigest[:10]}"))

    def setup_job(
        self,
        role: str,
        job_name: pulumi.Input[str],
        *,
        uid: int,
        image: str,
        command: list[str],
        env: list[dict[str, Any]],
        scripts: k8s.core.v1.ConfigMap,
        volume: str,
        mount_path: str,
        env_from: list[dict[str, Any]] | None = None,
        ca: tuple[dict[str, Any], str] | None = None,
        **options: Any,
    ) -> k8s.batch.v1.Job:
        """The Job that converges what the server holds (roles, buckets, users): ``command`` in
        ``image`` as ``uid``, with the ConfigMap ``scripts`` mounted read-only at ``mount_path``.

        A Job's pod template is immutable, so ``job_name`` must change with everything in it
        (``hashed_name``): a new name is a new run, and Pulumi creates the new Job before it
        deletes the old one. ``ca``: a volume holding the issuer's CA and where to mount it, for
        a Job that verifies the server it talks to."""
        container = pods.container(
            "setup",
            image,
            pods.JOB_RESOURCES,
            command=command,
            env=env,
            **({"env_from": env_from} if env_from else {}),
            volume_mounts=[
                {"name": volume, "mount_path": mount_path, "read_only": True},
                {"name": "tmp", "mount_path": "/tmp"},
            ]
            + ([{"name": ca[0]["name"], "mount_path": ca[1], "read_only": True}] if ca else []),
        )
        volumes = [pods.config_map_volume(volume, scripts.metadata.name), pods.tmp_volume()] + ([ca[0]] if ca else [])
        return k8s.batch.v1.Job(
            self.resource_name(role),
            metadata=self.metadata(job_name, naming.SETUP),
            spec={
                "backoff_limit": _SETUP_BACKOFF_LIMIT,
                "active_deadline_seconds": _SETUP_DEADLINE_SECONDS,
                "template": {
                    "metadata": {"labels": self.names.labels(naming.SETUP, self.version)},
                    "spec": self.pod_spec(
                        uid,
                        restart_policy="Never",
                        containers=[container],
                        volumes=volumes,
                    ),
                },
            },
            opts=self.options(**options),
        )
