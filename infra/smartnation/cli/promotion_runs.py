"""Promotions that started and never ended, found in the audit log.

`promote` writes a `started` entry before it touches anything and an end entry (applied,
written-only, refused, failed) after, both carrying the same run id (`extra.run`). A started
entry with no end entry is a promotion that was killed; the next `promote` of the same target
says what it left: whether the target file holds the releases it was promoting.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

STARTED = "started"
INTERRUPTED = "interrupted"
"""The end entry the next run writes for a promotion that was killed (it is reported once)."""
RUN_KEY = "run"


def run_id(entry: Mapping[str, Any]) -> str | None:
    extra = entry.get("extra")
    value = extra.get(RUN_KEY) if isinstance(extra, Mapping) else None
    return str(value) if value else None


def unfinished(entries: Sequence[Mapping[str, Any]], target: str) -> list[Mapping[str, Any]]:
    """The `started` entries promoting into ``target`` whose run has no later entry."""
    ended = {run_id(e) for e in entries if e.get("result") != STARTED}
    return [
        e
        for e in entries
        if e.get("result") == STARTED and e.get("target") == target and run_id(e) and run_id(e) not in ended
    ]


@dataclass(frozen=True)
class Finding:
    run: str
    message: str


def what_happened(started: Mapping[str, Any], target_releases: Any, target_file: str) -> Finding:
    """What a killed promotion left, judged from the target file it would have written."""
    run = run_id(started) or "?"
    head = (
        f"the promotion {started.get('source')} -> {started.get('target')} started at {started.get('when')} "
        f"by {started.get('who')} (run {run}) never ended"
    )
    if started.get("releases") is not None and target_releases == started.get("releases"):
        return Finding(
            run,
            f"{head}: {target_file} holds the releases it promoted (the file was written; the update of "
            f"{started.get('target')} may not have run: `smartnation up {started.get('target')}` converges it)",
        )
    return Finding(run, f"{head}: {target_file} does not hold the releases it promoted (the file was never written)")
