"""What a test session clears at start and which Released volumes it reclaims: only its own
prefix's (and the benchmarks'), never another session's or `make up`'s.

The integration fixtures (tests/integration/session_leftovers.py, released_volumes.py) run this
against the clusters; here kubectl is stood in by a recorder, so every edge of the prefix match is
shown without two sessions running at once.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.integration import platform_project, released_volumes, session_leftovers

pytestmark = pytest.mark.unit

REAL = session_leftovers.real_project_namespaces()


@pytest.mark.parametrize(
    "namespace",
    ["smartnation-dl-dev", "smartnation-dl-production", "smartnation-dl-flt-dev", "smartnation-dl-dlv-staging"],
)
def test_a_prefix_owns_its_environments_and_those_of_the_projects_derived_from_it(namespace):
    assert session_leftovers.owned_by(namespace, "smartnation-dl", REAL)


@pytest.mark.parametrize(
    "namespace",
    [
        "smartnation-dlv-dev",  # another session whose word starts with ours
        "smartnation-dlv-dlv-staging",
        "smartnation-dl",  # the prefix alone is no test namespace
        "smartnation-staging",  # make up's
        "smartnation-it-dev",  # the default session's
        "demo-dl-dev",
        "x-smartnation-dl-dev",
    ],
)
def test_a_prefix_owns_no_other_sessions_namespace_nor_make_ups(namespace):
    assert not session_leftovers.owned_by(namespace, "smartnation-dl", REAL)


def test_make_ups_namespaces_are_never_a_test_sessions_even_under_its_prefix(tmp_path: Path):
    # An environment named `it-eu` gives make up's `smartnation-it-eu`, which starts like the
    # default session's namespaces.
    environments = tmp_path / "environments"
    environments.mkdir()
    for name in ("staging", "it-eu", "defaults", "promotion"):
        (environments / f"{name}.yaml").write_text("{}\n")
    (tmp_path / "Pulumi.yaml").write_text("name: smartnation\n")

    real = session_leftovers.real_project_namespaces(tmp_path)

    assert real == {"smartnation-staging", "smartnation-it-eu"}
    assert not session_leftovers.owned_by("smartnation-it-eu", "smartnation-it", real)
    assert session_leftovers.owned_by("smartnation-it-dev", "smartnation-it", real)
    assert {"smartnation-staging", "smartnation-dev", "smartnation-production"} <= REAL


@pytest.mark.parametrize("value", ["smartnation-it-x", "smartnation-dl-flt", "smartnation-", "smartnation-Dl", "dl"])
def test_a_session_prefix_is_one_word(monkeypatch, value):
    monkeypatch.setenv("SMARTNATION_IT_PROJECT", value)
    with pytest.raises(ValueError, match="one short lower-case word"):
        platform_project._test_project()


def test_a_one_word_session_prefix_is_taken(monkeypatch):
    monkeypatch.setenv("SMARTNATION_IT_PROJECT", "smartnation-dlv")
    assert platform_project._test_project() == "smartnation-dlv"


def test_the_deny_policy_is_named_after_the_prefix_alone():
    assert session_leftovers.cluster_wide("smartnation-dl") == [
        ("validatingadmissionpolicybinding", "smartnation-dl-deny"),
        ("validatingadmissionpolicy", "smartnation-dl-deny"),
    ]


@dataclass
class FakeKubectl:
    """Stands in for conftest.Tools: records every command, answers `get namespaces`."""

    namespaces: list[str]
    calls: list[tuple[tuple[str, ...], bool]] = field(default_factory=list)

    def run(self, *args: str, check: bool = True, **_) -> subprocess.CompletedProcess[str]:
        self.calls.append((args, check))
        out = "".join(f"namespace/{n}\n" for n in self.namespaces) if "get" in args else ""
        return subprocess.CompletedProcess(list(args), 0, out, "")


def test_clear_deletes_its_prefixs_policy_and_namespaces_only_and_checks_each_delete():
    kubectl = FakeKubectl(
        ["default", "smartnation-staging", "smartnation-dl-dev", "smartnation-dl-dlv-staging", "smartnation-dlv-dev"]
    )

    stale = session_leftovers.clear(kubectl, "dusseldorf-test", "smartnation-dl")

    assert stale == ["namespace/smartnation-dl-dev", "namespace/smartnation-dl-dlv-staging"]
    deletes = [(args, check) for args, check in kubectl.calls if "delete" in args]
    assert [args[4:] for args, _ in deletes] == [
        ("validatingadmissionpolicybinding", "smartnation-dl-deny", "--ignore-not-found", "--wait=true"),
        ("validatingadmissionpolicy", "smartnation-dl-deny", "--ignore-not-found", "--wait=true"),
        ("--wait=true", "namespace/smartnation-dl-dev", "namespace/smartnation-dl-dlv-staging"),
    ]
    assert all(args[:3] == ("kubectl", "--context", "dusseldorf-test") for args, _ in deletes)
    assert all(check for _, check in deletes), "a delete that must succeed is not checked"


def test_clear_with_nothing_left_deletes_no_namespace():
    kubectl = FakeKubectl(["default", "smartnation-dlv-dev"])

    assert session_leftovers.clear(kubectl, "monaco-onprem", "smartnation-dl") == []
    assert not [args for args, _ in kubectl.calls if "delete" in args and "--ignore-not-found" not in args]


@pytest.mark.parametrize(
    ("namespace", "reclaimed"),
    [
        ("smartnation-dl-dev", True),
        ("smartnation-dl-flt-dev", True),
        ("smartnation-bench-production", True),
        ("smartnation-load-staging", True),
        ("smartnation-movebench-dev", True),  # the move benchmark's: its standby's volume on Monaco
        ("smartnation-movebr-dev", True),  # and its backup-and-restore target's
        ("demo-bench", True),
        ("probe-1a2b3c4d", True),
        ("smartnation-dlv-dev", False),  # another session's: its destroy test looks at them
        ("smartnation-it-dev", False),
        ("smartnation-staging", False),  # make up's
        ("smartnation-benchmark-dev", False),
        ("demo-other", False),
    ],
)
def test_released_volumes_are_reclaimed_for_this_prefix_and_the_benchmarks_only(namespace, reclaimed):
    assert released_volumes.is_test_namespace(namespace, "smartnation-dl", REAL) is reclaimed


def test_every_benchmark_project_is_one_whose_volumes_are_reclaimed():
    from tests.benchmarks import load, move, run

    projects = {run.BENCH_PROJECT, load.OWN_PROJECT, move.MOVE_PROJECT, move.BR_PROJECT}
    assert projects == set(released_volumes.BENCHMARK_PROJECTS)
