"""Trim the Go caches once the tools and images are built (`make cache-trim`, run by `make up`
and `make test` after `make images`).

A cold build leaves about 20 GB of Go caches: the compiled packages (GOCACHE, ~13 GB) and the
extracted module sources (~6 GB) that nothing reads again once the binaries exist. What a
rebuild needs (a pin change, a new tool, a sealed site with no module proxy) is the module
downloads themselves, the zips under ``<GOMODCACHE>/cache/download``: about 1.4 GB, and a valid
GOPROXY (``file://`` URL) that gobuild.py puts in front of the network proxy. So this keeps the
downloads and removes the rest; a later build re-extracts what it needs from them and compiles
from scratch (slower than warm, never a download of what was downloaded once).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

from smartnation.tooling.toolchain.cache import CacheLayout, layout

KEPT = Path("cache") / "download"
"""Below GOMODCACHE: the module zips, .mod and .info files; a GOPROXY layout as it is."""


@dataclass(frozen=True)
class Trimmed:
    before: int
    after: int
    removed: tuple[Path, ...]


def tree_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def _make_writable(path: Path) -> None:
    # Go writes module sources read-only; rmtree needs to unlink inside those directories.
    for root, dirs, _files in os.walk(path):
        for name in dirs:
            full = os.path.join(root, name)
            mode = os.lstat(full).st_mode
            if not mode & stat.S_IWUSR:
                os.chmod(full, mode | stat.S_IWUSR)
    if path.is_dir():
        os.chmod(path, os.lstat(path).st_mode | stat.S_IWUSR)


def removable(cache: CacheLayout) -> list[Path]:
    """What goes: the build cache, and every part of GOMODCACHE but the downloads."""
    doomed: list[Path] = []
    if cache.gocache.exists():
        doomed.append(cache.gocache)
    modcache = cache.gomodcache
    if modcache.exists():
        for entry in sorted(modcache.iterdir()):
            if entry.name != KEPT.parts[0]:
                doomed.append(entry)
        inner = modcache / KEPT.parts[0]
        if inner.exists():
            doomed += [e for e in sorted(inner.iterdir()) if e.name != KEPT.parts[1]]
    return doomed


def trim(cache: CacheLayout) -> Trimmed:
    roots = [p for p in (cache.gocache, cache.gomodcache) if p.exists()]
    before = sum(tree_size(p) for p in roots)
    doomed = removable(cache)
    for path in doomed:
        if path.is_dir() and not path.is_symlink():
            _make_writable(path)
            shutil.rmtree(path)
        else:
            path.unlink()
    after = sum(tree_size(p) for p in roots if p.exists())
    return Trimmed(before, after, tuple(doomed))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cache-trim", description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    cache = layout()
    result = trim(cache)
    gib = 2**30
    print(
        f"go caches: {result.before / gib:.1f} GiB -> {result.after / gib:.1f} GiB "
        f"(kept the module downloads in {cache.gomodcache / KEPT}, what a rebuild reads offline)",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
