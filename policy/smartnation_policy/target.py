"""What the policy pack is checking against: one environment deployed to one cluster.

The pack itself knows nothing about clusters. The ops CLI builds the target from the
environment name and its cluster profile as the settings loader read it (`Settings.cluster`,
from environments/clusters/<name>.yaml) with `policy_config_for`, writes it as the pack's
config file and passes it to the engine with `--policy-pack-config`. Every policy that needs
the target declares `TARGET_CONFIG_SCHEMA`, so the engine rejects a missing or malformed target
before any policy runs (fail closed), and `Target.from_config` is the one place that reads it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pulumi_policy import PolicyConfigSchema

# The allowed production countries live in residency.py, the one list the program's preflight
# reads too; re-exported here because the target's config defaults to it.
from smartnation_policy.residency import PRODUCTION_COUNTRIES

__all__ = [
    "ENVIRONMENTS",
    "PRODUCTION_COUNTRIES",
    "TARGET_CONFIG_SCHEMA",
    "TARGET_KEYS",
    "Target",
    "TargetConfigError",
    "policy_config_for",
    "target_for",
]

if TYPE_CHECKING:
    # Only for the signature: the pack's own process (run by the engine) never needs the
    # settings package, it reads the target from its policy config.
    from smartnation.settings.models import ClusterProfile

ENVIRONMENTS: tuple[str, ...] = ("dev", "staging", "production")
"""The environments the project deploys; `production` is the one the stricter rules apply to."""


TARGET_KEYS: tuple[str, ...] = (
    "environment",
    "cluster",
    "country",
    "allowed_registries",
    "storage_classes",
    "production_countries",
)

_COUNTRY = "^[A-Z]{2}$"
_COUNTRY_RE = re.compile(_COUNTRY)

# The JSON schema the engine validates each targeted policy's config against (it adds
# `enforcementLevel` itself). Every key is required: a pack run without a target must not pass.
TARGET_CONFIG_SCHEMA = PolicyConfigSchema(
    properties={
        "environment": {
            "type": "string",
            "enum": list(ENVIRONMENTS),
            "description": "The environment being deployed.",
        },
        "cluster": {
            "type": "string",
            "minLength": 1,
            "description": "Name of the cluster profile the stack deploys to.",
        },
        "country": {
            "type": "string",
            "pattern": _COUNTRY,
            "description": "ISO 3166-1 alpha-2 country where the cluster keeps data at rest.",
        },
        "allowed_registries": {
            "type": "array",
            "items": {"type": "string", "minLength": 1},
            "minItems": 1,
            "description": "Image reference prefixes (registry host and path) the cluster may pull from.",
        },
        "storage_classes": {
            "type": "array",
            "items": {"type": "string", "minLength": 1},
            "minItems": 1,
            "description": "StorageClass names that exist on the cluster.",
        },
        "production_countries": {
            "type": "array",
            "items": {"type": "string", "pattern": _COUNTRY},
            "minItems": 1,
            "description": "Countries whose clusters may run production.",
        },
    },
    required=list(TARGET_KEYS),
)


class TargetConfigError(ValueError):
    """The policy config or a cluster profile does not describe a valid target."""


@dataclass(frozen=True)
class Target:
    """The deployment a policy run is judging."""

    environment: str
    """One of ENVIRONMENTS."""
    cluster: str
    """Cluster profile name, e.g. `monaco-onprem`."""
    country: str
    """Country of the cluster's site (`site.country` in the profile)."""
    allowed_registries: tuple[str, ...]
    """Image prefixes the cluster may pull from (`registry.allowed`)."""
    storage_classes: tuple[str, ...]
    """StorageClass names of the cluster (`storage.classes[].name`)."""
    production_countries: tuple[str, ...]
    """Countries allowed to host production."""

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> Target:
        """Reads the target from a policy's config (`args.get_config()`), rejecting anything off."""
        if not config:
            raise TargetConfigError(
                "smartnation-guardrails needs its target in the policy config; run it through the "
                "smartnation CLI or pass --policy-pack-config with the file policy_config_for() writes"
            )
        unknown = sorted(set(config) - set(TARGET_KEYS) - {"enforcementLevel"})
        if unknown:
            raise TargetConfigError(f"policy config: unknown keys {unknown}; expected {list(TARGET_KEYS)}")
        missing = [key for key in TARGET_KEYS if key not in config]
        if missing:
            raise TargetConfigError(f"policy config: missing keys {missing}")
        environment = _string(config, "environment")
        if environment not in ENVIRONMENTS:
            raise TargetConfigError(
                f"policy config: environment: expected one of {list(ENVIRONMENTS)}, got {environment!r}"
            )
        return cls(
            environment=environment,
            cluster=_string(config, "cluster"),
            country=_country(config["country"], "country"),
            allowed_registries=_strings(config, "allowed_registries"),
            storage_classes=_strings(config, "storage_classes"),
            production_countries=tuple(
                _country(c, f"production_countries[{i}]")
                for i, c in enumerate(_strings(config, "production_countries"))
            ),
        )

    def as_config(self) -> dict[str, Any]:
        """The target as policy config properties (JSON-ready)."""
        return {
            "environment": self.environment,
            "cluster": self.cluster,
            "country": self.country,
            "allowed_registries": list(self.allowed_registries),
            "storage_classes": list(self.storage_classes),
            "production_countries": list(self.production_countries),
        }


def target_for(
    environment: str,
    profile: ClusterProfile,
    *,
    production_countries: Sequence[str] = PRODUCTION_COUNTRIES,
) -> Target:
    """The target for ``environment`` deployed to the cluster ``profile`` describes.

    The profile is the one the settings loader validated (smartnation.settings), so its shape is
    settled; ``Target.from_config`` still checks what the pack itself demands of a target.
    """
    try:
        return Target.from_config(
            {
                "environment": environment,
                "cluster": profile.name,
                "country": profile.site.country,
                "allowed_registries": list(profile.registry.allowed),
                "storage_classes": [storage_class.name for storage_class in profile.storage.classes],
                "production_countries": list(production_countries),
            }
        )
    except TargetConfigError as err:
        raise TargetConfigError(f"cluster profile {profile.name!r}: {err}") from err


def policy_config_for(
    environment: str,
    profile: ClusterProfile,
    *,
    production_countries: Sequence[str] = PRODUCTION_COUNTRIES,
) -> dict[str, dict[str, Any]]:
    """The content of the `--policy-pack-config` JSON file for one environment on one cluster.

    A pure function of the environment name and its loaded cluster profile
    (``Settings.cluster``); the ops CLI writes the result as JSON for the engine.

    Pulumi keys policy config by policy name (a top-level key that is not a policy name must be an
    enforcement level), so the target is repeated under every policy that declares
    TARGET_CONFIG_SCHEMA. Enforcement levels stay in the pack's code, reviewed with it.
    """
    # Imported here because the rules module imports this one for Target and the schema.
    from smartnation_policy.rules import POLICIES

    properties = target_for(environment, profile, production_countries=production_countries).as_config()
    return {policy.name: dict(properties) for policy in POLICIES if policy.config_schema is TARGET_CONFIG_SCHEMA}


def _string(config: Mapping[str, Any], key: str) -> str:
    value = config[key]
    if not isinstance(value, str) or not value:
        raise TargetConfigError(f"policy config: {key}: expected a non-empty string, got {value!r}")
    return value


def _country(value: Any, key: str) -> str:
    if not isinstance(value, str) or not _COUNTRY_RE.match(value):
        raise TargetConfigError(f"policy config: {key}: expected an ISO 3166-1 alpha-2 code like 'MC', got {value!r}")
    return value


def _strings(config: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = config[key]
    if (
        isinstance(value, str)
        or not isinstance(value, Sequence)
        or not value
        or not all(isinstance(v, str) and v for v in value)
    ):
        raise TargetConfigError(f"policy config: {key}: expected a non-empty list of non-empty strings, got {value!r}")
    return tuple(value)
