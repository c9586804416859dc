"""Which environments exist, in the promotion order, and refusing a name that is not one of them."""

from __future__ import annotations

from pathlib import Path

from smartnation.cli.promotion_order import load_order
from smartnation.settings import SettingsError, list_environments


def known_environments(environments: Path) -> tuple[str, ...]:
    """The promotion order first, then any other environment file (never promotion.yaml itself)."""
    order = load_order(environments)
    others = [e for e in list_environments(environments) if e not in order and e != "promotion"]
    return (*order, *others)


def check_environments(names: list[str], environments: Path) -> None:
    """Raise SettingsError (-> BAD_INPUT) for the first name that is not a known environment."""
    known = known_environments(environments)
    for name in names:
        if name not in known:
            raise SettingsError(
                f"{environments.name}/{name}.yaml", "<file>", f"no such environment; known: {', '.join(known)}"
            )
