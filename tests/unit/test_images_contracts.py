"""Each image's entrypoint contract against what the program's components and chart run."""

from __future__ import annotations

import os
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from smartnation.paths import CHART
from smartnation.program.components import broker as broker_component
from smartnation.program.components import database as database_component
from smartnation.program.components import object_storage as object_storage_component
from smartnation.tooling.images import builder, python_lock
from smartnation.tooling.images.builder import BuiltImage, input_digest
from smartnation.tooling.images.cache import ImageCache
from smartnation.tooling.images.main import digest_map, prune
from smartnation.tooling.images.pins import API_NAMES, load_pins
from smartnation.tooling.images.recipes import all_recipes, city_apis, database
from smartnation.tooling.images.recipes.object_storage import version_stamps
from smartnation.tooling.images.registry import site_registries

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def recipes() -> dict:
    return {r.name: r for r in all_recipes(load_pins())}


def test_each_image_runs_as_the_uid_its_component_declares(recipes: dict) -> None:
    chart_values = yaml.safe_load((CHART / "templates/deployment.yaml").read_text().split("runAsUser:")[1].split()[0])
    expected = {
        "broker": broker_component.MOSQUITTO_UID,
        "database": database_component.POSTGRES_UID,
        "object_storage": object_storage_component.MINIO_UID,
        "object_storage_client": object_storage_component.MINIO_UID,
        **{api: int(chart_values) for api in API_NAMES},
    }
    assert {name: recipes[name].config.user for name in expected} == {
        name: f"{uid}:{uid}" for name, uid in expected.items()
    }


def test_broker_command_of_the_component_resolves_on_the_image_path(recipes: dict) -> None:
    config = recipes["broker"].config
    path = dict(line.split("=", 1) for line in config.env)["PATH"].split(":")
    # The component runs `mosquitto -c ...`: the bare name must resolve to the one binary kept.
    assert "/usr/sbin" in path
    assert config.entrypoint == ("/usr/sbin/mosquitto",)


def test_database_path_finds_the_real_postgresql_programs_first(recipes: dict) -> None:
    env = dict(line.split("=", 1) for line in recipes["database"].config.env)
    assert env["PATH"].split(":")[0] == database.PG_BIN
    assert env["PGDATA"].startswith("/var/lib/postgresql/data/")


def test_database_image_has_the_tools_the_component_scripts_call() -> None:
    # Every program the setup Job, the replica clone, the backup dump and the restore call, besides
    # PostgreSQL's (components/database.py, cli/restore_pod.py).
    called = {"sh", "ls", "date", "sleep", "cat", "mkdir"}
    kept = {Path(p).name for p in database.SHELL_TOOLS}
    assert called <= kept


def _entrypoint(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Runs the database entrypoint with initdb and postgres replaced by recorders."""
    stubs = tmp_path / "bin"
    stubs.mkdir(exist_ok=True)
    (stubs / "initdb").write_text(
        '#!/bin/sh\necho "initdb $*" >> "$CALLS"\necho "password=$(cat)" >> "$CALLS"\n'
        'for a in "$@"; do case "$a" in -D) next=1;; '
        '*) [ -n "${next:-}" ] && echo 15 > "$a/PG_VERSION"; next=;; esac; done\n'
    )
    (stubs / "postgres").write_text('#!/bin/sh\necho "postgres $* password=${POSTGRES_PASSWORD:-unset}" >> "$CALLS"\n')
    for stub in stubs.iterdir():
        stub.chmod(0o755)
    script = tmp_path / "entrypoint.sh"
    script.write_text(database.ENTRYPOINT_SCRIPT)
    calls = tmp_path / "calls"
    calls.write_text("")
    return subprocess.run(
        ["sh", str(script), *args],
        env={"PATH": f"{stubs}:{os.environ['PATH']}", "CALLS": str(calls), **env},
        capture_output=True,
        text=True,
    )


def test_database_entrypoint_creates_the_cluster_once_then_runs_the_server(tmp_path: Path) -> None:
    pgdata = tmp_path / "data/pgdata"
    env = {"PGDATA": str(pgdata), "POSTGRES_PASSWORD": "s3cret"}
    first = _entrypoint(tmp_path, env, "postgres", "-c", "wal_level=replica")
    assert first.returncode == 0, first.stderr
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls[0].startswith("initdb --username=postgres --pwfile=/proc/self/fd/0 --auth=scram-sha-256")
    assert calls[1] == "password=s3cret"
    # The server gets the component's arguments, and the password stays out of its environment.
    assert calls[2] == "postgres -c wal_level=replica password=unset"
    assert oct(pgdata.stat().st_mode & 0o777) == "0o700"
    second = _entrypoint(tmp_path, env, "-c", "hot_standby=on")
    assert second.returncode == 0, second.stderr
    assert (tmp_path / "calls").read_text().splitlines() == ["postgres -c hot_standby=on password=unset"]


def test_database_entrypoint_refuses_a_new_cluster_without_a_password(tmp_path: Path) -> None:
    result = _entrypoint(tmp_path, {"PGDATA": str(tmp_path / "pgdata")}, "postgres")
    assert result.returncode == 1
    assert "POSTGRES_PASSWORD is empty" in result.stderr
    assert (tmp_path / "calls").read_text() == ""


def test_database_entrypoint_runs_any_other_command_as_given(tmp_path: Path) -> None:
    result = _entrypoint(tmp_path, {}, "sh", "-c", "echo hello")
    assert result.returncode == 0 and result.stdout == "hello\n"


def test_minio_and_mc_version_stamps_come_from_the_pseudo_version() -> None:
    pin = load_pins().images["object_storage"]
    flags = version_stamps(replace(pin, module_version="v0.0.0-20260212201848-7aac2a2c5b7c"), "github.com/minio/minio")
    assert "-X github.com/minio/minio/cmd.Version=2026-02-12T20:18:48Z" in flags
    assert "-X github.com/minio/minio/cmd.ReleaseTag=DEVELOPMENT.2026-02-12T20-18-48Z" in flags
    assert "-X github.com/minio/minio/cmd.ShortCommitID=7aac2a2c5b7c" in flags
    with pytest.raises(ValueError, match="not a Go pseudo-version"):
        version_stamps(replace(pin, module_version="v1.2.3"), "github.com/minio/minio")


def test_input_digest_follows_the_pins_and_nothing_else(recipes: dict) -> None:
    pins = load_pins()
    broker = recipes["broker"]
    assert input_digest(broker, pins) == input_digest(broker, pins)
    moved = replace(broker, inputs={"debian_packages": ["mosquitto=2.0.11-1.2+deb12u3"]})
    assert input_digest(moved, pins) != input_digest(broker, pins)
    assert input_digest(broker, replace(pins, source_date_epoch=pins.source_date_epoch + 1)) != input_digest(
        broker, pins
    )


def test_digest_map_names_every_release_by_repository_and_digest(tmp_path: Path) -> None:
    pins = load_pins()
    built = [
        BuiltImage(
            name=pin.name,
            repositories=pin.repositories(),
            tag=pin.tag,
            version=pin.version,
            digest="sha256:" + f"{index:x}" * 64,
            size=1,
            layout=tmp_path,
            status="built",
        )
        for index, pin in enumerate(pins.images.values(), start=1)
    ]
    refs = digest_map(built)
    assert set(refs) == {
        "broker",
        "database",
        "object_storage",
        "object_storage_client",
        "device_registry",
        "telemetry_ingest",
        "open_data_api",
    }
    assert refs["broker"] == "mosquitto@sha256:" + "1" * 64
    assert refs["open_data_api"].startswith("open-data-api@sha256:")


def test_each_site_registry_serves_the_paths_of_its_profile_registry(tmp_path: Path) -> None:
    registries = {r.cluster: r for r in site_registries(ImageCache(tmp_path))}
    assert registries["dusseldorf-test"].remote_repository("mosquitto") == "smartnation/mosquitto"
    assert registries["monaco-onprem"].remote_repository("mosquitto") == "mirror/mosquitto"
    for registry in registries.values():
        assert registry.address.startswith("127.0.0.1:")
        assert f"addr: {registry.address}" in registry.config()
        assert registry.pid() is None  # nothing recorded in an empty cache
        registry.home.mkdir(parents=True)
        registry.pid_file.write_text(f"{os.getpid()}\n")  # alive, but not a registry
        assert registry.pid() is None


def test_vendor_dir_is_beside_the_checkout_unless_set(tmp_path: Path) -> None:
    assert builder.vendor_dir({}).parts[-2:] == ("shared", "vendor")
    assert builder.vendor_dir({builder.VENDOR_VARIABLE: str(tmp_path)}) == tmp_path


def test_each_api_image_starts_its_own_package_as_the_chart_runs_it(recipes: dict) -> None:
    # The chart sets no command: the entrypoint alone must start the API.
    for api in API_NAMES:
        config = recipes[api].config
        assert config.entrypoint == (city_apis.PYTHON, "-m", api)
        assert (city_apis.SERVICES / api / "__main__.py").is_file()
        env = dict(line.split("=", 1) for line in config.env)
        assert env["PYTHONDONTWRITEBYTECODE"] == "1"
        assert env["PYTHONPATH"] == city_apis.APP_DIR
        assert env["PORT"] == "8080"
    # Built once: the three recipes install the very same root filesystem.
    assert len({repr(sorted(recipes[api].inputs.items())) for api in API_NAMES}) == 1


def test_api_images_carry_the_services_but_not_their_tests_or_test_support() -> None:
    files = city_apis._package_files()
    tops = {rel.split("/")[0] for rel in files}
    assert tops == {"service_common", *API_NAMES}
    assert not [rel for rel in files if "/tests/" in rel or rel.endswith(".pyc")]
    assert "device_registry/__main__.py" in files


def test_constraints_pin_exactly_the_services_extra_closure_within_its_ranges() -> None:
    pinned = python_lock.read()
    requirements = python_lock.extra_requirements()
    assert set(pinned) == set(python_lock.closure(requirements))
    for requirement in requirements:
        name = python_lock.canonicalize_name(requirement.name)
        assert requirement.specifier.contains(pinned[name], prereleases=True), (name, pinned[name])
    # psycopg[binary]: the extra's extra is followed, so the wheel with libpq is pinned too.
    assert pinned["psycopg-binary"] == pinned["psycopg"]


def test_constraints_refuse_anything_but_exact_pins(tmp_path: Path) -> None:
    path = tmp_path / "constraints.txt"
    path.write_text("# comment\nfastapi==0.1 # why\n\n")
    assert python_lock.read(path) == {"fastapi": "0.1"}
    path.write_text("fastapi>=0.1\n")
    with pytest.raises(ValueError, match="constraints.txt:1: expected NAME==VERSION"):
        python_lock.read(path)


def test_prune_removes_only_images_no_recipe_builds(tmp_path: Path) -> None:
    cache = ImageCache(tmp_path)
    for name in ("broker-0123456789abcdef", "city_api_placeholder-0123456789abcdef", ".partial-broker-42"):
        (cache.oci / name).mkdir(parents=True)
    prune(cache, {"broker", "device_registry"})
    assert sorted(p.name for p in cache.oci.iterdir()) == [".partial-broker-42", "broker-0123456789abcdef"]
