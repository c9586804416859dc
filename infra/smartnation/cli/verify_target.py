"""What `smartnation verify` checks, read from the stack: its outputs, its secrets and the device
classes; pure functions, so each refusal names the stack output or setting it came from."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from paho.mqtt.client import topic_matches_sub

from smartnation.settings import SettingsError
from smartnation.settings.models import DeviceClassSettings
from smartnation.settings.stack_secrets import CONFIG_NAMESPACE, api_token, broker_password

VERIFY_CLIENT = "verify"
"""verify's operator client of device-registry (city_apis.device_registry.operator_clients)."""


@dataclass(frozen=True)
class VerifyTarget:
    """The deployed environment, as its stack outputs describe it."""

    environment: str
    cluster: str
    """Cluster profile name (`cluster` output): its kubeconfig context is where to look."""
    namespace: str
    mqtt_hostname: str
    """The name in the broker's certificate (from `mqtt_endpoint`)."""
    mqtt_port: int
    mqtt_address: str
    """Where devices connect: the broker's load-balancer address (`mqtt_load_balancer_address`)."""
    api_releases: Mapping[str, str]
    """API name -> its Helm release (`deployed_releases.helm_releases`); the release labels its Pods."""


def _where(environment: str, key: str) -> tuple[str, str]:
    return (f"stack outputs of {environment}", key)


def target_from_outputs(environment: str, outputs: Mapping[str, Any]) -> VerifyTarget:
    """Parse the outputs `smartnation outputs ENV` prints; a missing or malformed one is a SettingsError."""

    def need(key: str) -> Any:
        if key not in outputs or outputs[key] in (None, ""):
            raise SettingsError(*_where(environment, key), "missing: was the environment deployed by this program?")
        return outputs[key]

    endpoint = urlsplit(str(need("mqtt_endpoint")))
    if endpoint.scheme != "mqtts" or not endpoint.hostname or not endpoint.port:
        raise SettingsError(*_where(environment, "mqtt_endpoint"), f"expected mqtts://<host>:<port>, got {endpoint!r}")
    address = str(need("mqtt_load_balancer_address"))
    if address == "pending":
        raise SettingsError(
            *_where(environment, "mqtt_load_balancer_address"), "the load balancer had no address at the last update"
        )
    releases = need("deployed_releases")
    helm = releases.get("helm_releases") if isinstance(releases, Mapping) else None
    if not isinstance(helm, Mapping) or not all(isinstance(v, str) for v in helm.values()):
        raise SettingsError(*_where(environment, "deployed_releases.helm_releases"), "expected API name -> release")
    # During a move the environment is served where the stack's `move` output says: the old
    # site until the cutover, the new one from then on (the endpoints above are that site's).
    move = outputs.get("move")
    serving = move.get("serving") if isinstance(move, Mapping) else None
    return VerifyTarget(
        environment=environment,
        cluster=str(serving) if isinstance(serving, str) and serving else str(need("cluster")),
        namespace=str(need("namespace")),
        mqtt_hostname=endpoint.hostname,
        mqtt_port=endpoint.port,
        mqtt_address=address,
        api_releases=dict(helm),
    )


@dataclass(frozen=True)
class MqttPlan:
    """Who publishes what, and who listens, in the broker checks."""

    device_class: str
    """A sensor class: its credentials publish readings."""
    device_topic: str
    """The reading topic of the verify device, inside the class's publish ACL."""
    forbidden_topic: str
    """Another device's reading topic (its class's topic with another id): outside the device's
    ACL, which confines it to topics carrying its own id."""
    command_topic: str | None
    """The device's command topic (the class's subscribe ACL), if the class receives commands."""
    subscriber_class: str
    """The internal class that hears the readings (the telemetry consumer); its password must be
    refused on the public TLS listener."""


def _concrete(topic_filter: str, device_id: str) -> str:
    """A topic a filter matches, naming the device where the filter has a wildcard."""
    return "/".join(device_id if level in ("+", "#") else level for level in topic_filter.split("/"))


def _matches_any(filters: Sequence[str], topic: str) -> bool:
    return any(topic_matches_sub(f, topic) for f in filters)


def mqtt_plan(
    classes: Sequence[DeviceClassSettings], device_id: str, subscriber: str, device_class: str | None = None
) -> MqttPlan:
    """Pick the device class (the first one, or ``device_class``, whose reading topic the
    subscriber hears) and another device's reading topic it may not publish on."""
    by_name = {c.name: c for c in classes}
    where = "environments/<env>.yaml"
    if subscriber not in by_name or not by_name[subscriber].subscribe or not by_name[subscriber].internal:
        raise SettingsError(
            where, "broker.device_classes", f"no internal class {subscriber!r} with subscribe topics to listen"
        )
    heard = by_name[subscriber].subscribe

    def reading_topics(c: DeviceClassSettings) -> list[str]:
        return [t for t in (_concrete(f, device_id) for f in c.publish) if _matches_any(heard, t)]

    candidates = [c for c in classes if not c.internal and reading_topics(c)]
    if device_class is not None:
        candidates = [c for c in candidates if c.name == device_class]
    if not candidates:
        raise SettingsError(
            where, "broker.device_classes", f"no class {device_class or ''} publishing a topic {subscriber!r} hears"
        )
    chosen = candidates[0]
    device_topic = reading_topics(chosen)[0]
    # The same class's topic under another device's id: the pattern ACL (%u) must refuse it.
    other_device = f"{device_id}-other"
    forbidden = next(t for t in (_concrete(f, other_device) for f in chosen.publish) if _matches_any(heard, t))
    command = next((_concrete(f, device_id) for f in chosen.subscribe), None)
    return MqttPlan(chosen.name, device_topic, forbidden, command, subscriber)


def class_password(environment: str, config: Mapping[str, Any], device_class: str) -> str:
    """An internal class's MQTT password from the stack's config (secrets decrypted); values may be
    ConfigValue-like (``.value``) or plain strings."""
    return _stack_secret(environment, config, broker_password(device_class))


def operator_token(environment: str, config: Mapping[str, Any], app: str = "device-registry") -> str:
    """The bearer token of verify's own operator client of ``app``, from the stack's config."""
    return _stack_secret(environment, config, api_token(app, VERIFY_CLIENT))


def _stack_secret(environment: str, config: Mapping[str, Any], name: str) -> str:
    key = f"{CONFIG_NAMESPACE}:{name}"
    if key not in config:
        raise SettingsError(f"environments/stacks/Pulumi.{environment}.yaml", f"config.{key}", "missing secret")
    value = config[key]
    return str(getattr(value, "value", value))
