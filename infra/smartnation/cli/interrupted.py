"""What an interrupted update left behind in a stack, and the plan to recover from it.

An engine killed in the middle of an update (kill -9, a lost runner, a power cut) leaves two
traces in a self-managed backend: its lock file, naming a process that no longer runs, and the
state's `pending_operations`, the resources it had started to create, update or delete. A
pending create may exist on the cluster without the state knowing it. Pure data here; the
commands that act on it are in smartnation.cli.up.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from smartnation.cli.locks import LockHolder


@dataclass(frozen=True)
class PendingOperation:
    kind: str
    """`creating`, `updating`, `deleting`, `reading` or `importing`."""
    urn: str
    type: str

    def describe(self) -> str:
        return f"{self.kind} {self.type} {self.urn.rsplit('::', 1)[-1]}"


def pending_operations(deployment: Mapping[str, Any] | None) -> list[PendingOperation]:
    """The pending operations of an exported deployment (`pulumi stack export`'s `deployment`)."""
    found = []
    for operation in (deployment or {}).get("pending_operations") or []:
        resource = operation.get("resource") or {}
        found.append(
            PendingOperation(
                kind=str(operation.get("type", "?")),
                urn=str(resource.get("urn", "?")),
                type=str(resource.get("type", "?")),
            )
        )
    return found


@dataclass(frozen=True)
class Interruption:
    """What the last, interrupted update left: stale locks, live locks, pending operations."""

    environment: str
    stale: Sequence[LockHolder]
    live: Sequence[LockHolder]
    pending: Sequence[PendingOperation]

    @property
    def found(self) -> bool:
        return bool(self.stale or self.pending)

    def describe(self) -> str:
        parts = []
        if self.stale:
            holders = "; ".join(h.describe() for h in self.stale)
            parts.append(f"a stale lock left by an update whose process no longer runs: {holders}")
        if self.pending:
            listed = ", ".join(p.describe() for p in self.pending[:8])
            more = f" and {len(self.pending) - 8} more" if len(self.pending) > 8 else ""
            parts.append(f"{len(self.pending)} pending operation(s) the engine never finished: {listed}{more}")
        return f"an earlier update of {self.environment!r} was interrupted: " + "; ".join(parts)

    def recovery_steps(self) -> list[str]:
        """What `smartnation up ENV --recover` does, in order, as the operator could type it."""
        steps = []
        if self.stale:
            steps.append(f"pulumi cancel --yes --stack {self.environment}   # remove the dead update's lock")
        if self.pending:
            steps.append(
                f"pulumi refresh --yes --clear-pending-creates --stack {self.environment}"
                "   # read every resource back from the cluster, drop the unfinished creates"
            )
        steps.append(f"smartnation up {self.environment}   # create what is missing, converge")
        return steps


def classify(
    environment: str,
    holders: Sequence[LockHolder],
    deployment: Mapping[str, Any] | None,
    hostname: str,
    alive: Callable[[int], bool],
) -> Interruption:
    """Split the lock holders into stale (proven dead on this host) and live, read the pending operations."""
    stale = [h for h in holders if h.is_stale(hostname, alive)]
    live = [h for h in holders if h not in stale]
    return Interruption(environment=environment, stale=stale, live=live, pending=pending_operations(deployment))
