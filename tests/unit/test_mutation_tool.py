"""Unit: tests/tools/mutation.py's bookkeeping (what `make mutation` records; mutmut itself not run)."""

from __future__ import annotations

import json
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


def test_a_run_that_checked_every_mutant_is_not_said_to_be_stopped_by_its_budget() -> None:
    every = mutation.ScopeFigures(mutants=10, killed=9, survived=1)
    some = mutation.ScopeFigures(mutants=10, killed=5, not_checked=5)
    assert mutation._budget(150, every) == ", ran to its end within its 150 min"
    assert mutation._budget(12.5, some) == ", stopped after 12.5 min"
    assert mutation._budget(None, some) == ""
