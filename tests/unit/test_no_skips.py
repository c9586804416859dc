"""The run fails when any test skips itself (tests/no_skips.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.unit

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def _plugin_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    # The child pytest runs in a scratch directory: the plugin comes from this checkout.
    monkeypatch.setenv("PYTHONPATH", str(REPO))


def _run(pytester: pytest.Pytester, body: str) -> pytest.RunResult:
    pytester.makepyfile(test_sample=body)
    return pytester.runpytest_subprocess("-p", "tests.no_skips", "-p", "no:cacheprovider")


@pytest.mark.parametrize(
    "body",
    [
        "import pytest\ndef test_a():\n    pytest.skip('kubectl missing')\n",
        "import pytest\n@pytest.mark.skipif(True, reason='no cluster')\ndef test_a():\n    pass\n",
        "import pytest\n@pytest.mark.xfail(reason='flaky')\ndef test_a():\n    assert False\n",
        "import pytest\ndef test_a():\n    pytest.importorskip('no_such_module_here')\n",
    ],
    ids=["skip-call", "skipif", "xfail", "importorskip"],
)
def test_a_test_that_does_not_run_fails_the_session(pytester: pytest.Pytester, body: str) -> None:
    result = _run(pytester, body)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*did not run as written*", "*test_sample.py::test_a*"])


def test_a_session_that_runs_everything_passes(pytester: pytest.Pytester) -> None:
    result = _run(pytester, "def test_a():\n    assert 1 + 1 == 2\n")
    assert result.ret == pytest.ExitCode.OK
    assert "did not run as written" not in result.stdout.str()


def test_a_real_failure_keeps_its_exit_code(pytester: pytest.Pytester) -> None:
    result = _run(pytester, "import pytest\ndef test_a():\n    assert False\ndef test_b():\n    pytest.skip('x')\n")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
