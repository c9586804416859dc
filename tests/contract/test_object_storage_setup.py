"""Contract: the object storage setup script the program renders, run with the real ``mc`` against
a real MinIO (the binaries `make images` builds): a user removed from the settings is removed
with its policy, a user made by hand stays (issue 11, item 8)."""

from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from service_testing.daemons import _find_program
from smartnation.program.components.object_storage import policy_document, setup_script
from smartnation.settings import load_settings
from smartnation.settings.models import ObjectStorageSettings

from . import contract_daemons as cd

pytestmark = pytest.mark.contract

ROOT_USER, ROOT_PASSWORD = "smartnation-root", secrets.token_hex(16)


@dataclasses.dataclass
class Store:
    endpoint: str
    workdir: Path
    mc: str
    env: dict[str, str]

    def mc_run(self, *args: str, config: str = "admin") -> subprocess.CompletedProcess:
        env = self.env | {"MC_CONFIG_DIR": str(self.workdir / f"mc-{config}")}
        return subprocess.run([self.mc, *args], env=env, capture_output=True, text=True, timeout=60)

    def setup(self, settings: ObjectStorageSettings, keys: dict[str, str]) -> subprocess.CompletedProcess:
        setup = self.workdir / "setup"
        setup.mkdir(exist_ok=True)
        for user in settings.users:
            (setup / f"policy-{user.name}.json").write_text(policy_document(user))
        (setup / "setup.sh").write_text(setup_script(settings).replace("/setup/", f"{setup}/"))
        bin_dir = self.workdir / "bin"
        if not bin_dir.exists():
            bin_dir.mkdir()
            (bin_dir / "mc").symlink_to(self.mc)
        env = self.env | {
            "PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "S3_ENDPOINT": self.endpoint,
            "MC_CONFIG_DIR": str(self.workdir / "mc-setup"),
            "MINIO_ROOT_USER": ROOT_USER,
            "MINIO_ROOT_PASSWORD": ROOT_PASSWORD,
        }
        env |= {"SECRET_KEY_" + name.upper().replace("-", "_"): key for name, key in keys.items()}
        return subprocess.run(["sh", str(setup / "setup.sh")], env=env, capture_output=True, text=True, timeout=180)

    def users(self) -> str:
        result = self.mc_run("admin", "user", "list", "store", "--json")
        assert result.returncode == 0, result.stderr
        return result.stdout

    def policies(self) -> str:
        result = self.mc_run("admin", "policy", "ls", "store", "--json")
        assert result.returncode == 0, result.stderr
        return result.stdout

    def logs_in(self, user: str, key: str) -> bool:
        alias = self.mc_run("alias", "set", "as-user", self.endpoint, user, key, config=user)
        return alias.returncode == 0 and self.mc_run("ls", "as-user", config=user).returncode == 0


@pytest.fixture(scope="module")
def store() -> Iterator[Store]:
    minio, mc = _find_program("MINIO_BINARY", "minio"), _find_program("MC_BINARY", "mc")
    workdir = cd.make_workdir("smartnation-storage-setup-")
    port, console = cd.free_port(), cd.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MINIO_", "AWS_", "MC_"))}
    env |= {"HOME": str(workdir), "MINIO_BROWSER": "off", "MINIO_UPDATE": "off"}
    (workdir / "data").mkdir()
    log = workdir / "minio.log"
    with log.open("wb") as handle:
        proc = subprocess.Popen(
            [minio, "server", "--address", f"127.0.0.1:{port}", "--console-address", f"127.0.0.1:{console}",
             str(workdir / "data")],
            stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env | {"MINIO_ROOT_USER": ROOT_USER, "MINIO_ROOT_PASSWORD": ROOT_PASSWORD},
        )  # fmt: skip
    try:
        cd.wait_for_ports(proc, [port], log, "minio")
        served = Store(f"http://127.0.0.1:{port}", workdir, mc, env)
        alias = served.mc_run("alias", "set", "store", served.endpoint, ROOT_USER, ROOT_PASSWORD)
        assert alias.returncode == 0, alias.stderr
        yield served
    finally:
        cd.stop(proc)
        shutil.rmtree(workdir, ignore_errors=True)


def test_a_user_removed_from_the_settings_is_removed_with_its_policy(store: Store) -> None:
    settings = load_settings("dev").object_storage
    keys = {user.name: secrets.token_hex(16) for user in settings.users}
    first = store.setup(settings, keys)
    assert first.returncode == 0, first.stdout + first.stderr
    gone = settings.users[-1].name
    assert store.logs_in(gone, keys[gone])
    # A user made by hand, with a built-in policy: not the setup's to remove.
    assert store.mc_run("admin", "user", "add", "store", "by-hand-user", "by-hand-secret-1").returncode == 0
    assert store.mc_run("admin", "policy", "attach", "store", "readonly", "--user", "by-hand-user").returncode == 0

    fewer = dataclasses.replace(settings, users=settings.users[:-1])
    second = store.setup(fewer, keys)
    assert second.returncode == 0, second.stdout + second.stderr

    users = store.users()
    assert f'"accessKey":"{gone}"' not in users
    assert f'"smartnation-{gone}"' not in store.policies()
    assert not store.logs_in(gone, keys[gone])
    # The others, and the hand-made user, stay and still log in.
    for user in fewer.users:
        assert f'"accessKey":"{user.name}"' in users
        assert f'"smartnation-{user.name}"' in store.policies()
        assert store.logs_in(user.name, keys[user.name])
    assert '"accessKey":"by-hand-user"' in users
    # Converged: a third run removes nothing more and succeeds.
    third = store.setup(fewer, keys)
    assert third.returncode == 0, third.stdout + third.stderr
    assert sorted(store.users().splitlines()) == sorted(users.splitlines())


def test_a_rotated_key_replaces_the_old_one(store: Store) -> None:
    settings = load_settings("dev").object_storage
    old = {user.name: secrets.token_hex(16) for user in settings.users}
    new = {name: secrets.token_hex(16) for name in old}
    assert store.setup(settings, old).returncode == 0
    rotated = store.setup(settings, new)
    assert rotated.returncode == 0, rotated.stdout + rotated.stderr
    for name in old:
        assert store.logs_in(name, new[name])
        assert not store.logs_in(name, old[name])
