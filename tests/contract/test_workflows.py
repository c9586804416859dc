"""The GitHub Actions workflows: linted by the real actionlint, then held to the deployment rules.

actionlint is the pinned build from `make bootstrap` (infra/smartnation/tooling/toolchain/versions.yaml),
with the shell in `run:` blocks checked by Debian's shellcheck. Neither is optional: a missing
tool fails the test with the command that installs it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
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
PREVIEW_ENV = GITHUB / "scripts" / "preview-env.sh"


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


# What deploys an environment, and the one argument that names it.
DEPLOYS = re.compile(r"smartnation\s+(?:up\s+([\w-]+)|promote\s+[\w-]+\s+([\w-]+)\s+[^\n]*--apply)")
VERIFIES = re.compile(r"smartnation\s+verify\s+([\w-]+)\b")


def deploys_and_verifies(job: dict[str, Any]) -> list[tuple[str, str | None, dict[str, Any] | None]]:
    """(environment, problem or None, the verify step) for each deploy in a job: the environment
    must be verified by a later step of the same job that runs only when everything before it
    passed and whose failure fails the job."""
    found = []
    steps = job.get("steps", [])
    for index, step in enumerate(steps):
        for match in DEPLOYS.finditer(step.get("run", "")):
            environment = match.group(1) or match.group(2)
            later = [s for s in steps[index + 1 :] if environment in VERIFIES.findall(s.get("run", ""))]
            if not later:
                missing = f"{step.get('name')}: no later step runs smartnation verify {environment}"
                found.append((environment, missing, None))
                continue
            verify = later[0]
            problem = None
            if str(verify.get("if", "success()")).replace("${{", "").replace("}}", "").strip() != "success()":
                problem = f"{verify.get('name')}: if: {verify['if']!r} (verify must run after a successful deploy only)"
            elif verify.get("continue-on-error"):
                problem = f"{verify.get('name')}: continue-on-error hides a failed verification"
            found.append((environment, problem, verify))
    return found


def test_every_deploy_is_verified_right_after_it(workflows):
    seen = set()
    for name, workflow in workflows.items():
        for job_id, job in workflow["jobs"].items():
            for environment, problem, verify in deploys_and_verifies(job):
                assert problem is None, f"{name}/{job_id}: {problem}"
                seen.add(environment)
                assert verify is not None
                # The same state and cluster access as the deploy: the stack's outputs and config
                # (the device classes' passwords) and kubectl to the cluster it went to.
                env = verify.get("env") or {}
                assert set(STATE_SECRETS) | {"CLUSTER_KUBECONFIG"} <= set(env), f"{name}/{job_id}"
                assert ". .github/scripts/state-env.sh" in verify["run"], f"{name}/{job_id}"
    # dev and staging from every merge (deploy.yml), production from promote.yml.
    assert seen == {"dev", "staging", "production"}


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        ([{"run": "smartnation up dev --yes"}], "no later step runs smartnation verify dev"),
        ([{"run": "smartnation verify dev"}, {"run": "smartnation up dev --yes"}], "no later step"),
        ([{"run": "smartnation up dev --yes"}, {"run": "smartnation verify staging"}], "no later step"),
        ([{"run": "smartnation up dev --yes"}, {"run": "smartnation verify dev", "if": "always()"}], "always()"),
        (
            [{"run": "smartnation up dev --yes"}, {"run": "smartnation verify dev", "continue-on-error": True}],
            "continue-on-error",
        ),
        ([{"run": "smartnation promote staging production --apply --yes"}], "verify production"),
    ],
    ids=["missing", "before", "other-env", "always", "continue-on-error", "promote"],
)
def test_the_verify_check_finds_an_unverified_deploy(steps, expected):
    problems = [problem for _, problem, _ in deploys_and_verifies({"steps": steps}) if problem]
    assert any(expected in problem for problem in problems), problems


def test_the_verify_check_accepts_a_deploy_verified_on_success():
    steps = [
        {"run": "smartnation up dev --yes"},
        {"run": "smartnation verify dev", "if": "${{ success() }}"},
        {"run": "smartnation promote staging production --apply --yes"},
        {"run": ". x\nsmartnation verify production"},
    ]
    assert [(e, p) for e, p, _ in deploys_and_verifies({"steps": steps})] == [("dev", None), ("production", None)]


def test_each_environment_deploys_one_run_at_a_time(workflows):
    groups: dict[str, set[str]] = {}
    for workflow in workflows.values():
        if triggers(workflow) & PULL_REQUEST_EVENTS:
            continue  # previews deploy nothing (their environment holds a read-only identity)
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
                    allowed = {f"${{{{ secrets.{key} }}}}"}
                    if triggers(workflow) & PULL_REQUEST_EVENTS:
                        # The read-only PREVIEW_* key, under the variable name the tools read.
                        allowed = {f"${{{{ secrets.PREVIEW_STATE_{key.removeprefix('AWS_')} }}}}"}
                    assert block[key] in allowed, f"{name}: {key} = {block[key]!r}"
    paths = [*WORKFLOWS, *local_actions(), *sorted((GITHUB / "scripts").glob("*"))]
    for path in paths:
        text = path.read_text()
        assert not re.search(r"\b(s3|file|gs|azblob)://[\w.-]", text), f"{path.name}: a literal state backend URL"
        assert "PULUMI_CONFIG_PASSPHRASE_FILE:" not in text and "PULUMI_CONFIG_PASSPHRASE_FILE=" not in text
        assert "pulumi login" not in text  # the backend URL travels in the environment only
        if path.name != PREVIEW_ENV.name:
            assert not re.search(r"(PULUMI_CONFIG_PASSPHRASE|PULUMI_BACKEND_URL)\s*=\s*\S", text), path.name


def test_the_preview_engine_gets_only_a_scratch_backend_and_a_made_up_passphrase():
    # The one place that sets them: a file backend in the job's temporary directory and a
    # passphrase drawn for this run, so whatever the engine writes there decrypts nothing real.
    text = PREVIEW_ENV.read_text()
    assert re.findall(r"PULUMI_BACKEND_URL=\S+", text) == ['PULUMI_BACKEND_URL="file://$RUNNER_TEMP/scratch-state"']
    assert re.findall(r"PULUMI_CONFIG_PASSPHRASE=\S+", text) == ['PULUMI_CONFIG_PASSPHRASE="$scratch_passphrase"']
    assert re.search(r'scratch_passphrase="\$\(head -c 32 /dev/urandom \| base64\)"', text)
    assert "unset PULUMI_CONFIG_PASSPHRASE_FILE" in text


def test_jobs_that_use_the_state_map_all_state_secrets(workflows):
    for name, workflow in workflows.items():
        pull_request = bool(triggers(workflow) & PULL_REQUEST_EVENTS)
        for job_id, job in workflow["jobs"].items():
            for step in job.get("steps", []):
                if "smartnation " in step.get("run", ""):
                    env = step.get("env") or {}
                    if pull_request:
                        # Read-only: the state's URL under another name, never a passphrase.
                        assert not {"PULUMI_BACKEND_URL", "PULUMI_CONFIG_PASSPHRASE"} & set(env), f"{name}/{job_id}"
                        assert ". .github/scripts/preview-env.sh" in step["run"], f"{name}/{job_id}"
                    else:
                        assert set(STATE_SECRETS) <= set(env), f"{name}/{job_id}: {step.get('name')}"
                        assert ". .github/scripts/state-env.sh" in step["run"], f"{name}/{job_id}"


# --- hygiene ------------------------------------------------------------------------------------


def test_permissions_are_least_privilege(workflows):
    for name, workflow in workflows.items():
        assert workflow.get("permissions") == {"contents": "read"}, name
        for job_id, job in workflow["jobs"].items():
            permissions = job.get("permissions", workflow["permissions"])
            assert isinstance(permissions, dict), f"{name}/{job_id}: permissions must be listed"
            writes = {scope for scope, level in permissions.items() if level == "write"}
            # The preview comment; the promotion commit.
            allowed = {"preview.yml": {"pull-requests"}, "promote.yml": {"contents"}}.get(name, set())
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
    # Only what a run reuses (GitHub keeps at most 10 GB; the Go caches alone are 18 GB), keyed by
    # every pin of a tool or an image.
    cached = cache["with"]["path"].split()
    assert "~/.cache/smartnation/tools" in cached and "~/.cache/smartnation/images/oci" in cached
    assert not any(path in ("~/.cache/smartnation", "~/.cache/smartnation/go") for path in cached)
    for pins in (
        "infra/smartnation/tooling/toolchain/versions.yaml",
        "infra/smartnation/tooling/images/images.yaml",
        "infra/smartnation/tooling/images/debian-packages.lock.yaml",
        "services/constraints.txt",
    ):
        assert f"'{pins}'" in cache["with"]["key"]
    runs = [s.get("run", "") for s in steps]
    bootstrap = next(i for i, r in enumerate(runs) if "make bootstrap" in r)
    preview_at = next(i for i, r in enumerate(runs) if "smartnation preview" in r)
    assert bootstrap < preview_at
    assert re.search(
        r'smartnation preview --redacted --base "?origin/\$\{?BASE_REF\}?"? --output preview\.md', runs[preview_at]
    )
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


# --- pull requests never reach production -------------------------------------------------------
#
# A pull request runs the branch's own code, so any secret its job can name, the branch can print.
# The check follows every path a secret takes into a job: the workflow's, the job's and the steps'
# `env:`, `with:` inputs (of actions, local composite actions expanded, and of called workflows),
# `run:` scripts, the job's `secrets:` block (and `secrets: inherit`), and the jobs of a local
# reusable workflow it calls, whose own `environment:` would hand them that environment's secrets.
# It stops accidents in reviewed changes; against a hostile branch, which can edit this file too,
# the guard is the repository settings (docs/operations.md, "Secrets in CI").

PULL_REQUEST_EVENTS = frozenset({"pull_request", "pull_request_target"})
# Events a pull request's author (or anyone who comments) can start without a reviewer: a
# `workflow_run` after the preview runs with this repository's secrets on the branch's artifacts,
# and a comment or review starts its workflow too. Their jobs are held to the pull-request rules.
STARTED_BY_PULL_REQUESTS = PULL_REQUEST_EVENTS | {
    "workflow_run",
    "issue_comment",
    "pull_request_review",
    "pull_request_review_comment",
}
PRODUCTION = "production"
# Names that only production has. The other secrets production's job maps (passphrase, state keys,
# kubeconfig) are GitHub-environment secrets under names every deploy environment shares.
PRODUCTION_ONLY = frozenset({"SMARTNATION_SECRETS_PRODUCTION", "SMARTNATION_PASSPHRASE_PRODUCTION"})
# All a pull request may name: the read-only preview identity and the run's own token.
PULL_REQUEST_MAY_USE = re.compile(r"PREVIEW_[A-Z0-9_]+|GITHUB_TOKEN")
EVERY_SECRET = "<every secret>"
EXPRESSION = re.compile(r"\$\{\{(.*?)\}\}", re.S)
NAMED_SECRET = re.compile(r"\bsecrets\s*(?:\.\s*([A-Za-z_][\w-]*)|\[\s*'([^']+)'\s*\])")
ANY_SECRETS = re.compile(r"(?<![\w.-])secrets\b")


def triggers(workflow: dict[str, Any]) -> set[str]:
    on = workflow.get("on") or {}
    return {on} if isinstance(on, str) else set(on)


def strings_in(node: Any) -> list[str]:
    """Every string anywhere in a YAML node, keys included."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for key, value in node.items() for s in (*strings_in(key), *strings_in(value))]
    if isinstance(node, list):
        return [s for item in node for s in strings_in(item)]
    return []


def secret_names(node: Any) -> set[str]:
    """Secrets named in the `${{ }}` expressions of a node; EVERY_SECRET for `toJSON(secrets)`,
    `secrets[matrix.name]` and the like (secret names are case-insensitive)."""
    names = set()
    for text in strings_in(node):
        for expression in EXPRESSION.findall(text):
            named = list(NAMED_SECRET.finditer(expression))
            names |= {(m.group(1) or m.group(2)).upper() for m in named}
            if len(ANY_SECRETS.findall(expression)) > len(named):
                names.add(EVERY_SECRET)
    return names


def read_local(uses: str) -> dict[str, Any]:
    """A local reusable workflow (./.github/workflows/x.yml) or composite action (./dir)."""
    path = REPO / uses
    return load(next(path.glob("action.y*ml")) if path.is_dir() else path)


@dataclass
class Reach:
    """What one job can get at."""

    secrets: set[str] = field(default_factory=set)
    environments: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)


def job_reach(job: dict[str, Any], read: Callable[[str], dict[str, Any]] = read_local) -> Reach:
    reach = Reach(secrets=secret_names({k: v for k, v in job.items() if k != "steps"}))
    if environment_of(job):
        reach.environments.add(environment_of(job))
    if job.get("secrets") == "inherit":
        reach.secrets.add(EVERY_SECRET)
        reach.problems.append("`secrets: inherit` hands every secret to the called workflow")
    if job.get("uses", "").startswith("./"):
        called = read(job["uses"])
        on_call = (called.get("on") or {}) if isinstance(called.get("on"), dict) else {}
        passed_in = {name.upper() for name in ((on_call.get("workflow_call") or {}).get("secrets") or {})}
        for called_id, called_job in called.get("jobs", {}).items():
            inner = job_reach(called_job, read)
            # Secrets the caller passes in were counted at the call; the rest come from the
            # called job's own environment.
            reach.secrets |= inner.secrets - passed_in
            reach.environments |= inner.environments
            reach.problems += [f"{job['uses']}/{called_id}: {p}" for p in inner.problems]
    for step in job.get("steps", []):
        reach.secrets |= secret_names(step)
        if step.get("uses", "").startswith("./"):
            action = read(step["uses"])
            reach.secrets |= secret_names(action)
            inner = job_reach({"steps": (action.get("runs") or {}).get("steps", [])}, read)
            reach.secrets |= inner.secrets
            reach.problems += inner.problems
    return reach


def production_reach(
    workflows: dict[str, dict[str, Any]], read: Callable[[str], dict[str, Any]] = read_local
) -> list[str]:
    """Every way a job a pull request can start (STARTED_BY_PULL_REQUESTS) reaches a production
    secret or a deploy environment."""
    production_secrets = set(PRODUCTION_ONLY)
    deploy_environments: set[str] = set()
    holders = {PRODUCTION}  # environments that hold production secrets
    for workflow in workflows.values():
        if triggers(workflow) & STARTED_BY_PULL_REQUESTS:
            continue
        for job in workflow.get("jobs", {}).values():
            reach = job_reach(job, read)
            reach.secrets |= secret_names(workflow.get("env") or {})
            deploy_environments |= reach.environments
            if PRODUCTION in reach.environments:
                production_secrets |= reach.secrets
            if reach.secrets & PRODUCTION_ONLY:
                holders |= reach.environments
    production_secrets.discard("GITHUB_TOKEN")

    findings = []
    for name, workflow in workflows.items():
        events = triggers(workflow) & STARTED_BY_PULL_REQUESTS
        for job_id, job in workflow.get("jobs", {}).items() if events else ():
            where = f"{name}/{job_id} (on {', '.join(sorted(events))})"
            reach = job_reach(job, read)
            reach.secrets |= secret_names(workflow.get("env") or {})
            findings += [f"{where}: {problem}" for problem in reach.problems]
            for secret in sorted(reach.secrets):
                if secret in production_secrets or secret == EVERY_SECRET:
                    findings.append(f"{where}: reaches the production secret {secret}")
                elif not PULL_REQUEST_MAY_USE.fullmatch(secret):
                    findings.append(f"{where}: reaches {secret}, not a read-only PREVIEW_* secret")
            for environment in sorted(reach.environments):
                if environment in holders:
                    findings.append(f"{where}: uses the environment {environment!r}, which holds production secrets")
                elif environment in deploy_environments:
                    findings.append(f"{where}: uses {environment!r}, a deploy environment (write credentials)")
    return findings


def repository_secret_uses(
    workflows: dict[str, dict[str, Any]], read: Callable[[str], dict[str, Any]] = read_local
) -> list[str]:
    """Secrets named where only a repository-level secret could answer: in a job that runs in no
    GitHub environment, or in a workflow's `env:` (which every job of it gets).

    Repository secrets reach every workflow of every branch, pull requests included, whatever the
    environments' protection says; a branch edits a workflow to print them. So every credential
    is an environment secret, and only the run's own GITHUB_TOKEN is named outside one."""
    findings = []
    for name, workflow in workflows.items():
        for secret in sorted(secret_names(workflow.get("env") or {}) - {"GITHUB_TOKEN"}):
            findings.append(f"{name}: the workflow's env names {secret}, which every job (no environment) gets")
        for job_id, job in workflow.get("jobs", {}).items():
            reach = job_reach(job, read)
            outside = sorted(reach.secrets - {"GITHUB_TOKEN"})
            if outside and not reach.environments:
                findings.append(f"{name}/{job_id}: names {', '.join(outside)} in no GitHub environment")
    return findings


def test_every_credential_is_an_environment_secret(workflows):
    findings = repository_secret_uses(workflows)
    assert not findings, "\n".join(findings)


@pytest.mark.parametrize(
    ("workflow", "expected"),
    [
        (
            {"env": {"K": "${{ secrets.CLUSTER_KUBECONFIG }}"}, "jobs": {}},
            "the workflow's env names CLUSTER_KUBECONFIG",
        ),
        ({"jobs": {"j": {"steps": [{"run": "echo ${{ secrets.X }}"}]}}}, "x.yml/j: names X in no GitHub environment"),
    ],
    ids=["workflow-env", "job-without-environment"],
)
def test_the_environment_secret_check_finds_repository_secrets(workflow, expected):
    findings = repository_secret_uses({"x.yml": {"on": {"push": None}, **workflow}})
    assert any(expected in finding for finding in findings), findings


def test_the_environment_secret_check_accepts_environment_jobs_and_the_token():
    jobs = {
        "deploy": {"environment": "dev", "steps": [{"run": "x", "env": {"K": "${{ secrets.CLUSTER_KUBECONFIG }}"}}]},
        "comment": {"steps": [{"run": "x", "env": {"T": "${{ secrets.GITHUB_TOKEN }}"}}]},
    }
    assert repository_secret_uses({"x.yml": {"on": {"push": None}, "jobs": jobs}}) == []


def test_pull_requests_cannot_reach_production_secrets(workflows):
    assert any(triggers(w) & PULL_REQUEST_EVENTS for w in workflows.values()), "no pull-request workflow left"
    findings = production_reach(workflows)
    assert not findings, "\n".join(findings)


PROMOTE_JOB = {
    "environment": PRODUCTION,
    "steps": [{"run": "smartnation promote", "env": {"P": "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}"}}],
}
CALLED_IN_PRODUCTION = {"on": {"workflow_call": {}}, "jobs": {"deploy": {"environment": {"name": PRODUCTION}}}}
COMPOSITE = {"runs": {"using": "composite", "steps": [{"run": "echo ${{ inputs.token }}", "shell": "bash"}]}}


def pull_request_job(event: str = "pull_request_target", **job: Any) -> dict[str, dict[str, Any]]:
    return {
        "promote.yml": {"on": {"workflow_dispatch": None}, "jobs": {"production": PROMOTE_JOB}},
        "pr.yml": {"on": {event: {"branches": ["main"]}}, "jobs": {"pr": job}},
    }


@pytest.mark.parametrize("event", sorted(STARTED_BY_PULL_REQUESTS))
def test_the_pull_request_check_covers_every_event_a_pull_request_starts(event):
    job = {"steps": [{"run": "make", "env": {"P": "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}"}}]}
    findings = production_reach(pull_request_job(event, **job), read_local)
    assert findings == [f"pr.yml/pr (on {event}): reaches the production secret PULUMI_CONFIG_PASSPHRASE"]


@pytest.mark.parametrize(
    ("job", "expected"),
    [
        ({"steps": [{"env": {"P": "${{ secrets.pulumi_config_passphrase }}"}}]}, "PULUMI_CONFIG_PASSPHRASE"),
        ({"steps": [{"uses": "./.github/actions/x", "with": {"token": "${{ secrets.P }}"}}]}, "reaches P, not"),
        ({"steps": [{"run": "echo '${{ toJSON(secrets) }}'"}]}, EVERY_SECRET),
        ({"steps": [{"run": "echo ${{ secrets[matrix.name] }}"}]}, EVERY_SECRET),
        ({"uses": "./.github/workflows/called.yml", "secrets": "inherit"}, "secrets: inherit"),
        ({"uses": "./.github/workflows/called.yml"}, "uses the environment 'production'"),
        ({"environment": PRODUCTION, "steps": [{"run": "make test"}]}, "uses the environment 'production'"),
        ({"steps": [{"run": "echo ${{ secrets.SMARTNATION_SECRETS_PRODUCTION }}"}]}, "SMARTNATION_SECRETS_PRODUCTION"),
    ],
    ids=["env", "composite-input", "toJSON", "dynamic-index", "inherit", "called-env", "environment", "by-name"],
)
def test_the_pull_request_check_finds_each_path_to_a_secret(job, expected):
    read = {"./.github/workflows/called.yml": CALLED_IN_PRODUCTION, "./.github/actions/x": COMPOSITE}.__getitem__
    findings = production_reach(pull_request_job(**job), read)
    assert any(expected in finding for finding in findings), findings


def test_the_pull_request_check_accepts_the_read_only_preview_identity():
    job = {
        "environment": "preview",
        "steps": [
            {"uses": "./.github/actions/x", "with": {"token": "${{ secrets.GITHUB_TOKEN }}"}},
            {"run": "smartnation preview", "env": {"K": "${{ secrets.PREVIEW_KUBECONFIG }}"}},
        ],
    }
    assert production_reach(pull_request_job(**job), {"./.github/actions/x": COMPOSITE}.__getitem__) == []


# --- promotion is committed back to main --------------------------------------------------------

COMMIT_PROMOTION = GITHUB / "scripts" / "commit-promotion.sh"
ACTOR, ACTOR_ID = "octo-lead", "4242"


def promote_job(workflows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    (job,) = workflows["promote.yml"]["jobs"].values()
    return job


def test_the_promote_job_commits_with_write_access_only_there(workflows):
    job = promote_job(workflows)
    assert job.get("permissions") == {"contents": "write"}, "only the promote job may write: it pushes its commit"
    for name, workflow in workflows.items():
        assert workflow["permissions"] == {"contents": "read"}, name
    checkout = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/checkout@"))
    assert checkout["with"]["persist-credentials"] is False, "the write token must not sit in .git/config"
    names = [s.get("run", "") for s in job["steps"]]
    promote_at = next(i for i, r in enumerate(names) if "smartnation promote staging production" in r)
    commit_at = next(i for i, r in enumerate(names) if "commit-promotion.sh" in r)
    assert promote_at < commit_at
    commit = job["steps"][commit_at]
    assert commit["run"].split() == [".github/scripts/commit-promotion.sh", "production"]
    assert "!cancelled()" in commit["if"] and "success()" not in commit["if"], "refusals are recorded too"
    assert commit["env"]["GITHUB_TOKEN"] in ("${{ secrets.GITHUB_TOKEN }}", "${{ github.token }}")
    # Only the commit step holds the token.
    assert [s for s in job["steps"] if "GITHUB_TOKEN" in (s.get("env") or {})] == [commit]


# Setting (an env key, `NAME=`, `export NAME=`, a $GITHUB_ENV line) or unsetting (`unset NAME`,
# `env -u NAME`) a variable that decides who the audit names. `${NAME:?}` and `$NAME` only read it.
WHO_VARIABLES = r"(?:SMARTNATION_OPERATOR|GITHUB_ACTOR(?:_ID)?|GITHUB_ACTIONS)"
CHOOSES_WHO = re.compile(
    rf"(?<![\w{{$]){WHO_VARIABLES}\s*[:=]|\bunset\b[^\n]*\b{WHO_VARIABLES}\b|-u\s*{WHO_VARIABLES}\b"
)


def test_no_workflow_chooses_who_the_audit_names():
    # In CI the audit's `who` is the runner's GITHUB_ACTOR (the CLI ignores SMARTNATION_OPERATOR
    # when GITHUB_ACTIONS is true); no env block, no $GITHUB_ENV line and no script may name
    # someone else, nor hide that the run is in GitHub Actions.
    paths = [*WORKFLOWS, *local_actions(), *sorted((GITHUB / "scripts").glob("*"))]
    assert any("GITHUB_ACTOR" in path.read_text() for path in paths)  # the commit script reads it
    for path in paths:
        assert not CHOOSES_WHO.search(path.read_text()), path.name


@pytest.mark.parametrize(
    "text",
    [
        "env:\n  SMARTNATION_OPERATOR: alice",
        'echo "GITHUB_ACTOR=alice" >> "$GITHUB_ENV"',
        "export GITHUB_ACTOR_ID=1",
        "        GITHUB_ACTIONS: false",
        "unset GITHUB_ACTIONS",
        "env -u GITHUB_ACTIONS smartnation promote staging production --apply",
    ],
)
def test_the_audit_identity_check_finds_each_way_to_choose_who(text):
    assert CHOOSES_WHO.search(text)


@pytest.mark.parametrize("text", ['"${GITHUB_ACTOR:?}"', 'GIT_AUTHOR_NAME="$GITHUB_ACTOR"', "by ${GITHUB_ACTOR})"])
def test_the_audit_identity_check_lets_scripts_read_the_actor(text):
    assert not CHOOSES_WHO.search(text)


def _git(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True, timeout=60
    ).stdout.strip()


@pytest.fixture
def promotion_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, dict[str, str]]:
    """A bare `origin` with main, a clone of it as the job's checkout, and the runner's variables."""
    for name in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    origin, seed, work = tmp_path / "origin.git", tmp_path / "seed", tmp_path / "work"
    _git(tmp_path, "init", "--quiet", "--bare", "--initial-branch=main", str(origin))
    (seed / "environments").mkdir(parents=True)
    for environment in ("staging", "production"):
        text = f"releases:\n  chart_version: 0.1.0 # {environment}\n"
        (seed / "environments" / f"{environment}.yaml").write_text(text)
    (seed / "README.md").write_text("seed\n")
    identity = ["-c", "user.name=seed", "-c", "user.email=seed@example.org"]
    _git(seed.parent, "init", "--quiet", "--initial-branch=main", str(seed))
    _git(seed, "add", ".")
    _git(seed, *identity, "commit", "--quiet", "-m", "seed")
    _git(seed, "push", "--quiet", str(origin), "main")
    _git(tmp_path, "clone", "--quiet", "--depth=1", f"file://{origin}", str(work))
    env = {
        **os.environ,
        "GITHUB_TOKEN": "not-a-real-token",
        "GITHUB_ACTOR": ACTOR,
        "GITHUB_ACTOR_ID": ACTOR_ID,
        "GITHUB_SERVER_URL": f"file://{tmp_path}",
        "GITHUB_REPOSITORY": "origin",
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
    }
    return origin, work, env


def _promote_in(work: Path) -> None:
    """What `smartnation promote staging production` leaves in the checkout, plus a stray change."""
    (work / "environments" / "production.yaml").write_text("releases:\n  chart_version: 0.2.0 # production\n")
    (work / "environments" / "audit").mkdir()
    (work / "environments" / "audit" / "promotions.jsonl").write_text('{"who":"github:octo-lead"}\n')
    (work / "environments" / "staging.yaml").write_text("releases: {}  # a change the job made by accident\n")


def _commit_promotion(work: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(COMMIT_PROMOTION), "production"], cwd=work, env=env, capture_output=True, text=True, timeout=120
    )


def test_the_promotion_commit_holds_the_two_files_and_names_the_actor(promotion_checkout):
    origin, work, env = promotion_checkout
    _promote_in(work)
    result = _commit_promotion(work, env)
    assert result.returncode == 0, result.stdout + result.stderr
    author = _git(origin, "log", "-1", "--format=%an <%ae>", "main")
    assert author == f"{ACTOR} <{ACTOR_ID}+{ACTOR}@users.noreply.github.com>"
    changed = _git(origin, "show", "--name-only", "--format=", "main").splitlines()
    assert sorted(changed) == ["environments/audit/promotions.jsonl", "environments/production.yaml"]
    assert "0.2.0" in _git(origin, "show", "main:environments/production.yaml")


def test_the_promotion_commit_is_rebased_when_main_moved(promotion_checkout, tmp_path):
    origin, work, env = promotion_checkout
    other = tmp_path / "other"
    _git(tmp_path, "clone", "--quiet", f"file://{origin}", str(other))
    (other / "README.md").write_text("merged meanwhile\n")
    _git(other, "-c", "user.name=x", "-c", "user.email=x@example.org", "commit", "--quiet", "-am", "meanwhile")
    _git(other, "push", "--quiet", "origin", "main")
    _promote_in(work)
    result = _commit_promotion(work, env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert _git(origin, "log", "--format=%s", "main").splitlines()[:2] == [
        "Promote to production (by octo-lead)",
        "meanwhile",
    ]


def test_a_promotion_that_wrote_nothing_pushes_nothing(promotion_checkout):
    origin, work, env = promotion_checkout
    before = _git(origin, "rev-parse", "main")
    result = _commit_promotion(work, env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert _git(origin, "rev-parse", "main") == before


def test_a_promotion_that_cannot_be_rebased_fails_and_keeps_the_commit_in_the_summary(promotion_checkout, tmp_path):
    origin, work, env = promotion_checkout
    other = tmp_path / "other"
    _git(tmp_path, "clone", "--quiet", f"file://{origin}", str(other))
    (other / "environments" / "production.yaml").write_text("releases:\n  chart_version: 9.9.9 # hand edit\n")
    _git(other, "-c", "user.name=x", "-c", "user.email=x@example.org", "commit", "--quiet", "-am", "hand edit")
    _git(other, "push", "--quiet", "origin", "main")
    _promote_in(work)
    result = _commit_promotion(work, env)
    assert result.returncode != 0
    assert _git(origin, "log", "-1", "--format=%s", "main") == "hand edit"
    summary = Path(env["GITHUB_STEP_SUMMARY"]).read_text()
    assert "chart_version: 0.2.0" in summary and '{"who":"github:octo-lead"}' in summary
