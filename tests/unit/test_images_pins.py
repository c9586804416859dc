"""images.yaml: what each image is built from, checked before anything is built."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from smartnation.paths import REPO
from smartnation.tooling.images.pins import API_NAMES, IMAGE_NAMES, PINS_FILE, PinsError, load_pins

pytestmark = pytest.mark.unit


def _write(tmp_path: Path, change) -> Path:
    raw = yaml.safe_load(PINS_FILE.read_text())
    change(raw)
    path = tmp_path / "images.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_the_repository_pins_load_and_name_every_image() -> None:
    pins = load_pins()
    assert set(pins.images) == set(IMAGE_NAMES)
    assert pins.source_date_epoch > 0
    database = pins.images["database"]
    assert database.source is not None and len(database.source.sha256) == 64
    # What the release pins will say: the pg15 variant of the TimescaleDB the environments run.
    assert database.version == f"{database.source.version}-pg15"


def test_tags_never_carry_characters_an_oci_tag_refuses() -> None:
    pins = load_pins()
    for pin in pins.images.values():
        assert "+" not in pin.tag and not pin.tag.startswith("v"), pin
    assert pins.images["object_storage"].tag == pins.images["object_storage"].module_version.removeprefix("v")


def test_each_city_api_has_its_own_repository_and_the_same_sources() -> None:
    pins = load_pins()
    apis = [pins.images[name] for name in API_NAMES]
    assert {pin.repository for pin in apis} == {"device-registry", "telemetry-ingest", "open-data-api"}
    assert all(set(pin.repositories()) == {pin.name} for pin in apis)
    # One root filesystem for all three: the same version, Debian and Python pins.
    assert len({(pin.tag, pin.debian_packages, pin.python_constraints) for pin in apis}) == 1
    assert dict(apis[0].debian_packages)["python3.11-minimal"].startswith("3.11.")
    assert (REPO / apis[0].python_constraints).is_file()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda raw: raw["images"]["broker"].update(typo="x"), "images.broker.typo is unknown"),
        (lambda raw: raw["images"].pop("database"), "images.database is missing"),
        (lambda raw: raw["images"].update(redis={}), "images.redis is not an image"),
        (lambda raw: raw["images"]["database"]["timescaledb"].update(sha256="abc"), "sha256 must be 64"),
        (lambda raw: raw["images"]["object_storage"].update(module_version="1.0"), "module_version must be"),
        (lambda raw: raw["images"]["broker"].update(repository="Not/Valid"), "not an image repository"),
        (lambda raw: raw["images"]["broker"].update(tag="latest"), "is not an image tag"),
        (lambda raw: raw.update(registries={"monaco-onprem": {"port": 15001}}), "simulation.registry_port"),
        (lambda raw: raw.update(source_date_epoch="soon"), "source_date_epoch must be"),
        (lambda raw: raw["images"]["city_apis"]["repositories"].pop("open_data_api"), "must name exactly"),
        (lambda raw: raw["images"]["city_apis"].update(repository="x"), "images.city_apis.repository is unknown"),
        (lambda raw: raw["images"]["city_apis"].update(python_constraints="/etc/c.txt"), "inside the repository"),
        (lambda raw: raw["images"].update(device_registry={}), "images.device_registry is not an image"),
    ],
)
def test_a_bad_pin_is_refused_with_the_file_and_key(tmp_path: Path, change, message: str) -> None:
    path = _write(tmp_path, change)
    with pytest.raises(PinsError) as exc:
        load_pins(path)
    assert str(path) in str(exc.value)
    assert message in str(exc.value)
