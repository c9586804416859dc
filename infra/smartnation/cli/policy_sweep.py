"""The policy pack's rules run over recorded registrations, without an engine.

The redacted preview has no engine run to hand the pack to, so it calls each rule itself the way
the engine's analyzer would: every resource with its inputs in Kubernetes' shape, its protect
option and its provider, the stack rules with every resource and their dependencies, and each
rule's config from ``policy_config`` (the same target the CLI writes for `pulumi preview`).

What this cannot see: resources only the engine expands. Under mocks a `helm.sh/v4:Chart` stays
one resource, so the city APIs' rendered manifests are judged only by a real preview.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyProviderResource,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
)
from pulumi_policy.proxy import unknown_checking_proxy

from smartnation.cli.mock_program import Registered
from smartnation.cli.policy import policy_config
from smartnation.cli.report import Violation
from smartnation.settings import Settings
from smartnation_policy.rules import POLICIES

NOT_JUDGED_UNDER_MOCKS = "kubernetes:helm.sh/v4:Chart"


class _Reported(list):
    """``report_violation(message, urn=None)``, recorded."""

    def __call__(self, message: str, urn: str | None = None) -> None:
        self.append((message, urn))


def _options(protect: bool) -> PolicyResourceOptions:
    return PolicyResourceOptions(protect, [], None, [], PolicyCustomTimeouts(0, 0, 0), [], None)


def _level(policy: Any) -> str:
    level = policy.enforcement_level
    return str(getattr(level, "value", level) or "mandatory")


def judge(resources: Iterable[Registered], settings: Settings) -> list[Violation]:
    """Every violation of every rule of the pack over ``resources`` (one environment's program)."""
    resources = list(resources)
    configs: Mapping[str, dict[str, Any]] = policy_config(settings)
    providers = {
        f"{r.urn}::{r.name}-id": PolicyProviderResource(r.type, unknown_checking_proxy(r.plain), r.urn, r.name)
        for r in resources
        if r.type.startswith("pulumi:providers:")
    }
    judged = {
        r.urn: PolicyResource(
            r.type,
            unknown_checking_proxy(r.plain),
            r.urn,
            r.name,
            _options(bool(r.protect)),
            providers.get(r.provider),
            None,
            [],
            {},
        )
        for r in resources
    }
    for r in resources:
        judged[r.urn].dependencies.extend(judged[urn] for urn in r.dependencies if urn in judged)

    found: list[Violation] = []
    for policy in POLICIES:
        reported = _Reported()
        config = configs.get(policy.name, {})
        if isinstance(policy, ResourceValidationPolicy):
            for r in resources:
                resource = judged[r.urn]
                args = ResourceValidationArgs(
                    r.type, resource.props, r.urn, r.name, resource.opts, resource.provider, config
                )
                before = len(reported)
                policy.validate(args, reported)
                # A resource rule's violation is about that resource when it names none.
                reported[before:] = [(message, urn or r.urn) for message, urn in reported[before:]]
        else:
            policy.validate(StackValidationArgs(list(judged.values()), config), reported)
        found.extend(Violation(policy.name, message.strip(), _level(policy), urn) for message, urn in reported)
    return found
