"""A failed `pulumi` run is reported by its reason, not by the error's empty last line."""

from __future__ import annotations

import pytest

from smartnation.cli.main import pulumi_failure

pytestmark = pytest.mark.unit


def test_the_error_lines_are_the_reason():
    text = (
        "\n code: 255\n stdout: Updating (dev)\n    error: update failed\n"
        "    kubernetes:apps/v1:StatefulSet (dev-broker):\n      error: 1 error occurred: timed out\n stderr: \n"
    )
    assert pulumi_failure(text) == "error: update failed; error: 1 error occurred: timed out"


def test_without_error_lines_the_last_line_that_says_something():
    assert pulumi_failure("\n code: 1\n stdout: the lock is held by root@vm\n stderr: \n") == (
        "stdout: the lock is held by root@vm"
    )
    assert pulumi_failure("\n code: 1\n stdout: \n stderr: \n") == "no output (see the engine log above)"
