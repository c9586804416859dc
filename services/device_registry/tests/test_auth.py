"""Operator tokens on the registry's routes: the real app, its routes resolved by FastAPI, no
database (a request that passes authentication stops at body validation, before any query)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr, ValidationError

from device_registry.app import create_app
from device_registry.auth import OperatorTokens
from device_registry.settings import RegistrySettings

pytestmark = pytest.mark.unit

TOKENS = {"operator": "o" * 16 + "perator-token-1", "verify": "v" * 16 + "erify-token-22"}
ENV = {"MQTT_URL": "mqtt://127.0.0.1:9", "MQTT_USERNAME": "device-registry", "MQTT_PASSWORD": "p",
       "PGHOST": "127.0.0.1", "PGPORT": "9", "PGDATABASE": "devices", "PGUSER": "device_registry",
       "PGPASSWORD": "p"}  # fmt: skip


def settings(monkeypatch: pytest.MonkeyPatch, tokens: dict[str, str] | None = TOKENS) -> RegistrySettings:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    if tokens is None:
        monkeypatch.delenv("OPERATOR_TOKENS", raising=False)
    else:
        monkeypatch.setenv("OPERATOR_TOKENS", json.dumps(tokens))
    return RegistrySettings()  # type: ignore[call-arg]


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    """One app for the module: its shutdown waits for its (unreachable) database and brokers."""
    with pytest.MonkeyPatch.context() as monkeypatch, TestClient(create_app(settings(monkeypatch))) as test_client:
        yield test_client


def v1_routes(client: TestClient) -> list[tuple[str, str]]:
    """Every route the app serves under /v1, as FastAPI resolved them (its OpenAPI document)."""
    paths = client.app.openapi()["paths"]  # type: ignore[attr-defined]
    return [
        (method.upper(), path.replace("{device_id}", "p-1"))
        for path, operations in paths.items()
        if path.startswith("/v1")
        for method in operations
    ]


def test_the_registry_serves_its_five_operator_routes(client: TestClient) -> None:
    assert sorted(v1_routes(client)) == [
        ("DELETE", "/v1/devices/p-1"),
        ("GET", "/v1/devices"),
        ("GET", "/v1/devices/p-1"),
        ("POST", "/v1/devices"),
        ("POST", "/v1/devices/p-1/commands"),
    ]


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer ", "Basic b3BlcmF0b3I6eA==", "Bearer wrong-token-of-nobody-at-all",
     f"Token {TOKENS['verify']}", f"Bearer {TOKENS['verify']}x", f"Bearer {TOKENS['verify'][:-1]}"],
)  # fmt: skip
def test_every_v1_route_refuses_without_a_valid_token(client: TestClient, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    for method, path in v1_routes(client):
        response = client.request(method, path, headers=headers, json={})
        assert response.status_code == 401, (method, path, response.text)
        assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("operator", sorted(TOKENS))
def test_each_operator_token_passes_authentication(client: TestClient, operator: str) -> None:
    """Past authentication the empty body is what is refused (422), before any database query."""
    for scheme in ("Bearer", "bearer"):
        headers = {"Authorization": f"{scheme} {TOKENS[operator]}"}
        assert client.post("/v1/devices", headers=headers, json={}).status_code == 422
        assert client.post("/v1/devices/p-1/commands", headers=headers, json={}).status_code == 422


def test_health_stays_open_for_the_probes(client: TestClient) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/healthz/live").status_code == 200
    # Not ready (no database here), but answered without a token.
    assert client.get("/readyz").status_code == 503


def test_no_tokens_refuses_everyone(monkeypatch: pytest.MonkeyPatch) -> None:
    with TestClient(create_app(settings(monkeypatch, tokens=None))) as bare:
        refusals = [
            bare.post("/v1/devices", headers={"Authorization": f"Bearer {token}"}, json={}).status_code
            for token in ("", "anything-at-all-long-enough-to-be-a-token", TOKENS["operator"])
        ]
    assert refusals == [401, 401, 401]


def test_a_token_names_its_client() -> None:
    tokens = OperatorTokens({name: SecretStr(token) for name, token in TOKENS.items()})
    assert tokens.client(TOKENS["operator"]) == "operator"
    assert tokens.client(TOKENS["verify"]) == "verify"
    assert tokens.client("") is None
    assert tokens.client(TOKENS["verify"].upper()) is None


@pytest.mark.parametrize(
    ("tokens", "message"),
    [
        ({"operator": "short"}, "token shorter than 24"),
        ({"Operator": TOKENS["operator"]}, "expected a DNS label"),
        ({"a": TOKENS["operator"], "b": TOKENS["operator"]}, "share one token"),
    ],
)
def test_weak_or_malformed_tokens_stop_the_start(
    monkeypatch: pytest.MonkeyPatch, tokens: dict[str, str], message: str
) -> None:
    with pytest.raises(ValidationError, match=message) as error:
        settings(monkeypatch, tokens)
    assert "OPERATOR_TOKENS" in str(error.value)
    assert TOKENS["operator"] not in str(error.value)
