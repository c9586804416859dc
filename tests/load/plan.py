"""What a load run may do and how its figures are reduced: pure, so its bounds are unit-tested.

Bounded on purpose (a test helper, not a stress tool): at most MAX_DEVICES simulated devices,
MAX_RATE readings/s and MAX_DURATION_S of publishing, never against production, and it stops by
itself. Each device is its own MQTT connection with its own identity, as real devices are (the
broker confines a device to the topics carrying its id), so devices cost connections and, where
devices log in with certificates, one certificate each."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

MAX_DEVICES = 500
MAX_RATE = 10_000
MAX_DURATION_S = 300
MAX_THREADS = 64
REFUSED_ENVIRONMENTS = ("production",)
"""Load is for the stages before the city's: a run against production would be an attack on it."""


class PlanError(ValueError):
    """A plan outside the generator's bounds; the message names the field."""


@dataclass(frozen=True)
class LoadPlan:
    environment: str
    devices: int = 50
    """Simulated devices, each its own MQTT connection through the load balancer (so spread over
    the broker Pods), publishing on its own topic ``city/<domain>/<device>/telemetry``."""
    rate_per_s: float = 2000
    """Readings per second, all devices together."""
    duration_s: float = 30
    """Seconds of publishing (the drain afterwards is bounded separately)."""
    threads: int = 4
    """Publishing threads; each paces its share of the devices (few threads cost the generator less CPU)."""
    sample_every: int = 10
    """Every n-th reading is watched until it is visible in the database (the latency sample)."""
    run_id: str = field(default_factory=lambda: f"load-{int(time.time())}")

    def check(self) -> None:
        if self.environment in REFUSED_ENVIRONMENTS:
            raise PlanError(f"environment: the load generator never targets {self.environment}")
        if not 1 <= self.devices <= MAX_DEVICES:
            raise PlanError(f"devices: 1 to {MAX_DEVICES}, got {self.devices}")
        if not 0 < self.rate_per_s <= MAX_RATE:
            raise PlanError(f"rate_per_s: above 0 and up to {MAX_RATE}, got {self.rate_per_s}")
        if not 0 < self.duration_s <= MAX_DURATION_S:
            raise PlanError(f"duration_s: above 0 and up to {MAX_DURATION_S}, got {self.duration_s}")
        if not 1 <= self.threads <= min(MAX_THREADS, self.devices):
            raise PlanError(f"threads: 1 to min({MAX_THREADS}, devices), got {self.threads}")
        if self.sample_every < 1:
            raise PlanError(f"sample_every: 1 or more, got {self.sample_every}")

    @property
    def per_thread(self) -> int:
        """Readings each thread publishes (the total, rounded down to a multiple of threads)."""
        return int(self.rate_per_s * self.duration_s) // self.threads

    @property
    def total(self) -> int:
        return self.per_thread * self.threads

    @property
    def device_ids(self) -> list[str]:
        return [f"{self.run_id}-{d:05d}" for d in range(self.devices)]

    def devices_of(self, thread: int) -> list[int]:
        """The devices (indexes) one thread publishes for: every ``threads``-th one."""
        return list(range(thread, self.devices, self.threads))


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def sustained_rate(stored_at: Sequence[float], trim: float = 0.1) -> float:
    """Readings stored per second while the load was steady: the stored timestamps with the first
    and last ``trim`` of the run's readings left out (start-up and drain), over their time span."""
    if len(stored_at) < 10:
        return 0.0
    ordered = sorted(stored_at)
    cut = int(len(ordered) * trim)
    middle = ordered[cut : len(ordered) - cut]
    span = middle[-1] - middle[0]
    return (len(middle) - 1) / span if span > 0 else 0.0
