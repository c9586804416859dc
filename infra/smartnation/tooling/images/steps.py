"""Runs one build step's command with its output in the image's log, and names the step when it fails."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path


class ImageBuildError(RuntimeError):
    """A step of an image build failed: the message names the image, the step and the log file."""

    def __init__(self, image: str, step: str, log: Path, detail: str) -> None:
        super().__init__(f"{image}: step '{step}' failed: {detail}\n  full log: {log}")
        self.image = image
        self.step = step
        self.log = log


class StepRunner:
    """Appends every command and its output to one log per image."""

    def __init__(self, image: str, log: Path) -> None:
        self.image = image
        self.log = log

    def note(self, text: str) -> None:
        with self.log.open("a") as fh:
            fh.write(text.rstrip("\n") + "\n")

    def run(
        self,
        step: str,
        args: Sequence[str],
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> str:
        with self.log.open("a") as fh:
            fh.write(f"\n[{step}] $ {' '.join(args)}\n")
            fh.flush()
            try:
                proc = subprocess.run(
                    list(args),
                    cwd=cwd,
                    env={**os.environ, **(env or {})},
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
            except OSError as exc:
                raise self.fail(step, f"cannot run {args[0]}: {exc}") from exc
            fh.write(proc.stdout)
        if proc.returncode != 0:
            tail = "\n    ".join(proc.stdout.strip().splitlines()[-6:])
            raise self.fail(step, f"`{' '.join(args[:3])} ...` exited {proc.returncode}:\n    {tail}")
        return proc.stdout

    def fail(self, step: str, detail: str) -> ImageBuildError:
        self.note(f"[{step}] FAILED: {detail}")
        return ImageBuildError(self.image, step, self.log, detail)
