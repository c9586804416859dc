"""A promotion as the `promote` workflow runs it: the CLI, then .github/scripts/commit-promotion.sh.

The real `cmd_promote` (its engine-facing gates and update stood in for, as in
test_cli_promote_killed.py) runs in a checkout of a scratch `origin` with the variables the GitHub
runner sets, and a SMARTNATION_OPERATOR that tries to name someone else; then the workflow's commit
script pushes what it wrote. `main` must end up with the new releases and the audit lines, all of
them naming the GitHub actor, in a commit authored by that actor.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from smartnation.cli import exit_codes
from smartnation.cli.releases_copy import releases_of
from tests.unit.test_cli_promote_killed import CHILD, project  # noqa: F401 - the fixture

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
COMMIT_PROMOTION = REPO / ".github" / "scripts" / "commit-promotion.sh"
ACTOR, ACTOR_ID = "octo-lead", "4242"


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True, timeout=60).stdout


@pytest.fixture
def checkout(project: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):  # noqa: F811
    """(origin, the job's checkout, the runner's variables): `project` committed to a bare origin."""
    for name in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL"):
        monkeypatch.delenv(name, raising=False)
    scratch = tmp_path_factory.mktemp("origin")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(scratch / "gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    origin = scratch / "origin.git"
    git(scratch, "init", "--quiet", "--bare", "--initial-branch=main", str(origin))
    git(project, "init", "--quiet", "--initial-branch=main")
    git(project, "add", ".")
    git(project, "-c", "user.name=seed", "-c", "user.email=seed@example.org", "commit", "--quiet", "-m", "seed")
    git(project, "push", "--quiet", str(origin), "main")
    runner = {
        **os.environ,
        "SMARTNATION_PROJECT_DIR": str(project),
        "SMARTNATION_ENVIRONMENTS_DIR": str(project / "environments"),
        "GITHUB_ACTIONS": "true",
        "GITHUB_ACTOR": ACTOR,
        "GITHUB_ACTOR_ID": ACTOR_ID,
        "GITHUB_SERVER_URL": f"file://{scratch}",
        "GITHUB_REPOSITORY": "origin",
        "GITHUB_STEP_SUMMARY": str(scratch / "summary.md"),
    }
    return origin, project, runner


def test_a_ci_promotion_lands_on_main_with_the_actor_as_author_and_in_the_audit(checkout):
    origin, work, runner = checkout
    staging_releases = releases_of((work / "environments" / "staging.yaml").read_text(), "staging.yaml")

    # The promote step: someone tries to choose the name the audit records.
    promoted = subprocess.run(
        [sys.executable, "-c", CHILD, "promote", "staging", "production", "--yes", "--apply"],
        cwd=work,
        env={**runner, "SMARTNATION_OPERATOR": "mallory@example.org"},
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert promoted.returncode == exit_codes.OK, promoted.stderr[-3000:]

    # The commit step, with the job's token (a file:// origin ignores it).
    committed = subprocess.run(
        [str(COMMIT_PROMOTION), "production"],
        cwd=work,
        env={**runner, "GITHUB_TOKEN": "not-a-real-token"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert committed.returncode == 0, committed.stdout + committed.stderr

    assert git(origin, "log", "-1", "--format=%an <%ae>", "main").strip() == (
        f"{ACTOR} <{ACTOR_ID}+{ACTOR}@users.noreply.github.com>"
    )
    changed = sorted(git(origin, "show", "--name-only", "--format=", "main").split())
    assert changed == ["environments/audit/promotions.jsonl", "environments/production.yaml"]
    production = git(origin, "show", "main:environments/production.yaml")
    assert releases_of(production, "production.yaml") == staging_releases
    audit = [json.loads(line) for line in git(origin, "show", "main:environments/audit/promotions.jsonl").splitlines()]
    assert [entry["result"] for entry in audit] == ["started", "applied"]
    assert {entry["who"] for entry in audit} == {f"github:{ACTOR}"}
