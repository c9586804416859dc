"""`make up` verifies an environment only where it runs on real nodes locally."""

from __future__ import annotations

import pytest

from smartnation.tooling.local_clusters.runs_for_real import main

pytestmark = pytest.mark.unit


def test_dev_and_staging_run_for_real_and_production_does_not():
    assert main(["staging"]) == 0
    assert main(["dev"]) == 0
    assert main(["production"]) == 1


def test_an_unknown_environment_is_a_usage_error_naming_the_file(capsys):
    assert main(["qa"]) == 2
    assert "qa.yaml" in capsys.readouterr().err
