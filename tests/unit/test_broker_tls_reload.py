"""The broker serves a renewed certificate without a restart: its Pods carry a reloader sidecar that
sends mosquitto SIGHUP when cert-manager's renewal reaches the mounted Secret (issue 11 item 2).

The reload itself is shown against the real daemon in tests/contract/test_mosquitto.py and on real
Pods in tests/integration/test_broker_certificate_renewal.py; here: the wiring every stack gets."""

from __future__ import annotations

from typing import Any

import pytest

from smartnation.program.components import broker
from smartnation.program.daemon_config.mosquitto import render_tls_reloader
from tests.unit.harness import BuiltStack, Registered

pytestmark = pytest.mark.unit

STATEFULSET = "kubernetes:apps/v1:StatefulSet"
CONFIGMAP = "kubernetes:core/v1:ConfigMap"
CERTIFICATE = "kubernetes:cert-manager.io/v1:Certificate"


@pytest.fixture(params=["dev", "production"])
def built(request: pytest.FixtureRequest, build_stack) -> BuiltStack:
    return build_stack(request.param)


def _broker_statefulset(stack: BuiltStack) -> Registered:
    (server,) = [r for r in stack.of_type(STATEFULSET) if r.name.endswith("-broker-server")]
    return server


def _by_name(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in items}


def test_the_broker_pod_runs_a_reloader_that_can_signal_mosquitto(built: BuiltStack) -> None:
    pod = _broker_statefulset(built).plain["spec"]["template"]["spec"]
    containers = _by_name(pod["containers"])
    assert set(containers) == {"mosquitto", "tls-reloader"}
    # It must see the broker's process to signal it...
    assert pod["shareProcessNamespace"] is True
    reloader, mosquitto = containers["tls-reloader"], containers["mosquitto"]
    # ...and be the same user (signalling another UID would need CAP_KILL, which the restricted
    # profile drops); neither container overrides the Pod's user.
    assert pod["securityContext"]["runAsUser"] == broker.MOSQUITTO_UID
    for container in (reloader, mosquitto):
        assert "runAsUser" not in container["securityContext"]
        assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert container["securityContext"]["readOnlyRootFilesystem"] is True

    # It watches the very files mosquitto serves: the same Secret volume at the same path.
    tls_mount = _by_name(mosquitto["volumeMounts"])["tls"]
    assert _by_name(reloader["volumeMounts"])["tls"] == tls_mount
    config_mount = _by_name(reloader["volumeMounts"])["config"]
    assert reloader["command"] == ["/bin/sh", f"{config_mount['mountPath']}/{broker.RELOADER_SCRIPT}"]
    assert reloader["livenessProbe"]["exec"]["command"] == [*reloader["command"], "check"]


def test_the_reloader_script_is_in_the_config_and_watches_the_served_certificate(built: BuiltStack) -> None:
    server = _broker_statefulset(built)
    volumes = _by_name(server.plain["spec"]["template"]["spec"]["volumes"])
    config_name = volumes["config"]["configMap"]["name"]
    (config,) = [r for r in built.of_type(CONFIGMAP) if r.plain["metadata"]["name"] == config_name]
    conf, script = config.plain["data"]["mosquitto.conf"], config.plain["data"][broker.RELOADER_SCRIPT]

    pod = server.plain["spec"]["template"]["spec"]
    tls_dir = _by_name(_by_name(pod["containers"])["mosquitto"]["volumeMounts"])["tls"]["mountPath"]
    assert f"certfile {tls_dir}/tls.crt" in conf and f"keyfile {tls_dir}/tls.key" in conf
    assert f"tls_dir={tls_dir}\n" in script
    assert 'kill -"$signal" "$pid"' in script and "signal=HUP" in script
    # The Secret volume is the Certificate's: a renewal lands in what the reloader watches.
    certificates = {r.plain["spec"]["secretName"] for r in built.of_type(CERTIFICATE)}
    assert volumes["tls"]["secret"]["secretName"] in certificates


def test_a_changed_reloader_rolls_the_pods(built: BuiltStack) -> None:
    """The config hash covers the script, so a fix to it reaches running Pods."""
    server = _broker_statefulset(built)
    config_name = _by_name(server.plain["spec"]["template"]["spec"]["volumes"])["config"]["configMap"]["name"]
    (config,) = [r for r in built.of_type(CONFIGMAP) if r.plain["metadata"]["name"] == config_name]
    data = config.plain["data"]
    from smartnation.program.components.stateful import sha256

    annotations = server.plain["spec"]["template"]["metadata"]["annotations"]
    assert set(data) == {"mosquitto.conf", "acl", broker.DEVICE_ACL, broker.RELOADER_SCRIPT}
    assert annotations[broker.CONFIG_HASH] == sha256(
        data["mosquitto.conf"] + data["acl"] + data[broker.DEVICE_ACL] + data[broker.RELOADER_SCRIPT]
    )


@pytest.mark.parametrize(
    ("tls_dir", "interval", "words"),
    [
        ("mosquitto/tls", 10, "tls_dir: expected an absolute path"),
        ("/mosquitto/$(reboot)", 10, "character the shell would interpret"),
        ("/mosquitto/tls", 0, "interval_s: expected whole seconds 1-3600"),
        ("/mosquitto/tls", True, "interval_s"),
    ],
)
def test_the_reloader_refuses_bad_input(tls_dir: str, interval: int, words: str) -> None:
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace("$", r"\$")):
        render_tls_reloader(tls_dir=tls_dir, interval_s=interval)
