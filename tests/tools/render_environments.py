"""Render every environment on every cluster under Pulumi mocks and write one JSON per build.

Each file lists every registration as the engine would receive it: URN, parent, provider,
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

import pulumi

from tests.unit.harness import (
    CLUSTERS,
    ENVIRONMENTS,
    Registered,
    environments_copy,
    install_mocks,
    run,
    secrets_for,
    set_secrets,
)


def _record(registered: Registered) -> dict[str, Any]:
    """One registration as the engine receives it (the harness's RecordingMonitor saw it)."""
    return {
        "urn": registered.urn,
        "parent": registered.parent,
        "provider": registered.provider,
        "protect": registered.protect,
        "aliases": list(registered.aliases),
        "dependencies": list(registered.dependencies),
        "delete_before_replace": registered.delete_before_replace,
        "ignore_changes": list(registered.ignore_changes),
        "inputs": registered.inputs,
    }


def render(environment: str, cluster: str, workdir: Path) -> list[dict[str, Any]]:
    from smartnation.settings import load_settings

    try:
        from smartnation.program.platform import build
    except ImportError:  # the layout before the architecture issue
        from smartnation.program.city_platform import build  # type: ignore[no-redef]

    root = environments_copy(workdir, environment, cluster)
    settings = load_settings(environment, root)
    recorder = install_mocks(stack=environment)
    set_secrets(secrets_for(settings))
    try:
        run(recorder, lambda: build(settings))
    finally:
        pulumi.runtime.set_all_config({})
    return sorted((_record(r) for r in recorder.resources), key=lambda r: r["urn"])


def main(argv: list[str]) -> int:
    import tempfile

    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    for environment in ENVIRONMENTS:
        for cluster in CLUSTERS:
            with tempfile.TemporaryDirectory() as tmp:
                records = render(environment, cluster, Path(tmp))
            path = out / f"{environment}@{cluster}.json"
            path.write_text(json.dumps(records, indent=1, sort_keys=True, default=str) + "\n", encoding="utf-8")
            print(f"{path}: {len(records)} registrations")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
