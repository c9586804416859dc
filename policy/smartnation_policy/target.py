"""What the policy pack is checking against: one environment deployed to its cluster, and during a
move (docs/move.md) to the cluster it moves to as well.

The pack itself knows nothing about clusters. The ops CLI builds the target from the
environment name and its cluster profile as the settings loader read it (`Settings.cluster`,
from environments/clusters/<name>.yaml) with `policy_config_for`, writes it as the pack's
config file and passes it to the engine with `--policy-pack-config`. Every policy that needs
the target declares `TARGET_CONFIG_SCHEMA`, so the engine rejects a missing or malformed target
before any policy runs (fail closed), and `Target.from_config` is the one place that reads it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from pulumi_policy import PolicyConfigSchema

# The allowed production countries live in residency.py, the one list the program's preflight
# reads too; re-exported here because the target's config defaults to it.
from smartnation_policy.residency import PRODUCTION_COUNTRIES

__all__ = [
    "ENVIRONMENTS",
    "MOVE_KEY",
    "Move",
    "PRODUCTION_COUNTRIES",
    "TARGET_CONFIG_SCHEMA",
    "TARGET_KEYS",
    "Target",
    "TargetConfigError",
    "move_for",
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
    "context",
    "country",
    "allowed_registries",
    "storage_classes",
    "production_countries",
)

MOVE_KEY = "move"
"""The optional key of a move under way: absent, nothing of another cluster and no published
database is admitted (the fail-closed default)."""

MOVE_KEYS: tuple[str, ...] = ("phase", "to", "published_services", "source_ranges")
MOVE_TO_KEYS: tuple[str, ...] = ("cluster", "context", "country", "allowed_registries", "storage_classes")
PUBLISHED_SERVICE_KEYS: tuple[str, ...] = ("name", "selector", "port")

_COUNTRY = "^[A-Z]{2}$"
_COUNTRY_RE = re.compile(_COUNTRY)
_STRINGS = {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1}

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
        "context": {
            "type": "string",
            "minLength": 1,
            "description": "The kubeconfig context of the cluster's provider: where an object lands.",
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
        MOVE_KEY: {
            "type": "object",
            "description": "A move under way (docs/move.md); absent when none is declared.",
            "additionalProperties": False,
            "required": list(MOVE_KEYS),
            "properties": {
                "phase": {"type": "string", "minLength": 1},
                "to": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": list(MOVE_TO_KEYS),
                    "properties": {
                        "cluster": {"type": "string", "minLength": 1},
                        "context": {"type": "string", "minLength": 1},
                        "country": {"type": "string", "pattern": _COUNTRY},
                        "allowed_registries": _STRINGS,
                        "storage_classes": _STRINGS,
                    },
                },
                "published_services": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": list(PUBLISHED_SERVICE_KEYS),
                        "properties": {
                            "name": {"type": "string", "minLength": 1},
                            "selector": {
                                "type": "object",
                                "additionalProperties": {"type": "string"},
                                "minProperties": 1,
                            },
                            "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                        },
                    },
                },
                "source_ranges": _STRINGS,
            },
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
    context: str
    """The kubeconfig context of the cluster's provider (the profile's `context`)."""
    country: str
    """Country of the cluster's site (`site.country` in the profile)."""
    allowed_registries: tuple[str, ...]
    """Image prefixes the cluster may pull from (`registry.allowed`)."""
    storage_classes: tuple[str, ...]
    """StorageClass names of the cluster (`storage.classes[].name`)."""
    production_countries: tuple[str, ...]
    """Countries allowed to host production."""
    move: Move | None = None
    """The move under way, if any: the cluster the environment moves to and the database it
    publishes there (docs/move.md). Only the environment's own target carries it."""

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
        unknown = sorted(set(config) - set(TARGET_KEYS) - {MOVE_KEY, "enforcementLevel"})
        if unknown:
            raise TargetConfigError(
                f"policy config: unknown keys {unknown}; expected {list(TARGET_KEYS)} and optionally {MOVE_KEY!r}"
            )
        missing = [key for key in TARGET_KEYS if key not in config]
        if missing:
            raise TargetConfigError(f"policy config: missing keys {missing}")
        environment = _string(config, "environment")
        if environment not in ENVIRONMENTS:
            raise TargetConfigError(
                f"policy config: environment: expected one of {list(ENVIRONMENTS)}, got {environment!r}"
            )
        target = cls(
            environment=environment,
            cluster=_string(config, "cluster"),
            context=_string(config, "context"),
            country=_country(config["country"], "country"),
            allowed_registries=_strings(config, "allowed_registries"),
            storage_classes=_strings(config, "storage_classes"),
            production_countries=tuple(
                _country(c, f"production_countries[{i}]")
                for i, c in enumerate(_strings(config, "production_countries"))
            ),
        )
        if config.get(MOVE_KEY) is None:
            return target
        return replace(target, move=Move.from_config(config[MOVE_KEY], target))

    def as_config(self) -> dict[str, Any]:
        """The target as policy config properties (JSON-ready)."""
        return {
            "environment": self.environment,
            "cluster": self.cluster,
            "context": self.context,
            "country": self.country,
            "allowed_registries": list(self.allowed_registries),
            "storage_classes": list(self.storage_classes),
            "production_countries": list(self.production_countries),
            **({MOVE_KEY: self.move.as_config()} if self.move is not None else {}),
        }

    @property
    def move_target(self) -> Target | None:
        """The cluster the environment moves to, as a target of its own (same environment and
        production countries), or None when no move is under way."""
        if self.move is None:
            return None
        to = self.move.to
        return replace(
            self,
            cluster=to.cluster,
            context=to.context,
            country=to.country,
            allowed_registries=to.allowed_registries,
            storage_classes=to.storage_classes,
            move=None,
        )

    def on_context(self, context: str | None) -> Target | None:
        """The target of the cluster a provider with this kubeconfig ``context`` deploys to: this
        one, the move's target, or None when it is neither (the caller refuses the object).

        ``None`` (an object judged without a provider, as unit tests and the analyzer's own
        protocol test hand them over) is judged against the environment's own cluster, as the
        pack judged every object before moves existed."""
        if context is None or context == self.context:
            return self
        moving_to = self.move_target
        if moving_to is not None and context == moving_to.context:
            return moving_to
        return None


@dataclass(frozen=True)
class MoveTo:
    """The cluster a move goes to, as the pack judges the objects that land there."""

    cluster: str
    context: str
    country: str
    allowed_registries: tuple[str, ...]
    storage_classes: tuple[str, ...]


@dataclass(frozen=True)
class Move:
    """A move under way (the environment file's `move:`, docs/move.md), as far as the pack needs it."""

    phase: str
    """The phase declared (`replicate`...)."""
    to: MoveTo
    """The cluster the environment moves to: its objects there are judged against it."""
    published: tuple[Published, ...]
    """The Services that publish the source's data services to the other site (the database
    primary, the object storage), each with its exact selector and its one port."""
    source_ranges: tuple[str, ...]
    """The link addresses (CIDRs) the other site connects from: the Service's
    `loadBalancerSourceRanges` must be exactly these."""

    @classmethod
    def from_config(cls, config: Any, target: Target) -> Move:
        """Reads `move` of the policy config, naming the key of anything off."""
        section = _section(config, MOVE_KEY, MOVE_KEYS)
        to = _section(section["to"], f"{MOVE_KEY}.to", MOVE_TO_KEYS)
        published = section["published_services"]
        if not isinstance(published, list) or not published:
            raise TargetConfigError(
                f"policy config: {MOVE_KEY}.published_services: expected a non-empty list, got {published!r}"
            )
        move = cls(
            phase=_string(section, "phase", MOVE_KEY),
            to=MoveTo(
                cluster=_string(to, "cluster", f"{MOVE_KEY}.to"),
                context=_string(to, "context", f"{MOVE_KEY}.to"),
                country=_country(to["country"], f"{MOVE_KEY}.to.country"),
                allowed_registries=_strings(to, "allowed_registries", f"{MOVE_KEY}.to"),
                storage_classes=_strings(to, "storage_classes", f"{MOVE_KEY}.to"),
            ),
            published=tuple(
                Published.from_config(entry, f"{MOVE_KEY}.published_services[{i}]") for i, entry in enumerate(published)
            ),
            source_ranges=tuple(
                _network(value, f"{MOVE_KEY}.source_ranges[{i}]")
                for i, value in enumerate(_strings(section, "source_ranges", MOVE_KEY))
            ),
        )
        # Each object is told apart by its provider's context: two clusters on one context could not be.
        if move.to.cluster == target.cluster or move.to.context == target.context:
            raise TargetConfigError(
                f"policy config: {MOVE_KEY}.to: the move goes to cluster {move.to.cluster!r} (context "
                f"{move.to.context!r}), which is the environment's own cluster {target.cluster!r} (context "
                f"{target.context!r}); a move goes to another cluster with another context"
            )
        return move

    def as_config(self) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "to": {
                "cluster": self.to.cluster,
                "context": self.to.context,
                "country": self.to.country,
                "allowed_registries": list(self.to.allowed_registries),
                "storage_classes": list(self.to.storage_classes),
            },
            "published_services": [service.as_config() for service in self.published],
            "source_ranges": list(self.source_ranges),
        }

    def published_named(self, name: Any) -> Published | None:
        """The published Service of that name, if the move declares one."""
        return next((service for service in self.published if service.name == name), None)


@dataclass(frozen=True)
class Published:
    """One Service a move publishes on the source to the other site's link addresses alone."""

    name: str
    selector: Mapping[str, str]
    """Its exact pod selector (the data service's server Pods)."""
    port: int
    """Its one port."""

    @classmethod
    def from_config(cls, config: Any, key: str) -> Published:
        section = _section(config, key, PUBLISHED_SERVICE_KEYS)
        selector = section["selector"]
        if (
            not isinstance(selector, Mapping)
            or not selector
            or not all(isinstance(k, str) and k and isinstance(v, str) and v for k, v in selector.items())
        ):
            raise TargetConfigError(
                f"policy config: {key}.selector: expected a non-empty mapping of label names to values, "
                f"got {selector!r}"
            )
        port = section["port"]
        # The engine hands the config over as a protobuf Struct, whose numbers are all floats.
        if not isinstance(port, int | float) or isinstance(port, bool) or port != int(port) or not 1 <= port <= 65535:
            raise TargetConfigError(f"policy config: {key}.port: expected a port number (1-65535), got {port!r}")
        return cls(_string(section, "name", key), dict(selector), int(port))

    def as_config(self) -> dict[str, Any]:
        return {"name": self.name, "selector": dict(self.selector), "port": self.port}


def move_for(
    to: ClusterProfile,
    *,
    phase: str,
    published: Sequence[tuple[str, Mapping[str, str], int]],
    source_ranges: Sequence[str],
) -> dict[str, Any]:
    """The `move` section of the policy config for a move to the cluster ``to`` describes: the
    program's published Services (name, selector, port: the database primary's, the object
    storage's) and the link addresses they are published to (program/move_replication.py)."""
    return {
        "phase": phase,
        "to": {
            "cluster": to.name,
            "context": to.context,
            "country": to.site.country,
            "allowed_registries": list(to.registry.allowed),
            "storage_classes": [storage_class.name for storage_class in to.storage.classes],
        },
        "published_services": [
            {"name": name, "selector": dict(selector), "port": port} for name, selector, port in published
        ],
        "source_ranges": list(source_ranges),
    }


def target_for(
    environment: str,
    profile: ClusterProfile,
    *,
    production_countries: Sequence[str] = PRODUCTION_COUNTRIES,
    move: Mapping[str, Any] | None = None,
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
                "context": profile.context,
                "country": profile.site.country,
                "allowed_registries": list(profile.registry.allowed),
                "storage_classes": [storage_class.name for storage_class in profile.storage.classes],
                "production_countries": list(production_countries),
                **({MOVE_KEY: dict(move)} if move is not None else {}),
            }
        )
    except TargetConfigError as err:
        raise TargetConfigError(f"cluster profile {profile.name!r}: {err}") from err


def policy_config_for(
    environment: str,
    profile: ClusterProfile,
    *,
    production_countries: Sequence[str] = PRODUCTION_COUNTRIES,
    move: Mapping[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """The content of the `--policy-pack-config` JSON file for one environment on one cluster.

    A pure function of the environment name and its loaded cluster profile
    (``Settings.cluster``), and during a move of ``move`` (``move_for``); the ops CLI writes the
    result as JSON for the engine.

    Pulumi keys policy config by policy name (a top-level key that is not a policy name must be an
    enforcement level), so the target is repeated under every policy that declares
    TARGET_CONFIG_SCHEMA. Enforcement levels stay in the pack's code, reviewed with it.
    """
    # Imported here because the rules module imports this one for Target and the schema.
    from smartnation_policy.rules import POLICIES

    properties = target_for(environment, profile, production_countries=production_countries, move=move).as_config()
    return {policy.name: dict(properties) for policy in POLICIES if policy.config_schema is TARGET_CONFIG_SCHEMA}


def _path(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _section(value: Any, key: str, keys: Sequence[str]) -> Mapping[str, Any]:
    """A nested mapping of the config with exactly ``keys``."""
    if not isinstance(value, Mapping):
        raise TargetConfigError(f"policy config: {key}: expected a mapping with keys {list(keys)}, got {value!r}")
    unknown = sorted(set(value) - set(keys))
    if unknown:
        raise TargetConfigError(f"policy config: {key}: unknown keys {unknown}; expected {list(keys)}")
    missing = [k for k in keys if k not in value]
    if missing:
        raise TargetConfigError(f"policy config: {key}: missing keys {missing}")
    return value


def _string(config: Mapping[str, Any], key: str, prefix: str = "") -> str:
    value = config[key]
    if not isinstance(value, str) or not value:
        raise TargetConfigError(f"policy config: {_path(prefix, key)}: expected a non-empty string, got {value!r}")
    return value


def _network(value: str, key: str) -> str:
    """A CIDR as the Service must carry it (``10.213.0.253/32``), normalised."""
    try:
        return str(ipaddress.ip_network(value, strict=True))
    except ValueError as err:
        raise TargetConfigError(f"policy config: {key}: expected a CIDR like '10.213.0.253/32', got {value!r}") from err


def _country(value: Any, key: str) -> str:
    if not isinstance(value, str) or not _COUNTRY_RE.match(value):
        raise TargetConfigError(f"policy config: {key}: expected an ISO 3166-1 alpha-2 code like 'MC', got {value!r}")
    return value


def _strings(config: Mapping[str, Any], key: str, prefix: str = "") -> tuple[str, ...]:
    value = config[key]
    if (
        isinstance(value, str)
        or not isinstance(value, Sequence)
        or not value
        or not all(isinstance(v, str) and v for v in value)
    ):
        raise TargetConfigError(
            f"policy config: {_path(prefix, key)}: expected a non-empty list of non-empty strings, got {value!r}"
        )
    return tuple(value)
