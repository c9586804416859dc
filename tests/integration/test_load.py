"""The load generator (tests/load) end to end on real Pods: a small bounded run against the dev the
session deployed on Monaco's real node (conftest.dev_on_monaco). Its figures at staging size are
the benchmark's (tests/benchmarks/run.py --only-load); this proves the generator itself: devices
with their own identities through the broker's load balancer, every acknowledged reading found in
the hypertable, latencies sampled, nothing left behind."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.integration.conftest import REPO, Tools

pytestmark = pytest.mark.integration


def test_a_small_run_is_stored_whole_and_leaves_no_device_behind(tools: Tools, dev_on_monaco):
    env = {**tools.env, **dev_on_monaco.backend, "SMARTNATION_PROJECT_DIR": str(dev_on_monaco.root)}
    argv = ["--devices", "5", "--rate", "100", "--duration", "3", "--threads", "1"]
    proc = subprocess.run(
        [sys.executable, "-m", "tests.load", "dev", *argv],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    print(proc.stderr[-4000:])
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)

    assert (report["planned"], report["sent"], report["acked"], report["stored"]) == (300, 300, 300, 300)
    assert report["missing"] == 0 and not any(report["unseen_samples"].values()), report
    assert report["devices"] == 5 and report["certificates"] is True
    # Every 10th reading was watched until visible, on each database Pod the dev has.
    assert "primary" in report["visible_samples"]
    assert all(n == 30 for n in report["visible_samples"].values()), report["visible_samples"]
    assert 0 < report["visible_p50_ms"]["primary"] <= report["visible_p99_ms"]["primary"]
    assert report["cpu"]["by_process"].get("load generator", 0) > 0

    # The devices' certificates and their Secrets were deleted after the run.
    namespace = f"{dev_on_monaco.name}-dev"
    left = tools.kubectl_json("monaco-onprem", "-n", namespace, "get", "certificates.cert-manager.io,secrets")
    assert not [i["metadata"]["name"] for i in left["items"] if i["metadata"]["name"].startswith("load-")]
