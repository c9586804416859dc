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
from smartnation.settings import Settings, SettingsError
from smartnation_policy.residency import production_countries
from smartnation_policy.target import TargetConfigError, policy_config_for

MANDATORY = re.compile(r"\[mandatory\](?: \[severity: [\w-]+\])?\s+([\w-]+)")
"""A mandatory policy's violation as the engine prints it: `pack@v [mandatory] [severity: high]  rule  (...)`."""


def mandatory_rules(output: str) -> list[str]:
    """The mandatory rules the engine's output says were violated (sorted, each once). The engine's
    own error then says only "preview failed" or "update failed": the violations are in its output."""
    return sorted({match.group(1) for match in MANDATORY.finditer(output)})


def policy_config(settings: Settings) -> dict[str, Any]:
    """The pack's config (`--policy-pack-config`) for this environment on its cluster; production's
    allowed countries follow the file's ``move_complete`` (the program's preflight applies the same)."""
    try:
        return policy_config_for(
            settings.environment,
            settings.cluster,
            production_countries=production_countries(settings.move_complete),
        )
    except TargetConfigError as error:
        raise SettingsError(f"{settings.cluster.name}.yaml", "<policy target>", str(error)) from error


@contextmanager
def policy_args(settings: Settings) -> Iterator[dict[str, list[str]]]:
    """Keyword arguments for preview/up that run the policy pack against this environment's target."""
    config = policy_config(settings)
    with tempfile.TemporaryDirectory(prefix="smartnation-policy-") as tmp:
        path = Path(tmp) / f"{settings.environment}-policy.json"
        path.write_text(json.dumps(config, indent=2), encoding="utf-8")
        yield {"policy_packs": [str(POLICY_PACK)], "policy_pack_configs": [str(path)]}
