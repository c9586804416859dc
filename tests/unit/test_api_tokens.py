"""Operator tokens of the city APIs (device-registry's authentication), under Pulumi mocks: each
client's token a stack secret, all of an API's in one Secret its Pods read, and a rotated token
rolls exactly that API."""

from __future__ import annotations

import json

import pytest

from smartnation.cli.verify_target import VERIFY_CLIENT, operator_token
from smartnation.program.components.api_tokens import ENV_VAR
from smartnation.program.components.city_apis import CREDENTIALS_HASH
from smartnation.settings import SettingsError, load_settings
from smartnation.settings.stack_secrets import api_token, generate_missing, required_secrets
from tests.unit.harness import BuiltStack, build_settings, plain_strings, secrets_for

pytestmark = pytest.mark.unit

CHART = "kubernetes:helm.sh/v4:Chart"
SECRET = "kubernetes:core/v1:Secret"
REGISTRY = "device-registry"


def build_with(environment: str, changed: dict[str, str] | None = None) -> BuiltStack:
    return build_settings(load_settings(environment), changed)


@pytest.fixture(scope="module")
def production() -> BuiltStack:
    return build_with("production")


def charts(stack: BuiltStack) -> dict[str, dict]:
    return {r.plain["name"]: r.plain["values"] for r in stack.of_type(CHART)}


def token_secrets(stack: BuiltStack) -> dict[str, dict]:
    return {r.plain["metadata"]["name"]: r for r in stack.of_type(SECRET) if ENV_VAR in r.plain.get("stringData", {})}


@pytest.mark.parametrize("environment", ["dev", "staging", "production"])
def test_every_environment_gives_the_registry_its_operators_and_verify(environment: str) -> None:
    settings = load_settings(environment)
    (registry,) = [api for api in settings.city_apis.values() if api.app == REGISTRY]
    assert set(registry.operator_clients) >= {"operator", "verify"}
    keys = required_secrets(settings)
    for client in registry.operator_clients:
        assert api_token(REGISTRY, client) in keys
    generated = generate_missing(settings)
    assert all(len(generated[api_token(REGISTRY, client)]) >= 24 for client in registry.operator_clients)


def test_the_registry_reads_each_clients_token_from_its_own_secret(production: BuiltStack) -> None:
    env = production.settings.environment
    secrets = token_secrets(production)
    assert list(secrets) == [f"{env}-{REGISTRY}-operator-tokens"]
    (secret,) = secrets.values()
    # The value is a secret Output (encrypted in the state), never plain.
    assert not list(plain_strings(secret.inputs["stringData"]))
    tokens = json.loads(secret.plain["stringData"][ENV_VAR])
    clients = production.settings.city_apis["device_registry"].operator_clients
    assert tokens == {client: secrets_for(production.settings)[api_token(REGISTRY, client)] for client in clients}
    values = charts(production)
    assert f"{env}-{REGISTRY}-operator-tokens" in values[f"{env}-{REGISTRY}"]["envFromSecrets"]
    for name, chart in values.items():
        if name != f"{env}-{REGISTRY}":
            assert not any("operator-tokens" in str(ref) for ref in chart["envFromSecrets"]), name


def test_no_token_is_written_in_plain_text(production: BuiltStack) -> None:
    tokens = {
        secrets_for(production.settings)[key] for key in required_secrets(production.settings) if "api-token" in key
    }
    assert tokens
    for resource in production.resources:
        for path, text in plain_strings(resource.inputs):
            assert not any(token in text for token in tokens), (resource.name, path)


def test_a_rotated_token_rolls_the_registry_only(production: BuiltStack) -> None:
    env = production.settings.environment
    before = {name: values["podAnnotations"][CREDENTIALS_HASH] for name, values in charts(production).items()}
    for client in production.settings.city_apis["device_registry"].operator_clients:
        after_stack = build_with("production", {api_token(REGISTRY, client): f"rotated-token-of-{client}-0123456789"})
        after = {name: values["podAnnotations"][CREDENTIALS_HASH] for name, values in charts(after_stack).items()}
        assert {name for name in before if before[name] != after[name]} == {f"{env}-{REGISTRY}"}, client
        (secret,) = token_secrets(after_stack).values()
        assert json.loads(secret.plain["stringData"][ENV_VAR])[client] == f"rotated-token-of-{client}-0123456789"


def test_verify_reads_its_own_token_and_names_the_stack_file_when_it_is_missing() -> None:
    key = f"smartnation:{api_token(REGISTRY, VERIFY_CLIENT)}"
    assert operator_token("staging", {key: "t" * 32}) == "t" * 32
    with pytest.raises(SettingsError, match=r"Pulumi\.staging\.yaml.*api-token-device-registry-verify"):
        operator_token("staging", {"smartnation:api-token-device-registry-operator": "o" * 32})
