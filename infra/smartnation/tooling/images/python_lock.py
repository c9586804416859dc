"""services/constraints.txt: the exact versions of the city APIs' Python dependencies in their images.

The file is generated from what the project's virtual environment resolved for the ``services``
extra of pyproject.toml (the same versions the services' unit and contract tests ran with),
reduced to that extra's dependency closure on the images' Python (CPython 3.11, Linux x86_64):

    python -m smartnation.tooling.images.python_lock          # rewrite services/constraints.txt
    python -m smartnation.tooling.images.python_lock --check  # exit 1 when it differs from the venv

The image build installs exactly these pins, wheels only, with ``--no-deps``: what is not listed
here is not installed, so a missing dependency fails the build's import check instead of being
resolved anew from whatever the index offers that day.
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import re
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from smartnation.paths import REPO

CONSTRAINTS = REPO / "services" / "constraints.txt"
DISTRIBUTION = "smartnation"
EXTRA = "services"
# The images' interpreter (Debian bookworm's python3.11) and platform: markers are judged for it,
# not for whichever Python runs this module.
TARGET_MARKERS = {
    "python_version": "3.11",
    "python_full_version": "3.11.2",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "os_name": "posix",
}
HEADER = """\
# Exact versions of the city APIs' Python dependencies, installed into their images (wheels only,
# --no-deps) by `make images` (infra/smartnation/tooling/images/recipes/city_apis.py).
# Generated from the project's venv: the closure of pyproject.toml's `services` extra on CPython
# 3.11 / Linux x86_64. Regenerate after changing that extra or upgrading the venv:
#   .venv/bin/python -m smartnation.tooling.images.python_lock
"""
_LINE = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)")


def extra_requirements(distribution: str = DISTRIBUTION, extra: str = EXTRA) -> list[Requirement]:
    """The requirements ``distribution`` declares for ``extra`` (pyproject's optional dependencies)."""
    reqs = [Requirement(r) for r in metadata.distribution(distribution).requires or []]
    chosen = [r for r in reqs if r.marker is not None and r.marker.evaluate({**TARGET_MARKERS, "extra": extra})]
    for requirement in chosen:
        requirement.marker = None  # judged above: the closure starts from these unconditionally
    return chosen


def closure(requirements: list[Requirement]) -> dict[str, str]:
    """Canonical name -> installed version of ``requirements`` and everything they need (their
    requested extras included) on the target, as installed in this environment."""
    todo: list[tuple[Requirement, str]] = [(r, "") for r in requirements]
    found: dict[str, str] = {}
    expanded: set[tuple[str, str]] = set()
    while todo:
        requirement, extra = todo.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({**TARGET_MARKERS, "extra": extra}):
            continue
        dist = metadata.distribution(requirement.name)
        name = canonicalize_name(dist.metadata["Name"])
        found[name] = dist.version
        for wanted in ("", *sorted(requirement.extras)):
            if (name, wanted) in expanded:
                continue
            expanded.add((name, wanted))
            for line in dist.requires or []:
                todo.append((Requirement(line), wanted))
    return dict(sorted(found.items()))


def render(pins: dict[str, str]) -> str:
    return HEADER + "".join(f"{name}=={version}\n" for name, version in sorted(pins.items()))


def read(path: Path = CONSTRAINTS) -> dict[str, str]:
    """The pins of a constraints file: canonical name -> exact version; anything else is refused."""
    pins: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = _LINE.fullmatch(line)
        if not match:
            raise ValueError(f"{path}:{number}: expected NAME==VERSION, got {raw!r}")
        pins[canonicalize_name(match.group(1))] = match.group(2)
    return pins


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m smartnation.tooling.images.python_lock", description=__doc__)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    text = render(closure(extra_requirements()))
    if args.check:
        if CONSTRAINTS.read_text() != text:
            print(f"{CONSTRAINTS} differs from the venv's resolution: regenerate it", file=sys.stderr)
            return 1
        print(f"{CONSTRAINTS} matches the venv")
        return 0
    CONSTRAINTS.write_text(text)
    print(f"wrote {CONSTRAINTS} ({len(read())} pins)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
