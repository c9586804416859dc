"""file_backend: the file backend's URL options, and the sidecars a killed write leaves torn.

The real engine's side (no sidecar written with the options; `EOF` on a torn one) is shown in
tests/integration/test_file_backend_engine.py and test_faults_mid_update.py."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import pytest

from smartnation.cli import exit_codes, locks, main, up, workspace
from smartnation.tooling.toolchain import file_backend
from smartnation.tooling.toolchain.file_backend import TornStateFiles, durable, folder, torn_sidecars

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("file:///srv/state", "file:///srv/state?metadata=skip&no_tmp_dir=true"),
        ("file://~/state", "file://~/state?metadata=skip&no_tmp_dir=true"),
        (
            "file:///srv/state?no_legacy_layout=true",
            "file:///srv/state?no_legacy_layout=true&metadata=skip&no_tmp_dir=true",
        ),
        ("file:///srv/state?metadata=skip", "file:///srv/state?metadata=skip&no_tmp_dir=true"),
        ("file:///srv/state?no_tmp_dir=1", "file:///srv/state?no_tmp_dir=1&metadata=skip"),
        ("file:///srv/state?metadata=", "file:///srv/state?metadata=&no_tmp_dir=true"),
        ("file://", "file://"),
        ("s3://bucket?endpoint=minio:9000", "s3://bucket?endpoint=minio:9000"),
        ("gs://bucket", "gs://bucket"),
        ("", ""),
    ],
)
def test_durable_adds_only_the_options_the_url_does_not_set(given, expected):
    assert durable(given) == expected


def test_durable_is_idempotent():
    once = durable("file:///srv/state?no_legacy_layout=true")
    assert durable(once) == once


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("file:///srv/state?metadata=skip&no_tmp_dir=true", Path("/srv/state")),
        ("file:///srv/state", Path("/srv/state")),
        ("file://~/state?metadata=skip", Path.home() / "state"),
        ("file://", None),
        ("s3://bucket/state", None),
    ],
)
def test_folder_is_the_path_without_options(url, expected):
    assert folder(url) == expected


def _backend(tmp_path: Path, sidecars: dict[str, bytes]) -> str:
    for name, content in sidecars.items():
        path = tmp_path / ".pulumi" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return durable(f"file://{tmp_path}")


def test_torn_sidecars_are_the_ones_that_are_not_a_json_object(tmp_path):
    whole = json.dumps({"user.content_type": "application/json", "md5": "AAAA"}).encode()
    url = _backend(
        tmp_path,
        {
            "stacks/p/dev.json.attrs": b"",  # truncated, never written: a kill between the two
            "stacks/p/dev.json.bak.attrs": whole[:10],  # cut short
            "stacks/p/staging.json.attrs": whole,
            "meta.yaml.attrs": b"[]",  # JSON, not the object the driver reads
            "stacks/p/dev.json": b"",  # the state itself is not a sidecar: not this module's to judge
        },
    )
    (tmp_path / "elsewhere.attrs").write_bytes(b"")  # outside .pulumi/: not the backend's
    assert torn_sidecars(url) == [
        tmp_path / ".pulumi" / "meta.yaml.attrs",
        tmp_path / ".pulumi" / "stacks" / "p" / "dev.json.attrs",
        tmp_path / ".pulumi" / "stacks" / "p" / "dev.json.bak.attrs",
    ]


@pytest.mark.parametrize("url", ["s3://bucket?endpoint=minio:9000", "file://", "file:///nonexistent/state"])
def test_no_torn_sidecars_where_there_is_no_file_backend(url):
    assert torn_sidecars(url) == []


def test_remove_torn_sidecars_keeps_a_readable_one(tmp_path):
    url = _backend(tmp_path, {"stacks/p/dev.json.attrs": b"", "stacks/p/staging.json.attrs": b"{}"})
    removed = file_backend.remove_torn_sidecars(url)
    assert removed == [tmp_path / ".pulumi" / "stacks" / "p" / "dev.json.attrs"]
    assert not removed[0].exists()
    assert (tmp_path / ".pulumi" / "stacks" / "p" / "staging.json.attrs").read_bytes() == b"{}"
    assert file_backend.remove_torn_sidecars(url) == []


def test_the_refusal_names_every_file_and_the_way_out(tmp_path):
    paths = [tmp_path / "a.json.attrs", tmp_path / "b.json.attrs"]
    message = str(TornStateFiles("staging", paths))
    assert all(str(p) in message for p in paths)
    assert "smartnation up staging --recover" in message and "EOF" in message


def test_lock_holders_read_a_file_backend_with_options(tmp_path, monkeypatch):
    lock = tmp_path / ".pulumi" / "locks" / "organization" / "proj" / "dev" / "abc.json"
    lock.parent.mkdir(parents=True)
    lock.write_text(json.dumps({"pid": 4242, "username": "ops", "hostname": "h", "timestamp": "t"}))
    monkeypatch.setattr(
        locks, "tool_environment", lambda env=None: {"PULUMI_BACKEND_URL": durable(f"file://{tmp_path}")}
    )
    holders = locks.lock_holders("dev", project="proj")
    assert [(h.where, h.pid) for h in holders or []] == [(str(lock), 4242)]


class _Opts:
    def __init__(self, url: str) -> None:
        self.env_vars = {"PULUMI_BACKEND_URL": url}


def test_select_refuses_a_torn_backend_before_the_engine_opens_it(tmp_path, monkeypatch):
    url = _backend(tmp_path, {"stacks/p/dev.json.attrs": b""})
    monkeypatch.setattr(workspace, "load_settings", lambda environment, directory: object())
    monkeypatch.setattr(workspace, "workspace_options", lambda environments, environment: _Opts(url))

    def engine(**kwargs):
        raise AssertionError("the engine was asked to open a state it cannot read")

    monkeypatch.setattr(workspace.auto, "create_or_select_stack", engine)
    monkeypatch.setattr(workspace.auto, "select_stack", engine)
    with pytest.raises(TornStateFiles) as raised:
        workspace.select("dev")
    assert raised.value.paths == [tmp_path / ".pulumi" / "stacks" / "p" / "dev.json.attrs"]


def test_the_cli_exits_interrupted_on_a_torn_backend(tmp_path, caplog):
    def handler(args):
        raise TornStateFiles("dev", [tmp_path / "dev.json.attrs"])

    with caplog.at_level(logging.ERROR, logger="smartnation"):
        code = main.run(argparse.Namespace(environment="dev"), handler)
    assert code == exit_codes.INTERRUPTED
    assert str(tmp_path / "dev.json.attrs") in caplog.text and "--recover" in caplog.text


@pytest.mark.parametrize("remove_torn", [True, False])
def test_select_removes_torn_sidecars_only_when_asked_and_before_the_engine(tmp_path, monkeypatch, remove_torn):
    url = _backend(tmp_path, {"stacks/p/dev.json.attrs": b"", "stacks/p/staging.json.attrs": b"{}"})
    torn = tmp_path / ".pulumi" / "stacks" / "p" / "dev.json.attrs"
    monkeypatch.setattr(workspace, "load_settings", lambda environment, directory: object())
    monkeypatch.setattr(workspace, "workspace_options", lambda environments, environment: _Opts(url))
    monkeypatch.setattr(workspace, "secrets_from_environment", lambda environment: {})
    seen: list[list[Path]] = []

    def engine(**kwargs):
        seen.append(torn_sidecars(url))
        return "stack"

    monkeypatch.setattr(workspace.auto, "create_or_select_stack", engine)
    if remove_torn:
        assert workspace.select("dev", remove_torn=True)[0] == "stack"
        assert seen == [[]] and not torn.exists()
    else:
        with pytest.raises(TornStateFiles):
            workspace.select("dev")
        assert seen == [] and torn.exists()
    assert (tmp_path / ".pulumi" / "stacks" / "p" / "staging.json.attrs").read_bytes() == b"{}"


class _Stop(Exception):
    pass


@pytest.mark.parametrize("recover", [True, False])
def test_up_asks_select_to_remove_torn_sidecars_only_with_recover(monkeypatch, recover):
    asked: list[bool] = []

    def select(environment, remove_torn=False):
        asked.append(remove_torn)
        raise _Stop

    monkeypatch.setattr(up, "moved_to", lambda environment: None)
    monkeypatch.setattr(up, "select", select)
    args = argparse.Namespace(environment="dev", recover=recover, yes=True, init_secrets=False)
    with pytest.raises(_Stop):
        up.cmd_up(args)
    assert asked == [recover]
