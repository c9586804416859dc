"""What the two lock files share: a header, one sorted mapping, and a write only when the text changed."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import yaml


def render(header: str, key: str, entries: Mapping[str, str]) -> str:
    """The header, a blank line, then ``key:`` with the entries sorted (stable diffs in review)."""
    body = yaml.safe_dump({key: dict(sorted(entries.items()))}, default_flow_style=False, sort_keys=False)
    return header + "\n" + body


def write_if_changed(path: Path, text: str) -> bool:
    """Writes ``text``; returns whether the file's content changed (so a caller can say so)."""
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    path.write_text(text, encoding="utf-8")
    return True
