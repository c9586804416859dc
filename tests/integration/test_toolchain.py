"""The toolchain on PATH is exactly what infra/smartnation/tooling/toolchain/versions.yaml pins."""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path

import pytest

from smartnation.tooling.toolchain.versions import load_pins

pytestmark = pytest.mark.integration
PINS = load_pins()


def test_pulumi_cli_version(tools):
    assert tools.run("pulumi", "version").stdout.strip() == f"v{PINS['pulumi'].version}"


def test_kubernetes_plugin_is_our_build_and_matches_the_sdk(tools):
    plugins = json.loads(tools.run("pulumi", "plugin", "ls", "--json").stdout)
    kube = [p for p in plugins if p["name"] == "kubernetes" and p["kind"] == "resource"]
    assert [p["version"] for p in kube] == [PINS["pulumi-resource-kubernetes"].version]
    # The Python SDK the program imports must be the same release as the plugin.
    assert version("pulumi-kubernetes") == PINS["pulumi-resource-kubernetes"].version


def test_language_host_answers_with_the_pinned_version(tools):
    host = Path(tools.run("sh", "-c", "command -v pulumi").stdout.strip()).resolve().parent / "pulumi-language-python"
    out = tools.run(str(host), "--version").stdout.strip()
    assert out == PINS["pulumi-language-python"].version


def test_kubernetes_binaries(tools):
    kubectl = json.loads(tools.run("kubectl", "version", "--client", "-o", "json").stdout)
    assert kubectl["clientVersion"]["gitVersion"] == f"v{PINS['kubernetes'].version}"
    for binary in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        assert tools.run(binary, "--version").stdout.strip() == f"Kubernetes v{PINS['kubernetes'].version}"


def test_etcd_version(tools):
    assert f"etcd Version: {PINS['etcd'].version}" in tools.run("etcd", "--version").stdout


@pytest.mark.parametrize(
    ("tool", "args"),
    [
        ("kwok", ("kwok", "--version")),
        ("kwok", ("kwokctl", "--version")),
        ("helm", ("helm", "version", "--short")),
        ("actionlint", ("actionlint", "-version")),
        ("coredns", ("coredns", "-version")),
        ("kube-router", ("kube-router", "--version")),
        ("cert-manager", ("cert-manager-controller", "--version")),
    ],
)
def test_other_tools(tools, tool, args):
    proc = tools.run(*args)
    assert PINS[tool].version in proc.stdout + proc.stderr


def test_binaries_come_from_the_cache_not_the_system(tools):
    from smartnation.tooling.toolchain.cache import layout

    cache_bin = str(layout().bin)
    for binary in ("pulumi", "kubectl", "etcd", "helm"):
        assert tools.run("sh", "-c", f"command -v {binary}").stdout.strip() == f"{cache_bin}/{binary}"
