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
from pulumi.runtime import rpc
from pulumi.runtime import settings as runtime_settings

from tests.unit.harness import CLUSTERS, ENVIRONMENTS, Recorder, environments_copy, run, secrets_for, set_secrets


class _Recording:
    """Wraps the mock monitor: records each RegisterResource request before delegating."""

    def __init__(self, monitor: Any, into: list[dict[str, Any]]) -> None:
        self._monitor = monitor
        self._into = into

    def __getattr__(self, name: str) -> Any:
        return getattr(self._monitor, name)

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - the gRPC method name
        response = self._monitor.RegisterResource(request)
        inputs = rpc.deserialize_properties(request.object, keep_unknowns=True)
        self._into.append(
            {
                "urn": response.urn,
                "parent": request.parent,
                "provider": request.provider,
                "protect": request.protect if request.HasField("protect") else None,
                "aliases": sorted(str(a).replace("\n", " ") for a in request.aliases),
                "dependencies": sorted(request.dependencies),
                "delete_before_replace": request.deleteBeforeReplace,
                "ignore_changes": list(request.ignoreChanges),
                "inputs": inputs,
            }
        )
        return response


def render(environment: str, cluster: str, workdir: Path) -> list[dict[str, Any]]:
    from smartnation.settings import load_settings

    try:
        from smartnation.program.platform import build
    except ImportError:  # the layout before the architecture issue
        from smartnation.program.city_platform import build  # type: ignore[no-redef]

    root = environments_copy(workdir, environment, cluster)
    settings = load_settings(environment, root)
    recorder = Recorder()
    pulumi.runtime.set_mocks(recorder, project="smartnation", stack=environment, preview=False)
    records: list[dict[str, Any]] = []
    runtime_settings.SETTINGS.monitor = _Recording(runtime_settings.SETTINGS.monitor, records)
    set_secrets(secrets_for(settings))
    try:
        run(recorder, lambda: build(settings))
    finally:
        pulumi.runtime.set_all_config({})
    return sorted(records, key=lambda r: r["urn"])


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
