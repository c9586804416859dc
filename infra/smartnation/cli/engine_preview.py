"""One environment's preview through the engine, with diff and the policy pack, as a report."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pulumi import automation as auto

from smartnation.cli.policy import policy_args
from smartnation.cli.report import EnvironmentPreview, EventCollector
from smartnation.cli.workspace import command_error_tail, open_stack
from smartnation.paths import environments_dir


def preview_environment(
    environment: str,
    reasons: tuple[str, ...] = (),
    environments: Path | None = None,
    on_output: Callable[[str], None] | None = None,
) -> EnvironmentPreview:
    """Preview one environment with diff and the policy pack; never raises for engine failures.

    ConcurrentUpdateError and SettingsError do propagate: they are the caller's exit codes.
    """
    stack, settings, created = open_stack(environment, environments or environments_dir())
    collector = EventCollector()
    failed, tail = False, ""
    with policy_args(settings) as policy:
        try:
            stack.preview(diff=True, color="never", on_event=collector, on_output=on_output, **policy)
        except auto.ConcurrentUpdateError:
            raise
        except auto.CommandError as error:
            failed, tail = True, command_error_tail(error)
    result = EnvironmentPreview.from_collector(
        environment, settings.cluster.name, collector, reasons=reasons, new_stack=created
    )
    result.finish(engine_failed=failed, output_tail=tail)
    return result
