"""An environment's health as the cluster tells it: ready against desired replicas per workload,
and when `smartnation verify` last passed.

The last passing verify is recorded on the environment's namespace as an annotation, not in a
file or the stack config: every operator (a laptop, CI, the site's own machine) who can reach the
cluster reads the same record without committing anything after each deploy (environments/audit/
is in git, and a verify after every `make up` would leave the tree dirty); writing the stack's
config would need the stack's passphrase and races the engine's lock, and the stack files are not
committed either. The record goes with the environment: destroying it removes the namespace. The
annotation is no drift for Pulumi (server-side apply: a field another manager owns is not ours).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from smartnation.cli.kubectl import Kubectl

LAST_PASSED_ANNOTATION = "smartnation.mc/verify-last-passed"
"""UTC time (ISO 8601, Z) the last `smartnation verify` of this environment passed."""
LAST_RUN_ANNOTATION = "smartnation.mc/verify-last-run"
"""`<UTC time> passed|failed <n>/<m>` of the last verify, whatever its result."""


@dataclass(frozen=True)
class WorkloadReadiness:
    """One Deployment or StatefulSet: ready replicas against desired."""

    kind: str
    name: str
    ready: int
    desired: int

    @property
    def is_ready(self) -> bool:
        return self.ready >= self.desired


def parse_readiness(items: Iterable[Mapping[str, Any]]) -> list[WorkloadReadiness]:
    """Workloads from `kubectl get deployments,statefulsets -o json` items, sorted by kind and name."""
    found = []
    for item in items:
        desired = item.get("spec", {}).get("replicas")
        found.append(
            WorkloadReadiness(
                kind=str(item.get("kind", "?")).lower(),
                name=str(item.get("metadata", {}).get("name", "?")),
                ready=int(item.get("status", {}).get("readyReplicas") or 0),
                # The API defaults an absent replicas to 1.
                desired=1 if desired is None else int(desired),
            )
        )
    return sorted(found, key=lambda w: (w.kind, w.name))


def summarise(workloads: Sequence[WorkloadReadiness]) -> str:
    """`15/15 ready`, or `13/15 ready (statefulset/staging-broker 1/3)` naming what is short."""
    if not workloads:
        return "no workloads"
    ready = sum(min(w.ready, w.desired) for w in workloads)
    desired = sum(w.desired for w in workloads)
    short = [f"{w.kind}/{w.name} {w.ready}/{w.desired}" for w in workloads if not w.is_ready]
    return f"{ready}/{desired} ready" + (f" ({', '.join(short)})" if short else "")


def workload_readiness(kubectl: Kubectl) -> list[WorkloadReadiness]:
    return parse_readiness(kubectl.items("deployments,statefulsets"))


def verify_record(kubectl: Kubectl) -> dict[str, str]:
    """The verify annotations of the environment's namespace (empty when never verified)."""
    namespace = kubectl.run("get", "namespace", kubectl.namespace, "-o", "json", namespaced=False)
    annotations = json.loads(namespace).get("metadata", {}).get("annotations") or {}
    return {k: v for k, v in annotations.items() if k in (LAST_PASSED_ANNOTATION, LAST_RUN_ANNOTATION)}


def record_verify(kubectl: Kubectl, when: str, passed: int, total: int, complete: bool = True) -> None:
    """Write the last run on the namespace, and the last pass when a complete run (every check,
    not a `--check` subset) passed."""
    result = "partial" if not complete else "passed" if passed == total else "failed"
    values = [f"{LAST_RUN_ANNOTATION}={when} {result} {passed}/{total}"]
    if complete and passed == total:
        values.append(f"{LAST_PASSED_ANNOTATION}={when}")
    kubectl.run("annotate", "namespace", kubectl.namespace, "--overwrite", *values, namespaced=False)
