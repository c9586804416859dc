"""A bounded load generator for telemetry: N simulated devices publish readings at a fixed total
rate for a fixed duration through the broker pods, then it measures what was stored.

Bounded on purpose (it is a test helper, not a stress tool): loopback brokers only, at most
10,000 devices, 100,000 readings/s and 10 minutes, and it stops by itself. Issue 9's benchmark
uses it; ``python -m service_testing.benchmark`` runs it against the host daemons.

Latency is measured two ways:
- ``visible``: for a sample of readings (every ``sample_every``-th), the time from the device's
  publish until a poll of the database sees the row (poll interval ``poll_s``, so it is exact to
  within that); this is what a reader of open-data-api can see at best;
- ``stored``: for every reading, ``stored_at - ts`` (the ingest's transaction start minus the
  device's timestamp), which leaves out the batch's own write time.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from service_testing.devices import reading

MAX_DEVICES = 10_000
MAX_RATE = 100_000
MAX_DURATION_S = 600
MAX_CONNECTIONS = 64


@dataclass(frozen=True)
class LoadPlan:
    broker_ports: Sequence[int]
    username: str
    password: str
    domain: str = "parking"
    devices: int = 100
    rate_per_s: float = 1000
    duration_s: float = 10
    connections: int = 16
    qos: int = 1
    host: str = "127.0.0.1"
    run_id: str = field(default_factory=lambda: f"load{int(time.time())}")

    def check(self) -> None:
        if not ipaddress.ip_address(self.host).is_loopback:
            raise ValueError(f"the load generator only targets loopback, not {self.host}")
        if not 1 <= self.devices <= MAX_DEVICES:
            raise ValueError(f"devices: 1 to {MAX_DEVICES}, got {self.devices}")
        if not 0 < self.rate_per_s <= MAX_RATE:
            raise ValueError(f"rate_per_s: up to {MAX_RATE}, got {self.rate_per_s}")
        if not 0 < self.duration_s <= MAX_DURATION_S:
            raise ValueError(f"duration_s: up to {MAX_DURATION_S}, got {self.duration_s}")
        if not 1 <= self.connections <= min(MAX_CONNECTIONS, self.devices):
            raise ValueError(f"connections: 1 to min({MAX_CONNECTIONS}, devices), got {self.connections}")
        if not self.broker_ports:
            raise ValueError("no broker ports")

    @property
    def total(self) -> int:
        return int(self.rate_per_s * self.duration_s)

    def device_id(self, index: int) -> str:
        return f"{self.run_id}-{index:05d}"


@dataclass
class LoadReport:
    devices: int
    connections: int
    brokers: int
    planned: int
    sent: int
    acked: int
    send_seconds: float
    stored: int
    store_seconds: float
    stored_per_s: float
    duplicates_stored: int
    visible_samples: int
    visible_p50_ms: float
    visible_p99_ms: float
    visible_max_ms: float
    poll_ms: float
    stored_p50_ms: float
    stored_p99_ms: float
    missing: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


class _Sampler:
    """Polls the database for sampled readings and records when each became visible."""

    def __init__(self, conninfo: dict[str, object], poll_s: float) -> None:
        self._conninfo = conninfo
        self._poll_s = poll_s
        self._pending: dict[tuple[str, datetime], float] = {}
        self._lock = threading.Lock()
        self.latencies: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def add(self, device_id: str, ts: datetime, sent_wall: float) -> None:
        with self._lock:
            self._pending[(device_id, ts)] = sent_wall

    def start(self) -> None:
        self._thread.start()

    def finish(self, timeout_s: float) -> int:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if not self._pending:
                    break
            time.sleep(self._poll_s)
        self._stop.set()
        self._thread.join(5)
        return len(self._pending)

    def _run(self) -> None:
        with psycopg.connect(**self._conninfo, autocommit=True) as conn:  # type: ignore[arg-type]
            while not self._stop.is_set():
                with self._lock:
                    keys = list(self._pending)
                if keys:
                    rows = conn.execute(
                        "SELECT device_id, ts FROM readings WHERE (device_id, ts) IN "
                        "(SELECT * FROM unnest(%s::text[], %s::timestamptz[]))",
                        ([k[0] for k in keys], [k[1] for k in keys]),
                    ).fetchall()
                    now = time.time()
                    with self._lock:
                        for key in rows:
                            sent = self._pending.pop((key[0], key[1]), None)
                            if sent is not None:
                                self.latencies.append(now - sent)
                time.sleep(self._poll_s)


def run_load(
    plan: LoadPlan,
    db_conninfo: dict[str, object],
    *,
    sample_every: int = 20,
    poll_s: float = 0.02,
    drain_timeout_s: float = 60,
    progress: Callable[[str], None] = lambda _m: None,
) -> LoadReport:
    """Publish the plan, wait until everything acknowledged is stored (or the drain timeout),
    and report throughput and latency. ``db_conninfo`` reads the telemetry database."""
    plan.check()
    sampler = _Sampler(db_conninfo, poll_s)
    sampler.start()
    clients = []
    for index in range(plan.connections):
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{plan.run_id}-c{index}", protocol=mqtt.MQTTv5)
        client.username_pw_set(plan.username, plan.password)
        client.max_inflight_messages_set(2000)
        client.max_queued_messages_set(0)
        client.connect(plan.host, plan.broker_ports[index % len(plan.broker_ports)], keepalive=30)
        client.loop_start()
        clients.append(client)

    counters = {"sent": 0, "acked": 0}
    lock = threading.Lock()
    per_connection = plan.total // plan.connections
    interval = plan.connections / plan.rate_per_s
    started_wall = datetime.now(UTC)

    def publisher(index: int) -> None:
        client = clients[index]
        devices = [plan.device_id(d) for d in range(index, plan.devices, plan.connections)]
        last_ts: dict[str, datetime] = {}
        infos = []
        start = time.monotonic()
        for n in range(per_connection):
            target = start + n * interval
            delay = target - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            device_id = devices[n % len(devices)]
            now_wall = time.time()
            ts = datetime.fromtimestamp(now_wall, UTC)
            if device_id in last_ts and ts <= last_ts[device_id]:
                ts = last_ts[device_id] + timedelta(microseconds=1)  # one device, one reading per instant
            last_ts[device_id] = ts
            infos.append(
                client.publish(f"city/{plan.domain}/{device_id}/telemetry", reading({"n": n}, ts), qos=plan.qos)
            )
            if n % sample_every == 0:
                sampler.add(device_id, ts, now_wall)
        acked = 0
        for info in infos:
            try:
                info.wait_for_publish(30)
            except (RuntimeError, ValueError):
                continue
            acked += info.is_published()
        with lock:
            counters["sent"] += len(infos)
            counters["acked"] += acked

    threads = [threading.Thread(target=publisher, args=(i,), name=f"device-{i}") for i in range(plan.connections)]
    send_started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    send_seconds = time.monotonic() - send_started
    progress(f"sent {counters['sent']} (acked {counters['acked']}) in {send_seconds:.1f}s")
    for client in clients:
        client.disconnect()
        client.loop_stop()

    like = f"{plan.run_id}-%"
    deadline = time.monotonic() + drain_timeout_s
    with psycopg.connect(**db_conninfo, autocommit=True) as conn:  # type: ignore[arg-type]
        while True:
            stored = conn.execute("SELECT count(*) FROM readings WHERE device_id LIKE %s", (like,)).fetchone()[0]
            if stored >= counters["acked"] or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        missing_samples = sampler.finish(timeout_s=5)
        row = conn.execute(
            "SELECT count(*), extract(epoch FROM max(stored_at) - min(ts)), "
            "percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM stored_at - ts)), "
            "percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM stored_at - ts)) "
            "FROM readings WHERE device_id LIKE %s AND ts >= %s",
            (like, started_wall),
        ).fetchone()
    stored, span, stored_p50, stored_p99 = row
    store_seconds = float(span or 0)
    report = LoadReport(
        devices=plan.devices,
        connections=plan.connections,
        brokers=len(plan.broker_ports),
        planned=per_connection * plan.connections,
        sent=counters["sent"],
        acked=counters["acked"],
        send_seconds=round(send_seconds, 2),
        stored=int(stored),
        store_seconds=round(store_seconds, 2),
        stored_per_s=round(stored / store_seconds, 1) if store_seconds else 0.0,
        duplicates_stored=max(int(stored) - counters["acked"], 0),
        visible_samples=len(sampler.latencies),
        visible_p50_ms=round(_percentile(sampler.latencies, 0.5) * 1000, 1),
        visible_p99_ms=round(_percentile(sampler.latencies, 0.99) * 1000, 1),
        visible_max_ms=round(max(sampler.latencies, default=float("nan")) * 1000, 1),
        poll_ms=poll_s * 1000,
        stored_p50_ms=round(float(stored_p50 or 0) * 1000, 1),
        stored_p99_ms=round(float(stored_p99 or 0) * 1000, 1),
        missing=max(counters["acked"] - int(stored), 0) + missing_samples,
    )
    progress(f"stored {report.stored} ({report.stored_per_s}/s), visible p50 {report.visible_p50_ms} ms")
    return report
