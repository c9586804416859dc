"""The CLI's workspace: secrets seeded once into a stack's config, the toolchain passed explicitly."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pulumi import automation as auto

from smartnation.cli import workspace
from smartnation.cli.workspace import pulumi_command, seed_secrets, tool_environment

pytestmark = pytest.mark.unit


class RecordingStack:
    """The two config calls seed_secrets makes, on a dict."""

    def __init__(self, config: dict[str, auto.ConfigValue]) -> None:
        self.config = dict(config)
        self.writes: list[dict[str, auto.ConfigValue]] = []

    def get_all_config(self) -> dict[str, auto.ConfigValue]:
        return dict(self.config)

    def set_all_config(self, values: dict[str, auto.ConfigValue]) -> None:
        self.writes.append(values)
        self.config.update(values)


def test_only_missing_secrets_are_written_as_secrets_and_none_is_rotated():
    stack = RecordingStack({"smartnation:database-superuser-password": auto.ConfigValue("kept", secret=True)})
    written = seed_secrets(
        stack,
        {"database-superuser-password": "new", "smartnation:object-storage-root-user": "u", "broker-password-x": "p"},
    )
    assert written == ["broker-password-x", "object-storage-root-user"]
    assert stack.config["smartnation:database-superuser-password"].value == "kept"
    assert len(stack.writes) == 1
    assert set(stack.writes[0]) == {"smartnation:object-storage-root-user", "smartnation:broker-password-x"}
    assert all(value.secret for value in stack.writes[0].values())


def test_nothing_is_written_when_the_stack_has_every_secret():
    stack = RecordingStack({"smartnation:a": auto.ConfigValue("1", secret=True)})
    assert seed_secrets(stack, {"a": "2"}) == []
    assert stack.writes == []


def test_the_tool_environment_leaves_this_process_alone():
    before = dict(os.environ)
    env = tool_environment()
    assert dict(os.environ) == before
    assert env["PATH"] != before.get("PATH")  # the toolchain comes first, for whoever is handed env


def test_pulumi_is_taken_from_the_path_it_is_handed(tmp_path: Path, monkeypatch):
    fake = tmp_path / "cache" / "bin" / "pulumi"
    fake.parent.mkdir(parents=True)
    fake.write_text("#!/bin/sh\necho v3.272.0\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no pulumi on this process's PATH
    command = pulumi_command({"PATH": f"{fake.parent}{os.pathsep}/usr/bin"})
    assert command.command == str(fake)


@pytest.fixture
def two_passphrases(monkeypatch, tmp_path: Path):
    """A shared (non-local) backend where staging and production have passphrases of their own."""
    monkeypatch.setenv("PULUMI_BACKEND_URL", f"file://{tmp_path / 'shared-state'}")
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE_FILE", raising=False)
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "production-passphrase")
    monkeypatch.setenv("SMARTNATION_PASSPHRASE_STAGING", "staging-passphrase")
    # No engine here: the workspace options are only built, with a stand-in command.
    monkeypatch.setattr(workspace, "pulumi_command", lambda env: "pulumi")


def test_each_environment_gets_its_own_passphrase(two_passphrases):
    assert tool_environment("staging")["PULUMI_CONFIG_PASSPHRASE"] == "staging-passphrase"
    assert tool_environment("production")["PULUMI_CONFIG_PASSPHRASE"] == "production-passphrase"
    staging = workspace.workspace_options(environment="staging")
    production = workspace.workspace_options(environment="production")
    assert staging.env_vars["PULUMI_CONFIG_PASSPHRASE"] == "staging-passphrase"
    assert production.env_vars["PULUMI_CONFIG_PASSPHRASE"] == "production-passphrase"


def test_select_opens_each_stack_under_its_own_passphrase(two_passphrases, monkeypatch):
    opened: dict[str, str] = {}

    def select_stack(stack_name: str, work_dir: str, opts: auto.LocalWorkspaceOptions) -> RecordingStack:
        opened[stack_name] = opts.env_vars["PULUMI_CONFIG_PASSPHRASE"]
        return RecordingStack({})

    monkeypatch.setattr(workspace.auto, "select_stack", select_stack)
    monkeypatch.delenv("SMARTNATION_SECRETS_STAGING", raising=False)
    monkeypatch.delenv("SMARTNATION_SECRETS_PRODUCTION", raising=False)
    for environment in ("staging", "production"):
        workspace.select(environment, create=False)
    assert opened == {"staging": "staging-passphrase", "production": "production-passphrase"}
