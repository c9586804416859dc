"""smartnation's Python language host: what it runs programs with, and its handshake answers."""

from __future__ import annotations

import pytest
from google.protobuf import struct_pb2
from pulumi.runtime.proto import language_pb2

from smartnation.tooling.toolchain import language_host

pytestmark = pytest.mark.unit


def _info(root, options):
    opts = struct_pb2.Struct()
    opts.update(options)
    return language_pb2.ProgramInfo(root_directory=str(root), program_directory=str(root), options=opts)


def test_programs_run_with_the_virtualenv_that_pulumi_yaml_names(tmp_path):
    python = tmp_path / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("")
    assert language_host.python_for(_info(tmp_path, {"virtualenv": "venv"}), str(tmp_path)) == str(python)


def test_a_missing_virtualenv_says_how_to_create_it(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        language_host.python_for(_info(tmp_path, {"virtualenv": ".venv"}), str(tmp_path))
    assert "make venv" in str(err.value) and str(tmp_path / ".venv") in str(err.value)


def test_version_flag_prints_the_pinned_version(capsys, monkeypatch):
    monkeypatch.setattr(language_host, "VERSION", "3.274.1")
    assert language_host.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == "3.274.1"


def test_handshake_takes_the_engine_address_and_root(tmp_path):
    host = language_host.LanguageHost("127.0.0.1:1", tmp_path / "exec")
    request = language_pb2.LanguageHandshakeRequest(engine_address="127.0.0.1:4242", root_directory=str(tmp_path))
    host.Handshake(request, None)
    assert host.engine_address == "127.0.0.1:4242" and host.root == str(tmp_path)
