"""Unit: the small building blocks of the components: the cluster providers (providers.py), the
cert-manager Certificate (certificates.py) and the operator tokens' Secret (api_tokens.py).

Each is read by the built stacks only as part of a whole (test_stack.py, test_api_tokens.py);
here what each one promises on its own: one provider per cluster, on that cluster's context, that
refuses an unreachable cluster and updates ConfigMaps and Secrets in place; a certificate that
renews itself well ahead of its expiry with a fresh key; the tokens as the service parses them.
"""

from __future__ import annotations

import dataclasses
import json

import pulumi
import pytest

from smartnation.program.components import api_tokens, certificates, providers
from smartnation.settings import load_settings
from smartnation.settings.stack_secrets import api_token
from tests.unit.harness import REPO_ENVIRONMENTS, Registered, install_mocks, run, set_secrets

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def production():
    return load_settings("production", REPO_ENVIRONMENTS)


def _provider_inputs(registered: Registered) -> dict:
    # Provider inputs reach the engine as strings (JSON for booleans).
    return {k: json.loads(v) if v in ("true", "false") else v for k, v in registered.plain.items()}


def test_one_provider_per_cluster_bound_to_its_context(production, monkeypatch: pytest.MonkeyPatch) -> None:
    # The SDK's Provider takes $KUBECONFIG as its kubeconfig input when set (the toolchain's env
    # sets it, CI runs in that env): the provider itself names none, only its context.
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monaco = production.cluster
    # Another cluster, whose context is not its name.
    dusseldorf = dataclasses.replace(load_settings("dev", REPO_ENVIRONMENTS).cluster, context="dus-ctx")
    assert monaco.name != dusseldorf.name
    recorder = install_mocks()
    made: dict = {}
    # A cluster named twice (both ends of a move on one site) gets one provider; the rest go on.
    run(recorder, lambda: made.update(providers.cluster_providers([monaco, monaco, dusseldorf])))
    assert set(made) == {monaco.name, dusseldorf.name}
    registered = {r.name: r for r in recorder.resources if r.type == "pulumi:providers:kubernetes"}
    assert set(registered) == {f"k8s-{monaco.name}", f"k8s-{dusseldorf.name}"}
    for name, context in ((monaco.name, monaco.context), (dusseldorf.name, "dus-ctx")):
        assert _provider_inputs(registered[f"k8s-{name}"]) == {
            "context": context,
            # An unreachable cluster fails the update rather than dropping what it holds.
            "deleteUnreachable": False,
            "enableServerSideApply": True,
            # ConfigMaps and Secrets change in place: a replacement would replace their StatefulSets.
            "enableConfigMapMutable": True,
            "enableSecretMutable": True,
        }


def test_no_cluster_no_provider() -> None:
    assert providers.cluster_providers([]) == {}


def test_a_certificate_renews_itself_ahead_of_expiry_with_a_fresh_key() -> None:
    recorder = install_mocks()

    def program() -> None:
        provider = pulumi.ProviderResource("kubernetes", "p")
        certificates.certificate(
            "c-tls",
            namespace="smartnation-dev",
            secret_name="dev-thing-tls",
            dns_names=("a.example", "b.example"),
            issuer="site-ca",
            labels={"app": "thing"},
            opts=pulumi.ResourceOptions(provider=provider),
        )

    run(recorder, program)
    (cert,) = [r for r in recorder.resources if r.type == "kubernetes:cert-manager.io/v1:Certificate"]
    (provider,) = [r for r in recorder.resources if r.type == "pulumi:providers:kubernetes"]
    assert cert.name == "c-tls"
    # On the provider it was given, never the default one.
    assert cert.provider.startswith(provider.urn)
    assert cert.plain == {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {"name": "dev-thing-tls", "namespace": "smartnation-dev", "labels": {"app": "thing"}},
        "spec": {
            "secretName": "dev-thing-tls",
            "issuerRef": {"group": "cert-manager.io", "kind": "ClusterIssuer", "name": "site-ca"},
            "dnsNames": ["a.example", "b.example"],
            # 90 days, renewed 15 days ahead.
            "duration": "2160h",
            "renewBefore": "360h",
            "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
        },
    }


def test_the_operator_tokens_are_one_compact_json_object_sorted_by_client() -> None:
    assert api_tokens.operator_tokens_json({"verify": "v", "operator": "o"}) == '{"operator":"o","verify":"v"}'
    assert api_tokens.operator_tokens_json({}) == "{}"


def test_each_operator_client_has_its_own_stack_secret_in_the_settings_order(production) -> None:
    api = production.city_apis["device_registry"]
    assert api.operator_clients
    assert api_tokens.token_keys(api) == [api_token(api.app, c) for c in api.operator_clients]
    assert api_tokens.token_keys(dataclasses.replace(api, operator_clients=())) == []


def _tokens_secret(api, tokens: dict[str, str]) -> list[Registered]:
    recorder = install_mocks()
    set_secrets(tokens)
    made: dict = {}

    def program() -> None:
        provider = pulumi.ProviderResource("kubernetes", "p")
        made["secret"] = api_tokens.operator_tokens_secret(
            "tokens",
            api,
            namespace="smartnation-prod",
            secret_name="prod-device-registry-operator-tokens",
            labels={"app": "registry"},
            opts=pulumi.ResourceOptions(provider=provider),
        )

    try:
        run(recorder, program)
    finally:
        pulumi.runtime.set_all_config({})
    return [r for r in recorder.resources if r.type == "kubernetes:core/v1:Secret"], made["secret"]


def test_the_api_gets_every_clients_token_in_one_secret(production) -> None:
    api = dataclasses.replace(production.city_apis["device_registry"], operator_clients=("verify", "operator"))
    tokens = {api_token(api.app, "verify"): "tok-v", api_token(api.app, "operator"): "tok-o"}
    (secret,), _ = _tokens_secret(api, tokens)
    assert secret.name == "tokens"
    # On the provider it was given, never the default one.
    assert secret.provider.endswith("pulumi:providers:kubernetes::p::p-id")
    assert secret.plain == {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "namespace": "smartnation-prod",
            "name": "prod-device-registry-operator-tokens",
            "labels": {"app": "registry"},
        },
        "type": "Opaque",
        "stringData": {"OPERATOR_TOKENS": '{"operator":"tok-o","verify":"tok-v"}'},
    }


def test_an_api_without_operator_clients_gets_no_tokens_secret(production) -> None:
    api = dataclasses.replace(production.city_apis["device_registry"], operator_clients=())
    secrets, made = _tokens_secret(api, {})
    assert secrets == []
    assert made is None
