"""The images `make images` builds: reproducible, served by digest by both site registries, and each
one runs what the program runs in it (the init SQL, the bucket setup, the broker, each city API's
health and readiness on a read-only root).

Each image is unpacked with umoci and its programs run with chroot as the image's user: the
image's own files, user and PATH, on this machine's kernel, without a container runtime.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from smartnation.program.components import database as database_component
from smartnation.program.components import object_storage as object_storage_component
from smartnation.program.daemon_config import postgres as postgres_config
from smartnation.settings import load_settings
from smartnation.tooling.images import debian_lock, rootfs
from smartnation.tooling.images.cache import image_cache
from smartnation.tooling.images.oci import blob, image_config
from smartnation.tooling.images.pins import API_NAMES, load_pins
from smartnation.tooling.images.registry import site_registries
from smartnation.tooling.images.steps import ImageBuildError, StepRunner

pytestmark = pytest.mark.integration

IMAGES = [sys.executable, "-m", "smartnation.tooling.images"]
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _images(*args: str, timeout: float = 3600) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*IMAGES, *args], capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"images {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


@dataclass(frozen=True)
class Image:
    name: str
    tag: str
    digest: str
    layout: Path
    user: str
    env: dict[str, str]


@pytest.fixture(scope="module")
def built() -> dict[str, Image]:
    """`make images` (cached after the first run: seconds), then every finished image."""
    _images("build")
    images = {}
    for record in sorted(image_cache().oci.glob("*/built.json")):
        data = json.loads(record.read_text())
        if data["name"] not in load_pins().images:
            continue  # left by another checkout's build; this one's run prunes it
        config = image_config(record.parent, data["tag"])["config"]
        env = dict(line.split("=", 1) for line in config.get("Env", []))
        images[data["name"]] = Image(data["name"], data["tag"], data["digest"], record.parent, config["User"], env)
    assert set(images) == set(load_pins().images)
    return images


_DEVICES = (("null", 1, 3), ("zero", 1, 5), ("random", 1, 8), ("urandom", 1, 9))


@pytest.fixture
def unpack(tmp_path: Path) -> Iterator:
    """Unpacks an image and gives it what a container runtime mounts: /proc and a minimal /dev."""
    mounts: list[Path] = []

    def _unpack(image: Image, read_only: bool = False) -> Path:
        """``read_only``: the root as the chart mounts it (readOnlyRootFilesystem), a tmpfs on /tmp."""
        bundle = tmp_path / image.name
        subprocess.run(
            ["umoci", "unpack", "--image", f"{image.layout}:{image.tag}", str(bundle)],
            check=True,
            capture_output=True,
        )
        root = bundle / "rootfs"
        if read_only:
            subprocess.run(["mount", "--bind", str(root), str(root)], check=True)
            mounts.append(root)
            subprocess.run(["mount", "-o", "remount,bind,ro", str(root)], check=True)
            subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=1777,size=16m", "tmpfs", str(root / "tmp")], check=True)
            mounts.append(root / "tmp")
        subprocess.run(["mount", "-t", "proc", "proc", str(root / "proc")], check=True)
        mounts.append(root / "proc")
        subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=755,size=1m", "tmpfs", str(root / "dev")], check=True)
        mounts.append(root / "dev")
        for name, major, minor in _DEVICES:
            os.mknod(root / "dev" / name, 0o20666, os.makedev(major, minor))
            os.chmod(root / "dev" / name, 0o666)
        for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1")):
            os.symlink(target, root / "dev" / name)
        return root

    yield _unpack
    for mount in reversed(mounts):
        subprocess.run(["umount", "--lazy", str(mount)], check=False)


def _in_image(image: Image, root: Path, *command: str, env: dict[str, str] | None = None, user: str = "", **kwargs):
    """Runs ``command`` in the unpacked image as its user (or ``user``, as a pod's runAsUser would),
    with its environment."""
    return subprocess.run(
        ["/usr/sbin/chroot", f"--userspec={user or image.user}", str(root), *command],
        env={**image.env, **(env or {})},
        capture_output=True,
        text=True,
        **kwargs,
    )


def _start(image: Image, root: Path, *command: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        ["/usr/sbin/chroot", f"--userspec={image.user}", str(root), *command],
        env={**image.env, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen]]:
    started: list[subprocess.Popen] = []
    yield started
    for proc in started:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(what: str, check, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited {proc.returncode}:\n{proc.stdout.read() if proc.stdout else ''}")
        time.sleep(0.3)
    raise AssertionError(f"{what} not ready in {timeout}s")


def _uid_of(proc: subprocess.Popen, name: str) -> int:
    """The real UID of the process ``name`` that chroot started (chroot execs it in place)."""
    status = Path(f"/proc/{proc.pid}/status").read_text()
    assert f"Name:\t{name}" in status, status.splitlines()[0]
    return int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])


def _http(url: str) -> tuple[int, str]:
    try:
        with _DIRECT.open(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


# -- building and serving -----------------------------------------------------------------------


def test_a_warm_build_does_nothing_and_says_so(built: dict[str, Image]) -> None:
    out = _images("build").stdout
    assert "nothing to do" in out
    assert "built in" not in out and "pushed" not in out.replace("every registry holds them", "")


def test_a_rebuild_gives_the_same_digest(built: dict[str, Image]) -> None:
    out = _images(
        "build", "--only", "broker", "--only", "device_registry", "--only", "open_data_api", "--rebuild", "--no-push"
    ).stdout
    assert out.count("same digest as before") == 3, out
    # The APIs' root filesystem is made once per run, however many API images use it.
    assert out.count("city-apis-rootfs: cached") == 1, out
    assert image_cache().digests.is_file()


def _packages_in(image: Image) -> dict[str, str]:
    """The Debian packages the image says it was made from (its packages.txt, read from its layer)."""
    import tarfile

    manifest = json.loads(blob(image.layout, image.digest).read_text())
    (layer,) = manifest["layers"]
    with tarfile.open(blob(image.layout, layer["digest"])) as tar:
        member = tar.extractfile(rootfs.PACKAGE_MANIFEST)
        assert member is not None, f"{image.name} has no {rootfs.PACKAGE_MANIFEST}"
        return debian_lock.parse_manifest(member.read().decode().splitlines())


def test_every_debian_package_in_an_image_is_the_locked_version(built: dict[str, Image]) -> None:
    locked = debian_lock.read()
    debian_based = [
        name for name in built if load_pins().images[name].debian_packages or name == "object_storage_client"
    ]
    assert len(debian_based) == 6, debian_based
    for name in debian_based:
        went_in = _packages_in(built[name])
        assert len(went_in) >= 10, (name, went_in)
        differing = {p: (v, locked.get(p)) for p, v in went_in.items() if locked.get(p) != v}
        assert not differing, f"{name}: (in the image, locked): {differing}"


def test_timescaledbs_libraries_carry_no_build_id(built: dict[str, Image], tmp_path: Path) -> None:
    """A GNU build-id hashes the unstripped link output: a patch release of a host -dev package
    changed it (and the image digest) on a fresh machine while the code stayed the same."""
    import tarfile

    image = built["database"]
    manifest = json.loads(blob(image.layout, image.digest).read_text())
    (layer,) = manifest["layers"]
    with tarfile.open(blob(image.layout, layer["digest"])) as tar:
        libraries = [m for m in tar.getmembers() if m.isfile() and "/timescaledb" in m.name and m.name.endswith(".so")]
        tar.extractall(tmp_path, members=libraries, filter="data")
    assert len(libraries) == 3, [m.name for m in libraries]
    for member in libraries:
        sections = subprocess.run(
            ["readelf", "--section-headers", "--wide", str(tmp_path / member.name)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert ".text" in sections, sections
        assert ".note.gnu.build-id" not in sections, f"{member.name} has a build-id note"


def test_a_locked_version_the_mirror_no_longer_offers_fails_the_build_naming_it(tmp_path: Path) -> None:
    """Real apt against the real mirror: the lock pins dash to a version no index has, as after a
    Debian point release; apt falls back to what it offers and the build stops at the lock check."""
    import dataclasses

    pins = load_pins()
    gone = {**dict(pins.debian_lock or ()), "dash": "0.0.1-1"}
    runner = StepRunner("probe", tmp_path / "probe.log")
    with pytest.raises(ImageBuildError) as caught:
        rootfs.debian_rootfs(
            runner, dataclasses.replace(pins, debian_lock=tuple(sorted(gone.items()))), ["dash"], tmp_path / "rootfs"
        )
    assert caught.value.step == "debian-lock"
    assert (
        f"{debian_lock.SHOWN}: packages.dash: the lock says 0.0.1-1, {dict(pins.debian_lock or ())['dash']} went in"
        in str(caught.value)
    )


def test_both_site_registries_serve_every_release_by_its_digest(built: dict[str, Image]) -> None:
    refs = json.loads(_images("digests").stdout)
    by_digest = {image.digest for image in built.values()}
    registries = site_registries(image_cache())
    assert {r.cluster for r in registries} == {"dusseldorf-test", "monaco-onprem"}
    for release, reference in refs.items():
        repository, _, digest = reference.partition("@")
        assert digest in by_digest, release
        for registry in registries:
            assert registry.running(), registry.describe()
            assert registry.manifest_digest(repository, digest) == digest, (registry.cluster, reference)


def test_registries_stop_and_start_with_their_data_kept(built: dict[str, Image]) -> None:
    registry = site_registries(image_cache())[0]
    pid = registry.pid()
    registry.stop(say=print)
    assert registry.pid() is None and not registry.answers()
    assert not Path(f"/proc/{pid}").exists()
    registry.ensure_running(say=print)
    broker = built["broker"]
    assert registry.manifest_digest("mosquitto", broker.digest) == broker.digest


# -- running what the program runs ---------------------------------------------------------------


def test_database_image_creates_its_cluster_and_runs_the_programs_init_sql(
    built: dict[str, Image], unpack, processes: list[subprocess.Popen]
) -> None:
    image = built["database"]
    root = unpack(image)
    assert not (root / "usr/bin/perl").exists()
    (root / "etc/smartnation").mkdir()
    port = _free_port()
    settings = load_settings("staging").database
    # The program's pg_hba, with loopback standing in for the pod network (no TLS in this test).
    (root / "etc/smartnation/pg_hba.conf").write_text(database_component.pg_hba(settings, ("127.0.0.0/8",), tls=False))
    roles = [postgres_config.Role(r.name, r.login, f"{r.name}_password" if r.login else "") for r in settings.roles]
    databases = [postgres_config.Database(d.name, d.owner, d.extensions) for d in settings.databases]
    grants = [postgres_config.Grant(g.role, g.database, g.privilege) for g in settings.grants]
    (root / "init").mkdir()
    (root / "init/init.sql").write_text(postgres_config.render_init_sql(databases, roles, grants))
    (root / "init/init.sh").write_text(
        postgres_config.render_init_script(databases, roles, grants, sql_path="/init/init.sql")
    )
    (root / "init/replication.sql").write_text(database_component.REPLICATION_SQL)
    # The StatefulSet's container: only args, so the image's entrypoint creates the cluster first.
    entrypoint = image_config(image.layout, image.tag)["config"]["Entrypoint"]
    server = _start(
        image,
        root,
        *entrypoint,
        "postgres",
        "-c",
        "hba_file=/etc/smartnation/pg_hba.conf",
        "-c",
        "wal_level=replica",
        "-c",
        f"port={port}",
        env={"POSTGRES_PASSWORD": "superuser-secret"},
    )
    processes.append(server)
    client = {"PGHOST": "127.0.0.1", "PGPORT": str(port), "PGUSER": "postgres", "PGPASSWORD": "superuser-secret"}
    _wait("postgres", lambda: _in_image(image, root, "pg_isready", "-q", env=client).returncode == 0, server, 120)
    assert _uid_of(server, "postgres") == database_component.POSTGRES_UID

    role_passwords = {r.password_env: f"{r.name}-secret" for r in roles if r.login}
    for run in range(2):  # the setup Job converges: a second run succeeds and changes nothing
        setup = _in_image(image, root, "sh", "/init/init.sh", env={**client, **role_passwords})
        assert setup.returncode == 0, f"run {run}: {setup.stdout}{setup.stderr}"
    replication = _in_image(
        image,
        root,
        "psql",
        "-X",
        "-v",
        "ON_ERROR_STOP=1",
        "-v",
        "replication_password=replication-secret",
        "-f",
        "/init/replication.sql",
        env=client,
    )
    assert replication.returncode == 0, replication.stderr

    def sql(database: str, statement: str, **who: str) -> str:
        result = _in_image(
            image,
            root,
            "psql",
            "-X",
            "-tA",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            database,
            "-c",
            statement,
            env={**client, **who},
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    assert sql("postgres", "SHOW shared_preload_libraries") == "timescaledb"
    assert sql("telemetry", "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'") == "2.17.2"
    assert sql("postgres", "SELECT rolreplication FROM pg_roles WHERE rolname = 'replicator'") == "t"
    # The owner makes the hypertable (as the migration Job does); the ingest's role, DML only,
    # writes rows over more than a day, so its inserts make the hourly chunks the owner's grants must cover.
    owner = {"PGUSER": "telemetry_owner", "PGPASSWORD": role_passwords["TELEMETRY_OWNER_PASSWORD"]}
    ingest = {"PGUSER": "telemetry_ingest", "PGPASSWORD": role_passwords["TELEMETRY_INGEST_PASSWORD"]}
    sql("telemetry", "CREATE TABLE readings (at timestamptz NOT NULL, sensor int, value double precision)", **owner)
    sql("telemetry", "SELECT create_hypertable('readings', 'at', chunk_time_interval => interval '1 hour')", **owner)
    sql(
        "telemetry",
        "INSERT INTO readings SELECT now() - make_interval(secs => i), i % 50, random() "
        "FROM generate_series(1, 100000) AS i",
        **ingest,
    )
    reader = {"PGUSER": "open_data", "PGPASSWORD": role_passwords["OPEN_DATA_PASSWORD"]}
    assert sql("telemetry", "SELECT count(*) FROM readings", **reader) == "100000"
    assert int(sql("telemetry", "SELECT count(*) FROM timescaledb_information.chunks", **ingest)) > 1
    dropped = _in_image(
        image, root, "psql", "-X", "-d", "telemetry", "-c", "DROP TABLE readings", env={**client, **ingest}
    )
    assert dropped.returncode != 0 and "must be owner of table readings" in dropped.stderr, dropped.stderr
    # The backup CronJob's dump, with the tools of this image.
    dump = _in_image(
        image,
        root,
        "sh",
        "-c",
        "set -eu; pg_dumpall --clean --if-exists | gzip > /tmp/dump.sql.gz; ls -l /tmp/dump.sql.gz",
        env=client,
    )
    assert dump.returncode == 0, dump.stderr
    assert (root / "tmp/dump.sql.gz").stat().st_size > 100_000


def test_object_storage_images_run_the_programs_bucket_setup(
    built: dict[str, Image], unpack, processes: list[subprocess.Popen]
) -> None:
    server_image, client_image = built["object_storage"], built["object_storage_client"]
    server_root, client_root = unpack(server_image), unpack(client_image)
    assert not (server_root / "bin/sh").exists()  # the server needs no shell
    port = _free_port()
    root_env = {"MINIO_ROOT_USER": "smartnation-root", "MINIO_ROOT_PASSWORD": "root-secret-123"}
    console = _free_port()
    server = _start(
        server_image,
        server_root,
        "minio",
        "server",
        "--address",
        f"127.0.0.1:{port}",
        "--console-address",
        f"127.0.0.1:{console}",
        "--certs-dir",
        "/tmp/certs",
        "/data",
        env=root_env,
    )
    processes.append(server)
    _wait("minio", lambda: _http(f"http://127.0.0.1:{port}/minio/health/ready")[0] == 200, server, 120)
    assert _uid_of(server, "minio") == object_storage_component.MINIO_UID

    settings = load_settings("staging").object_storage
    (client_root / "setup").mkdir()
    (client_root / "setup/setup.sh").write_text(object_storage_component.setup_script(settings))
    for user in settings.users:
        (client_root / f"setup/policy-{user.name}.json").write_text(object_storage_component.policy_document(user))
    secrets = {"SECRET_KEY_" + u.name.upper().replace("-", "_"): f"{u.name}-secret-key" for u in settings.users}
    job_env = {"S3_ENDPOINT": f"http://127.0.0.1:{port}", "MC_CONFIG_DIR": "/tmp/mc", **root_env, **secrets}
    for run in range(2):  # the setup Job converges
        setup = _in_image(client_image, client_root, "sh", "/setup/setup.sh", env=job_env, timeout=300)
        assert setup.returncode == 0, f"run {run}: {setup.stdout}{setup.stderr}"
    # The backup CronJob's upload, with this image's sh, date and mc, as the CronJob's pod runs it:
    # under the database's UID, which this image does not know.
    (client_root / "backup").mkdir()
    (client_root / "backup/dump.sql.gz").write_bytes(os.urandom(4096))
    upload = _in_image(
        client_image,
        client_root,
        "sh",
        "-c",
        'set -eu; mc alias set store "$S3_ENDPOINT" "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" >/dev/null; '
        'mc cp /backup/dump.sql.gz "store/backups/staging/$(date -u +%Y%m%dT%H%M%SZ).sql.gz"',
        env={
            "S3_ENDPOINT": job_env["S3_ENDPOINT"],
            "MC_CONFIG_DIR": "/tmp/mc-backup",
            "AWS_ACCESS_KEY_ID": "database-backup",
            "AWS_SECRET_ACCESS_KEY": secrets["SECRET_KEY_DATABASE_BACKUP"],
        },
        user=f"{database_component.POSTGRES_UID}:{database_component.POSTGRES_UID}",
        timeout=120,
    )
    assert upload.returncode == 0, upload.stdout + upload.stderr
    listing = _in_image(client_image, client_root, "mc", "ls", "--recursive", "store/backups", env=job_env)
    assert ".sql.gz" in listing.stdout, listing.stdout + listing.stderr


def test_broker_image_serves_mqtt_as_its_user(
    built: dict[str, Image], unpack, processes: list[subprocess.Popen]
) -> None:
    import paho.mqtt.client as mqtt

    image = built["broker"]
    root = unpack(image)
    for absent in ("bin/sh", "bin/bash", "bin/dash", "usr/bin/apt", "usr/bin/dpkg"):
        assert not os.path.lexists(root / absent), absent
    port = _free_port()
    (root / "mosquitto/config/test.conf").write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location /mosquitto/data/\n"
        "log_dest stdout\n"
    )
    broker = _start(image, root, "mosquitto", "-c", "/mosquitto/config/test.conf")
    processes.append(broker)

    def accepts() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    _wait("mosquitto", accepts, broker)
    assert _uid_of(broker, "mosquitto") == 1883
    received: list[bytes] = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.on_message = lambda _c, _u, message: received.append(message.payload)
    client.connect("127.0.0.1", port)
    client.subscribe("city/test")
    client.loop_start()
    try:
        time.sleep(0.5)
        client.publish("city/test", b"hello", qos=1).wait_for_publish(5)
        deadline = time.monotonic() + 5
        while not received and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        client.loop_stop()
        client.disconnect()
    assert received == [b"hello"]


# Every dependency named, none reachable: closed ports on loopback (what the chart's ConfigMap and
# Secrets set, services/README.md).
_UNREACHABLE = {
    "SMARTNATION_ENVIRONMENT": "image-test",
    "PGHOST": "127.0.0.1",
    "PGHOST_READONLY": "127.0.0.1",
    "PGPORT": "1",
    "PGDATABASE": "devices",
    "PGUSER": "someone",
    "PGPASSWORD": "not-a-secret",
    "MQTT_URL": "mqtt://127.0.0.1:2",
    "MQTT_BROKER_URLS": "mqtt://127.0.0.1:2,mqtt://127.0.0.1:3",
    "MQTT_USERNAME": "someone",
    "MQTT_PASSWORD": "not-a-secret",
    "S3_ENDPOINT": "http://127.0.0.1:4",
    "AWS_ACCESS_KEY_ID": "someone",
    "AWS_SECRET_ACCESS_KEY": "not-a-secret",
    "ARCHIVE_INTERVAL_SECONDS": "3600",
}


def test_api_images_share_one_layer_and_carry_no_shell_and_no_build_tools(built: dict[str, Image]) -> None:
    layers = set()
    for api in API_NAMES:
        image = built[api]
        manifest = json.loads(blob(image.layout, image.digest).read_text())
        layers.add(tuple(layer["digest"] for layer in manifest["layers"]))
    assert len(layers) == 1 and len(next(iter(layers))) == 1, layers
    assert len({built[api].digest for api in API_NAMES}) == 3  # one entrypoint each


@pytest.mark.parametrize("api", API_NAMES)
def test_api_image_is_alive_and_not_ready_without_its_dependencies(
    api: str, built: dict[str, Image], unpack, processes: list[subprocess.Popen]
) -> None:
    image = built[api]
    root = unpack(image, read_only=True)
    for absent in ("bin/sh", "bin/bash", "bin/dash", "usr/bin/pip", "usr/bin/pip3", "usr/bin/gcc", "usr/bin/apt"):
        assert not os.path.lexists(root / absent), absent
    assert not list((root / "usr/local/lib/python3.11/dist-packages").glob("service_testing*"))
    assert not list((root / "opt/city-apis").glob("*/tests"))
    port = _free_port()
    entrypoint = image_config(image.layout, image.tag)["config"]["Entrypoint"]
    assert entrypoint[-2:] == ["-m", api]
    service = _start(image, root, *entrypoint, env={**_UNREACHABLE, "PORT": str(port)})
    processes.append(service)
    _wait(api, lambda: _http(f"http://127.0.0.1:{port}/healthz")[0] == 200, service)
    assert _uid_of(service, "python3.11") == 10001
    assert _http(f"http://127.0.0.1:{port}/healthz/live")[0] == 200
    status, body = _http(f"http://127.0.0.1:{port}/readyz")
    assert status == 503, body
    checks = json.loads(body)["checks"]
    assert checks and not any(check["ok"] for check in checks.values()), checks
    assert _http(f"http://127.0.0.1:{port}/healthz/ready")[0] == 503
    assert service.poll() is None  # unreachable dependencies do not stop it
    # SIGTERM drains and exits 0 (service_common.server), on a read-only root.
    service.terminate()
    assert service.wait(timeout=30) == 0, service.stdout.read() if service.stdout else ""
    assert not list((root / "tmp").iterdir())
