"""Real nodes need kubelet and kube-proxy from the pinned Kubernetes build; a cache built
before they joined the kubernetes tool is found incomplete and built again."""

from __future__ import annotations

from pathlib import Path

import pytest

from smartnation.tooling.toolchain import bootstrap as boot
from smartnation.tooling.toolchain.cache import CacheLayout
from smartnation.tooling.toolchain.recipes import RECIPES, Recipe
from smartnation.tooling.toolchain.versions import Pin

pytestmark = pytest.mark.unit


def test_the_kubernetes_tool_provides_and_verifies_kubelet_and_kube_proxy():
    recipe = RECIPES["kubernetes"]
    assert {"kubelet", "kube-proxy"} <= set(recipe.binaries)
    assert {"kubelet", "kube-proxy"} <= set(recipe.versioned_binaries())
    assert recipe.on_path


def _script(path: Path, version: str) -> None:
    path.write_text(f"#!/bin/sh\necho 'Kubernetes v{version}'\n")
    path.chmod(0o755)


def test_a_cached_build_lacking_a_binary_is_built_again_and_replaced(tmp_path, monkeypatch):
    cache = CacheLayout(tmp_path / "cache")
    for d in (cache.tools, cache.logs, cache.bin):
        d.mkdir(parents=True)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-path"))
    builds = []

    def build(go, pin, out, progress):
        builds.append(pin.version)
        for name in ("agent", "newer-agent"):
            _script(out / name, pin.version)

    recipe = Recipe("faketool", ("agent", "newer-agent"), ("--version",), r"Kubernetes v(\d+\.\d+\.\d+)", build)
    monkeypatch.setitem(boot.RECIPES, "faketool", recipe)
    monkeypatch.setattr(boot, "ORDER", ("faketool",))
    pins = {"faketool": Pin(name="faketool", version="1.37.2", module="example.com/fake", module_version="v1")}
    b = boot.Bootstrap(cache, pins, python="python3")
    # A finished build from before the recipe named newer-agent.
    old = cache.tool_dir("faketool", "1.37.2") / "bin"
    old.mkdir(parents=True)
    _script(old / "agent", "1.37.2")

    assert b.ensure("faketool") == "built"
    assert builds == ["1.37.2"]
    assert (old / "newer-agent").exists()
    assert (cache.bin / "newer-agent").resolve() == old / "newer-agent"
    assert not list(cache.tools.glob(".stale-*")) and not list(cache.tools.glob(".partial-*"))
    # Complete now: the next run builds nothing.
    assert b.ensure("faketool") == "cached"
    assert builds == ["1.37.2"]
