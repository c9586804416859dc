"""Drift: what a refresh would change in a stack's state, from a refresh preview."""

from __future__ import annotations

from dataclasses import dataclass

from pulumi import automation as auto

from smartnation.cli.report import urn_name
from smartnation.cli.workspace import command_error_tail


@dataclass(frozen=True)
class Drift:
    """What a refresh would change in the state: the resources that no longer match the cluster."""

    resources: tuple[str, ...]
    """`<type> <name>` of each drifted resource."""
    error: str | None = None
    """The tail of the engine's output when the refresh preview failed (drift unknown)."""

    @property
    def drifted(self) -> bool:
        return bool(self.resources)


class DriftCollector:
    """`on_event` of a refresh preview: a resource drifted if the refresh would change its state.

    The engine reports it as an `update` (or `delete`, when the object is gone) with the
    differing properties. With server-side apply the provider compares only the fields Pulumi
    manages: a label someone else added is not drift, a replica count someone changed is.
    """

    def __init__(self) -> None:
        self.drifted: dict[str, str] = {}

    def __call__(self, event: auto.EngineEvent) -> None:
        meta = None
        if event.resource_pre_event is not None:
            meta = event.resource_pre_event.metadata
        elif event.res_outputs_event is not None:
            meta = event.res_outputs_event.metadata
        if meta is None or meta.type.startswith(("pulumi:pulumi:Stack", "pulumi:providers:")):
            return
        op = str(getattr(meta.op, "value", meta.op))
        fields = list(meta.detailed_diff or ()) or list(meta.diffs or ())
        if op in ("same", "read", "refresh") and not fields:
            return
        if op in ("refresh", "update", "delete", "create", "replace"):
            what = f"{meta.type.removeprefix('kubernetes:')} {urn_name(meta.urn)}"
            if op == "delete":
                what += " (gone)"
            elif fields:
                what += " (" + ", ".join(fields[:3]) + (", ..." if len(fields) > 3 else "") + ")"
            self.drifted[meta.urn] = what


def drift(stack: auto.Stack) -> Drift:
    """`pulumi refresh --preview-only` through the Automation API; names the drifted resources."""
    collector = DriftCollector()
    try:
        stack.preview_refresh(color="never", on_event=collector, diff=True)
    except auto.ConcurrentUpdateError:
        raise
    except auto.CommandError as error:
        return Drift(tuple(sorted(collector.drifted.values())), error=command_error_tail(error, 5))
    return Drift(tuple(sorted(collector.drifted.values())))
