"""The GitHub Actions workflows: linted by the real actionlint, then held to the deployment rules.

actionlint is the pinned build from `make bootstrap` (infra/smartnation/tooling/toolchain/versions.yaml),
with the shell in `run:` blocks checked by Debian's shellcheck. Neither is optional: a missing
tool fails the test with the command that installs it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from smartnation.tooling.toolchain.cache import layout

pytestmark = pytest.mark.contract

REPO = Path(__file__).resolve().parents[2]
GITHUB = REPO / ".github"
WORKFLOWS = sorted((GITHUB / "workflows").glob("*.y*ml"))
STATE_SECRETS = ("PULUMI_BACKEND_URL", "PULUMI_CONFIG_PASSPHRASE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
PREVIEW_MARKER = "<!-- smartnation-preview -->"


def actionlint() -> str:
    found = shutil.which("actionlint") or str(layout().bin / "actionlint")
    if not Path(found).is_file():
        pytest.fail(f"actionlint not found on PATH nor at {found}: run make bootstrap")
    return found


def shellcheck() -> str:
    found = shutil.which("shellcheck")
    if found is None:
        pytest.fail("shellcheck not found: run make contract-deps (Debian package shellcheck)")
    return found


def load(path: Path) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text())
    # YAML 1.1 reads the bare key `on` as the boolean true.
    if True in document:
        document["on"] = document.pop(True)
    return document


@pytest.fixture(scope="module")
def workflows() -> dict[str, dict[str, Any]]:
    assert WORKFLOWS, "no workflow files in .github/workflows"
    return {path.name: load(path) for path in WORKFLOWS}


def local_actions() -> list[Path]:
    return sorted((GITHUB / "actions").glob("*/action.y*ml"))


def steps_of(job: dict[str, Any]) -> list[dict[str, Any]]:
    """A job's steps with local composite actions expanded in place."""
    expanded = []
    for step in job.get("steps", []):
        uses = step.get("uses", "")
        if uses.startswith("./"):
            action = yaml.safe_load(next((REPO / uses).glob("action.y*ml")).read_text())
            expanded.extend(action["runs"]["steps"])
        else:
            expanded.append(step)
    return expanded


def environment_of(job: dict[str, Any]) -> str | None:
    environment = job.get("environment")
    return environment.get("name") if isinstance(environment, dict) else environment


def run_text(job: dict[str, Any]) -> str:
    return "\n".join(step.get("run", "") for step in steps_of(job))


# --- actionlint ---------------------------------------------------------------------------------


def test_actionlint_passes_every_workflow():
    result = subprocess.run(
        [actionlint(), "-no-color", "-oneline", f"-shellcheck={shellcheck()}", "-pyflakes=", *map(str, WORKFLOWS)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_shellcheck_passes_the_sourced_scripts():
    scripts = sorted((GITHUB / "scripts").glob("*.sh"))
    assert scripts
    result = subprocess.run([shellcheck(), *map(str, scripts)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# --- production ---------------------------------------------------------------------------------


def test_production_is_reached_only_by_the_manual_promote_workflow(workflows):
    production_jobs = [
        (name, job_id)
        for name, workflow in workflows.items()
        for job_id, job in workflow["jobs"].items()
        if environment_of(job) == "production"
        or re.search(r"smartnation\s+(up|destroy)\s+production|smartnation\s+promote", run_text(job))
    ]
    assert [name for name, _ in production_jobs] == ["promote.yml"]
    promote = workflows["promote.yml"]
    assert set(promote["on"]) == {"workflow_dispatch"}
    (job,) = promote["jobs"].values()
    assert environment_of(job) == "production"
    assert "smartnation promote staging production --apply --yes" in run_text(job)
    # The protection (required reviewers) lives in the repository settings; the file says so.
    assert "required reviewers" in (GITHUB / "workflows" / "promote.yml").read_text().lower()


def test_merges_deploy_dev_then_staging(workflows):
    deploy = workflows["deploy.yml"]
    assert deploy["on"] == {"push": {"branches": ["main"]}}
    by_environment = {environment_of(job): (job_id, job) for job_id, job in deploy["jobs"].items()}
    assert set(by_environment) == {"dev", "staging"}
    dev_id, dev = by_environment["dev"]
    _, staging = by_environment["staging"]
    assert "smartnation up dev --yes" in run_text(dev)
    assert "smartnation up staging --yes" in run_text(staging)
    needs = staging.get("needs")
    assert dev_id in ([needs] if isinstance(needs, str) else needs)


def test_each_environment_deploys_one_run_at_a_time(workflows):
    groups: dict[str, set[str]] = {}
    for workflow in workflows.values():
        for job in workflow["jobs"].values():
            environment = environment_of(job)
            if environment is None:
                continue
            concurrency = job.get("concurrency") or workflow.get("concurrency")
            assert isinstance(concurrency, dict), f"job for {environment} has no concurrency group"
            # Cancelling a running `pulumi up` would leave the stack locked half-way.
            assert concurrency.get("cancel-in-progress") is False
            groups.setdefault(environment, set()).add(concurrency["group"])
    assert set(groups) == {"dev", "staging", "production"}
    assert all(len(names) == 1 for names in groups.values()), groups
    assert len({next(iter(names)) for names in groups.values()}) == len(groups)


# --- secrets ------------------------------------------------------------------------------------


def _env_blocks(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    blocks = [workflow.get("env") or {}]
    for job in workflow["jobs"].values():
        blocks.append(job.get("env") or {})
        blocks.extend(step.get("env") or {} for step in job.get("steps", []))
    return blocks


def test_state_backend_and_passphrase_come_only_from_secrets(workflows):
    for name, workflow in workflows.items():
        for block in _env_blocks(workflow):
            for key in STATE_SECRETS:
                if key in block:
                    assert block[key] == f"${{{{ secrets.{key} }}}}", f"{name}: {key} = {block[key]!r}"
    texts = [p.read_text() for p in [*WORKFLOWS, *local_actions(), *sorted((GITHUB / "scripts").glob("*"))]]
    for text in texts:
        assert not re.search(r"\b(s3|file|gs|azblob)://[\w.-]", text), "a literal state backend URL"
        assert "PULUMI_CONFIG_PASSPHRASE_FILE:" not in text and "PULUMI_CONFIG_PASSPHRASE_FILE=" not in text
        assert not re.search(r"(PULUMI_CONFIG_PASSPHRASE|PULUMI_BACKEND_URL)\s*=\s*\S", text), "set from a literal"
        assert "pulumi login" not in text  # the backend URL travels in the environment only


def test_jobs_that_use_the_state_map_all_state_secrets(workflows):
    for name, workflow in workflows.items():
        for job_id, job in workflow["jobs"].items():
            for step in job.get("steps", []):
                if "smartnation " in step.get("run", ""):
                    env = step.get("env") or {}
                    assert set(STATE_SECRETS) <= set(env), f"{name}/{job_id}: {step.get('name')}"


# --- hygiene ------------------------------------------------------------------------------------


def test_permissions_are_least_privilege(workflows):
    for name, workflow in workflows.items():
        assert workflow.get("permissions") == {"contents": "read"}, name
        for job_id, job in workflow["jobs"].items():
            permissions = job.get("permissions", workflow["permissions"])
            assert isinstance(permissions, dict), f"{name}/{job_id}: permissions must be listed"
            writes = {scope for scope, level in permissions.items() if level == "write"}
            allowed = {"pull-requests"} if name == "preview.yml" else set()
            assert writes <= allowed, f"{name}/{job_id}: {writes}"


def test_actions_are_pinned_to_a_major_version():
    for path in [*WORKFLOWS, *local_actions()]:
        for uses in re.findall(r"uses:\s*(\S+)", path.read_text()):
            assert uses.startswith("./") or re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+", uses), f"{path.name}: {uses}"


# --- the pull-request preview -------------------------------------------------------------------


def test_pull_requests_preview_against_the_base_with_the_cached_toolchain(workflows):
    preview = workflows["preview.yml"]
    assert "pull_request" in preview["on"] and "pull_request_target" not in preview["on"]
    (job,) = preview["jobs"].values()
    steps = steps_of(job)
    checkout = next(s for s in steps if s.get("uses", "").startswith("actions/checkout@"))
    assert checkout["with"]["fetch-depth"] == 0
    python = next(s for s in steps if s.get("uses", "").startswith("actions/setup-python@"))
    assert str(python["with"]["python-version"]) == "3.11"
    cache = next(s for s in steps if s.get("uses", "").startswith("actions/cache@"))
    assert cache["with"]["path"] == "~/.cache/smartnation"
    assert "hashFiles('infra/smartnation/tooling/toolchain/versions.yaml')" in cache["with"]["key"]
    runs = [s.get("run", "") for s in steps]
    bootstrap = next(i for i, r in enumerate(runs) if "make bootstrap" in r)
    preview_at = next(i for i, r in enumerate(runs) if "smartnation preview" in r)
    assert bootstrap < preview_at
    assert re.search(r'smartnation preview --base "?origin/\$\{?BASE_REF\}?"? --output preview\.md', runs[preview_at])
    assert next(s for s in job["steps"] if "smartnation preview" in s.get("run", ""))["env"]["BASE_REF"] == (
        "${{ github.base_ref }}"
    )


def test_the_preview_updates_one_marked_comment(workflows):
    (job,) = workflows["preview.yml"]["jobs"].values()
    scripts = [s for s in job["steps"] if s.get("uses", "").startswith("actions/github-script@")]
    assert len(scripts) == 1, "exactly one step writes the comment"
    script = scripts[0]["with"]["script"]
    assert PREVIEW_MARKER in script
    assert "listComments" in script and "updateComment" in script and "createComment" in script
    # Update when the marked comment exists, create only otherwise.
    assert re.search(r"if \(existing\)\s*\{.*?updateComment.*?\}\s*else\s*\{.*?createComment", script, re.S)
    assert job["permissions"].get("pull-requests") == "write"
