"""What the workloads of one environment take from its namespace, to check the guardrails fit.

A ResourceQuota below what the workloads need does not fail a deploy: Kubernetes refuses the
pods one by one, long after `pulumi up` reported success. So the quota is checked against the
largest the environment can get: every StatefulSet at its replicas, every API at its HPA
ceiling (the quota comments in environments/*.yaml promise that room) and the Jobs that can
run at once (database setup, object storage setup, the backup, each API's migration). The same pods must each fit
under the LimitRange's per-container maximum.

The shapes mirror program/components (broker, database, object_storage, city_apis, pods):
tests/unit/test_settings_rules.py compares this with the pods of a built stack.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from smartnation.settings.validation import parse_quantity

if TYPE_CHECKING:
    from smartnation.settings.models import EnvironmentSpec, Resources

# Jobs that may run at the same time: the database's role setup, the object storage's bucket
# setup and the nightly backup (its dump runs as an init container, so one container's worth).
CONCURRENT_JOBS = ("database setup", "object storage setup", "database backup")


@dataclass(frozen=True)
class Workload:
    """``pods`` pods of one kind, each with ``resources`` and ``volume`` of storage (or none)."""

    name: str
    pods: int
    resources: Resources
    volume: str | None = None
    """Size of each pod's PersistentVolumeClaim."""
    sidecar: bool = False
    """A second container in the pods of the workload before it: its resources count, its pods
    do not (they are the same pods)."""


def job_resources() -> Resources:
    # Imported here: the components import the settings models, never the other way at load.
    from smartnation.program.components.pods import JOB_RESOURCES

    return JOB_RESOURCES


def broker_reloader_resources() -> Resources:
    from smartnation.program.components.broker import RELOADER_RESOURCES

    return RELOADER_RESOURCES


def database_reloader_resources() -> Resources:
    from smartnation.program.components.database import RELOADER_RESOURCES

    return RELOADER_RESOURCES


def workloads(spec: EnvironmentSpec) -> Iterator[Workload]:
    """Every pod the environment can run at once, at its largest."""
    yield Workload("broker", spec.broker.replicas, spec.broker.resources, spec.broker.storage_size)
    # Each broker pod's certificate reloader sidecar.
    yield Workload("broker tls-reloader", spec.broker.replicas, broker_reloader_resources(), sidecar=True)
    # The primary and its streaming replicas; a replica's clone init container has the same size.
    database = spec.database
    yield Workload("database", 1 + database.replicas, database.resources, database.storage_size)
    # Each database pod's certificate (and pg_hba) reloader sidecar.
    yield Workload("database tls-reloader", 1 + database.replicas, database_reloader_resources(), sidecar=True)
    storage = spec.object_storage
    yield Workload("object_storage", storage.replicas, storage.resources, storage.storage_size)
    for name, api in spec.city_apis.items():
        yield Workload(name, api.max_replicas, api.resources)
        if api.database is not None and api.database.migrations:
            # The release's migration Job, which may run while the old release still has its pods.
            yield Workload(f"{name} migration", 1, job_resources())
    for job in CONCURRENT_JOBS:
        yield Workload(job, 1, job_resources())


@dataclass(frozen=True)
class Need:
    """The namespace total of one quota entry and how it adds up."""

    amount: float
    detail: str


def needs(spec: EnvironmentSpec) -> dict[str, Need]:
    """Quota field (as in guardrails.quota) -> what the workloads need of it."""
    loads = list(workloads(spec))

    def total(what: str, amount: Callable[[Workload], float]) -> Need:
        parts = [(w, amount(w)) for w in loads]
        parts = [(w, a) for w, a in parts if a]
        detail = " + ".join(f"{w.name} {w.pods}x{_quantity_of(w, what)}" for w, _ in parts)
        return Need(sum(a for _, a in parts), detail)

    return {
        "requests_cpu": total("requests.cpu", lambda w: w.pods * parse_quantity(str(w.resources.requests.cpu))),
        "requests_memory": total("requests.memory", lambda w: w.pods * parse_quantity(w.resources.requests.memory)),
        "limits_cpu": total("limits.cpu", lambda w: w.pods * parse_quantity(str(w.resources.limits.cpu))),
        "limits_memory": total("limits.memory", lambda w: w.pods * parse_quantity(w.resources.limits.memory)),
        "requests_storage": total("volume", lambda w: w.pods * parse_quantity(w.volume) if w.volume else 0),
        "persistent_volume_claims": total("claims", lambda w: w.pods if w.volume else 0),
        "pods": total("pods", lambda w: 0 if w.sidecar else w.pods),
    }


def _quantity_of(workload: Workload, what: str) -> str:
    if what == "volume":
        return str(workload.volume)
    if what in ("claims", "pods"):
        return "1"
    section, kind = what.split(".")
    return str(getattr(getattr(workload.resources, section), kind))
