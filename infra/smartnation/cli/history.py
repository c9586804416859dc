"""What a stack's history and outputs say was deployed, and what the files say should be."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pulumi import automation as auto

from smartnation.settings import Settings

RELEASES_OUTPUT = "deployed_releases"
"""The stack output (infra/smartnation/program/city_platform.py) recording the releases the last update deployed."""
_DERIVED_RELEASE_KEYS = ("helm_releases",)  # outputs of the deployment, not of the settings


@dataclass(frozen=True)
class LastUpdate:
    """One entry of a stack's history: the operation that last changed (or tried to change) it."""

    kind: str
    """`update` or `destroy`."""
    result: str
    """`succeeded`, `failed` or `in-progress`."""
    version: int | None
    time: str | None
    """End time (start time while in progress), UTC ISO 8601."""


def last_update(stack: auto.Stack, kinds: tuple[str, ...] = ("update", "destroy")) -> LastUpdate | None:
    """The newest history entry of one of ``kinds`` (refreshes do not deploy anything).

    ``version`` is the engine's update version where the backend numbers updates; the file and
    S3 backends report 0 for every entry, so there it is the entry's position in the history
    (1 = the stack's first operation), which is as stable as the history itself.
    """
    history = stack.history(show_secrets=False)
    for index, entry in enumerate(history):
        if entry.kind in kinds:
            when = entry.end_time or entry.start_time
            return LastUpdate(
                kind=entry.kind,
                result=entry.result,
                version=entry.version or len(history) - index,
                time=when.strftime("%Y-%m-%dT%H:%M:%SZ") if when else None,
            )
    return None


def deployed_releases(stack: auto.Stack) -> dict[str, Any] | None:
    """The releases output of the last successful update, without what the deployment derived."""
    outputs = stack.outputs()
    if RELEASES_OUTPUT not in outputs:
        return None
    value = outputs[RELEASES_OUTPUT].value
    if not isinstance(value, dict):
        return None
    return {k: v for k, v in value.items() if k not in _DERIVED_RELEASE_KEYS}


def file_releases(settings: Settings) -> dict[str, Any]:
    """What the releases output would be for the settings as they are in the files now."""
    # Imported late: the program module pulls in the Kubernetes SDK and every component.
    from smartnation.program.city_platform import release_summary

    return json.loads(json.dumps(release_summary(settings)))


def shown_outputs(stack: auto.Stack) -> dict[str, Any]:
    """Every stack output for printing: secret ones as `[secret]`."""
    return {k: ("[secret]" if v.secret else v.value) for k, v in stack.outputs().items()}
