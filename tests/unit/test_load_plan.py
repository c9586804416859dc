"""The load generator's bounds and reductions (tests/load/plan.py); the runs themselves are in
tests/benchmarks/run.py --only-load against a deployed staging."""

from __future__ import annotations

import math

import pytest

from tests.load.plan import LoadPlan, PlanError, percentile, sustained_rate

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"environment": "production"}, "environment"),
        ({"devices": 0}, "devices"),
        ({"devices": 501}, "devices"),
        ({"rate_per_s": 0}, "rate_per_s"),
        ({"rate_per_s": 10_001}, "rate_per_s"),
        ({"duration_s": 0}, "duration_s"),
        ({"duration_s": 301}, "duration_s"),
        ({"threads": 0}, "threads"),
        ({"threads": 65, "devices": 100}, "threads"),
        ({"threads": 5, "devices": 4}, "threads"),
        ({"sample_every": 0}, "sample_every"),
    ],
)
def test_a_plan_outside_the_bounds_is_refused_naming_the_field(overrides: dict, field: str):
    plan = LoadPlan(**{"environment": "staging", **overrides})
    with pytest.raises(PlanError, match=f"^{field}:"):
        plan.check()


def test_a_plan_inside_the_bounds_spreads_every_device_over_the_threads_once():
    plan = LoadPlan("staging", devices=10, rate_per_s=2000, duration_s=30, threads=4, run_id="r")
    plan.check()
    assert plan.total == 60_000 and plan.per_thread == 15_000
    assert sorted(d for t in range(4) for d in plan.devices_of(t)) == list(range(10))
    assert plan.devices_of(1) == [1, 5, 9]
    assert plan.device_ids[9] == "r-00009" and len(set(plan.device_ids)) == 10


def test_percentiles_are_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50 and percentile(values, 0.99) == 99 and percentile(values, 1.0) == 100
    assert percentile([3.0], 0.99) == 3.0 and math.isnan(percentile([], 0.5))


def test_the_sustained_rate_leaves_out_start_up_and_drain():
    # 1,000 readings/s for 10 s, then a slow tail of 100 readings over 50 s.
    steady = [i / 1000 for i in range(10_000)]
    tail = [10 + i / 2 for i in range(100)]
    assert sustained_rate(steady) == pytest.approx(1000, rel=0.01)
    assert sustained_rate(steady + tail) == pytest.approx(1000, rel=0.05)
    assert (steady[-1] - steady[0] + 50) > 0 and len(steady + tail) / 60 < 200  # the naive rate would be 168/s
    assert sustained_rate([1.0] * 5) == 0.0
