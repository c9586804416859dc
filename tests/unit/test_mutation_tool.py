"""Unit: tests/tools/mutation.py's bookkeeping (what `make mutation` records; mutmut itself not run)."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import pytest

from tests.tools import mutation

pytestmark = pytest.mark.unit


def test_a_retest_keeps_the_results_mutmut_wiped_and_the_new_ones_win(tmp_path: Path) -> None:
    meta = tmp_path / "mutants" / "smartnation" / "program" / "pods.py.meta"
    meta.parent.mkdir(parents=True)
    # After a retest with another test selection: every result reset, the re-run ones new.
    meta.write_text(json.dumps({"exit_code_by_key": {"killed": None, "rerun": 1, "left": None, "unchecked": None}}))
    earlier = {meta: {"killed": 1, "rerun": 0, "left": 0, "unchecked": None}}
    assert mutation.keep_earlier_results(tmp_path, earlier) == 2
    assert json.loads(meta.read_text())["exit_code_by_key"] == {
        "killed": 1,  # caught before, not re-run: still caught
        "rerun": 1,  # survived before, caught now
        "left": 0,  # survived before, not reached before the stop
        "unchecked": None,
    }


def test_only_a_path_inside_the_scope_is_mutated_and_it_has_a_scratch_tree_of_its_own() -> None:
    only = ["smartnation/program/components/pods.py"]
    assert mutation.narrowed("components", only) == only
    assert mutation.narrowed("components", None) == mutation.SCOPES["components"]
    assert mutation.scratch_dir("components", only).name == "components@pods"
    assert mutation.scratch_dir("components").name == "components"
    with pytest.raises(SystemExit, match="--only smartnation/settings/models.py: not inside scope policy"):
        mutation.narrowed("policy", ["smartnation/settings/models.py"])


def test_only_a_run_stopped_at_its_budget_is_said_to_be_stopped() -> None:
    assert mutation._budget(150, stopped=False) == ", ran to its end within its 150 min"
    assert mutation._budget(12.5, stopped=True) == ", stopped after 12.5 min"
    assert mutation._budget(None, stopped=True) == ""


def test_stopping_at_the_budget_interrupts_mutmut_and_is_remembered_for_the_scope() -> None:
    # Started as the tool starts mutmut, under a SIGINT the test's own runner may ignore (a
    # background job of a shell): the SIGINT must reach it all the same.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        sleeper = mutation.interruptible([sys.executable, "-c", "import time; time.sleep(60)"], Path.cwd(), {})
    finally:
        signal.signal(signal.SIGINT, previous)
    mutation.STOPPED_AT_BUDGET.discard("policy")
    try:
        mutation.stop_at_budget(sleeper, "policy", 0.5)
        # SIGINT ends it as KeyboardInterrupt would end mutmut: it saves what it checked and exits.
        assert sleeper.returncode not in (None, 0)
        assert "policy" in mutation.STOPPED_AT_BUDGET
    finally:
        mutation.STOPPED_AT_BUDGET.discard("policy")
        if sleeper.poll() is None:
            sleeper.kill()


def test_the_recorded_row_says_stopped_only_for_a_scope_stopped_at_its_budget(tmp_path, monkeypatch) -> None:
    from tests.benchmarks import mutation_figures

    results = tmp_path / "mutation.json"
    monkeypatch.setattr(mutation, "MUTATION_RESULTS", results)
    monkeypatch.setattr(mutation_figures, "MUTATION_RESULTS", results)
    monkeypatch.setattr(mutation, "REPO", tmp_path)  # no BENCHMARKS.json there: only the results file
    args = mutation.argparse.Namespace(
        tests=None, only=None, label="t", workers=1, commit=None, minutes=20.0, retest=True, resume=False
    )
    figures = mutation.ScopeFigures(mutants=10, killed=4, survived=1, not_checked=5)
    monkeypatch.setattr(mutation, "STOPPED_AT_BUDGET", {"settings"})
    mutation.record("policy", figures, 0.0, 60.0, args, [])
    mutation.record("settings", figures, 0.0, 60.0, args, [])
    policy, settings = json.loads(results.read_text())["runs"]
    assert ", ran to its end within its 20 min" in policy["run"] and "stopped" not in policy["run"]
    assert ", stopped after 20 min" in settings["run"]


# A mutmut that only waits for SIGINT: stopped by it, it exits 1 (KeyboardInterrupt) and says so.
STAND_IN = """#!{python}
import pathlib, subprocess, sys, time
pathlib.Path("started").write_text(" ".join(sys.argv[1:]))
helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # a fork server's stand-in
pathlib.Path("helper").write_text(str(helper.pid))
try:
    time.sleep(60)
except KeyboardInterrupt:
    helper.kill()
    pathlib.Path("interrupted").write_text("yes")
    sys.exit(1)
"""


@pytest.mark.parametrize("how", ["resume", "retest"])
def test_a_resume_and_a_retest_stop_at_their_budget_under_a_runner_that_ignores_sigint(
    how: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Session 10's retest ran 11 min on a 9-min budget: a retest (and a resume) started mutmut with
    # the SIGINT its parent ignored, so only the kill 2 min later ended it (its fork server lived on).
    work = tmp_path / "settings"
    meta = work / "mutants" / "smartnation" / "settings" / "a.py.meta"
    meta.parent.mkdir(parents=True)
    meta.write_text(json.dumps({"exit_code_by_key": {"smartnation.settings.a.x_f__mutmut_1": 0}}))
    (work / "pyproject.toml").write_text('[tool.mutmut]\nx = ["-o", "python_files=test_settings*.py"]\n')
    (tmp_path / "repo" / "tests").mkdir(parents=True)
    stand_in = tmp_path / "mutmut"
    stand_in.write_text(STAND_IN.format(python=sys.executable))
    stand_in.chmod(0o755)
    monkeypatch.setattr(mutation, "MUTMUT", stand_in)
    monkeypatch.setattr(mutation, "REPO", tmp_path / "repo")
    monkeypatch.setattr(mutation, "scratch_dir", lambda scope, only=None: work)
    monkeypatch.setattr(mutation, "STOP_GRACE_S", 10.0)  # the stand-in stops at once on SIGINT
    monkeypatch.setattr(mutation, "STOPPED_AT_BUDGET", set())
    args = mutation.argparse.Namespace(only=None, tests=None)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a shell's background job
    try:
        if how == "resume":
            code = mutation.resume_scope("settings", 1, 0.03)
        else:
            code = mutation.retest_scope("settings", 1, None, 0.03, args)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert code == 0
    assert "settings" in mutation.STOPPED_AT_BUDGET
    assert (work / "interrupted").read_text() == "yes", "SIGINT did not reach mutmut: it was killed"
    expected = "run --max-children 1" + (" smartnation.settings.a.x_f__mutmut_1" if how == "retest" else "")
    assert (work / "started").read_text() == expected


def test_a_mutmut_deaf_to_sigint_is_killed_with_the_processes_under_it(tmp_path: Path, monkeypatch) -> None:
    # A mutmut that ignores SIGINT itself (stuck in code that does not see it), with a process under it.
    deaf = STAND_IN.format(python=sys.executable).replace(
        "import pathlib", "import signal; signal.signal(2, signal.SIG_IGN)\nimport pathlib", 1
    )
    stand_in = tmp_path / "mutmut"
    stand_in.write_text(deaf)
    stand_in.chmod(0o755)
    monkeypatch.setattr(mutation, "MUTMUT", stand_in)
    monkeypatch.setattr(mutation, "STOP_GRACE_S", 1.0)
    monkeypatch.setattr(mutation, "STOPPED_AT_BUDGET", set())
    proc = mutation.start_mutmut(tmp_path, 1)
    helper = None
    try:
        for _ in range(100):  # the stand-in has started its helper
            if (tmp_path / "helper").exists() and (tmp_path / "helper").read_text():
                break
            mutation.time.sleep(0.05)
        helper = int((tmp_path / "helper").read_text())
        mutation.stop_at_budget(proc, "settings", 0.1)
        assert proc.returncode == -signal.SIGKILL
        for _ in range(40):  # killed, the helper is reaped by init at once
            if not Path(f"/proc/{helper}").exists() or "Z" in _state(helper):
                break
            mutation.time.sleep(0.05)
        assert not Path(f"/proc/{helper}").exists() or "Z" in _state(helper), "a process under mutmut lives on"
    finally:
        if proc.poll() is None:
            proc.kill()


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"
