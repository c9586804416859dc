"""Whether someone else's update holds a stack's lock, read from the file backend itself."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from smartnation.cli.workspace import tool_environment
from smartnation.paths import project_dir
from smartnation.settings.yaml_files import read_yaml


class StackLocked(Exception):
    """Another update holds the stack's lock (exit code STACK_LOCKED, like ConcurrentUpdateError)."""


def lock_holders(environment: str) -> list[dict[str, Any]] | None:
    """The lock files of the environment's stack in a file backend; None if it cannot be told.

    Previews and refresh previews do not take the lock (pulumi >= 3.2xx), so a gate that must not
    run during someone else's update looks at the lock itself. The file backend keeps it at
    `.pulumi/locks/<org>/<project>/<stack>/<id>.json` (older layout: `.pulumi/locks/<stack>/`).
    Other backends (S3) are not listed here: there the update itself refuses with STACK_LOCKED.
    """
    url = tool_environment(environment).get("PULUMI_BACKEND_URL", "")
    if not url.startswith("file://"):
        return None
    root = Path(url.removeprefix("file://")).expanduser() / ".pulumi" / "locks"
    project = _project_name()
    candidates = [*root.glob(f"*/{project}/{environment}/*.json"), *root.glob(f"{environment}/*.json")]
    holders = []
    for path in candidates:
        try:
            holders.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            holders.append({"file": str(path)})
    return holders


def _project_name() -> str:
    return str(read_yaml(project_dir() / "Pulumi.yaml")["name"])


def check_unlocked(environment: str) -> None:
    """Raise StackLocked naming who holds the lock, if anyone does."""
    holders = lock_holders(environment)
    if holders:
        who = holders[0]
        detail = ", ".join(f"{k} {who[k]}" for k in ("username", "hostname", "pid", "timestamp") if k in who)
        raise StackLocked(f"the stack {environment!r} is locked by another update ({detail or who})")
