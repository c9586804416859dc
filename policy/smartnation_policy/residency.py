"""Where production may run (data residency): the one list the pack and the program both read.

The policy pack's `data-residency` rule gets it through its target config (written by
`target.policy_config_for` with `production_countries(settings.move_complete)`), and the Pulumi
program's own preflight (`smartnation.program.preflight`) calls the same function, so `pulumi up`
run without the CLI and without the pack refuses exactly what the pack refuses. This module imports nothing from the
program: the engine runs the pack on its own.
"""

from __future__ import annotations

from collections.abc import Sequence

PRODUCTION_COUNTRIES: tuple[str, ...] = ("DE", "MC")
"""ISO 3166-1 alpha-2 countries whose clusters may run production while its move is under way.

Production still runs on the Düsseldorf test cluster during the migration."""

PRODUCTION_COUNTRIES_AFTER_MOVE: tuple[str, ...] = ("MC",)
"""Where production may run once its move is complete (``move_complete: true`` in
environments/production.yaml, set after `smartnation state move`): the Monaco data vault only."""


def production_countries(move_complete: bool) -> tuple[str, ...]:
    """The countries allowed for production: the one rule the CLI (the pack's target config) and
    the program's preflight both apply to the environment file's ``move_complete``."""
    return PRODUCTION_COUNTRIES_AFTER_MOVE if move_complete else PRODUCTION_COUNTRIES


def production_allowed_in(country: str, countries: Sequence[str] = PRODUCTION_COUNTRIES) -> bool:
    """Whether a cluster whose data at rest lives in ``country`` may run production."""
    return country in countries


def residency_refusal(cluster: str, country: str, countries: Sequence[str] = PRODUCTION_COUNTRIES) -> str:
    """The one wording of the refusal, shared by the pack's rule and the program's preflight."""
    return (
        f"production must not deploy to cluster '{cluster}' in country {country}; "
        f"production may run only in {list(countries)}"
    )
