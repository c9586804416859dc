"""`smartnation state move`: a real stack's state, history and secrets from a file backend into
a real MinIO (the binary `make images` built, on this host, as test_state_locks starts it).

The stack is dev deployed on Monaco's real node from a scratch project of its own (namespace
`<SMARTNATION_IT_PROJECT>-st-dev`: the session's shared dev is `<SMARTNATION_IT_PROJECT>-dev`),
updated twice so its history has entries. Then, in order:

1. a move whose preview is not clean (the environment file changed since the last update) fails
   and is taken back: nothing in the bucket, the config file and the source as before;
2. the move: the history has the same entries in MinIO, every secret there and in the config
   file opens with the new passphrase and with the old one fails (no old ciphertext is left in
   any object), `pulumi preview --expect-no-changes` against MinIO passes;
3. the old backend stays readable but refuses updates: a plain `pulumi up` or `destroy` (the
   engine names the new backend; under the old passphrase the config no longer even opens) and
   `smartnation up` (exit STACK_LOCKED, naming it); a second move is refused.

The stack is destroyed from MinIO at the end.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from smartnation.cli import exit_codes
from smartnation.cli.state_secrets import collect, parse_object
from smartnation.paths import cache_root
from tests.integration.conftest import REPO, Tools
from tests.integration.platform_project import PROJECT, PlatformProject

pytestmark = pytest.mark.integration

ENVIRONMENT = "dev"
OLD_PASSPHRASE = "integration-tests"
NEW_PASSPHRASE = "monaco-vault-state-move-tests"
MINIO_USER, MINIO_PASSWORD = "state-move-tests", "state-move-tests-secret"
BUCKET = "monaco-state"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def minio(tmp_path_factory) -> Iterator[dict[str, str]]:
    """A MinIO of this module's own on 127.0.0.1 with an empty bucket; stopped by its PID."""
    binaries = sorted((cache_root() / "images" / "programs").glob("minio-*/minio"))
    assert binaries, "no MinIO binary in the images cache: run `make images`"
    data = tmp_path_factory.mktemp("minio-data")
    port, console = _free_port(), _free_port()
    log = (data.parent / "minio.log").open("w")
    server = subprocess.Popen(
        [str(binaries[-1]), "server", "--address", f"127.0.0.1:{port}", "--console-address", f"127.0.0.1:{console}",
         str(data)],
        env={**os.environ, "MINIO_ROOT_USER": MINIO_USER, "MINIO_ROOT_PASSWORD": MINIO_PASSWORD},
        stdout=log, stderr=log, start_new_session=True,
    )  # fmt: skip
    client = boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{port}",
        aws_access_key_id=MINIO_USER,
        aws_secret_access_key=MINIO_PASSWORD,
        region_name="us-east-1",
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                client.create_bucket(Bucket=BUCKET)
                break
            except Exception:  # not listening yet
                assert server.poll() is None and time.monotonic() < deadline, "MinIO did not start"
                time.sleep(0.5)
        yield {
            "PULUMI_BACKEND_URL": f"s3://{BUCKET}?endpoint=127.0.0.1:{port}&disableSSL=true&s3ForcePathStyle=true"
            "&region=us-east-1",
            "AWS_ACCESS_KEY_ID": MINIO_USER,
            "AWS_SECRET_ACCESS_KEY": MINIO_PASSWORD,
            "AWS_REGION": "us-east-1",
        }
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def _bucket_objects(minio: dict[str, str]) -> dict[str, bytes]:
    client = boto3.client(
        "s3",
        endpoint_url="http://" + minio["PULUMI_BACKEND_URL"].split("endpoint=")[1].split("&")[0],
        aws_access_key_id=MINIO_USER,
        aws_secret_access_key=MINIO_PASSWORD,
        region_name="us-east-1",
    )
    found = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        for item in page.get("Contents", []):
            found[item["Key"]] = client.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
    return found


@pytest.fixture(scope="module")
def deployed(tmp_path_factory, tools: Tools, clusters, minio) -> Iterator[PlatformProject]:
    """dev on Monaco's real node with two updates in its history, in a file backend; destroyed at
    the end from wherever its state is then."""
    state = tmp_path_factory.mktemp("state-move-source")
    backend = {"PULUMI_BACKEND_URL": f"file://{state}", "PULUMI_CONFIG_PASSPHRASE": OLD_PASSPHRASE}
    project = PlatformProject.create(tmp_path_factory.mktemp("state-move"), tools, backend, name=f"{PROJECT}-st")
    project.set_cluster(ENVIRONMENT, "monaco-onprem")
    project.init_stack(ENVIRONMENT)
    try:
        project.pulumi("up", "--yes", "--skip-preview", "--stack", ENVIRONMENT, timeout=2400)
        project.pulumi("up", "--yes", "--skip-preview", "--stack", ENVIRONMENT, timeout=1200)
        yield project
    finally:
        if any(key.endswith(f"/{ENVIRONMENT}.json") for key in _bucket_objects(minio)):
            # The move happened: the stack lives in MinIO, under the new passphrase.
            project.backend = {**minio, "PULUMI_CONFIG_PASSPHRASE": NEW_PASSPHRASE}
        project.destroy(ENVIRONMENT)


def smartnation(tools: Tools, project: PlatformProject, *args: str, env: dict[str, str] | None = None):
    proc = subprocess.run(
        [sys.executable, "-m", "smartnation.cli.main", *args], cwd=REPO, capture_output=True, text=True,
        env={**tools.env, **project.env, "SMARTNATION_PROJECT_DIR": str(project.root), **(env or {})},
        timeout=1800, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    print(f"$ smartnation {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr[-6000:]}")
    return proc


def in_backend(project: PlatformProject, backend: dict[str, str], passphrase: str, *args: str, check: bool = True):
    """`pulumi ARGS` of the scratch project against ``backend`` under ``passphrase``."""
    return project.tools.run(
        "pulumi", *args, "--non-interactive", cwd=project.root, check=check, timeout=1200,
        env={**project.env, **backend, "PULUMI_CONFIG_PASSPHRASE": passphrase},
    )  # fmt: skip


def source_ciphertexts(project: PlatformProject) -> set[str]:
    """Every ciphertext in the source backend's objects of the stack and in the config file."""
    root = Path(project.backend["PULUMI_BACKEND_URL"].removeprefix("file://"))
    values = []
    for path in root.rglob("*.json"):
        if f"/{ENVIRONMENT}" in str(path) and "/locks/" not in str(path):
            parsed = parse_object(path.name, path.read_bytes())
            if parsed:
                values.append(parsed[0])
    found = collect(iter(values))
    config = (project.root / "environments" / "stacks" / f"Pulumi.{ENVIRONMENT}.yaml").read_text()
    found.ciphertexts |= {line.split("secure:", 1)[1].strip() for line in config.splitlines() if "secure:" in line}
    return found.ciphertexts | found.salts


def test_a_move_whose_preview_shows_changes_is_taken_back(deployed: PlatformProject, tools: Tools, minio):
    config_file = deployed.root / "environments" / "stacks" / f"Pulumi.{ENVIRONMENT}.yaml"
    config_before = config_file.read_bytes()
    env_file = deployed.root / "environments" / f"{ENVIRONMENT}.yaml"
    env_before = env_file.read_text()
    # A change the last update did not deploy (one variable of one API's Deployment): the moved
    # stack's preview is not clean.
    env_file.write_text(env_before + '\ncity_apis: {open_data_api: {extra_env: {STATE_MOVE_TEST: "1"}}}\n')
    try:
        proc = smartnation(
            tools, deployed, "state", "move", ENVIRONMENT, "--to", minio["PULUMI_BACKEND_URL"],
            env={**minio_credentials(minio), "SMARTNATION_TARGET_PASSPHRASE": NEW_PASSPHRASE},
        )  # fmt: skip
    finally:
        env_file.write_text(env_before)
    assert proc.returncode == exit_codes.FAILED, proc.stderr[-3000:]
    assert "the preview against the target shows changes" in proc.stderr
    assert "taken back" in proc.stderr
    assert _bucket_objects(minio) == {}, "the target kept objects of a move taken back"
    assert config_file.read_bytes() == config_before
    root = Path(deployed.backend["PULUMI_BACKEND_URL"].removeprefix("file://"))
    assert not list(root.glob(".pulumi/locks/**/*.json")), "the source kept a lock"
    audit = (deployed.root / "environments" / "audit" / "promotions.jsonl").read_text().splitlines()
    assert json.loads(audit[-1])["result"] == "failed"


def minio_credentials(minio: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in minio.items() if k.startswith("AWS_")}


def test_the_state_moves_to_minio_with_its_history_and_secrets_under_the_new_passphrase(
    deployed: PlatformProject, tools: Tools, minio
):
    source = dict(deployed.backend)
    history_before = json.loads(deployed.pulumi("stack", "history", "--json", "--stack", ENVIRONMENT).stdout)
    assert len(history_before) >= 2
    secrets_before = json.loads(deployed.pulumi("config", "--show-secrets", "--json", "--stack", ENVIRONMENT).stdout)
    old_values = source_ciphertexts(deployed)
    assert len(old_values) > 10

    started = time.monotonic()
    proc = smartnation(
        tools, deployed, "state", "move", ENVIRONMENT, "--to", minio["PULUMI_BACKEND_URL"],
        env={**minio_credentials(minio), "SMARTNATION_TARGET_PASSPHRASE": NEW_PASSPHRASE},
    )  # fmt: skip
    print(f"state move took {time.monotonic() - started:.1f}s")
    assert proc.returncode == exit_codes.OK, proc.stderr[-4000:]
    assert "preview without changes" in proc.stdout

    target = {**minio, "PULUMI_CONFIG_PASSPHRASE": NEW_PASSPHRASE}
    # History intact: the same entries, in order.
    history = json.loads(in_backend(deployed, target, NEW_PASSPHRASE, "stack", "history", "--json").stdout)
    keys = ("kind", "result", "startTime", "endTime", "resourceChanges")
    assert [[h.get(k) for k in keys] for h in history] == [[h.get(k) for k in keys] for h in history_before]
    # Secrets: the new passphrase opens the config and the state, with the values of before.
    shown = json.loads(in_backend(deployed, target, NEW_PASSPHRASE, "config", "--show-secrets", "--json").stdout)
    assert shown == secrets_before
    in_backend(deployed, target, NEW_PASSPHRASE, "stack", "export", "--show-secrets")
    in_backend(deployed, target, NEW_PASSPHRASE, "stack", "history", "--show-secrets", "--json")
    # ... and the old one opens nothing there.
    for args in (("config", "--show-secrets", "--json"), ("stack", "export", "--show-secrets")):
        refused = in_backend(deployed, target, OLD_PASSPHRASE, *args, check=False)
        assert refused.returncode != 0 and "incorrect passphrase" in refused.stderr, refused.stderr[-2000:]
    objects = _bucket_objects(minio)
    assert any(".history.json" in key for key in objects) and any("/backups/" in key for key in objects)
    left = [key for key, data in objects.items() if any(old in data.decode("utf-8", "replace") for old in old_values)]
    assert left == [], f"objects in MinIO still holding a value under the old passphrase: {left}"
    # The moved stack is the deployed one: no change to make.
    in_backend(deployed, target, NEW_PASSPHRASE, "preview", "--expect-no-changes", "--stack", ENVIRONMENT)

    # The old backend: still readable, but no update runs against it.
    assert len(json.loads(deployed.pulumi("stack", "history", "--json", "--stack", ENVIRONMENT).stdout)) == len(
        history_before
    )
    # Under the old passphrase the re-encrypted config file no longer opens; under the new one
    # (the backend not switched) the engine meets the mark, and names where the state went.
    stale = deployed.pulumi("up", "--yes", "--skip-preview", "--stack", ENVIRONMENT, check=False)
    assert stale.returncode != 0 and "incorrect passphrase" in stale.stderr, stale.stderr[-2000:]
    for command in ("up", "destroy"):
        plain = in_backend(
            deployed, source, NEW_PASSPHRASE, command, "--yes", "--skip-preview", "--stack", ENVIRONMENT, check=False
        )
        assert plain.returncode != 0 and "locked" in plain.stderr, plain.stderr[-2000:]
        assert f"moved to {minio['PULUMI_BACKEND_URL']}" in plain.stderr
    up = smartnation(tools, deployed, "up", ENVIRONMENT, "--yes")
    assert up.returncode == exit_codes.STACK_LOCKED
    assert f"moved to {minio['PULUMI_BACKEND_URL']}" in up.stderr
    again = smartnation(
        tools, deployed, "state", "move", ENVIRONMENT, "--to", minio["PULUMI_BACKEND_URL"].replace(BUCKET, "other"),
        env={**minio_credentials(minio), "SMARTNATION_TARGET_PASSPHRASE": NEW_PASSPHRASE},
    )  # fmt: skip
    assert again.returncode == exit_codes.BAD_INPUT and "moved to" in again.stderr
    audit = [
        json.loads(line) for line in (deployed.root / "environments/audit/promotions.jsonl").read_text().splitlines()
    ]
    applied = [e for e in audit if e["result"] == "applied"]
    assert applied and applied[-1]["extra"]["operation"] == "state-move"
    assert applied[-1]["extra"]["history"] == len(history_before)
