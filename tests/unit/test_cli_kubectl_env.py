"""The CLI's kubectl runs with this process's environment plus the toolchain's additions: without
HOME it wrote its discovery cache into the current directory (a `.kube/` in the checkout)."""

from __future__ import annotations

import pytest

from smartnation.cli.kubectl import Kubectl

pytestmark = pytest.mark.unit


def test_kubectl_keeps_home_and_takes_the_toolchains_path(monkeypatch):
    monkeypatch.setenv("HOME", "/home/operator")
    monkeypatch.setenv("PATH", "/usr/bin")
    kubectl = Kubectl("dusseldorf-test", "smartnation-staging", env={"PATH": "/cache/bin:/usr/bin", "KUBECONFIG": "/k"})
    env = kubectl.process_env()
    assert env["HOME"] == "/home/operator"
    assert env["PATH"] == "/cache/bin:/usr/bin" and env["KUBECONFIG"] == "/k"
