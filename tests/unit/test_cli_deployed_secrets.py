"""Seeding a stack's secrets: a deployed stack keeps what its last update used (issue 11 item 7,
issue 12): a checkout without the stack file must not rotate every secret."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from pulumi import automation as auto
from pulumi.automation._cmd import CommandResult

from smartnation.cli import up
from smartnation.cli.deployed_secrets import DeployedSecretsUnreadable, seed_missing_secrets
from smartnation.paths import PROJECT_DIR_VARIABLE
from smartnation.settings import load_settings
from smartnation.settings.stack_secrets import (
    CONFIG_NAMESPACE,
    DATABASE_SUPERUSER_PASSWORD,
    MissingSecretsError,
    required_secrets,
)

pytestmark = pytest.mark.unit

ENVIRONMENT = "staging"
DEPLOYED = {"resources": [{"urn": "urn:pulumi:staging::smartnation::pulumi:pulumi:Stack::smartnation-staging"}]}
NEVER_DEPLOYED: dict = {}


class FileStack:
    """A stack whose config is the stack file itself (JSON here), and whose backend holds the
    configuration of its last update (``last``, None: no update history) and the keys of earlier
    ones (``earlier``), as the engine has them."""

    def __init__(self, project: Path, last: dict[str, str] | None, earlier: tuple[str, ...] = ()) -> None:
        self.name = ENVIRONMENT
        self.file = project / "environments" / "stacks" / f"Pulumi.{ENVIRONMENT}.yaml"
        self.file.parent.mkdir(parents=True, exist_ok=True)
        self.last = last
        self.earlier = list(earlier)
        self.refreshes = 0
        self.updates = 0
        self.workspace = self

    def history(self, show_secrets: bool = True) -> list[SimpleNamespace]:
        assert not show_secrets, "the earlier updates' values are never decrypted"
        assert self.file.exists(), "`pulumi stack history` writes a stack file where there is none"
        last = {key: auto.ConfigValue("[secret]", secret=True) for key in self.last or {}}
        earlier = {key: auto.ConfigValue("[secret]", secret=True) for key in self.earlier}
        return [SimpleNamespace(config=last), SimpleNamespace(config=earlier)]

    def export_stack(self) -> SimpleNamespace:
        return SimpleNamespace(deployment=DEPLOYED)

    def up(self, **_kwargs) -> None:
        self.updates += 1

    def get_all_config(self) -> dict[str, auto.ConfigValue]:
        values = json.loads(self.file.read_text())["config"] if self.file.exists() else {}
        return {key: auto.ConfigValue(value, secret=True) for key, value in values.items()}

    def set_all_config(self, values: dict[str, auto.ConfigValue]) -> None:
        data = json.loads(self.file.read_text()) if self.file.exists() else {"salt": "new", "config": {}}
        data["config"].update({key: item.value for key, item in values.items()})
        self.file.write_text(json.dumps(data))

    def refresh_config(self, stack_name: str) -> None:
        """`pulumi config refresh --force`: the last update's config and salt replace the file."""
        assert stack_name == self.name
        self.refreshes += 1
        if self.last is None:
            raise auto.CommandError(CommandResult("", "error: no previous deployment", 255))
        self.file.write_text(json.dumps({"salt": "deployed", "config": self.last}))

    def written(self) -> dict[str, str]:
        return {key.removeprefix(f"{CONFIG_NAMESPACE}:"): item.value for key, item in self.get_all_config().items()}


@pytest.fixture
def project(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv(PROJECT_DIR_VARIABLE, str(tmp_path))
    return tmp_path


@pytest.fixture(scope="module")
def settings():
    return load_settings(ENVIRONMENT)


def deployed_values(settings, dropped: int = 1) -> dict[str, str]:
    """Every required secret but the last ``dropped`` (added to the settings since that update)."""
    keys = list(required_secrets(settings))
    return {f"{CONFIG_NAMESPACE}:{key}": f"deployed-{key}" for key in keys[: len(keys) - dropped]}


def test_a_checkout_without_the_stack_file_takes_the_deployed_values_and_generates_only_new_keys(
    project, settings
) -> None:
    last = deployed_values(settings)
    stack = FileStack(project, last)
    seeded = seed_missing_secrets(stack, settings, DEPLOYED)
    values = stack.written()
    new_key = list(required_secrets(settings))[-1]
    assert seeded.generated == [new_key]
    assert sorted(seeded.recovered) == sorted(key.removeprefix(f"{CONFIG_NAMESPACE}:") for key in last)
    for key, value in last.items():
        assert values[key.removeprefix(f"{CONFIG_NAMESPACE}:")] == value, key
    assert values[new_key] != f"deployed-{new_key}" and len(values[new_key]) >= 16
    # The deployed file (its encryption salt) is kept: the one the deploying checkout had.
    assert json.loads(stack.file.read_text())["salt"] == "deployed"


def test_a_stack_file_lacking_some_keys_gets_the_deployed_values_and_keeps_its_own(project, settings) -> None:
    last = deployed_values(settings, dropped=0)
    keys = list(last)
    stack = FileStack(project, last)
    own = {keys[0]: "rotated-by-the-operator", keys[1]: "also-set-here"}
    stack.file.write_text(json.dumps({"salt": "local", "config": own}))
    seeded = seed_missing_secrets(stack, settings, DEPLOYED)
    values = stack.written()
    assert seeded.generated == []
    assert values[keys[0].removeprefix(f"{CONFIG_NAMESPACE}:")] == "rotated-by-the-operator"
    assert values[keys[1].removeprefix(f"{CONFIG_NAMESPACE}:")] == "also-set-here"
    for key in keys[2:]:
        assert values[key.removeprefix(f"{CONFIG_NAMESPACE}:")] == last[key]
    assert json.loads(stack.file.read_text())["salt"] == "local"


def test_a_stack_never_deployed_gets_new_values_without_reading_any_update(project, settings) -> None:
    stack = FileStack(project, None)
    seeded = seed_missing_secrets(stack, settings, NEVER_DEPLOYED)
    assert sorted(seeded.generated) == sorted(required_secrets(settings))
    assert seeded.recovered == []
    assert stack.refreshes == 0


def test_a_complete_stack_file_is_left_alone(project, settings) -> None:
    stack = FileStack(project, deployed_values(settings, dropped=0))
    complete = {f"{CONFIG_NAMESPACE}:{key}": "set" for key in required_secrets(settings)}
    stack.file.write_text(json.dumps({"salt": "local", "config": complete}))
    before = stack.file.read_bytes()
    seeded = seed_missing_secrets(stack, settings, DEPLOYED)
    assert (seeded.recovered, seeded.generated) == ([], [])
    assert stack.refreshes == 0
    assert stack.file.read_bytes() == before


@pytest.mark.parametrize("with_file", [False, True], ids=["no stack file", "stack file lacking a key"])
def test_a_deployed_stack_whose_last_update_cannot_be_read_is_refused_and_nothing_is_written(
    project, settings, with_file: bool
) -> None:
    stack = FileStack(project, None)
    if with_file:
        stack.file.write_text(json.dumps({"salt": "local", "config": {"smartnation:x": "kept"}}))
    before = stack.file.read_bytes() if with_file else None
    with pytest.raises(DeployedSecretsUnreadable) as caught:
        seed_missing_secrets(stack, settings, DEPLOYED)
    error = caught.value
    assert error.file == f"environments/stacks/Pulumi.{ENVIRONMENT}.yaml"
    assert f"stack {ENVIRONMENT} is deployed" in error.detail
    assert "no previous deployment" in error.detail
    assert f"`pulumi config refresh --stack {ENVIRONMENT}`" in error.detail
    assert "nothing was generated or written" in error.detail
    if with_file:
        assert stack.file.read_bytes() == before
    else:
        assert not stack.file.exists()


def test_the_superuser_password_of_a_deployed_stack_is_never_generated(project, settings) -> None:
    """The one that broke the database: without its stack file, a deployed stack kept it."""
    last = deployed_values(settings, dropped=0)
    stack = FileStack(project, last)
    seeded = seed_missing_secrets(stack, settings, DEPLOYED)
    assert DATABASE_SUPERUSER_PASSWORD not in seeded.generated
    key = f"{CONFIG_NAMESPACE}:{DATABASE_SUPERUSER_PASSWORD}"
    assert stack.written()[DATABASE_SUPERUSER_PASSWORD] == last[key]


def test_a_key_the_last_update_ran_without_but_an_earlier_one_had_is_refused(project, settings) -> None:
    """A plain `pulumi up` from a checkout without the stack file fails in the program and is still
    recorded, without the secrets: the last update's configuration lacks them; they are not new."""
    earlier = deployed_values(settings, dropped=0)
    stack = FileStack(project, {}, earlier=tuple(earlier))
    with pytest.raises(DeployedSecretsUnreadable) as caught:
        seed_missing_secrets(stack, settings, DEPLOYED)
    assert f"its last update ran without {next(iter(earlier))}" in caught.value.detail
    assert "Copy that file from the checkout that deployed staging, then run" in caught.value.detail
    assert not stack.file.exists()


def test_up_refuses_a_stack_file_lacking_a_secret_before_the_engine_runs(project, settings, monkeypatch) -> None:
    """Without --init-secrets: the error names the file and the key; no engine, the file as it was."""
    complete = {f"{CONFIG_NAMESPACE}:{key}": "set" for key in required_secrets(settings)}
    dropped = sorted(complete)[0]
    del complete[dropped]
    stack = FileStack(project, None)
    stack.file.write_text(json.dumps({"salt": "local", "config": complete}))
    before = stack.file.read_bytes()
    monkeypatch.setattr(up, "select", lambda environment, remove_torn=False: (stack, settings))
    monkeypatch.setattr(up, "lock_holders", lambda environment: [])
    monkeypatch.setattr(up, "moved_to", lambda environment: None)
    args = argparse.Namespace(environment=ENVIRONMENT, yes=True, init_secrets=False, recover=False)
    with pytest.raises(MissingSecretsError) as caught:
        up.cmd_up(args)
    assert str(caught.value).startswith(f"environments/stacks/Pulumi.{ENVIRONMENT}.yaml: config.{dropped}: ")
    assert stack.updates == 0
    assert stack.file.read_bytes() == before
