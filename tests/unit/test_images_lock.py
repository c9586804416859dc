"""environments/images.lock.yaml: written from a build, checked by every build, read by the loader.

A fake cache stands for a finished build (digests.json and each image's built.json, as
builder.py and main.py write them), so these tests need no image tools.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
import yaml

from smartnation.paths import IMAGES_LOCK, images_lock_file
from smartnation.settings import SettingsError, list_environments, load_settings
from smartnation.tooling.images import lock, main
from smartnation.tooling.images.builder import BuiltImage
from smartnation.tooling.images.cache import ImageCache
from smartnation.tooling.images.pins import IMAGE_NAMES, load_pins

pytestmark = pytest.mark.unit

FILE = "environments/images.lock.yaml"


def fake_digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def fake_build(root: Path, *, tag_of: dict[str, str] | None = None) -> tuple[ImageCache, list[BuiltImage]]:
    """A cache holding a finished build of every pinned image (``tag_of`` overrides a built tag)."""
    cache = ImageCache(root / "images")
    built = []
    for name, pin in load_pins().images.items():
        tag = (tag_of or {}).get(name, pin.tag)
        image = BuiltImage(
            name, pin.repositories(), tag, pin.version, fake_digest(name), 1, cache.image_dir(name, "0" * 16), "built"
        )
        image.layout.mkdir(parents=True)
        record = {"name": name, "repositories": image.repositories, "tag": tag, "digest": image.digest}
        (image.layout / "built.json").write_text(json.dumps(record))
        built.append(image)
    cache.digests.write_text(json.dumps(main.digest_map(built)))
    return cache, built


def test_a_lock_written_from_a_build_maps_each_repository_and_tag_to_its_digest(tmp_path: Path) -> None:
    cache, built = fake_build(tmp_path)
    entries = lock.last_build(load_pins(), cache)
    path = tmp_path / IMAGES_LOCK
    assert lock.write_lock(path, entries) is True
    assert lock.write_lock(path, entries) is False  # unchanged: not rewritten
    text = path.read_text()
    assert text.startswith("# Written by the image build, never by hand: `make images-lock`")
    read = lock.read_lock(path)
    assert read == {f"{repo}:{b.tag}": b.digest for b in built for repo in b.repositories.values()}
    assert len(read) == len(IMAGE_NAMES)
    lock.verify(lock.built_entries(built), read, complete=True)  # the same build passes


def test_the_lock_command_writes_the_lock_into_the_environments_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_build(tmp_path / "cache")
    (tmp_path / "environments").mkdir()
    monkeypatch.setenv("SMARTNATION_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SMARTNATION_ENVIRONMENTS_DIR", str(tmp_path / "environments"))
    assert main.main(["lock"]) == 0
    written = lock.read_lock(tmp_path / "environments" / IMAGES_LOCK)
    broker = load_pins().images["broker"]
    assert written[lock.image_key(broker.repository, broker.tag)] == fake_digest("broker")
    assert f"rewritten: {len(IMAGE_NAMES)} images" in capsys.readouterr().out


def test_no_lock_from_a_build_made_with_other_pins(tmp_path: Path) -> None:
    cache, _ = fake_build(tmp_path, tag_of={"broker": "2.0.10-1"})
    with pytest.raises(lock.LockError, match=r"broker .* is not what images.yaml pins now .*run `make images` first"):
        lock.last_build(load_pins(), cache)
    cache.digests.unlink()
    with pytest.raises(lock.LockError, match="no images built yet"):
        lock.last_build(load_pins(), cache)


def test_verify_fails_on_a_changed_digest_naming_the_file_the_key_and_both_causes(tmp_path: Path) -> None:
    _, built = fake_build(tmp_path)
    entries = lock.built_entries(built)
    key = sorted(entries)[0]
    changed = {**entries, key: fake_digest("something else")}
    with pytest.raises(lock.LockError) as caught:
        lock.verify(entries, changed, complete=True)
    message = str(caught.value)
    assert f"{FILE}: images.{key}: the lock says {changed[key]}, the build made {entries[key]}" in message
    assert "`make images-lock`" in message and "not reproducible" in message


def test_verify_fails_on_an_image_the_lock_lacks_and_on_one_no_longer_built(tmp_path: Path) -> None:
    _, built = fake_build(tmp_path)
    entries = lock.built_entries(built)
    key = sorted(entries)[-1]
    without = {k: v for k, v in entries.items() if k != key}
    with pytest.raises(lock.LockError, match=rf"{re.escape(FILE)}: images\.{re.escape(key)}: missing; the build made"):
        lock.verify(entries, without, complete=False)
    stale = {**entries, "mosquitto:1.0.0": fake_digest("old")}
    lock.verify(entries, stale, complete=False)  # a build of some images judges only those
    with pytest.raises(lock.LockError, match=r"images\.mosquitto:1\.0\.0: no image is built as"):
        lock.verify(entries, stale, complete=True)


def test_a_build_that_disagrees_with_the_lock_fails_before_pushing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cache, built = fake_build(tmp_path / "cache")
    envdir = tmp_path / "environments"
    envdir.mkdir()
    entries = lock.built_entries(built)
    broker = next(k for k in entries if k.startswith(load_pins().images["broker"].repository + ":"))
    stale = fake_digest("yesterday's broker")
    lock.write_lock(envdir / IMAGES_LOCK, {**entries, broker: stale})

    class FakeBuilder:
        def __init__(self, *args: object, **kwargs: object) -> None:
            self.images = iter(built)

        def ensure(self, recipe: object, **kwargs: object) -> BuiltImage:
            return next(self.images)

    def no_push(*args: object) -> None:
        raise AssertionError("pushed although the lock disagrees")

    monkeypatch.setenv("SMARTNATION_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SMARTNATION_ENVIRONMENTS_DIR", str(envdir))
    monkeypatch.setattr(main, "check_commands", lambda: None)
    monkeypatch.setattr(main, "Builder", FakeBuilder)
    monkeypatch.setattr(main, "prune", lambda *args: None)
    monkeypatch.setattr(main, "site_registries", no_push)
    assert main.main(["build"]) == 1
    err = capsys.readouterr().err
    assert "images failed: the images built are not the ones the environments deploy:" in err
    assert f"\n  {FILE}: images.{broker}: the lock says {stale}, the build made {entries[broker]}" in err
    assert cache.digests.is_file()  # what `make images-lock` rewrites the lock from

    lock.write_lock(envdir / IMAGES_LOCK, entries)
    monkeypatch.setattr(main, "site_registries", lambda *args: [])
    assert main.main(["build"]) == 0


# --- the repository's lock and the environments -----------------------------------------------


def test_the_committed_lock_lists_exactly_what_images_yaml_pins() -> None:
    pins = load_pins()
    expected = {lock.image_key(p.repository, p.tag) for p in pins.images.values()}
    assert set(lock.read_lock(images_lock_file())) == expected
    assert images_lock_file().read_text().startswith(lock.HEADER)


@pytest.mark.parametrize("environment", list_environments())
def test_every_environment_releases_what_the_images_yaml_pins_build(environment: str) -> None:
    pins = load_pins().images
    locked = lock.read_lock(images_lock_file())
    for name, release in load_settings(environment).releases.components.items():
        pin = pins[name]
        assert (release.version, release.repository, release.tag) == (pin.version, pin.repository, pin.tag), name
        assert release.digest == locked[lock.image_key(pin.repository, pin.tag)], name


def test_a_release_not_in_the_lock_is_refused_naming_the_file_and_the_release(envdir: Path) -> None:
    staging = envdir / "staging.yaml"
    text = staging.read_text()
    tag = yaml.safe_load(text)["releases"]["components"]["database"]["tag"]
    staging.write_text(text.replace(f"tag: {tag}}}", "tag: 2.17.2-pg16}", 1))
    with pytest.raises(SettingsError) as caught:
        load_settings("staging", envdir)
    assert (caught.value.file, caught.value.key_path) == ("environments/staging.yaml", "releases.components.database")
    assert "timescaledb:2.17.2-pg16 is not in environments/images.lock.yaml" in str(caught.value)
    assert "`make images` builds what the lock lists" in str(caught.value)
    load_settings("dev", envdir)  # the other environments are untouched


def test_a_digest_written_in_an_environment_file_is_refused(envdir: Path) -> None:
    dev = envdir / "dev.yaml"
    digest = lock.read_lock(envdir / IMAGES_LOCK)["device-registry:0.1.0"]
    text, count = re.subn(r"(device_registry: \{[^}]*)\}", rf"\1, digest: '{digest}'}}", dev.read_text())
    assert count == 1
    dev.write_text(text)
    with pytest.raises(SettingsError) as caught:
        load_settings("dev", envdir)
    assert (caught.value.file, caught.value.key_path) == (
        "environments/dev.yaml",
        "releases.components.device_registry.digest",
    )


def test_without_the_lock_nothing_loads(envdir: Path) -> None:
    (envdir / IMAGES_LOCK).unlink()
    with pytest.raises(SettingsError, match=r"^environments/images\.lock\.yaml: <file>: missing: `make images`"):
        load_settings("dev", envdir)


@pytest.mark.parametrize(
    ("content", "key"),
    [
        ("images: {'mosquitto:2.0.11': 'sha256:abc'}\n", "images.mosquitto:2.0.11"),
        ("images: {'registry.example/mosquitto': 'sha256:" + "a" * 64 + "'}\n", "images.registry.example/mosquitto"),
        ("digests: {}\n", "<top level>"),
    ],
)
def test_a_malformed_lock_is_refused_naming_the_key(envdir: Path, content: str, key: str) -> None:
    (envdir / IMAGES_LOCK).write_text(content)
    with pytest.raises(SettingsError) as caught:
        load_settings("dev", envdir)
    assert (caught.value.file, caught.value.key_path) == (FILE, key)
