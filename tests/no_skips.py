"""A skipped test fails the run.

A test that skips itself when a tool or a cluster is missing reports green while proving nothing,
so every run (CI and local alike) treats a skip, an xfail and an unexpected xpass as a failure and
names them. Loaded for every pytest run by ``addopts = -p tests.no_skips`` in pyproject.toml.
"""

from __future__ import annotations

import pytest

NOT_RUN = ("skipped", "xfailed", "xpassed")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    not_run = [report for outcome in NOT_RUN for report in reporter.stats.get(outcome, [])]
    if not not_run:
        return
    names = sorted({getattr(report, "nodeid", "?") or "?" for report in not_run})
    reporter.write_line(
        f"FAILED: {len(not_run)} test(s) did not run as written (skipped, xfailed or xpassed); "
        "a test here must run or fail:",
        red=True,
    )
    for name in names:
        reporter.write_line(f"  {name}", red=True)
    if exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
