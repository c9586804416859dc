"""What the policy pack is checking against: one environment deployed to one cluster.

The pack itself knows nothing about clusters. The ops CLI builds the target from the
environment name and the cluster profile (environments/clusters/<name>.yaml) with
`policy_config_for`, writes it as the pack's config file and passes it to the engine with
`--policy-pack-config`. Every policy that needs the target declares `TARGET_CONFIG_SCHEMA`, so
the engine rejects a missing or malformed target before any policy runs (fail closed), and
`Target.from_config` is the one place that reads it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pulumi_policy import PolicyConfigSchema

ENVIRONMENTS: tuple[str, ...] = ("dev", "staging", "production")
"""The environments the project deploys; `production` is the one the stricter rules apply to."""

PRODUCTION_COUNTRIES: tuple[str, ...] = ("DE", "MC")
"""ISO 3166-1 alpha-2 countries whose clusters may run production (data residency).

Production still runs on the Düsseldorf test cluster during the migration; once everything has
moved to the Monaco data vault this becomes ("MC") and the pack refuses production anywhere else.
"""

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
    cluster_profile: Mapping[str, Any],
    *,
    production_countries: Sequence[str] = PRODUCTION_COUNTRIES,
) -> Target:
    """Builds the target for `environment` deployed to the cluster a profile mapping describes."""
    cluster = cluster_profile.get("name")
    where = f"cluster profile {cluster!r}" if isinstance(cluster, str) else "cluster profile"
    if not isinstance(cluster, str) or not cluster:
        raise TargetConfigError(f"{where}: name: expected a non-empty string")
    site = cluster_profile.get("site")
    registry = cluster_profile.get("registry")
    storage = cluster_profile.get("storage")
    country = site.get("country") if isinstance(site, Mapping) else None
    allowed = registry.get("allowed") if isinstance(registry, Mapping) else None
    classes = storage.get("classes") if isinstance(storage, Mapping) else None
    if not isinstance(country, str) or not _COUNTRY_RE.match(country):
        raise TargetConfigError(
            f"{where}: site.country: expected an ISO 3166-1 alpha-2 code like 'MC', got {country!r}"
        )
    if (
        isinstance(allowed, str)
        or not isinstance(allowed, Sequence)
        or not allowed
        or not all(isinstance(prefix, str) and prefix for prefix in allowed)
    ):
        raise TargetConfigError(f"{where}: registry.allowed: expected a non-empty list of image prefixes")
    if isinstance(classes, str) or not isinstance(classes, Sequence) or not classes:
        raise TargetConfigError(f"{where}: storage.classes: expected a non-empty list of storage classes")
    class_names = []
    for i, storage_class in enumerate(classes):
        name = storage_class.get("name") if isinstance(storage_class, Mapping) else None
        if not isinstance(name, str) or not name:
            raise TargetConfigError(f"{where}: storage.classes[{i}].name: expected a non-empty string")
        class_names.append(name)
    try:
        return Target.from_config(
            {
                "environment": environment,
                "cluster": cluster,
                "country": country,
                "allowed_registries": list(allowed),
                "storage_classes": class_names,
                "production_countries": list(production_countries),
            }
        )
    except TargetConfigError as err:
        raise TargetConfigError(f"{where}: {err}") from err


def policy_config_for(
    environment: str,
    cluster_profile: Mapping[str, Any],
    *,
    production_countries: Sequence[str] = PRODUCTION_COUNTRIES,
) -> dict[str, dict[str, Any]]:
    """The content of the `--policy-pack-config` JSON file for one environment on one cluster.

    Pulumi keys policy config by policy name (a top-level key that is not a policy name must be an
    enforcement level), so the target is repeated under every policy that declares
    TARGET_CONFIG_SCHEMA. Enforcement levels stay in the pack's code, reviewed with it.
    """
    # Imported here because the rules module imports this one for Target and the schema.
    from smartnation_policy.rules import POLICIES

    properties = target_for(environment, cluster_profile, production_countries=production_countries).as_config()
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
