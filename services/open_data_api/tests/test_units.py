"""The open-data API's pure parts: bucket sizes and range limits."""

from __future__ import annotations

from datetime import timedelta

import pytest

from open_data_api.query import BadRequest, check_range, parse_bucket

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "expected"),
    [("30s", timedelta(seconds=30)), ("5m", timedelta(minutes=5)), ("1h", timedelta(hours=1)), ("7d", timedelta(7))],
)
def test_bucket_sizes(text: str, expected: timedelta) -> None:
    assert parse_bucket(text) == expected


@pytest.mark.parametrize("text", ["0m", "5", "m", "1w", "1.5h", "-1h", "5 m", "1h; DROP TABLE readings"])
def test_bad_bucket_sizes(text: str) -> None:
    with pytest.raises(BadRequest):
        parse_bucket(text)


def test_too_many_points_are_refused() -> None:
    check_range(timedelta(days=1), timedelta(minutes=1), 10_000)
    with pytest.raises(BadRequest, match="buckets"):
        check_range(timedelta(days=30), timedelta(minutes=1), 10_000)
    with pytest.raises(BadRequest, match="after"):
        check_range(timedelta(0), timedelta(minutes=1), 10_000)
