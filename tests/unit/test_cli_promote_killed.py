"""`smartnation promote staging production --yes --apply` killed with SIGKILL at each step.

The promotion runs for real (cmd_promote, the file write, the audit log) in a child process whose
engine-facing parts are stand-ins (the gates pass, the stack's update does nothing), and the child
kills itself with SIGKILL at one step: in the gates (after the `started` entry), in the middle of the
file write (temporary written, before the rename), during the update, and just before the final
audit line. After each: production.yaml is the old file or the new one, whole; every audit line is
whole and `smartnation audit` works; the next promotion says what the killed one left (file written
or not, the write's leftover removed) and closes its run in the log.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from smartnation.cli import exit_codes
from smartnation.cli.audit_log import read_audit
from smartnation.cli.promotion_runs import INTERRUPTED, STARTED
from smartnation.cli.releases_copy import releases_of, unfinished_writes
from smartnation.tooling.images.lock import image_key, read_lock, write_lock
from tests.unit.harness import REPO_ENVIRONMENTS

pytestmark = pytest.mark.unit

CHILD = r"""
import contextlib, os, signal, sys
from smartnation.cli import main as cli_main, promote, releases_copy
from smartnation.cli.audit_log import APPLIED, SourceUpdate

kill_at = os.environ.get("KILL_AT", "")

def die(step):
    if kill_at == step:
        sys.stderr.write(f"killing at {step}\n"); sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)

def gate_source_deployed(source, environments):
    die("gates")
    return SourceUpdate(version=7, time="2026-11-29T02:00:00Z", result="succeeded"), None

class Stack:
    def up(self, **_):
        die("update")

def select(target, create=True, environments=None):
    return Stack(), promote.load_settings(target, environments)

real_replace, real_append = releases_copy.os.replace, promote.append_audit

def replace(src, dst):
    die("write")
    return real_replace(src, dst)

def append_audit(environments, entry):
    if entry.result == APPLIED:
        die("audit")
    return real_append(environments, entry)

promote.check_unlocked = lambda environment: None
promote.gate_source_deployed = gate_source_deployed
promote.gate_no_drift = lambda source, stack: None
promote.gate_target_preview = lambda *args: None
promote.check_target = lambda target, environments: None
promote.render_environment = lambda preview: []
promote.select = select
promote.policy_args = lambda settings: contextlib.nullcontext({})
promote._last = lambda stack: None
promote.append_audit = append_audit
releases_copy.os.replace = replace
sys.exit(cli_main.main(sys.argv[1:]))
"""


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    """A project whose staging runs a broker release production does not have yet."""
    envdir = tmp_path / "environments"
    shutil.copytree(REPO_ENVIRONMENTS, envdir, ignore=shutil.ignore_patterns("stacks", "audit"))
    (tmp_path / "Pulumi.yaml").write_text("name: smartnation-killed\nruntime: python\n")
    staging = envdir / "staging.yaml"
    broker = yaml.safe_load(staging.read_text())["releases"]["components"]["broker"]
    text = staging.read_text()
    line = f"broker: {{version: {broker['version']}, repository: {broker['repository']}, tag: {broker['tag']}}}"
    assert line in text, f"no one-line broker release in {staging}"
    staging.write_text(
        text.replace(line, f"broker: {{version: 2.0.12, repository: {broker['repository']}, tag: 2.0.12}}")
    )
    lock = envdir / "images.lock.yaml"
    locked = read_lock(lock)
    write_lock(
        lock,
        {**locked, image_key(broker["repository"], "2.0.12"): locked[image_key(broker["repository"], broker["tag"])]},
    )
    return tmp_path


def promote(project: Path, kill_at: str = "") -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "SMARTNATION_PROJECT_DIR": str(project),
        "SMARTNATION_ENVIRONMENTS_DIR": str(project / "environments"),
        "SMARTNATION_OPERATOR": "night-shift@smartnation.mc",
        "KILL_AT": kill_at,
    }
    env.pop("GITHUB_ACTIONS", None)
    return subprocess.run(
        [sys.executable, "-c", CHILD, "promote", "staging", "production", "--yes", "--apply"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def audit_lines(project: Path) -> list[dict]:
    path = project / "environments" / "audit" / "promotions.jsonl"
    text = path.read_text() if path.exists() else ""
    assert not text or text.endswith("\n"), "a torn audit line"
    return [json.loads(line) for line in text.splitlines()]  # every line whole JSON


@pytest.mark.parametrize(("step", "written"), [("gates", False), ("write", False), ("update", True), ("audit", True)])
def test_a_promotion_killed_at_a_step_leaves_a_whole_file_and_the_next_run_says_what_happened(project, step, written):
    production = project / "environments" / "production.yaml"
    staging = project / "environments" / "staging.yaml"
    old = production.read_text()
    wanted = releases_of(staging.read_text(), "staging.yaml")

    killed = promote(project, kill_at=step)
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert f"killing at {step}" in killed.stderr
    now = production.read_text()
    if written:
        assert releases_of(now, "production.yaml") == wanted and now != old
    else:
        assert now == old, "production.yaml changed by a promotion killed before its rename"
    assert bool(unfinished_writes(production)) == (step == "write")
    lines = audit_lines(project)
    assert [e["result"] for e in lines] == [STARTED], "the end line is written only after the step it records"
    assert read_audit(project / "environments") == lines
    listed = subprocess.run(
        [sys.executable, "-m", "smartnation.cli.main", "audit"],
        env={**os.environ, "SMARTNATION_PROJECT_DIR": str(project)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == exit_codes.OK and "started" in listed.stdout, listed.stderr

    again = promote(project)
    assert again.returncode == exit_codes.OK, again.stderr[-3000:]
    assert "never ended" in again.stderr and lines[0]["extra"]["run"] in again.stderr
    said = "holds the releases it promoted" if written else "the file was never written"
    assert said in again.stderr
    if step == "write":
        assert "killed before its rename" in again.stderr
    assert unfinished_writes(production) == []
    assert releases_of(production.read_text(), "production.yaml") == wanted
    results = [(e["result"], e["extra"]["run"]) for e in audit_lines(project)]
    first, second = lines[0]["extra"]["run"], results[-1][1]
    assert results == [(STARTED, first), (INTERRUPTED, first), (STARTED, second), ("applied", second)]


def test_a_target_edited_while_the_gates_ran_is_not_overwritten(project, monkeypatch):
    """The file changes between the read and the write: refused, the edit kept."""
    production = project / "environments" / "production.yaml"
    edited = production.read_text() + "# an operator's edit\n"
    child = CHILD.replace('die("gates")', f'die("gates"); open({str(production)!r}, "w").write({edited!r})')
    env = {
        **os.environ,
        "SMARTNATION_PROJECT_DIR": str(project),
        "SMARTNATION_ENVIRONMENTS_DIR": str(project / "environments"),
        "SMARTNATION_OPERATOR": "night-shift@smartnation.mc",
    }
    env.pop("GITHUB_ACTIONS", None)
    proc = subprocess.run(
        [sys.executable, "-c", child, "promote", "staging", "production", "--yes", "--apply"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == exit_codes.FAILED, proc.stderr[-3000:]
    assert "changed since it was read" in proc.stderr
    assert production.read_text() == edited
    assert [e["result"] for e in audit_lines(project)] == [STARTED, "refused"]
