"""The cold `make up` benchmark (tests/benchmarks/make_up.py): what it reads from a run, and its refusal."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.benchmarks import make_up

pytestmark = pytest.mark.unit

LOG = """\
.venv/bin/python -m smartnation.tooling.toolchain.bootstrap --python /work/main/.venv/bin/python
[     0s] [1/11] pulumi 3.274.1: downloading module
[   644s] [1/11] pulumi 3.274.1: built in 644s (compiling 188s)
[  1902s] [11/11] cert-manager 1.21.2: built in 717s (compiling 160s)
bootstrap: [  1903s] done
PASS  database-accepts-writes    1.2s  ok
verify staging: 10/11 passed in 40.2s; FAILED: backup-restores
verify staging: 11/11 passed in 44.6s
"""


def cache_with_times(root: Path) -> Path:
    (root / "logs").mkdir(parents=True)
    (root / "logs" / "build-times.json").write_text(
        json.dumps({"tools": {"pulumi 3.274.1": {"seconds": 644.0}, "kwok 0.8.0": {"seconds": 80.4}}})
    )
    (root / "images" / "logs").mkdir(parents=True)
    (root / "images" / "logs" / "build-times.json").write_text(json.dumps({"broker": {"seconds": 4.1}}))
    (root / "tools").mkdir()
    (root / "tools" / "blob").write_bytes(b"x" * 1_000_000)
    return root


def test_a_run_is_read_from_its_log_and_what_it_left_in_the_cache(tmp_path):
    root = cache_with_times(tmp_path / "cache")
    figures = make_up.read_run(LOG, 2400.04, 0.0, root)
    assert figures["started"] == "1970-01-01 00:00 UTC"
    assert figures["total_s"] == 2400.0
    # The bootstrap's last stamp, not its first or a tool's own time.
    assert figures["bootstrap_s"] == 1902
    assert figures["tools"] == {"kwok 0.8.0": 80.4, "pulumi 3.274.1": 644.0}
    assert figures["images"] == {"broker": 4.1}
    # The last verify line counts: the environment converged and was verified in the end.
    assert figures["verified"] == "11/11"
    assert set(figures["cache_bytes"]) == {"images", "logs", "tools"}
    assert figures["cache_bytes"]["tools"] >= 1_000_000
    assert figures["cache_total_bytes"] == sum(figures["cache_bytes"].values())


def test_a_run_without_stamps_or_verify_says_so_rather_than_inventing_them(tmp_path):
    figures = make_up.read_run("make: nothing\n", 10.0, 0.0, tmp_path / "none")
    assert figures["bootstrap_s"] is None and figures["verified"] is None
    assert figures["tools"] == {} and figures["images"] == {} and figures["cache_total_bytes"] == 0


def test_the_rendered_figures_say_whether_each_goal_was_met(tmp_path):
    figures = make_up.read_run(LOG, 2400.0, 0.0, cache_with_times(tmp_path / "cache"))
    lines = make_up.render_cold_make_up(figures)
    assert lines[0].startswith(
        "Cold `make up` on a fresh machine (1970-01-01 00:00 UTC): **40.0 min** from a fresh clone"
    )
    assert "(11/11)" in lines[0] and "goal under 40 min: missed" in lines[0]
    assert "the toolchain's bootstrap 31.7 min of it" in lines[0]
    assert "| tool pulumi 3.274.1 | 644 |" in lines and "| image broker | 4 |" in lines
    faster = {**figures, "total_s": 2399.0}
    assert "goal under 40 min: met" in make_up.render_cold_make_up(faster)[0]
    assert make_up.render_cold_make_up(None)[0].startswith("No cold `make up` recorded yet")


def test_a_cache_that_holds_anything_is_refused_before_make_runs(tmp_path, monkeypatch):
    (tmp_path / "tools").mkdir()
    started = []
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: started.append(a))
    with pytest.raises(make_up.NotCold, match=f"{tmp_path} is not empty: a cold `make up` needs a fresh machine"):
        make_up.run_cold(tmp_path)
    assert started == []
