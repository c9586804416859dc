"""`smartnation state move`: every refusal names what is wrong and touches nothing, on real file
backends in a scratch project (no engine runs: each case stops before the copy); the pure
re-encryption walk; `up` against a backend the state moved away from.

The copy itself, with the engine and a real MinIO, is tests/integration/test_state_move.py.
"""

from __future__ import annotations

import json
import logging
import shutil
import socket
from pathlib import Path

import pytest

from smartnation.cli import exit_codes
from smartnation.cli.main import main
from smartnation.cli.state_marker import MOVED_LOCK, mark_moved
from smartnation.cli.state_secrets import SECRET_SIG, SECRET_SIG_VALUE, collect, rewrite, rewrite_config_file
from smartnation.cli.state_store import FileStore, StackObjects
from smartnation.tooling.toolchain.env import LOCAL_PASSPHRASE
from tests.unit.harness import REPO_ENVIRONMENTS

pytestmark = pytest.mark.unit

PROJECT = "smartnation-unit"
OLD_SALT = "v1:c2FsdHNhbHQ=:v1:bm9uY2Vub25jZQ==:Y2lwaGVydGV4dA=="
CONFIG = f"""encryptionsalt: {OLD_SALT}
config:
  smartnation:a:
    secure: v1:AAAAAAAAAAAAAAAA:b2xkLWE=
"""


def checkpoint(pending: list | None = None) -> bytes:
    latest = {
        "secrets_providers": {"type": "passphrase", "state": {"salt": OLD_SALT}},
        "resources": [{"urn": "urn:pulumi:dev::x::pulumi:pulumi:Stack::x-dev", "type": "pulumi:pulumi:Stack"}],
        "pending_operations": pending or [],
    }
    return json.dumps({"version": 3, "checkpoint": {"stack": "dev", "latest": latest}}).encode()


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch) -> Path:
    """A project with dev's stack in a file backend (`src/`) and an empty target (`dst/`)."""
    project = tmp_path / "project"
    shutil.copytree(REPO_ENVIRONMENTS, project / "environments", ignore=shutil.ignore_patterns("stacks", "audit"))
    (project / "environments" / "stacks").mkdir()
    (project / "environments" / "stacks" / "Pulumi.dev.yaml").write_text(CONFIG)
    (project / "Pulumi.yaml").write_text(f"name: {PROJECT}\nruntime: python\n")
    source = FileStore(f"file://{tmp_path / 'src'}")
    source.write(".pulumi/meta.yaml", b"version: 1\n")
    source.write(f".pulumi/stacks/{PROJECT}/dev.json", checkpoint())
    source.write(f".pulumi/history/{PROJECT}/dev/dev-1.history.json", b'{"kind": "update", "result": "succeeded"}')
    (tmp_path / "dst").mkdir()
    for name in ("PULUMI_CONFIG_PASSPHRASE_FILE", "SMARTNATION_TARGET_PASSPHRASE_FILE", "SMARTNATION_PASSPHRASE_DEV"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SMARTNATION_PROJECT_DIR", str(project))
    monkeypatch.setenv("SMARTNATION_ENVIRONMENTS_DIR", str(project / "environments"))
    monkeypatch.setenv("PULUMI_BACKEND_URL", source.url)
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "old-passphrase")
    monkeypatch.setenv("SMARTNATION_TARGET_PASSPHRASE", "monaco-passphrase")
    return tmp_path


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` but the audit log, with its bytes."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "/audit/" not in str(p)
    }


def refused(scratch: Path, caplog, *args: str, to: str | None = None) -> tuple[int, str]:
    """Run `state move`, check that nothing but the audit log changed; (exit code, messages)."""
    before = tree(scratch)
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="smartnation"):
        code = main(["state", "move", *args, "--to", to or f"file://{scratch / 'dst'}"])
    assert tree(scratch) == before, "a refused move changed files"
    audit = (scratch / "project" / "environments" / "audit" / "promotions.jsonl").read_text().splitlines()
    assert json.loads(audit[-1])["result"] == "refused"
    return code, caplog.text


def test_an_unknown_environment_is_refused_naming_its_file(scratch, caplog):
    code, text = refused(scratch, caplog, "nope")
    assert code == exit_codes.BAD_INPUT and "environments/nope.yaml" in text and "nothing was touched" in text


def test_a_target_that_is_not_a_state_backend_is_refused(scratch, caplog):
    code, text = refused(scratch, caplog, "dev", to="https://minio.example:9000/state")
    assert code == exit_codes.BAD_INPUT and "--to 'https://minio.example:9000/state'" in text and "s3://" in text


def test_a_missing_target_passphrase_is_refused_naming_the_variable(scratch, caplog, monkeypatch):
    monkeypatch.delenv("SMARTNATION_TARGET_PASSPHRASE")
    code, text = refused(scratch, caplog, "dev")
    assert code == exit_codes.BAD_INPUT and "$SMARTNATION_TARGET_PASSPHRASE" in text
    assert "SMARTNATION_TARGET_PASSPHRASE_FILE" in text


@pytest.mark.parametrize(
    ("passphrase", "said"), [(LOCAL_PASSPHRASE, "public passphrase"), ("old-passphrase", "equals the source's")]
)
def test_a_target_passphrase_that_protects_nothing_new_is_refused(scratch, caplog, monkeypatch, passphrase, said):
    monkeypatch.setenv("SMARTNATION_TARGET_PASSPHRASE", passphrase)
    code, text = refused(scratch, caplog, "dev")
    assert code == exit_codes.BAD_INPUT and said in text


def test_the_backend_the_stack_is_in_is_refused_as_target(scratch, caplog):
    code, text = refused(scratch, caplog, "dev", to=f"file://{scratch / 'src'}/")
    assert code == exit_codes.BAD_INPUT and "is the backend the stack is in already" in text


def test_a_target_that_already_has_the_stack_is_refused(scratch, caplog):
    FileStore(f"file://{scratch / 'dst'}").write(f".pulumi/stacks/{PROJECT}/dev.json", checkpoint())
    code, text = refused(scratch, caplog, "dev")
    assert code == exit_codes.BAD_INPUT and f"already has the stack {PROJECT}/dev" in text


def test_an_unreachable_target_is_refused(scratch, caplog):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    to = f"s3://state?endpoint=127.0.0.1:{port}&disableSSL=true&s3ForcePathStyle=true&region=us-east-1"
    code, text = refused(scratch, caplog, "dev", to=to)
    assert code == exit_codes.FAILED and "cannot reach the target backend" in text and f"127.0.0.1:{port}" in text


def test_a_stack_not_in_the_source_is_refused(scratch, caplog):
    FileStore(f"file://{scratch / 'src'}").delete(f".pulumi/stacks/{PROJECT}/dev.json")
    code, text = refused(scratch, caplog, "dev")
    assert code == exit_codes.STACK_NOT_FOUND and f"has no stack {PROJECT}/dev" in text


def test_a_locked_source_is_refused_naming_the_holder(scratch, caplog):
    lock = {"pid": 4242, "username": "ci", "hostname": "runner-7", "timestamp": "2026-01-01T00:00:00Z"}
    store = FileStore(f"file://{scratch / 'src'}")
    store.write(f".pulumi/locks/organization/{PROJECT}/dev/abc.json", json.dumps(lock).encode())
    code, text = refused(scratch, caplog, "dev")
    assert code == exit_codes.STACK_LOCKED and "ci@runner-7 (pid 4242)" in text


def test_pending_operations_are_refused_pointing_to_recover(scratch, caplog):
    pending = [{"type": "creating", "resource": {"urn": "urn:pulumi:dev::x::kubernetes:apps/v1:Deployment::api"}}]
    FileStore(f"file://{scratch / 'src'}").write(f".pulumi/stacks/{PROJECT}/dev.json", checkpoint(pending))
    code, text = refused(scratch, caplog, "dev")
    assert code == exit_codes.INTERRUPTED and "1 pending operation(s)" in text and "up dev --recover" in text


def test_a_stack_moved_already_is_refused_naming_where_it_went(scratch, caplog):
    source = FileStore(f"file://{scratch / 'src'}")
    mark_moved(source, StackObjects(PROJECT, "dev"), "s3://vault?endpoint=10.0.0.5:9000", "ops@monaco")
    code, text = refused(scratch, caplog, "dev")
    assert code == exit_codes.BAD_INPUT and "moved to s3://vault?endpoint=10.0.0.5:9000" in text


def test_a_source_in_the_legacy_layout_is_refused(scratch, caplog):
    FileStore(f"file://{scratch / 'src'}").write(".pulumi/meta.yaml", b"version: 0\n")
    code, text = refused(scratch, caplog, "dev")
    assert code == exit_codes.BAD_INPUT and "layout version 0" in text and "pulumi state upgrade" in text


def test_a_missing_stack_config_file_is_refused(scratch, caplog):
    (scratch / "project" / "environments" / "stacks" / "Pulumi.dev.yaml").unlink()
    code, text = refused(scratch, caplog, "dev")
    assert code == exit_codes.BAD_INPUT and "Pulumi.dev.yaml: no stack config file" in text


def test_up_against_a_backend_the_state_moved_away_from_is_refused(scratch, caplog):
    mark_moved(
        FileStore(f"file://{scratch / 'src'}"), StackObjects(PROJECT, "dev"), "s3://vault?endpoint=v:9000", "ops"
    )
    with caplog.at_level(logging.ERROR, logger="smartnation"):
        code = main(["up", "dev", "--yes"])
    assert code == exit_codes.STACK_LOCKED
    assert "moved to s3://vault?endpoint=v:9000" in caplog.text and "Point PULUMI_BACKEND_URL at" in caplog.text


def test_the_moved_mark_is_a_lock_the_engine_honours_and_nothing_calls_stale(scratch):
    from smartnation.cli.locks import LockHolder, pid_alive, this_host

    source = FileStore(f"file://{scratch / 'src'}")
    mark_moved(source, StackObjects(PROJECT, "dev"), "s3://vault?endpoint=v:9000", "ops")
    key = f".pulumi/locks/organization/{PROJECT}/dev/{MOVED_LOCK}"
    content = json.loads(source.read(key))
    # The engine's lockContent fields, so its refusal prints them: "created by <user>@<host> (pid 0)".
    assert {"pid", "username", "hostname", "timestamp"} <= set(content)
    assert "moved to s3://vault?endpoint=v:9000" in content["hostname"]
    holder = LockHolder.from_json(key, source.read(key).decode())
    assert not holder.is_stale(this_host(), pid_alive), "`up --recover` would remove the mark"


def test_a_stacks_objects_are_its_own_only(tmp_path):
    store = FileStore(f"file://{tmp_path}")
    for key in (
        f".pulumi/stacks/{PROJECT}/dev.json",
        f".pulumi/stacks/{PROJECT}/dev.json.bak",
        f".pulumi/stacks/{PROJECT}/dev-2.json",
        f".pulumi/history/{PROJECT}/dev/dev-1.history.json",
        f".pulumi/history/{PROJECT}/dev-2/dev-2-1.history.json",
        f".pulumi/backups/{PROJECT}/dev/dev.1.json",
        f".pulumi/locks/organization/{PROJECT}/dev/x.json",
    ):
        store.write(key, b"{}")
    assert StackObjects(PROJECT, "dev").all(store) == [
        f".pulumi/backups/{PROJECT}/dev/dev.1.json",
        f".pulumi/history/{PROJECT}/dev/dev-1.history.json",
        f".pulumi/stacks/{PROJECT}/dev.json",
        f".pulumi/stacks/{PROJECT}/dev.json.bak",
    ]


def test_every_ciphertext_and_salt_is_found_and_replaced():
    secret = {SECRET_SIG: SECRET_SIG_VALUE, "ciphertext": "v1:n1:c1"}
    state = {
        "checkpoint": {
            "latest": {
                "secrets_providers": {"type": "passphrase", "state": {"salt": OLD_SALT}},
                "resources": [{"outputs": {"password": secret, "list": [secret, "v1:n1:c1-not-a-secret"]}}],
            }
        }
    }
    history = {"config": {"smartnation:a": {"secure": "v1:n2:c2"}, "plain": "v1:n2:c2-plain"}}
    found = collect(iter([state, history]))
    assert found.ciphertexts == {"v1:n1:c1", "v1:n2:c2"} and found.salts == {OLD_SALT}
    new = {"v1:n1:c1": "v1:N1:C1", "v1:n2:c2": "v1:N2:C2"}
    moved = rewrite(state, new, "v1:NEWSALT")
    latest = moved["checkpoint"]["latest"]
    assert latest["secrets_providers"] == {"type": "passphrase", "state": {"salt": "v1:NEWSALT"}}
    assert latest["resources"][0]["outputs"]["password"]["ciphertext"] == "v1:N1:C1"
    assert latest["resources"][0]["outputs"]["list"][1] == "v1:n1:c1-not-a-secret"  # a plain string stays
    assert rewrite(history, new, "v1:NEWSALT") == {
        "config": {"smartnation:a": {"secure": "v1:N2:C2"}, "plain": "v1:n2:c2-plain"}
    }


def test_the_config_file_keeps_its_layout_with_new_salt_and_values():
    text = rewrite_config_file(CONFIG, {"v1:AAAAAAAAAAAAAAAA:b2xkLWE=": "v1:BBBBBBBBBBBBBBBB:bmV3LWE="}, "v1:NEWSALT")
    assert text == CONFIG.replace(OLD_SALT, "v1:NEWSALT").replace(
        "v1:AAAAAAAAAAAAAAAA:b2xkLWE=", "v1:BBBBBBBBBBBBBBBB:bmV3LWE="
    )
