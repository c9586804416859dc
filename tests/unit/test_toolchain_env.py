"""`make env` / toolchain.env: the local passphrase only for the local clusters' file backend.

The public default must never reach a real backend: an s3:// or any other state needs its own
passphrase (or a passphrase file, which nothing may shadow), else a clear error and no exports.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from smartnation.tooling.toolchain import env as toolchain_env

pytestmark = pytest.mark.unit

S3 = "s3://smartnation-state?endpoint=minio.smartnation.mc:9000&s3ForcePathStyle=true"


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache of its own and none of the caller's state or passphrase variables."""
    monkeypatch.setenv("SMARTNATION_CACHE", str(tmp_path / "cache"))
    for name in (
        "PULUMI_BACKEND_URL",
        "PULUMI_CONFIG_PASSPHRASE",
        "PULUMI_CONFIG_PASSPHRASE_FILE",
        "SMARTNATION_KUBECONFIG",
    ):
        monkeypatch.delenv(name, raising=False)
    for name in [n for n in os.environ if n.startswith("SMARTNATION_PASSPHRASE_")]:
        monkeypatch.delenv(name)
    return tmp_path / "cache"


def test_the_local_clusters_backend_gets_the_local_passphrase(cache):
    env = toolchain_env.exports()
    assert env["PULUMI_BACKEND_URL"] == f"file://{cache / 'state'}?metadata=skip&no_tmp_dir=true"
    assert env["PULUMI_CONFIG_PASSPHRASE"] == toolchain_env.LOCAL_PASSPHRASE


@pytest.mark.parametrize("spelling", ["file://{state}", "file://{state}/", "file://{state}?no_legacy_layout=true"])
def test_the_local_backend_named_explicitly_is_still_local(cache, monkeypatch, spelling):
    monkeypatch.setenv("PULUMI_BACKEND_URL", spelling.format(state=cache / "state"))
    assert toolchain_env.exports()["PULUMI_CONFIG_PASSPHRASE"] == toolchain_env.LOCAL_PASSPHRASE


@pytest.mark.parametrize(
    ("given", "exported"),
    [
        ("file:///srv/state", "file:///srv/state?metadata=skip&no_tmp_dir=true"),
        (
            "file:///srv/state?no_legacy_layout=true",
            "file:///srv/state?no_legacy_layout=true&metadata=skip&no_tmp_dir=true",
        ),
        ("file:///srv/state?metadata=&no_tmp_dir=", "file:///srv/state?metadata=&no_tmp_dir="),
        (S3, S3),
    ],
)
def test_a_given_file_backend_gets_the_options_that_keep_its_files_whole(cache, monkeypatch, given, exported):
    monkeypatch.setenv("PULUMI_BACKEND_URL", given)
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "the-site's-own")
    assert toolchain_env.exports()["PULUMI_BACKEND_URL"] == exported


@pytest.mark.parametrize("backend", [S3, "file:///srv/pulumi-state", "gs://bucket", "file://"])
def test_any_other_backend_without_a_passphrase_is_an_error_naming_the_variables(cache, monkeypatch, backend):
    monkeypatch.setenv("PULUMI_BACKEND_URL", backend)
    with pytest.raises(toolchain_env.PassphraseMissing) as raised:
        toolchain_env.exports()
    message = str(raised.value)
    assert "PULUMI_CONFIG_PASSPHRASE" in message and "PULUMI_CONFIG_PASSPHRASE_FILE" in message
    assert backend in message
    assert toolchain_env.LOCAL_PASSPHRASE not in message


def test_the_local_backend_aimed_at_another_cluster_gets_no_default(cache, monkeypatch, tmp_path):
    # The cache's file backend with a real site's kubeconfig: its stacks would hold that site's
    # secrets under the public passphrase.
    site = tmp_path / "monaco-site.kubeconfig"
    monkeypatch.setenv("SMARTNATION_KUBECONFIG", str(site))
    with pytest.raises(toolchain_env.PassphraseMissing) as raised:
        toolchain_env.exports()
    message = str(raised.value)
    assert "SMARTNATION_KUBECONFIG" in message and str(site) in message
    assert "PULUMI_CONFIG_PASSPHRASE_FILE" in message
    assert toolchain_env.LOCAL_PASSPHRASE not in message


def test_the_local_clusters_kubeconfig_named_explicitly_keeps_the_default(cache, monkeypatch):
    monkeypatch.setenv("SMARTNATION_KUBECONFIG", str(cache / "clusters" / "kubeconfig"))
    assert toolchain_env.exports()["PULUMI_CONFIG_PASSPHRASE"] == toolchain_env.LOCAL_PASSPHRASE


def test_another_cluster_with_a_passphrase_file_uses_the_file(cache, monkeypatch, tmp_path):
    passphrase_file = tmp_path / "passphrase"
    passphrase_file.write_text("the-site's-own\n")
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE_FILE", str(passphrase_file))
    monkeypatch.setenv("SMARTNATION_KUBECONFIG", str(tmp_path / "site.kubeconfig"))
    env = toolchain_env.exports()
    assert "PULUMI_CONFIG_PASSPHRASE" not in env
    assert env["KUBECONFIG"] == str(tmp_path / "site.kubeconfig")


def test_an_empty_passphrase_counts_as_none(cache, monkeypatch):
    monkeypatch.setenv("PULUMI_BACKEND_URL", S3)
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "")
    with pytest.raises(toolchain_env.PassphraseMissing):
        toolchain_env.exports()


@pytest.mark.parametrize("backend", [S3, None])
def test_a_passphrase_file_is_never_shadowed_by_a_passphrase(cache, monkeypatch, tmp_path, backend):
    if backend:
        monkeypatch.setenv("PULUMI_BACKEND_URL", backend)
    passphrase_file = tmp_path / "passphrase"
    passphrase_file.write_text("from-the-file\n")
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE_FILE", str(passphrase_file))
    env = toolchain_env.exports()
    # Pulumi prefers PULUMI_CONFIG_PASSPHRASE over the file, so exporting one would override it.
    assert "PULUMI_CONFIG_PASSPHRASE" not in env
    assert "PULUMI_CONFIG_PASSPHRASE_FILE" not in env  # the caller's own, passed through untouched


@pytest.mark.parametrize("backend", [S3, None])
def test_a_given_passphrase_is_kept_for_any_backend(cache, monkeypatch, backend):
    if backend:
        monkeypatch.setenv("PULUMI_BACKEND_URL", backend)
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "the-site's-own")
    env = toolchain_env.exports()
    assert env["PULUMI_CONFIG_PASSPHRASE"] == "the-site's-own"
    assert env["PULUMI_BACKEND_URL"] == (backend or f"file://{cache / 'state'}?metadata=skip&no_tmp_dir=true")


def _run_module(cache: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_")}
    environ.update(SMARTNATION_CACHE=str(cache), **extra)
    return subprocess.run(
        [sys.executable, "-m", "smartnation.tooling.toolchain.env"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_shell_exports_refuse_with_nothing_to_eval(cache):
    result = _run_module(cache, PULUMI_BACKEND_URL=S3)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "PULUMI_CONFIG_PASSPHRASE" in result.stderr and S3 in result.stderr


def test_the_shell_exports_evaluate_for_the_local_clusters(cache):
    result = _run_module(cache)
    assert result.returncode == 0, result.stderr
    exported = dict(shlex.split(line.removeprefix("export "))[0].split("=", 1) for line in result.stdout.splitlines())
    assert exported["PULUMI_CONFIG_PASSPHRASE"] == toolchain_env.LOCAL_PASSPHRASE
    assert exported["PULUMI_BACKEND_URL"] == f"file://{cache.resolve() / 'state'}?metadata=skip&no_tmp_dir=true"


def test_a_stack_of_its_own_passphrase_gets_it(cache, monkeypatch):
    # promote opens staging and production in one job, each under its own passphrase.
    monkeypatch.setenv("PULUMI_BACKEND_URL", S3)
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "production's")
    monkeypatch.setenv("SMARTNATION_PASSPHRASE_STAGING", "staging's")
    assert toolchain_env.exports("staging")["PULUMI_CONFIG_PASSPHRASE"] == "staging's"
    assert toolchain_env.exports("production")["PULUMI_CONFIG_PASSPHRASE"] == "production's"
    assert toolchain_env.exports()["PULUMI_CONFIG_PASSPHRASE"] == "production's"


def test_an_environment_passphrase_alone_is_enough_for_its_stack(cache, monkeypatch):
    monkeypatch.setenv("PULUMI_BACKEND_URL", S3)
    monkeypatch.setenv("SMARTNATION_PASSPHRASE_STAGING", "staging's")
    assert toolchain_env.exports("staging")["PULUMI_CONFIG_PASSPHRASE"] == "staging's"
    with pytest.raises(toolchain_env.PassphraseMissing):
        toolchain_env.exports("production")


@pytest.mark.parametrize(
    ("extra", "named"),
    [({"PULUMI_BACKEND_URL": S3}, S3), ({"SMARTNATION_KUBECONFIG": "/etc/site/kubeconfig"}, "/etc/site/kubeconfig")],
    ids=["s3-backend", "other-cluster"],
)
def test_the_cli_refuses_to_deploy_without_a_passphrase_before_touching_anything(cache, extra, named):
    # `smartnation up` against a real backend or cluster with no passphrase: a clear error naming
    # the variables and exit BAD_INPUT, before any stack is opened.
    from smartnation.cli import exit_codes

    environ = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PULUMI_", "SMARTNATION_PASSPHRASE_", "SMARTNATION_KUBE"))
    }
    environ.update(SMARTNATION_CACHE=str(cache), **extra)
    result = subprocess.run(
        [sys.executable, "-m", "smartnation.cli.main", "up", "dev", "--yes"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == exit_codes.BAD_INPUT, result.stdout + result.stderr
    assert "PULUMI_CONFIG_PASSPHRASE" in result.stderr and named in result.stderr
    assert toolchain_env.LOCAL_PASSPHRASE not in result.stdout + result.stderr
    assert not (cache / "state").exists(), "nothing may be written to the local backend"
