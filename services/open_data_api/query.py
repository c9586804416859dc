"""Pure helpers of the open-data API: bucket sizes and time-range limits."""

from __future__ import annotations

import re
from datetime import timedelta

_BUCKET_RE = re.compile(r"^(\d{1,6})(s|m|h|d)$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


class BadRequest(ValueError):
    pass


def parse_bucket(text: str) -> timedelta:
    """``30s``, ``5m``, ``1h``, ``1d`` -> a timedelta of at least one second."""
    match = _BUCKET_RE.fullmatch(text)
    if not match or int(match.group(1)) == 0:
        raise BadRequest(f"bucket must look like 30s, 5m, 1h or 1d, got {text!r}")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def check_range(span: timedelta, step: timedelta, max_points: int) -> None:
    if span <= timedelta(0):
        raise BadRequest("end must be after start")
    points = span / step
    if points > max_points:
        raise BadRequest(f"{int(points)} buckets asked for, at most {max_points}: widen the bucket or narrow the range")
