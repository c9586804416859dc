"""The promotion audit log (environments/audit/promotions.jsonl): one JSON line per promotion."""

from __future__ import annotations

import getpass
import json
import logging
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from smartnation.cli.console import render_table
from smartnation.settings import SettingsError

AUDIT_FILE = "audit/promotions.jsonl"
_log = logging.getLogger("smartnation")
OPERATOR_VARIABLE = "SMARTNATION_OPERATOR"
# Set by the GitHub Actions runner itself, not by the workflow: the user who started the run.
GITHUB_ACTOR_VARIABLE = "GITHUB_ACTOR"

# What became of a promotion (AuditEntry.result).
APPLIED = "applied"
WRITTEN_ONLY = "written-only"
REFUSED = "refused"
FAILED = "failed"  # the file was written, the update of TARGET failed


@dataclass(frozen=True)
class SourceUpdate:
    """The SOURCE stack's last update, the one whose releases are promoted."""

    version: int | None
    """The stack's update number (`pulumi stack history`)."""
    time: str | None
    """When it ended (UTC, ISO 8601)."""
    result: str | None
    """`succeeded`, `failed` or `in-progress`."""


@dataclass(frozen=True)
class AuditEntry:
    """One line of environments/audit/promotions.jsonl."""

    when: str
    """UTC time the promotion ended, ISO 8601 with a Z."""
    who: str
    """In GitHub Actions `github:<GITHUB_ACTOR>` (the user who started the run); elsewhere
    $SMARTNATION_OPERATOR, else git's user.email, else the login name."""
    source: str
    target: str
    result: str
    """APPLIED, WRITTEN_ONLY, REFUSED or FAILED."""
    reason: str
    """Why it was refused or failed; what was done otherwise."""
    source_update: SourceUpdate | None = None
    releases: Mapping[str, Any] | None = None
    """SOURCE's releases block (what TARGET got or would have got)."""
    target_update: SourceUpdate | None = None
    """TARGET's update run by --apply."""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        data = asdict(self)
        if not data["extra"]:
            del data["extra"]
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def operator(project: Path) -> str:
    """Who is promoting.

    In GitHub Actions it is `github:<actor>`, from the runner's GITHUB_ACTOR: a workflow step can
    set SMARTNATION_OPERATOR to anything, so it is ignored there. Elsewhere: $SMARTNATION_OPERATOR,
    else git user.email, else the login name."""
    if os.environ.get("GITHUB_ACTIONS") == "true":
        actor = os.environ.get(GITHUB_ACTOR_VARIABLE, "").strip()
        if not actor:
            raise SettingsError(
                f"${GITHUB_ACTOR_VARIABLE}", "<unset>", "running in GitHub Actions without the user who started the run"
            )
        return f"github:{actor}"
    if os.environ.get(OPERATOR_VARIABLE):
        return os.environ[OPERATOR_VARIABLE]
    try:
        email = subprocess.run(
            ["git", "config", "user.email"], cwd=project, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        email = ""
    if email:
        return email
    return os.environ.get("USER") or getpass.getuser()


def append_audit(environments: Path, entry: AuditEntry) -> Path:
    """Append one line in a single write(2) on an O_APPEND descriptor: a process killed here
    leaves the whole line or none of it. If an earlier writer was cut off mid-line (a torn last
    line, no newline), the new entry starts on a line of its own."""
    path = environments / AUDIT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (entry.to_json() + "\n").encode("utf-8")
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def read_audit(environments: Path) -> list[dict[str, Any]]:
    """The entries, oldest first. A line that is not a JSON object is a write torn by a killed
    process: it is skipped with a warning naming the file and line, never an error (the audit of
    every other promotion stays readable)."""
    path = environments / AUDIT_FILE
    if not path.is_file():
        return []
    entries = []
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            entry = None
        if not isinstance(entry, dict):
            _log.warning(
                "%s/%s line %d: not a whole entry (a torn write?), skipped", environments.name, AUDIT_FILE, number
            )
            continue
        entries.append(entry)
    return entries


def render_audit(entries: Sequence[Mapping[str, Any]]) -> str:
    """The audit entries as a plain-text table, oldest first."""
    header = ("when", "who", "promotion", "source update", "result", "reason")
    rows = [header]
    for entry in entries:
        update = entry.get("source_update") or {}
        rows.append(
            (
                str(entry.get("when", "")),
                str(entry.get("who", "")),
                f"{entry.get('source', '?')} -> {entry.get('target', '?')}",
                f"#{update['version']}" if update.get("version") is not None else "-",
                str(entry.get("result", "")),
                str(entry.get("reason", "")),
            )
        )
    return render_table(rows)
