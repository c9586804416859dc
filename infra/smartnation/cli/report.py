"""What a preview would do, from the engine's events, and its Markdown for a pull request.

`EventCollector` is the `on_event` callback of `stack.preview`/`stack.preview_refresh`; it keeps
only what a reviewer needs: one step per resource, the policy events and the engine's errors.
Pure functions of recorded events, so the unit tests feed it `EngineEvent.from_json(...)`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from pulumi.automation import EngineEvent, OpType

MARKER = "<!-- smartnation-preview -->"

# Resources whose replacement or deletion can lose data: called out first, and refused by
# `promote` without --allow-stateful-changes.
STATEFUL_TYPES = frozenset(
    {
        "kubernetes:apps/v1:StatefulSet",
        "kubernetes:core/v1:PersistentVolumeClaim",
        "kubernetes:core/v1:PersistentVolume",
        "kubernetes:core/v1:Namespace",
    }
)
# Everything inside these components belongs to a data service (its Secrets hold the
# credentials the data was written with; its Services are what clients were configured with).
STATEFUL_COMPONENTS = frozenset(
    {
        "smartnation:database:Database",
        "smartnation:broker:Broker",
        "smartnation:object_storage:ObjectStorage",
    }
)

CREATE, UPDATE, REPLACE, DELETE, SAME = "create", "update", "replace", "delete", "same"
KINDS = (CREATE, UPDATE, REPLACE, DELETE)
_KIND_OF_OP = {
    OpType.CREATE: CREATE,
    OpType.IMPORT: CREATE,
    OpType.UPDATE: UPDATE,
    OpType.REPLACE: REPLACE,
    OpType.CREATE_REPLACEMENT: REPLACE,
    OpType.DELETE_REPLACED: REPLACE,
    OpType.IMPORT_REPLACEMENT: REPLACE,
    OpType.DELETE: DELETE,
    OpType.DISCARD: DELETE,
    OpType.SAME: SAME,
}
# A resource goes through several steps (create-replacement, replace, delete-replaced): the
# strongest wins.
_RANK = {SAME: 0, UPDATE: 1, CREATE: 2, REPLACE: 3, DELETE: 4}


def urn_types(urn: str) -> list[str]:
    """The type chain of a URN, outermost parent first, the resource's own type last."""
    # urn:pulumi:<stack>::<project>::<parent-type>$<parent-type>$<type>::<name>
    parts = urn.split("::", 3)
    return parts[2].split("$") if len(parts) == 4 else []


def urn_name(urn: str) -> str:
    parts = urn.split("::", 3)
    return parts[3] if len(parts) == 4 else urn


def is_stateful(urn: str, resource_type: str | None = None) -> bool:
    types = urn_types(urn)
    own = resource_type or (types[-1] if types else "")
    return own in STATEFUL_TYPES or bool(STATEFUL_COMPONENTS.intersection(types))


@dataclass(frozen=True)
class Step:
    """What the engine would do to one resource."""

    kind: str
    urn: str
    type: str
    diffs: tuple[str, ...] = ()
    """Top-level properties that change (updates and replacements)."""
    replace_keys: tuple[str, ...] = ()
    """Properties that force the replacement."""

    @property
    def name(self) -> str:
        return urn_name(self.urn)

    @property
    def stateful(self) -> bool:
        return is_stateful(self.urn, self.type)

    @property
    def destructive(self) -> bool:
        """A replacement or deletion of a stateful resource."""
        return self.kind in (REPLACE, DELETE) and self.stateful


@dataclass(frozen=True)
class Violation:
    """A policy's verdict on one resource (or on the stack)."""

    policy: str
    message: str
    level: str
    """`mandatory`, `advisory` (or `remediate`)."""
    urn: str | None

    @property
    def mandatory(self) -> bool:
        return self.level == "mandatory"

    @property
    def resource(self) -> str:
        return f"{urn_types(self.urn)[-1]} {urn_name(self.urn)}" if self.urn else "(stack)"


class EventCollector:
    """`on_event` callback: steps by URN, policy violations and error diagnostics."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # the Automation API calls back from its log-watcher thread
        self._steps: dict[str, Step] = {}
        self._violations: dict[tuple[str, str | None, str], Violation] = {}
        self.errors: list[str] = []
        self.changes: dict[str, int] = {}
        """The engine's own summary counts (SummaryEvent.resource_changes), when it finished."""

    def __call__(self, event: EngineEvent) -> None:
        with self._lock:
            self._take(event)

    def _take(self, event: EngineEvent) -> None:
        if event.resource_pre_event is not None:
            self._step(event.resource_pre_event.metadata)
        elif event.res_outputs_event is not None:
            self._step(event.res_outputs_event.metadata)
        elif event.policy_event is not None:
            p = event.policy_event
            key = (p.policy_name, p.resource_urn, p.message)
            self._violations[key] = Violation(
                policy=p.policy_name, message=p.message.strip(), level=p.enforcement_level, urn=p.resource_urn
            )
        elif event.diagnostic_event is not None:
            d = event.diagnostic_event
            if d.severity == "error" and d.message.strip():
                self.errors.append(d.message.strip())
        elif event.summary_event is not None:
            self.changes = {str(getattr(op, "value", op)): n for op, n in event.summary_event.resource_changes.items()}

    def _step(self, metadata) -> None:
        op = metadata.op if isinstance(metadata.op, OpType) else _op(metadata.op)
        kind = _KIND_OF_OP.get(op) if op is not None else None
        if kind is None:  # reads, refreshes and pending-replace bookkeeping
            return
        if metadata.type.startswith("pulumi:providers:") and urn_name(metadata.urn).startswith("default"):
            return  # the engine's own default providers: not counted by the engine's summary either
        previous = self._steps.get(metadata.urn)
        diffs = tuple(metadata.diffs or ()) or (previous.diffs if previous else ())
        keys = tuple(metadata.keys or ()) or (previous.replace_keys if previous else ())
        if previous is not None and _RANK[previous.kind] > _RANK[kind]:
            kind = previous.kind
        self._steps[metadata.urn] = Step(kind, metadata.urn, metadata.type, diffs, keys if kind == REPLACE else ())

    @property
    def steps(self) -> list[Step]:
        with self._lock:
            return list(self._steps.values())

    @property
    def violations(self) -> list[Violation]:
        with self._lock:
            return list(self._violations.values())


def _op(value: object) -> OpType | None:
    try:
        return OpType(str(value))
    except ValueError:
        return None


OK, POLICY, ERROR = "ok", "policy-violation", "error"


@dataclass
class EnvironmentPreview:
    """The outcome of previewing one environment."""

    environment: str
    cluster: str
    reasons: tuple[str, ...] = ()
    """Why it is affected (the changed files)."""
    steps: list[Step] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    """Engine errors (diagnostics, or the tail of the command's output)."""
    new_stack: bool = False
    """The stack did not exist in the backend: the preview is against an empty stack."""
    result: str = OK
    notes: list[str] = field(default_factory=list)
    """Markdown lines for the end of the environment's section (how the preview was made)."""

    @classmethod
    def from_collector(cls, environment: str, cluster: str, collector: EventCollector, **kwargs) -> EnvironmentPreview:
        preview = cls(environment, cluster, **kwargs)
        preview.steps = collector.steps
        preview.violations = collector.violations
        preview.errors = list(collector.errors)
        return preview

    def counts(self) -> dict[str, int]:
        counts = {kind: 0 for kind in (*KINDS, SAME)}
        for step in self.steps:
            counts[step.kind] += 1
        return counts

    @property
    def changes(self) -> list[Step]:
        order = {kind: i for i, kind in enumerate((DELETE, REPLACE, CREATE, UPDATE))}
        return sorted((s for s in self.steps if s.kind != SAME), key=lambda s: (order[s.kind], s.urn))

    @property
    def destructive(self) -> list[Step]:
        return [s for s in self.changes if s.destructive]

    @property
    def mandatory_violations(self) -> list[Violation]:
        return [v for v in self.violations if v.mandatory]

    def finish(self, engine_failed: bool, output_tail: str = "") -> None:
        """Classify the outcome once the engine returned (or raised)."""
        if self.mandatory_violations:
            self.result = POLICY
        elif engine_failed:
            self.result = ERROR
            if not self.errors and output_tail:
                self.errors.append(output_tail)
        else:
            self.result = OK


_SYMBOL = {CREATE: "+", UPDATE: "~", REPLACE: "+-", DELETE: "-"}
_RESULT = {OK: "ok", POLICY: "**mandatory policy violation**", ERROR: "**engine error**"}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _short_type(resource_type: str) -> str:
    return resource_type.removeprefix("kubernetes:")


def render_markdown(
    previews: Sequence[EnvironmentPreview], header: Iterable[str] = (), title: str = "smartnation preview"
) -> str:
    """The pull-request comment: a table of all environments, then one section each."""
    out: list[str] = [MARKER, f"## {title}", ""]
    out.extend(header)
    if header:
        out.append("")
    if not previews:
        out.append("No environment is affected by this change.")
        return "\n".join(out) + "\n"

    out += [
        "| environment | cluster | create | update | replace | delete | stateful ⚠ "
        "| policy (mandatory/advisory) | result |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for p in previews:
        c = p.counts()
        advisory = len(p.violations) - len(p.mandatory_violations)
        out.append(
            f"| {p.environment} | {p.cluster} | {c[CREATE]} | {c[UPDATE]} | {c[REPLACE]} | {c[DELETE]} "
            f"| {len(p.destructive)} | {len(p.mandatory_violations)}/{advisory} | {_RESULT[p.result]} |"
        )
    for p in previews:
        out += ["", *render_environment(p)]
    return "\n".join(out) + "\n"


def render_environment(p: EnvironmentPreview) -> list[str]:
    c = p.counts()
    out = [f"### {p.environment} on {p.cluster}", ""]
    if p.reasons:
        out += ["Affected by " + ", ".join(f"`{r}`" for r in p.reasons) + ".", ""]
    if p.new_stack:
        out += ["Never deployed to this backend: the preview is against an empty stack.", ""]
    if p.destructive:
        out += [
            "> [!CAUTION]",
            f"> **{len(p.destructive)} stateful resource(s) would be replaced or deleted** (data may be lost):",
        ]
        out += [f"> - **{s.kind}** `{_short_type(s.type)}` `{s.name}`" + _why(s) for s in p.destructive]
        out.append("")
    if p.errors:
        out += ["**The preview failed:**", "", "```text", *[_trim(e) for e in p.errors], "```", ""]
    out += [
        "| create | update | replace | delete | unchanged |",
        "| ---: | ---: | ---: | ---: | ---: |",
        f"| {c[CREATE]} | {c[UPDATE]} | {c[REPLACE]} | {c[DELETE]} | {c[SAME]} |",
        "",
    ]
    if p.violations:
        out += ["**Policy violations**", "", "| level | policy | resource | message |", "| --- | --- | --- | --- |"]
        ranked = sorted(p.violations, key=lambda v: (not v.mandatory, v.policy, v.urn or ""))
        out += [f"| {v.level} | `{v.policy}` | {_cell(v.resource)} | {_cell(v.message)} |" for v in ranked]
        out.append("")
    changes = p.changes
    if changes:
        out += [f"<details><summary>{len(changes)} change(s)</summary>", ""]
        out += [f"- `{_SYMBOL[s.kind]}` {s.kind} `{_short_type(s.type)}` `{s.name}`" + _why(s) for s in changes]
        out += ["", "</details>"]
    elif p.result == OK:
        out.append("No changes.")
    if p.notes:
        out += ["", *p.notes]
    return out


def _why(step: Step) -> str:
    if step.replace_keys:
        return " (replaced because of " + ", ".join(f"`{k}`" for k in step.replace_keys[:5]) + ")"
    if step.diffs:
        more = f" and {len(step.diffs) - 5} more" if len(step.diffs) > 5 else ""
        return " (" + ", ".join(f"`{k}`" for k in step.diffs[:5]) + more + ")"
    return ""


def _trim(text: str, limit: int = 3000) -> str:
    text = text.replace("```", "'''")
    return text if len(text) <= limit else "…" + text[-limit:]
