"""Talking to the operator: engine output as it comes, and confirmations that never hang CI."""

from __future__ import annotations

import logging
import sys
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
