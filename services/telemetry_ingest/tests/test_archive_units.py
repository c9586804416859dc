"""The archive's pure parts: which hours are due, object keys, the gzip stream."""

from __future__ import annotations

import gzip
import io
from datetime import UTC, datetime, timedelta

import pytest

from telemetry_ingest.archive import GzipStream, due_hours, object_key

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 28, 22, 5, tzinfo=UTC)


def test_only_closed_hours_past_the_grace_are_due() -> None:
    hours = due_hours(NOW, grace=timedelta(minutes=10), lookback_hours=3, done=set())
    # 21:00-22:00 closed at 22:00 but the grace runs to 22:10: not yet.
    assert hours == [datetime(2026, 11, 28, 19, tzinfo=UTC), datetime(2026, 11, 28, 20, tzinfo=UTC)]


def test_done_hours_are_skipped() -> None:
    done = {datetime(2026, 11, 28, 19, tzinfo=UTC)}
    hours = due_hours(NOW, grace=timedelta(0), lookback_hours=3, done=done)
    assert hours == [datetime(2026, 11, 28, h, tzinfo=UTC) for h in (20, 21)]


def test_object_keys_sort_by_time() -> None:
    assert object_key(datetime(2026, 1, 2, 3, tzinfo=UTC)) == "readings/2026/01/02/03.csv.gz"


def test_gzip_stream_round_trip_and_line_count() -> None:
    lines = [b"device_id,ts\n"] + [f"d-{i},2026-01-01\n".encode() for i in range(50_000)]
    chunks = [b"".join(lines[i : i + 777]) for i in range(0, len(lines), 777)]
    stream = GzipStream(iter(chunks))
    compressed = io.BufferedReader(stream, buffer_size=4096).read()
    assert gzip.decompress(compressed) == b"".join(lines)
    assert stream.lines == 50_001


def test_gzip_stream_of_nothing_is_a_valid_empty_gzip() -> None:
    assert gzip.decompress(io.BufferedReader(GzipStream(iter([]))).read()) == b""
