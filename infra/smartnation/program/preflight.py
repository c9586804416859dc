"""The non-negotiables the program checks on its own, before it registers anything.

The policy pack runs only when the engine is given it (`smartnation preview|up|promote` pass it);
`pulumi up --stack production` typed by hand does not. These checks are the part of the pack's
rules that the settings alone decide, so they hold on every path:

- data residency: production only on a cluster in an allowed country (the same list and wording
  as the pack's `data-residency`, from `smartnation_policy.residency`; Monaco only once the
  environment file records `move_complete: true`);
- production's state is protected (`guardrails.protect_state`, which the pack's
  `protect-production-state` would otherwise find missing on every StatefulSet and the Namespace);
- no credential in plain text in a settings value, since settings become environment variables
  (`extra_env`), ConfigMaps and annotations (the same detector as the pack's `no-plaintext-secrets`).

Each failure is a SettingsError naming the file and the key path to change.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from smartnation.paths import CLUSTERS_DIR
from smartnation.program.move_guard import check_move
from smartnation.settings import SettingsError
from smartnation.settings.models import Settings
from smartnation_policy import plaintext, residency
from smartnation_policy.residency import PRODUCTION_COUNTRIES, production_allowed_in, residency_refusal

__all__ = ["PRODUCTION_COUNTRIES", "check_non_negotiables", "check_residency"]

PRODUCTION = "production"

# Settings fields that are the environment's own (environments/<env>.yaml on top of defaults.yaml);
# `cluster` is the profile, reported against its own file.
_ENVIRONMENT_FIELDS = ("releases", "broker", "database", "object_storage", "city_apis", "guardrails")


def check_non_negotiables(settings: Settings, production_countries: Sequence[str] | None = None) -> None:
    """Raise SettingsError at the first non-negotiable ``settings`` break; registers nothing."""
    check_residency(settings, production_countries)
    check_production_state(settings)
    check_no_plaintext_secrets(settings)
    check_move(settings)  # a cluster change or move against what is deployed (move_guard.py)


def profile_file(settings: Settings) -> str:
    """The cluster profile's file, as messages name it."""
    return f"environments/{CLUSTERS_DIR}/{settings.cluster.name}.yaml"


def check_residency(settings: Settings, production_countries: Sequence[str] | None = None) -> None:
    """Production deploys only to a cluster whose site is in an allowed country:
    ``production_countries``, by default the list ``move_complete`` selects (what the CLI gives the pack)."""
    given = production_countries is not None
    allowed = production_countries if given else residency.production_countries(settings.move_complete)
    country = settings.cluster.site.country
    if settings.environment == PRODUCTION and not production_allowed_in(country, allowed):
        which = (
            "PRODUCTION_COUNTRIES_AFTER_MOVE, since the file records move_complete: true"
            if not given and settings.move_complete
            else "PRODUCTION_COUNTRIES"
        )
        raise SettingsError(
            settings.source,
            "cluster",
            f"{residency_refusal(settings.cluster.name, country, allowed)} "
            f"({profile_file(settings)} site.country is {country}); choose a cluster whose site is in "
            f"one of those countries (the list is smartnation_policy.residency.{which})",
        )


def check_production_state(settings: Settings) -> None:
    """Production's stateful resources are protected from deletion by Pulumi."""
    if settings.environment == PRODUCTION and not settings.guardrails.protect_state:
        raise SettingsError(
            settings.source,
            "guardrails.protect_state",
            "production's state must be protected: expected true, got false. Without it an update or "
            "destroy may delete the namespace, the StatefulSets and their data; lifting protection "
            "takes an explicit `pulumi state unprotect`, not a settings change",
        )


def check_no_plaintext_secrets(settings: Settings) -> None:
    """No settings value holds a credential in plain text; the stack's encrypted config does."""
    sources = [(settings.cluster, profile_file(settings), "")]
    sources += [(getattr(settings, name), settings.source, name) for name in _ENVIRONMENT_FIELDS]
    for value, file, prefix in sources:
        for key_path, findings in _findings(value, prefix):
            raise SettingsError(
                file,
                key_path,
                f"{findings[0].what} in plain text (value not shown); settings end up in environment "
                "variables, ConfigMaps and annotations that anyone who can read the namespace sees. "
                "Keep credentials in the stack's encrypted config "
                "(`pulumi config set --secret smartnation:<key>`) and let the program put them in a Secret",
            )


def _findings(value: Any, path: str) -> Iterator[tuple[str, list[plaintext.Finding]]]:
    """(key path, findings) for every string in a settings tree that holds a credential."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for field in dataclasses.fields(value):
            yield from _findings(getattr(value, field.name), _join(path, field.name))
    elif isinstance(value, Mapping):
        for key, item in value.items():
            key_path = _join(path, str(key))
            if isinstance(item, str):
                # A mapping's keys name their values (extra_env, annotations): judge them together.
                found = plaintext.in_variable(str(key), item)
                if found:
                    yield key_path, found
            else:
                yield from _findings(item, key_path)
    elif isinstance(value, str):
        found = plaintext.in_value(value)
        if found:
            yield path, found
    elif isinstance(value, Sequence):
        for index, item in enumerate(value):
            yield from _findings(item, _join(path, str(index)))


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
