"""A string setting's conversion to the letter: CPU and size quantities (a bare integer CPU taken,
the range at both ends, each refusal saying what is expected), a plain string (not a string,
empty, too long at its own limit). The last survivors of this session's second resumed settings
run were in validation._string (41)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from smartnation.settings.errors import SettingsError
from smartnation.settings.validation import Origins, convert, setting

pytestmark = pytest.mark.unit


@dataclasses.dataclass(frozen=True, kw_only=True)
class Sample:
    cpu: str = setting(quantity="cpu", quantity_range=("100m", "4"), default="1")
    size: str = setting(quantity="memory", default="1Gi")
    text: str = setting(max_length=5, default="abc")


def detail(**values: Any) -> str:
    with pytest.raises(SettingsError) as refused:
        convert(Sample, values, ("sample",), Origins("environments/x.yaml"))
    return f"{refused.value.key_path}: {refused.value.detail}"


def test_a_cpu_quantity_is_taken_as_a_bare_integer_and_at_both_ends_of_its_range() -> None:
    origins = Origins("environments/x.yaml")
    assert convert(Sample, {"cpu": 2}, (), origins).cpu == "2"
    assert convert(Sample, {"cpu": "100m"}, (), origins).cpu == "100m"
    assert convert(Sample, {"cpu": 4}, (), origins).cpu == "4"
    assert convert(Sample, {"size": "512Mi"}, (), origins).size == "512Mi"


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"cpu": "99m"}, "sample.cpu: expected a CPU quantity such as 500m or 2, from 100m to 4, got '99m'"),
        ({"cpu": "4001m"}, "sample.cpu: expected a CPU quantity such as 500m or 2, from 100m to 4, got '4001m'"),
        ({"cpu": "two"}, "sample.cpu: expected a CPU quantity such as 500m or 2, from 100m to 4, got 'two'"),
        ({"cpu": True}, "sample.cpu: expected a CPU quantity such as 500m or 2, from 100m to 4, got True"),
        ({"cpu": 1.5}, "sample.cpu: expected a CPU quantity such as 500m or 2, from 100m to 4, got 1.5"),
        ({"size": 512}, "sample.size: expected a size such as 512Mi or 20Gi, got 512"),
        ({"size": "lots"}, "sample.size: expected a size such as 512Mi or 20Gi, got 'lots'"),
        ({"text": 3}, "sample.text: expected a string, got 3"),
        ({"text": ""}, "sample.text: expected a non-empty string, got ''"),
        ({"text": "abcdef"}, "sample.text: expected at most 5 characters, got 6"),
    ],
)
def test_a_string_setting_refused_says_what_is_expected(values: dict[str, Any], expected: str) -> None:
    assert detail(**values) == expected


def test_a_string_at_its_length_limit_is_taken() -> None:
    assert convert(Sample, {"text": "abcde"}, (), Origins("environments/x.yaml")).text == "abcde"
