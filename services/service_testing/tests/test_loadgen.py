"""The load generator itself: bounded, loopback only, stops by itself, and what it reports
adds up (a small run against the real daemons and a running telemetry-ingest)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from service_testing.daemons import Platform, RunningService, start_service, wait_until
from service_testing.loadgen import LoadPlan, run_load


def plan(**overrides: object) -> LoadPlan:
    return LoadPlan(broker_ports=[1883], username="u", password="p", **overrides)  # type: ignore[arg-type]


@pytest.mark.unit
@pytest.mark.parametrize(
    "overrides",
    [
        {"host": "10.0.0.1"},
        {"devices": 10_001},
        {"rate_per_s": 1e6},
        {"duration_s": 601},
        {"connections": 65},
        {"devices": 4, "connections": 5},
        {"duration_s": 0},
    ],  # fmt: skip
)
def test_plans_are_bounded(overrides: dict) -> None:
    with pytest.raises(ValueError):
        plan(**overrides).check()


@pytest.mark.unit
def test_a_plan_within_bounds() -> None:
    good = plan(devices=10, rate_per_s=200, duration_s=3, connections=2)
    good.check()
    assert good.total == 600 and good.device_id(7).endswith("-00007")


@pytest.fixture(scope="module")
def ingest(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    service = start_service("telemetry_ingest", platform.env("telemetry-ingest"), tmp_path_factory.mktemp("load"))
    wait_until(lambda: httpx.get(f"{service.url}/readyz").status_code == 200, 30, what="ingest ready")
    yield service
    service.terminate()


@pytest.mark.contract
def test_a_small_run_stops_by_itself_and_adds_up(platform: Platform, ingest: RunningService) -> None:
    user, password = platform.device_credentials("air-quality-sensor")
    small = LoadPlan(
        broker_ports=platform.brokers.ports, username=user, password=password, domain="air", devices=10,
        rate_per_s=200, duration_s=2, connections=2,
    )  # fmt: skip
    db = {"host": "127.0.0.1", "port": platform.postgres.port, "dbname": "telemetry", "user": "open_data",
          "password": platform.postgres.passwords["open_data"]}  # fmt: skip
    started = time.monotonic()
    report = run_load(small, db, sample_every=10, drain_timeout_s=20)
    assert time.monotonic() - started < 30
    assert report.planned == report.sent == report.acked == report.stored == 400
    assert report.missing == 0 and report.duplicates_stored == 0
    assert report.visible_samples == 40
    assert 0 < report.visible_p50_ms <= report.visible_p99_ms < 10_000
