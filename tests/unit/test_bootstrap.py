"""The bootstrap's own logic: reuse, build aside then rename, clear failures, strict versions file.

Recipes are replaced by tiny fakes that write shell scripts, so these run in milliseconds with
no Go; the real builds are exercised by `make bootstrap` and checked by tests/integration.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from smartnation.settings import SettingsError
from smartnation.tooling.toolchain import bootstrap as boot
from smartnation.tooling.toolchain.cache import CacheLayout
from smartnation.tooling.toolchain.gobuild import StepError
from smartnation.tooling.toolchain.recipes import Recipe
from smartnation.tooling.toolchain.versions import Pin, load_pins

pytestmark = pytest.mark.unit


def _script(path: Path, version: str) -> None:
    path.write_text(f"#!/bin/sh\necho 'fake-tool version v{version}'\n")
    path.chmod(0o755)


def _recipe(name: str, build) -> Recipe:
    return Recipe(name, (name,), ("--version",), r"v(\d+\.\d+\.\d+)", build)


@pytest.fixture()
def setup(tmp_path, monkeypatch):
    cache = CacheLayout(tmp_path / "cache")
    for d in (cache.tools, cache.logs, cache.bin):
        d.mkdir(parents=True)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-path"))  # nothing to reuse from PATH

    def make(build, version="1.2.3"):
        recipe = _recipe("faketool", build)
        monkeypatch.setitem(boot.RECIPES, "faketool", recipe)
        monkeypatch.setattr(boot, "ORDER", ("faketool",))
        pins = {"faketool": Pin(name="faketool", version=version, module="example.com/fake", module_version="v1")}
        return boot.Bootstrap(cache, pins, python="python3"), cache

    return make


def test_a_successful_build_is_renamed_into_place_and_linked(setup):
    calls = []

    def build(go, pin, out, progress):
        calls.append(pin.version)
        progress("compiling")
        _script(out / "faketool", pin.version)

    b, cache = setup(build)
    assert b.ensure("faketool") == "built"
    assert (cache.tool_dir("faketool", "1.2.3") / "bin" / "faketool").exists()
    assert (cache.bin / "faketool").resolve() == (cache.tool_dir("faketool", "1.2.3") / "bin" / "faketool")
    assert not list(cache.tools.glob(".partial-*"))
    # A second run finds the finished build and builds nothing.
    assert b.ensure("faketool") == "cached"
    assert calls == ["1.2.3"]


def test_a_failed_step_names_tool_version_step_and_log_and_leaves_nothing_finished(setup):
    def build(go, pin, out, progress):
        raise StepError("download", "module example.com/fake@v1: 403 Forbidden")

    b, cache = setup(build)
    with pytest.raises(boot.BootstrapError) as err:
        b.ensure("faketool")
    message = str(err.value)
    assert "faketool 1.2.3" in message
    assert "step 'download'" in message
    assert str(cache.log_file("faketool", "1.2.3")) in message
    assert not cache.tool_dir("faketool", "1.2.3").exists()
    assert not (cache.bin / "faketool").exists()


def test_a_binary_reporting_another_version_fails_verification(setup):
    def build(go, pin, out, progress):
        _script(out / "faketool", "9.9.9")

    b, cache = setup(build)
    with pytest.raises(boot.BootstrapError) as err:
        b.ensure("faketool")
    assert "step 'verify'" in str(err.value) and "9.9.9" in str(err.value)
    assert not cache.tool_dir("faketool", "1.2.3").exists()


def test_a_matching_binary_on_path_is_used_instead_of_building(setup, tmp_path, monkeypatch):
    system = tmp_path / "usr-bin"
    system.mkdir()
    _script(system / "faketool", "1.2.3")
    monkeypatch.setenv("PATH", str(system))

    def build(go, pin, out, progress):
        raise AssertionError("must not build")

    b, cache = setup(build)
    monkeypatch.setenv("PATH", str(system))
    assert b.ensure("faketool") == "path"
    assert (cache.bin / "faketool").resolve() == (system / "faketool")


def test_a_binary_on_path_with_another_version_is_not_used(setup, tmp_path, monkeypatch):
    system = tmp_path / "usr-bin"
    system.mkdir()
    _script(system / "faketool", "1.0.0")  # like Debian's kubectl 1.20 next to a pinned 1.37

    def build(go, pin, out, progress):
        _script(out / "faketool", pin.version)

    b, _ = setup(build)
    monkeypatch.setenv("PATH", str(system))
    assert b.ensure("faketool") == "built"


def test_the_versions_file_pins_every_tool():
    pins = load_pins()
    assert set(pins) == set(boot.ORDER)
    assert all(p.version and not p.version.startswith("v") for p in pins.values())


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        ("pulumi: {version: 1.0.0, modul: x}\n", "pulumi.modul", "unknown key"),
        ("pulumi: {version: v1.0.0}\n", "pulumi.version", "without a leading 'v'"),
        ("pulumi: {version: ''}\n", "pulumi.version", "without a leading 'v'"),
        ("pulumi: {module: x}\n", "pulumi.version", "required key is missing"),
        ("pulumi: {version: 1.0.0, name: other}\n", "pulumi.name", "unknown key"),
        ("kubectl: {version: 1.0.0}\n", "kubectl", "unknown key"),
        ("pulumi: [1, 2]\n", "pulumi", "expected a mapping"),
        ("", "pulumi", "required key is missing"),
        ("pulumi: {version: 1.0.0}\npulumi: {version: 2.0.0}\n", "<line", "duplicate key 'pulumi'"),
    ],
)
def test_a_malformed_versions_file_names_the_file_and_key(tmp_path, text, key, words):
    path = tmp_path / "versions.yaml"
    full = load_pins()
    lines = [f"{name}: {{version: {pin.version}}}\n" for name, pin in full.items() if name != "pulumi"]
    path.write_text("".join(lines) + text)
    with pytest.raises(SettingsError) as err:
        load_pins(path)
    assert str(err.value).startswith(f"{path}: {key}"), err.value
    assert words in str(err.value)
