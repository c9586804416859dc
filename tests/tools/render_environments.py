"""Render every environment on every cluster under Pulumi mocks and write one JSON per build.

The program runs under smartnation.cli.mock_program (the redacted preview's renderer). Each
file lists every registration as the engine would receive it: URN, parent, provider,
protect, aliases, dependencies and the inputs (secrets kept as markers). Two renderings of
the same tree are byte-identical, so a refactor is checked by rendering before and after and
diffing the folders:

    python -m tests.tools.render_environments OUT_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from smartnation.cli.mock_program import records, render
from tests.unit.harness import CLUSTERS, ENVIRONMENTS, environments_copy


def render_on(environment: str, cluster: str, workdir: Path) -> list[dict[str, Any]]:
    """Every registration of ``environment`` with its ``cluster:`` switched to ``cluster``."""
    return records(render(environment, environments_copy(workdir, environment, cluster)))


def main(argv: list[str]) -> int:
    import tempfile

    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    for environment in ENVIRONMENTS:
        for cluster in CLUSTERS:
            with tempfile.TemporaryDirectory() as tmp:
                records = render_on(environment, cluster, Path(tmp))
            path = out / f"{environment}@{cluster}.json"
            path.write_text(json.dumps(records, indent=1, sort_keys=True, default=str) + "\n", encoding="utf-8")
            print(f"{path}: {len(records)} registrations")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
