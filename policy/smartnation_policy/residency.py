"""Where production may run (data residency): the one list the pack and the program both read.

The policy pack's `data-residency` rule gets it through its target config (written by
`target.policy_config_for`, whose default is this list), and the Pulumi program's own preflight
(`smartnation.program.preflight`) imports it from here, so `pulumi up` run without the CLI and
without the pack refuses exactly what the pack refuses. This module imports nothing from the
program: the engine runs the pack on its own.
"""

from __future__ import annotations

from collections.abc import Sequence

PRODUCTION_COUNTRIES: tuple[str, ...] = ("DE", "MC")
"""ISO 3166-1 alpha-2 countries whose clusters may run production.

Production still runs on the Düsseldorf test cluster during the migration; once everything has
moved to the Monaco data vault this becomes ("MC",) and both the pack and the program refuse
production anywhere else.
"""


def production_allowed_in(country: str, countries: Sequence[str] = PRODUCTION_COUNTRIES) -> bool:
    """Whether a cluster whose data at rest lives in ``country`` may run production."""
    return country in countries


def residency_refusal(cluster: str, country: str, countries: Sequence[str] = PRODUCTION_COUNTRIES) -> str:
    """The one wording of the refusal, shared by the pack's rule and the program's preflight."""
    return (
        f"production must not deploy to cluster '{cluster}' in country {country}; "
        f"production may run only in {list(countries)}"
    )
