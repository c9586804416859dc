"""debian-packages.lock.yaml: every Debian package an image unpacks is pinned, and a build that
got another version, or a package the lock lacks, fails naming the file and the package."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from smartnation.tooling.images import debian_lock, main, rootfs
from smartnation.tooling.images.pins import load_pins
from smartnation.tooling.images.steps import ImageBuildError, StepRunner

pytestmark = pytest.mark.unit

LOCKED = {"libc6": "2.36-9+deb12u14", "libzstd1": "1.5.4+dfsg2-5", "mosquitto": "2.0.11-1.2+deb12u2"}


def test_the_repository_lock_covers_every_package_images_yaml_pins_at_that_version() -> None:
    pins = load_pins()
    assert pins.debian_lock is not None
    locked = dict(pins.debian_lock)
    for pin in pins.images.values():
        for name, version in pin.debian_packages:
            assert locked[name] == version, f"{name}: images.yaml pins {version}, the Debian lock {locked.get(name)}"


def test_the_lock_round_trips_and_its_versions_stay_strings(tmp_path: Path) -> None:
    path = tmp_path / "lock.yaml"
    packages = {**LOCKED, "adduser": "3.134", "debconf": "1.5.82"}
    assert debian_lock.write(path, packages) is True
    assert debian_lock.read(path, "L") == packages
    assert debian_lock.write(path, packages) is False


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("packages: [libc6]\n", "L: expected one key, `packages`"),
        ("packages: {}\nextra: 1\n", "L: expected one key, `packages`"),
        ("packages: {}\n", "L: packages is empty"),
        ("packages: {Libc6: '2.36-9'}\n", "L: packages.Libc6: not a Debian package name"),
        ("packages: {adduser: 3.134}\n", "L: packages.adduser: 3.134 is not a Debian version"),
        ("packages: {libc6: 'two'}\n", "L: packages.libc6: 'two' is not a Debian version"),
        ("packages: {libc6: [1]\n", "L: cannot read"),
    ],
)
def test_a_malformed_lock_is_refused_with_the_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "lock.yaml"
    path.write_text(text)
    with pytest.raises(debian_lock.DebianLockError) as caught:
        debian_lock.read(path, "L")
    assert str(caught.value).startswith(message)


def test_a_missing_lock_says_what_writes_it(tmp_path: Path) -> None:
    with pytest.raises(debian_lock.DebianLockError, match=r"L: missing: `make images-debian-update` writes it"):
        debian_lock.read(tmp_path / "absent.yaml", "L")


def test_load_pins_refuses_a_broken_lock_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "debian.lock.yaml"
    path.write_text("packages: {libc6: 2}\n")
    with pytest.raises(debian_lock.DebianLockError, match=rf"{path}: packages.libc6: 2 is not a Debian version"):
        load_pins(debian_lock_file=path)


def test_preferences_pin_every_locked_version_above_any_newer_one() -> None:
    text = debian_lock.preferences(LOCKED)
    stanzas = [s for s in text.split("\n\n") if s.strip()]
    assert len(stanzas) == len(LOCKED)
    assert "Package: libzstd1\nPin: version 1.5.4+dfsg2-5\nPin-Priority: 1001" in stanzas
    # Priority over 1000: apt takes the locked version even when a newer one is the candidate.
    assert all(s.endswith("Pin-Priority: 1001") for s in stanzas)


def test_check_accepts_exactly_the_locked_versions() -> None:
    debian_lock.check({"libc6": "2.36-9+deb12u14", "libzstd1": "1.5.4+dfsg2-5"}, LOCKED, "broker")


def test_check_names_a_package_that_went_in_newer_than_locked() -> None:
    with pytest.raises(debian_lock.DebianLockError) as caught:
        debian_lock.check({"libzstd1": "1.5.4+dfsg2-5+deb12u1"}, LOCKED, "broker", "L")
    text = str(caught.value)
    assert "the Debian packages of broker are not the locked ones" in text
    assert "L: packages.libzstd1: the lock says 1.5.4+dfsg2-5, 1.5.4+dfsg2-5+deb12u1 went in" in text
    assert "make images-debian-update" in text


def test_check_names_a_package_the_lock_lacks() -> None:
    with pytest.raises(debian_lock.DebianLockError, match=r"L: packages.tzdata: missing \(broker needs it; 2026f"):
        debian_lock.check({"tzdata": "2026f-0+deb12u1", "libc6": "2.36-9+deb12u14"}, LOCKED, "broker", "L")


def test_manifest_lines_of_python_and_go_programs_are_not_debian_packages() -> None:
    lines = [
        "libc6 2.36-9+deb12u14",
        "python:boto3 1.35.0",
        "mc v0.0.0-20250313080218-cf909e1063a9 (built from its Go module)",
        "libattr1 1:2.5.1-4",
    ]
    assert debian_lock.parse_manifest(lines) == {"libc6": "2.36-9+deb12u14", "libattr1": "1:2.5.1-4"}


def test_union_refuses_one_package_at_two_versions() -> None:
    assert debian_lock.union({"a": {"libc6": "1-1"}, "b": {"libc6": "1-1", "dash": "2-2"}}) == {
        "libc6": "1-1",
        "dash": "2-2",
    }
    with pytest.raises(debian_lock.DebianLockError, match=r"packages.libc6: a got 1-1, b got 1-2"):
        debian_lock.union({"a": {"libc6": "1-1"}, "b": {"libc6": "1-2"}})


def test_changes_list_updates_additions_and_removals() -> None:
    assert debian_lock.changes({"a": "1", "b": "1", "c": "1"}, {"a": "1", "b": "2", "d": "1"}) == [
        "b 1 -> 2",
        "-c 1",
        "+d 1",
    ]


class _Runner(StepRunner):
    """Stands in for mmdebstrap: records its arguments, runs its setup hook's copy, writes the manifest."""

    def __init__(self, log: Path, went_in: dict[str, str]) -> None:
        super().__init__("broker", log)
        self.went_in = went_in
        self.args: list[str] = []
        self.preferences = ""

    def run(self, step, args, *, cwd=None, env=None) -> str:  # noqa: ANN001
        self.args = list(args)
        target = Path(args[-2])
        hooks = [a for a in args if a.startswith("--setup-hook=")]
        if hooks:
            source = hooks[0].split(" && cp ", 1)[1].split(" ", 1)[0]
            self.preferences = Path(source).read_text()
        target.mkdir(parents=True, exist_ok=True)
        lines = "".join(f"{n} {v}\n" for n, v in sorted(self.went_in.items()))
        (target / ".smartnation-packages").write_text(lines)
        return ""


def _pins(locked: dict[str, str] | None):  # noqa: ANN202
    import dataclasses

    return dataclasses.replace(load_pins(), debian_lock=None if locked is None else tuple(sorted(locked.items())))


def test_debian_rootfs_hands_apt_the_lock_and_leaves_no_preferences_behind(tmp_path: Path) -> None:
    runner = _Runner(tmp_path / "log", {"libc6": "2.36-9+deb12u14", "mosquitto": "2.0.11-1.2+deb12u2"})
    target = tmp_path / "work" / "rootfs"
    manifest = rootfs.debian_rootfs(runner, _pins(LOCKED), ["mosquitto=2.0.11-1.2+deb12u2"], target)
    assert manifest == ["libc6 2.36-9+deb12u14", "mosquitto 2.0.11-1.2+deb12u2"]
    assert runner.preferences == debian_lock.preferences(LOCKED)
    # The hook runs before apt resolves: it must be a setup hook, not an extract hook.
    assert any(a.startswith("--setup-hook=") and "preferences.d" in a for a in runner.args)
    assert sorted(p.name for p in target.parent.iterdir()) == ["rootfs"]


def test_debian_rootfs_fails_when_apt_took_another_version_than_locked(tmp_path: Path) -> None:
    runner = _Runner(tmp_path / "log", {"libzstd1": "1.5.4+dfsg2-5+deb12u1", "mosquitto": "2.0.11-1.2+deb12u2"})
    with pytest.raises(ImageBuildError) as caught:
        rootfs.debian_rootfs(runner, _pins(LOCKED), ["mosquitto=2.0.11-1.2+deb12u2"], tmp_path / "w" / "rootfs")
    assert caught.value.step == "debian-lock"
    assert "packages.libzstd1: the lock says 1.5.4+dfsg2-5, 1.5.4+dfsg2-5+deb12u1 went in" in str(caught.value)


def test_debian_rootfs_while_updating_pins_nothing_and_checks_nothing(tmp_path: Path) -> None:
    runner = _Runner(tmp_path / "log", {"libzstd1": "1.5.4+dfsg2-5+deb12u1", "mosquitto": "2.0.11-1.2+deb12u2"})
    rootfs.debian_rootfs(runner, _pins(None), ["mosquitto=2.0.11-1.2+deb12u2"], tmp_path / "w" / "rootfs")
    assert not any(a.startswith("--setup-hook=") for a in runner.args)


class _Built:
    def __init__(self, layout: Path) -> None:
        self.layout = layout


def test_debian_update_rewrites_the_lock_from_what_went_in_and_prints_the_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    lock_file = tmp_path / "debian-packages.lock.yaml"
    monkeypatch.setattr(debian_lock, "LOCK_FILE", lock_file)
    monkeypatch.setattr(main, "check_commands", lambda: None)
    seen_locks = []

    class FakeBuilder:
        def __init__(self, pins, cache, toolchain, total) -> None:  # noqa: ANN001
            seen_locks.append(pins.debian_lock)

        def ensure(self, recipe):  # noqa: ANN001, ANN202
            layout = tmp_path / recipe.name
            layout.mkdir()
            went_in = {"libc6 2.36-9+deb12u14", "libzstd1 1.5.4+dfsg2-5+deb12u1", f"python:{recipe.name} 1"}
            (layout / "built.json").write_text(json.dumps({"debian_packages": sorted(went_in)}))
            return _Built(layout)

    monkeypatch.setattr(main, "Builder", FakeBuilder)
    monkeypatch.setattr(main, "layout", lambda: None)
    assert main.debian_update(_pins(LOCKED), cache=None) == 0
    assert seen_locks == [None]  # the update resolves with no lock
    assert debian_lock.read(lock_file) == {"libc6": "2.36-9+deb12u14", "libzstd1": "1.5.4+dfsg2-5+deb12u1"}
    out = capsys.readouterr().out
    assert "2 of 2 packages changed" in out
    assert "libzstd1 1.5.4+dfsg2-5 -> 1.5.4+dfsg2-5+deb12u1" in out
    assert "-mosquitto 2.0.11-1.2+deb12u2" in out


def test_a_lock_change_rebuilds_the_debian_based_images_and_no_other() -> None:
    from smartnation.tooling.images.builder import input_digest
    from smartnation.tooling.images.recipes import all_recipes

    before, after = _pins(LOCKED), _pins({**LOCKED, "libzstd1": "1.5.4+dfsg2-5+deb12u1"})
    changed = {
        old.name
        for old, new in zip(all_recipes(before), all_recipes(after), strict=True)
        if input_digest(old, before) != input_digest(new, after)
    }
    assert changed == {
        "broker", "database", "object_storage_client", "device_registry", "telemetry_ingest", "open_data_api"
    }  # fmt: skip
