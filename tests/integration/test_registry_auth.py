"""device-registry's operator tokens on real Pods: the dev the session deployed on Monaco's real
node (conftest.dev_on_monaco), reached through its Service's port. The local clusters' ingress
controller is simulated (a kwok stage writes the Ingress's address, no proxy runs), so the
Service is the last real hop before the Pod an Ingress would take."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from smartnation.settings.stack_secrets import CONFIG_NAMESPACE, api_token
from tests.integration.conftest import Tools

pytestmark = pytest.mark.integration

CONTEXT = "monaco-onprem"
REGISTRY = "device-registry"
_FORWARDING = re.compile(r"Forwarding from 127\.0\.0\.1:(\d+)")


@contextmanager
def service_port(tools: Tools, namespace: str, service: str, port: int) -> Iterator[int]:
    proc = subprocess.Popen(
        ["kubectl", "--context", CONTEXT, "-n", namespace, "port-forward", f"svc/{service}", f":{port}"],
        env=tools.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = _FORWARDING.search(line)
        assert match, f"kubectl port-forward to {service}:{port} said: {line.strip()}"
        yield int(match.group(1))
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def request(port: int, method: str, path: str, body: dict | None = None, token: str | None = None) -> int:
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {token}"} if token else {})
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_the_registry_refuses_writes_without_an_operator_token(dev_on_monaco, tools: Tools) -> None:
    namespace = f"{dev_on_monaco.name}-dev"
    token = dev_on_monaco.pulumi(
        "config", "get", f"{CONFIG_NAMESPACE}:{api_token(REGISTRY, 'operator')}", "--stack", "dev"
    ).stdout.strip()
    assert len(token) >= 24
    device_id = f"it-auth-{token[:4].lower()}"
    body = {"id": device_id, "class": "parking-sensor", "location": {"latitude": 43.73, "longitude": 7.42}}
    with service_port(tools, namespace, f"dev-{REGISTRY}", 80) as port:
        assert request(port, "GET", "/healthz") == 200
        assert request(port, "GET", "/readyz") == 200
        for wrong in (None, f"{token}x", token[:-1]):
            assert request(port, "POST", "/v1/devices", body, wrong) == 401
            assert request(port, "POST", f"/v1/devices/{device_id}/commands", {"command": "reboot"}, wrong) == 401
            assert request(port, "GET", "/v1/devices", token=wrong) == 401
        # Nothing was registered; the operator's token registers and retires.
        assert request(port, "GET", f"/v1/devices/{device_id}", token=token) == 404
        assert request(port, "POST", "/v1/devices", body, token) == 201
        assert request(port, "DELETE", f"/v1/devices/{device_id}", token=token) == 200
