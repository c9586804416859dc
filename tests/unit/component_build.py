"""Build one component alone under the Pulumi mocks (not the whole stack test_stack.py builds).

A component test then reads the few objects that component registers, in well under a second,
so a mutation run (`make mutation`, tests/tools/mutation.py) can afford to run it per mutant.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from smartnation.program.placement import Placement
from smartnation.settings.models import Settings
from tests.unit.harness import Registered, install_mocks, run, secrets_for, set_secrets

MakeComponent = Callable[[Placement, pulumi.ResourceOptions], dict[str, Any]]


@dataclass
class BuiltComponent:
    resources: list[Registered]
    outputs: dict[str, Any]
    """The outputs ``make`` returned, resolved: name -> value."""

    def one(self, type_: str, name_suffix: str) -> Registered:
        """The one resource of ``type_`` (``kubernetes:apps/v1:StatefulSet``) whose Pulumi name
        ends with ``name_suffix``."""
        (found,) = [r for r in self.resources if r.type == type_ and r.name.endswith(name_suffix)]
        return found

    def of_type(self, type_: str) -> list[Registered]:
        return [r for r in self.resources if r.type == type_]


def build_component(
    settings: Settings,
    make: MakeComponent,
    *,
    protect_state: bool | None = None,
    secrets: dict[str, str] | None = None,
) -> BuiltComponent:
    """Run ``make(placement, opts)`` under fresh mocks with every stack secret of ``settings`` set
    to its placeholder (or to its value in ``secrets``); the placement is ``settings``'
    environment on its cluster, protected as its guardrails say (or ``protect_state``)."""
    recorder = install_mocks()
    set_secrets({**secrets_for(settings), **(secrets or {})})
    protect = settings.guardrails.protect_state if protect_state is None else protect_state

    def program() -> dict[str, Any]:
        provider = k8s.Provider("test-provider", context=settings.cluster.context)
        placement = Placement.of(settings.environment, settings.cluster, protect_state=protect)
        return make(placement, pulumi.ResourceOptions(provider=provider))

    try:
        outputs = run(recorder, program)
    finally:
        pulumi.runtime.set_all_config({})
    return BuiltComponent(list(recorder.resources), {key: value for key, (value, _) in outputs.items()})
