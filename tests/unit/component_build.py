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
from pulumi.runtime import rpc

from smartnation.program.placement import Placement
from smartnation.settings.models import Settings
from tests.unit.harness import Recorder, RecordingMonitor, Registered, run, secrets_for, set_secrets

MakeComponent = Callable[[Placement, pulumi.ResourceOptions], dict[str, Any]]


class _OptionsMonitor(RecordingMonitor):
    """The harness's recording monitor, also keeping by URN what its record leaves out: whether
    ``delete_before_replace`` was set at all (the record reads False for both, but the engine
    lets the provider decide when it is unset, and pulumi-kubernetes deletes first when a
    replacement keeps the object's name), and the outputs a component registers (the engine
    keeps them in the stack's state)."""

    def __init__(
        self,
        recorder: Recorder,
        delete_before_replace: dict[str, bool | None],
        registered_outputs: dict[str, dict[str, Any]],
    ) -> None:
        super().__init__(recorder)
        self.delete_before_replace = delete_before_replace
        self.registered_outputs = registered_outputs

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - the gRPC method name
        response = super().RegisterResource(request)
        defined = request.deleteBeforeReplaceDefined
        self.delete_before_replace[response.urn] = request.deleteBeforeReplace if defined else None
        return response

    def RegisterResourceOutputs(self, request: Any) -> Any:  # noqa: N802 - the gRPC method name
        self.registered_outputs[request.urn] = rpc.deserialize_properties(request.outputs, keep_unknowns=True)
        return super().RegisterResourceOutputs(request)


@dataclass
class BuiltComponent:
    resources: list[Registered]
    outputs: dict[str, Any]
    """The outputs ``make`` returned, resolved: name -> value."""
    delete_before_replace: dict[str, bool | None]
    """Each resource's ``delete_before_replace`` option by URN, None where the program left it unset."""
    registered_outputs: dict[str, dict[str, Any]]
    """The outputs each component registered (``register_outputs``), by URN."""

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
    # harness.install_mocks with a monitor that keeps one option more.
    recorder = Recorder()
    delete_before_replace: dict[str, bool | None] = {}
    registered_outputs: dict[str, dict[str, Any]] = {}
    pulumi.runtime.set_mocks(
        recorder,
        project="smartnation",
        stack="test",
        preview=False,
        monitor=_OptionsMonitor(recorder, delete_before_replace, registered_outputs),
    )
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
    return BuiltComponent(
        list(recorder.resources),
        {key: value for key, (value, _) in outputs.items()},
        dict(delete_before_replace),
        dict(registered_outputs),
    )
