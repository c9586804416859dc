"""CI hands an environment's secrets to the CLI as one JSON object in SMARTNATION_SECRETS_<ENV>."""

from __future__ import annotations

import json

import pytest

from smartnation.cli.workspace import secrets_from_environment, secrets_variable
from smartnation.settings import SettingsError

pytestmark = pytest.mark.unit


def test_variable_name_per_environment():
    assert secrets_variable("staging") == "SMARTNATION_SECRETS_STAGING"


def test_absent_variable_means_nothing_to_import(monkeypatch):
    monkeypatch.delenv("SMARTNATION_SECRETS_STAGING", raising=False)
    assert secrets_from_environment("staging") == {}


def test_keys_with_or_without_the_config_namespace(monkeypatch):
    monkeypatch.setenv(
        "SMARTNATION_SECRETS_PRODUCTION",
        json.dumps({"smartnation:broker-password-street-lights": "a", "object-storage-root-user": "b"}),
    )
    assert secrets_from_environment("production") == {
        "broker-password-street-lights": "a",
        "object-storage-root-user": "b",
    }


@pytest.mark.parametrize("raw", ["{not json", "[1, 2]", '{"key": 3}'])
def test_malformed_secrets_name_the_variable(monkeypatch, raw):
    monkeypatch.setenv("SMARTNATION_SECRETS_DEV", raw)
    with pytest.raises(SettingsError) as err:
        secrets_from_environment("dev")
    assert "$SMARTNATION_SECRETS_DEV" in str(err.value)
