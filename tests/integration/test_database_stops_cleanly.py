"""A database Pod stops cleanly on the real node (dev on Monaco): deleted, as a rollout, a new
password or a drain deletes it, its server makes a fast shutdown (the pre-stop hook) and its
reloader sidecar stops at SIGTERM, both with status 0; before, both sat out the grace period
until the kubelet's SIGKILL (exit 137), a crash for the server. (The new server's log cannot tell:
the primary's start script sets the password in single-user mode first, which recovers a crashed
cluster quietly and shuts it down cleanly; so the old containers' exit statuses are the proof.)
The new server serves the row written before."""

from __future__ import annotations

import json
import subprocess
import time
import uuid

import pytest

from tests.integration.platform_project import PROJECT
from tests.integration.primary_sql import psql

pytestmark = pytest.mark.integration

ENVIRONMENT = "dev"
CLUSTER = "monaco-onprem"
NAMESPACE = f"{PROJECT}-{ENVIRONMENT}"
PRIMARY = f"{ENVIRONMENT}-database-primary-0"


def _watch_until_deleted(tools, uid: str, seconds: float = 120) -> dict[str, dict]:
    """Deletes the primary Pod and follows it with a watch (every change the API server holds, so
    a short-lived status is not missed between two polls) until it is gone; returns each
    container's last ``terminated`` state seen."""
    argv = ["kubectl", "--context", CLUSTER, "-n", NAMESPACE, "get", "pod", PRIMARY, "--watch",
            "--output-watch-events", "-o", "json"]  # fmt: skip
    watch = subprocess.Popen(argv, env=tools.env, stdout=subprocess.PIPE, text=True)
    terminated: dict[str, dict] = {}
    try:
        tools.run("kubectl", "--context", CLUSTER, "-n", NAMESPACE, "delete", "pod", PRIMARY, "--wait=false")
        decoder, buffer, deadline = json.JSONDecoder(), "", time.monotonic() + seconds
        assert watch.stdout is not None
        while time.monotonic() < deadline:
            line = watch.stdout.readline()
            if not line:
                break
            buffer += line
            try:
                event, end = decoder.raw_decode(buffer.lstrip())
            except json.JSONDecodeError:
                continue
            buffer = buffer.lstrip()[end:]
            pod = event["object"]
            if pod["metadata"]["uid"] != uid:
                continue  # the StatefulSet's new Pod
            for status in pod.get("status", {}).get("containerStatuses", []):
                if "terminated" in status.get("state", {}):
                    terminated[status["name"]] = status["state"]["terminated"]
            if event["type"] == "DELETED":
                return terminated
        raise AssertionError(f"{PRIMARY} not deleted within {seconds:.0f} s; terminated so far: {terminated}")
    finally:
        watch.kill()
        watch.wait()


def test_a_deleted_primary_stops_cleanly_and_serves_its_rows_again(dev_on_monaco, tools) -> None:
    marker = f"stop-{uuid.uuid4().hex[:8]}"
    psql(tools, CLUSTER, NAMESPACE, ENVIRONMENT, "telemetry",
         "INSERT INTO readings (device_id, ts, domain, metrics, received_at) "
         f"VALUES ('{marker}', now(), 'traffic', '{{}}', now());")  # fmt: skip
    old = tools.kubectl_json(CLUSTER, "-n", NAMESPACE, "get", "pod", PRIMARY)["metadata"]["uid"]

    began = time.monotonic()
    terminated = _watch_until_deleted(tools, old)
    print(f"{PRIMARY} deleted {time.monotonic() - began:.1f} s after the request: {json.dumps(terminated, indent=1)}")
    assert set(terminated) == {"postgres", "tls-reloader"}, terminated
    for name, state in terminated.items():
        assert (state["exitCode"], state.get("reason")) == (0, "Completed"), f"{name} did not stop cleanly: {state}"

    tools.run("kubectl", "--context", CLUSTER, "-n", NAMESPACE, "wait", "--for=condition=Ready", f"pod/{PRIMARY}",
              "--timeout=300s")  # fmt: skip
    new = tools.kubectl_json(CLUSTER, "-n", NAMESPACE, "get", "pod", PRIMARY)["metadata"]["uid"]
    assert new != old
    assert psql(tools, CLUSTER, NAMESPACE, ENVIRONMENT, "telemetry",
                f"SELECT count(*) FROM readings WHERE device_id = '{marker}';") == "1"  # fmt: skip
    psql(tools, CLUSTER, NAMESPACE, ENVIRONMENT, "telemetry", f"DELETE FROM readings WHERE device_id = '{marker}';")
    # The APIs reconnect on their own; the tests after this one find them Ready again.
    for deployment in json.loads(tools.run("kubectl", "--context", CLUSTER, "-n", NAMESPACE, "get", "deployment",
                                           "-o", "json").stdout)["items"]:  # fmt: skip
        name = deployment["metadata"]["name"]
        tools.run("kubectl", "--context", CLUSTER, "-n", NAMESPACE, "rollout", "status", f"deployment/{name}",
                  "--timeout=300s")  # fmt: skip
