"""Operator clients' bearer tokens for a city API (``city_apis.<api>.operator_clients``).

Each client's token is its own stack secret (``stack_secrets.api_token``); the API gets them all
in one Secret, OPERATOR_TOKENS = a JSON object client -> token, read once at start through
``envFrom``. A rotated token therefore has to roll the API: its keys are part of the API's
credentials digest (``city_apis.credentials_digest``)."""

from __future__ import annotations

import json
from collections.abc import Mapping

import pulumi
import pulumi_kubernetes as k8s

from smartnation.settings import stack_secrets
from smartnation.settings.models import ApiSettings

ENV_VAR = "OPERATOR_TOKENS"
SECRET_ROLE = "operator-tokens"
"""The Secret is ``<env>-<app>-operator-tokens``."""


def token_keys(api: ApiSettings) -> list[str]:
    """The stack secrets holding ``api``'s operator tokens, in the settings' order."""
    return [stack_secrets.api_token(api.app, client) for client in api.operator_clients]


def operator_tokens_json(tokens: Mapping[str, str]) -> str:
    """OPERATOR_TOKENS as the service reads it (services/device_registry/settings.py)."""
    return json.dumps(dict(sorted(tokens.items())), separators=(",", ":"))


def operator_tokens_secret(
    resource_name: str,
    api: ApiSettings,
    *,
    namespace: str,
    secret_name: str,
    labels: Mapping[str, str],
    opts: pulumi.ResourceOptions,
) -> k8s.core.v1.Secret | None:
    """The Secret with ``api``'s OPERATOR_TOKENS, or None when it lists no operator client."""
    if not api.operator_clients:
        return None
    config = pulumi.Config(stack_secrets.CONFIG_NAMESPACE)
    clients = list(api.operator_clients)
    tokens = [config.require_secret(key) for key in token_keys(api)]
    value = pulumi.Output.secret(
        pulumi.Output.all(*tokens).apply(lambda plain: operator_tokens_json(dict(zip(clients, plain, strict=True))))
    )
    return k8s.core.v1.Secret(
        resource_name,
        metadata={"namespace": namespace, "name": secret_name, "labels": dict(labels)},
        type="Opaque",
        string_data={ENV_VAR: value},
        opts=opts,
    )
