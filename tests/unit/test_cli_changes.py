"""`preview`'s change -> environments mapping, and reading the change from a real git repository."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from smartnation.cli.changes import affected_environments, changed_files
from smartnation.settings import SettingsError

pytestmark = pytest.mark.unit

ENVIRONMENTS = ("dev", "staging", "production")
CLUSTERS = {"dev": "dusseldorf-test", "staging": "dusseldorf-test", "production": "monaco-onprem"}


def affected(*paths: str, clusters=CLUSTERS) -> dict[str, list[str]]:
    return affected_environments(paths, ENVIRONMENTS, clusters.get)


def test_an_environment_file_affects_that_environment_alone():
    assert affected("environments/staging.yaml") == {"staging": ["environments/staging.yaml"]}


def test_a_stack_file_affects_its_environment():
    assert list(affected("environments/stacks/Pulumi.production.yaml")) == ["production"]


def test_the_defaults_affect_every_environment_in_promotion_order():
    assert list(affected("environments/defaults.yaml")) == list(ENVIRONMENTS)


@pytest.mark.parametrize(
    ("profile", "expected"),
    [("dusseldorf-test", ["dev", "staging"]), ("monaco-onprem", ["production"]), ("nowhere", [])],
)
def test_a_cluster_profile_affects_every_environment_targeting_it(profile, expected):
    assert list(affected(f"environments/clusters/{profile}.yaml")) == expected


def test_a_cluster_profile_affects_an_environment_whose_file_cannot_be_read():
    clusters = {**CLUSTERS, "production": None}
    assert list(affected("environments/clusters/dusseldorf-test.yaml", clusters=clusters)) == list(ENVIRONMENTS)


@pytest.mark.parametrize(
    "path",
    [
        "infra/smartnation/program/city_platform.py",
        "charts/city-api/values.yaml",
        "policy/smartnation_policy/rules.py",
        "Pulumi.yaml",
        "pyproject.toml",
    ],
)
def test_code_chart_policy_and_project_files_affect_everything(path):
    assert list(affected(path)) == list(ENVIRONMENTS)


@pytest.mark.parametrize(
    "path",
    [
        "README.md",
        "docs/operations.md",
        "tests/unit/test_policy.py",
        ".github/workflows/preview.yml",
        "environments/promotion.yaml",
        "environments/audit/promotions.jsonl",
        "environments/unknown.yaml",
        "Makefile",
        "infrastructure.md",
        "environments/clusters/README.md",
    ],
)
def test_anything_else_affects_nothing(path):
    assert affected(path) == {}


def test_reasons_are_collected_per_environment_without_duplicates():
    result = affected(
        "environments/staging.yaml", "environments/clusters/dusseldorf-test.yaml", "environments/staging.yaml"
    )
    assert result == {
        "dev": ["environments/clusters/dusseldorf-test.yaml"],
        "staging": ["environments/staging.yaml", "environments/clusters/dusseldorf-test.yaml"],
    }


def test_an_environments_directory_elsewhere_in_the_repository():
    result = affected_environments(
        ["deploy/envs/dev.yaml", "environments/staging.yaml"], ENVIRONMENTS, CLUSTERS.get, "deploy/envs"
    )
    assert result == {"dev": ["deploy/envs/dev.yaml"]}


def _git(repo: Path, *args: str) -> str:
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.org",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.org",
        "PATH": "/usr/bin:/bin",
    }
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True).stdout


def test_changed_files_cover_commits_since_the_merge_base_and_the_working_tree(tmp_path: Path):
    repo = tmp_path / "repo"
    (repo / "environments").mkdir(parents=True)
    for name in ("dev", "staging", "old"):
        (repo / "environments" / f"{name}.yaml").write_text(f"name: {name}\n")
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "base")
    _git(repo, "checkout", "-q", "-b", "change")
    (repo / "environments" / "dev.yaml").write_text("name: dev2\n")
    _git(repo, "commit", "-q", "-am", "committed change")
    _git(repo, "checkout", "-q", "main")
    (repo / "README.md").write_text("moved on\n")  # main moved on: not part of the change
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "main moves")
    _git(repo, "checkout", "-q", "change")
    (repo / "environments" / "staging.yaml").write_text("name: staging2\n")  # unstaged
    _git(repo, "mv", "environments/old.yaml", "environments/new.yaml")  # staged rename
    (repo / "environments" / "production.yaml").write_text("name: production\n")  # untracked

    merge_base, paths = changed_files(repo, "main")
    assert merge_base == _git(repo, "rev-parse", "main~1").strip()
    assert sorted(paths) == [
        "environments/dev.yaml",
        "environments/new.yaml",
        "environments/old.yaml",
        "environments/production.yaml",
        "environments/staging.yaml",
    ]


def test_an_unknown_base_is_bad_input(tmp_path: Path):
    _git(tmp_path, "init", "-q")
    (tmp_path / "f").write_text("x")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-q", "-m", "one")
    with pytest.raises(SettingsError, match="no-such-branch"):
        changed_files(tmp_path, "no-such-branch")
