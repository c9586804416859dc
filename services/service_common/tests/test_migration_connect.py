"""The migration Job's connection waits a bounded time for a database that refuses it at first."""

from __future__ import annotations

import psycopg
import pytest

from service_common.migrations import connect_when_up

pytestmark = pytest.mark.unit


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def refusing(times: int):
    calls: list[dict] = []

    def connect(**conninfo):
        calls.append(conninfo)
        if len(calls) <= times:
            raise psycopg.OperationalError("connection refused")
        return "connection"

    return connect, calls


def test_a_refused_connection_is_tried_again_until_it_is_accepted() -> None:
    clock = FakeClock()
    connect, calls = refusing(3)
    conn = connect_when_up({"host": "db"}, wait_s=60, connect=connect, clock=clock, sleep=clock.sleep)
    assert conn == "connection"
    assert calls == [{"host": "db"}] * 4
    assert clock.now == 6.0


def test_after_the_wait_the_last_error_is_raised() -> None:
    clock = FakeClock()
    connect, calls = refusing(1000)
    with pytest.raises(psycopg.OperationalError, match="connection refused"):
        connect_when_up({"host": "db"}, wait_s=10, connect=connect, clock=clock, sleep=clock.sleep)
    assert len(calls) == 6 and clock.now == 10.0
