"""`make cache-trim`: the Go build cache and the extracted module sources go, the module
downloads (what a rebuild reads offline) stay, and builds read those downloads first."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from smartnation.tooling.toolchain.cache import CacheLayout
from smartnation.tooling.toolchain.cache_trim import trim
from smartnation.tooling.toolchain.gobuild import GoRunner, goproxy

pytestmark = pytest.mark.unit


def _write(path: Path, size: int, read_only_dir: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    if read_only_dir:  # as Go leaves extracted module sources
        os.chmod(path.parent, stat.S_IRUSR | stat.S_IXUSR)


def test_trim_keeps_only_the_module_downloads(tmp_path):
    cache = CacheLayout(tmp_path)
    kept = cache.gomodcache / "cache" / "download" / "github.com" / "x" / "@v" / "v1.0.0.zip"
    _write(kept, 100)
    _write(cache.gomodcache / "github.com" / "x@v1.0.0" / "main.go", 1000, read_only_dir=True)
    _write(cache.gomodcache / "cache" / "vcs" / "abc" / "HEAD", 10)
    _write(cache.gocache / "00" / "deadbeef-d", 5000)

    result = trim(cache)

    assert kept.read_bytes() == b"x" * 100
    assert not (cache.gomodcache / "github.com").exists()
    assert not (cache.gomodcache / "cache" / "vcs").exists()
    assert not cache.gocache.exists()
    assert (result.before, result.after) == (6110, 100)


def test_trim_of_an_empty_cache_does_nothing(tmp_path):
    result = trim(CacheLayout(tmp_path))
    assert (result.before, result.after, result.removed) == (0, 0, ())


def test_builds_read_the_kept_downloads_before_any_network_proxy(tmp_path, monkeypatch):
    downloads = tmp_path / "go" / "mod" / "cache" / "download"
    monkeypatch.setenv("GOPROXY", "https://mirror.example.mc/go")
    assert goproxy(downloads) == f"file://{downloads},https://mirror.example.mc/go"
    monkeypatch.delenv("GOPROXY")
    assert goproxy(downloads) == f"file://{downloads},https://proxy.golang.org,direct"
    runner = GoRunner(CacheLayout(tmp_path), tmp_path / "log")
    assert runner.env()["GOPROXY"] == f"file://{downloads},https://proxy.golang.org,direct"
    # A nested build that inherits ours does not stack it twice.
    monkeypatch.setenv("GOPROXY", runner.env()["GOPROXY"])
    assert goproxy(downloads) == f"file://{downloads},https://proxy.golang.org,direct"
