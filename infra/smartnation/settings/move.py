"""The checks on ``move:`` that the settings files alone decide (docs/move.md).

An environment file declares a move to another cluster as ``move: {to: <cluster>, phase:
replicate|cutover|complete|rollback}`` while ``cluster:`` still names the cluster it moves from
(rollback: back to that cluster after a cutover, the program's guard decides when). The
model (models.MoveSettings) rejects a bad phase or a malformed name; here, at load time and
before anything is registered:

- a move is the environment's own, like ``cluster:``: never in defaults.yaml (every environment
  would move at once);
- ``move.to`` is a cluster profile, and not the one the environment is already on.

What needs the deployed stack (a skipped phase, a plain change of ``cluster:`` on an
environment with data) is checked by the program (program/move_guard.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from smartnation.settings.errors import SettingsError
from smartnation.settings.models import EnvironmentSpec

MOVE_KEY = "move"


def check_move_settings(
    spec: EnvironmentSpec,
    defaults: Mapping[str, Any],
    defaults_shown: str,
    env_shown: str,
    clusters: Sequence[str],
    clusters_dir: str,
) -> None:
    """Raise SettingsError naming the file and the key for a move that cannot be one."""
    if MOVE_KEY in defaults:
        raise SettingsError(
            defaults_shown,
            MOVE_KEY,
            "must not be in the defaults: a move is one environment's, declared in its own file beside `cluster:`",
        )
    move = spec.move
    if move is None:
        return
    if move.to not in clusters:
        raise SettingsError(
            env_shown,
            f"{MOVE_KEY}.to",
            f"expected one of the cluster profiles in {clusters_dir}/ ({', '.join(clusters) or 'none'}), "
            f"got {move.to!r}",
        )
    if move.to == spec.cluster:
        raise SettingsError(
            env_shown,
            f"{MOVE_KEY}.to",
            f"{move.to!r} is the environment's cluster already (`cluster: {spec.cluster}`): during a move "
            "`cluster:` names where the environment comes from and `move.to` where it goes",
        )
