"""Talking to the operator: engine output as it comes, confirmations that never hang CI, tables."""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Sequence
from typing import TextIO

log = logging.getLogger("smartnation")


def stream_to(out: TextIO):  # noqa: ANN201 (a callback for the Automation API's on_output)
    """A line callback for engine output: long work shows its progress as it happens."""

    def write(line: str) -> None:
        out.write(line if line.endswith("\n") else line + "\n")
        out.flush()

    return write


def confirm(question: str, assume_yes: bool) -> bool:
    """Yes with --yes; otherwise ask, and refuse when there is no terminal to ask on."""
    if assume_yes:
        return True
    if not sys.stdin.isatty():
        log.error("%s: no terminal to ask on; pass --yes to proceed", question)
        return False
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def render_table(rows: Sequence[Sequence[str]]) -> str:
    """Rows as plain-text columns, each as wide as its widest cell; the first row is the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    out = io.StringIO()
    for row in rows:
        out.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() + "\n")
    return out.getvalue()
