"""The policy pack on every preview and update: its target for one environment, as engine arguments."""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from smartnation.paths import POLICY_PACK
from smartnation.program import move_replication
from smartnation.settings import Settings, SettingsError, list_clusters, load_cluster_profile
from smartnation_policy.residency import production_countries
from smartnation_policy.target import TargetConfigError, move_for, policy_config_for

MANDATORY = re.compile(r"\[mandatory\](?: \[severity: [\w-]+\])?\s+([\w-]+)")
"""A mandatory policy's violation as the engine prints it: `pack@v [mandatory] [severity: high]  rule  (...)`."""


def mandatory_rules(output: str) -> list[str]:
    """The mandatory rules the engine's output says were violated (sorted, each once). The engine's
    own error then says only "preview failed" or "update failed": the violations are in its output."""
    return sorted({match.group(1) for match in MANDATORY.finditer(output)})


def move_config(settings: Settings) -> dict[str, Any] | None:
    """The pack's `move` section while the environment file declares a move (docs/move.md): the
    cluster it moves to (its objects there are judged against that profile), and the Services the
    program publishes to the link addresses (the database primary, the object storage, each broker pod), as the
    program derives both (the same helpers: move_replication.published_services and
    arrival_addresses, which refuses a move from a real cluster naming the environment file's
    `move`)."""
    if settings.move is None:
        return None
    to = load_cluster_profile(settings.move.to)
    return move_for(
        to,
        phase=settings.move.phase,
        published=move_replication.published_services(settings.environment, settings.broker.replicas),
        source_ranges=move_replication.arrival_addresses(settings, settings.cluster, list_clusters()),
    )


def policy_config(settings: Settings) -> dict[str, Any]:
    """The pack's config (`--policy-pack-config`) for this environment on its cluster, and during a
    move on the cluster it moves to; production's allowed countries follow the file's
    ``move_complete`` (the program's preflight applies the same)."""
    move = move_config(settings)
    try:
        return policy_config_for(
            settings.environment,
            settings.cluster,
            production_countries=production_countries(settings.move_complete),
            move=move,
        )
    except TargetConfigError as error:
        # A profile the settings loader accepted but the pack cannot judge against; during a move
        # either profile may be the one (the message names the config key: `move.to...` or not).
        files = [f"{settings.cluster.name}.yaml"] + ([f"{settings.move.to}.yaml"] if settings.move else [])
        raise SettingsError(" or ".join(files), "<policy target>", str(error)) from error


@contextmanager
def policy_args(settings: Settings) -> Iterator[dict[str, list[str]]]:
    """Keyword arguments for preview/up that run the policy pack against this environment's target."""
    config = policy_config(settings)
    with tempfile.TemporaryDirectory(prefix="smartnation-policy-") as tmp:
        path = Path(tmp) / f"{settings.environment}-policy.json"
        path.write_text(json.dumps(config, indent=2), encoding="utf-8")
        yield {"policy_packs": [str(POLICY_PACK)], "policy_pack_configs": [str(path)]}
