"""How far `smartnation move ENV --to CLUSTER` got: one small JSON file per environment.

``<project>/.smartnation/move/<env>.json`` (the project's own state directory, never committed)
holds the declared move the steps ran for (``to``, ``phase``), the stack's update number after
the last finished step, and each finished step with its time. A re-run keeps a finished step only
when the declared move and the stack's update number are the same as recorded: anything else (a
new phase declared, an update by someone else in between) starts the phase's steps over, which is
safe because every step is (the apply is an idempotent `up`).

Written atomically (a temporary file beside it, fsync, rename, fsync of the directory): a process
killed with -9 leaves the previous file or the new one, never half of one. A file that is not what
this module writes (cut by a full disk, edited by hand) is reported naming it, never a traceback.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from smartnation.cli.releases_copy import write_atomically
from smartnation.paths import project_dir

STATE_DIR = Path(".smartnation") / "move"
"""Inside the project directory (ignored by git: /.smartnation/ in .gitignore)."""
VERSION = 1


class TornProgress(Exception):
    """The progress file cannot be read as one; the message names it and says why."""


@dataclass
class Progress:
    environment: str
    to: str
    phase: str
    stack_update: int | None
    """The stack's update number (how many updates `pulumi stack history` lists) after the last finished step."""
    finished: dict[str, str] = field(default_factory=dict)
    """Step name -> when it finished (UTC, ISO 8601)."""
    marks: dict[str, Any] = field(default_factory=dict)
    """What a step leaves for a later one, a re-run included (the cutover's fence: its WAL position
    and when writes stopped, so the catch-up waits for that position and the pause is measured
    from then even across a kill -9)."""

    def keeps(self, to: str, phase: str, stack_update: int | None) -> bool:
        """Whether the steps recorded here still count for this run."""
        return (self.to, self.phase, self.stack_update) == (to, phase, stack_update)


def progress_file(environment: str) -> Path:
    return project_dir() / STATE_DIR / f"{environment}.json"


def load(environment: str) -> Progress | None:
    """The recorded progress, None when there is none; TornProgress when the file is not one."""
    path = progress_file(environment)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        raise TornProgress(f"{path}: cannot be read: {error}") from None
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as error:
        raise TornProgress(
            f"{path}: not whole JSON ({error.msg} at line {error.lineno}, column {error.colno})"
        ) from None
    if not isinstance(data, dict) or data.get("version") != VERSION:
        raise TornProgress(f"{path}: not a progress file of version {VERSION}")
    finished = data.get("finished")
    update = data.get("stack_update")
    marks = data.get("marks", {})
    if (
        data.get("environment") != environment
        or not all(isinstance(data.get(key), str) for key in ("to", "phase"))
        or not (update is None or (isinstance(update, int) and not isinstance(update, bool)))
        or not isinstance(finished, dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in finished.items())
        or not isinstance(marks, dict)
    ):
        raise TornProgress(
            f"{path}: keys environment ({environment}), to, phase, stack_update, finished and marks are not all "
            "as written"
        )
    return Progress(environment, data["to"], data["phase"], update, dict(finished), dict(marks))


def save(progress: Progress) -> Path:
    """Replace the file atomically with ``progress``."""
    path = progress_file(progress.environment)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps({"version": VERSION, **asdict(progress)}, indent=2, sort_keys=True) + "\n"
    write_atomically(path, data)
    return path
