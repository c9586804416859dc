"""``move_complete: true``: the record, in an environment's own file, that its move is over.

Set by the operator after the last step of a move, `smartnation state move` (docs/move.md, "The
state moves too"): the data, the Pulumi state and its secrets are all where ``cluster:`` says. For
production it makes the data-residency list final (``smartnation_policy.residency``): the policy
pack and the program's preflight then refuse production anywhere but Monaco. Checked when the
settings load, naming the file and the key:

- it is one environment's record, like ``cluster:``: never in defaults.yaml;
- it cannot stand beside a ``move:`` still declared (the move is not over while a phase is).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from smartnation.settings.errors import SettingsError
from smartnation.settings.models import EnvironmentSpec

MOVE_COMPLETE_KEY = "move_complete"


def check_move_complete(
    spec: EnvironmentSpec, defaults: Mapping[str, Any], defaults_shown: str, env_shown: str
) -> None:
    """Raise SettingsError naming the file and the key for a ``move_complete`` that cannot be true."""
    if MOVE_COMPLETE_KEY in defaults:
        raise SettingsError(
            defaults_shown,
            MOVE_COMPLETE_KEY,
            "must not be in the defaults: a completed move is one environment's, recorded in its own file",
        )
    if spec.move_complete and spec.move is not None:
        raise SettingsError(
            env_shown,
            MOVE_COMPLETE_KEY,
            f"true while `move: {{to: {spec.move.to}, phase: {spec.move.phase}}}` is still declared: the move is "
            f"over only once `cluster: {spec.move.to}` stands alone and the state has moved (docs/move.md)",
        )
