"""One bounded load run against a deployed environment: N simulated devices, each its own MQTT
connection and identity, publish readings at a fixed total rate through the broker's load
balancer over TLS (QoS 1, as devices do), then it measures what the telemetry hypertable holds.

Figures:
- ``stored_per_s``: readings stored per second while the load was steady (``stored_at`` of the
  run's rows, start-up and drain trimmed, plan.sustained_rate);
- ``visible`` latency: for every ``sample_every``-th reading, from the device's publish until a
  poll of the database (read-only queries) sees the row: on the primary, and on the read
  replica open-data-api reads where the environment has one (poll interval ``poll_s``, which
  bounds the figure's precision; each poll crosses a kubectl port-forward);
- ``stored`` latency for every reading: the ingest's transaction start (``stored_at``) minus the
  device's timestamp (same host clock on the local clusters), which leaves the commit out;
- CPU per process group for the run (cpu.py) on the local clusters: what bounds the figure.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from tests.load.cpu import CpuWindow
from tests.load.deployed import Deployed
from tests.load.plan import LoadPlan, percentile, sustained_rate

CONNECT_TIMEOUT_S = 10
INFLIGHT = 1000


class _Sampler:
    """Polls one database for sampled readings and records when each became visible."""

    def __init__(self, conninfo: dict[str, Any], poll_s: float) -> None:
        self._conninfo = conninfo
        self._poll_s = poll_s
        self._pending: dict[tuple[str, datetime], float] = {}
        self._lock = threading.Lock()
        self.latencies: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)
        self.error: str = ""

    def add(self, device_id: str, ts: datetime, sent_wall: float) -> None:
        with self._lock:
            self._pending[(device_id, ts)] = sent_wall

    def start(self) -> None:
        self._thread.start()

    def finish(self, timeout_s: float) -> int:
        """Wait (bounded) until every sample was seen; how many never were."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not self._stop.is_set():
            with self._lock:
                if not self._pending:
                    break
            time.sleep(self._poll_s)
        self._stop.set()
        self._thread.join(10)
        return len(self._pending)

    def _run(self) -> None:
        try:
            with psycopg.connect(**self._conninfo, autocommit=True) as conn:
                while not self._stop.is_set():
                    with self._lock:
                        keys = list(self._pending)
                    if keys:
                        rows = conn.execute(
                            "SELECT device_id, ts FROM readings WHERE (device_id, ts) IN "
                            "(SELECT * FROM unnest(%s::text[], %s::timestamptz[]))",
                            ([k[0] for k in keys], [k[1] for k in keys]),
                        ).fetchall()
                        seen = time.time()
                        with self._lock:
                            for device_id, ts in rows:
                                sent = self._pending.pop((device_id, ts), None)
                                if sent is not None:
                                    self.latencies.append(seen - sent)
                    time.sleep(self._poll_s)
        except psycopg.Error as error:
            self.error = f"{type(error).__name__}: {error}"[:300]
            self._stop.set()


@dataclass
class LoadReport:
    environment: str
    devices: int
    threads: int
    certificates: bool
    """Whether the devices logged in with their own certificates (else their class's password)."""
    planned: int
    rate_per_s: float
    sent: int
    acked: int
    publish_seconds: float
    publish_rate_per_s: float
    stored: int
    stored_per_s: float
    drain_seconds: float
    """From the last publish until every acknowledged reading was stored."""
    missing: int
    """Acknowledged readings the hypertable did not hold when the drain ended."""
    unseen_samples: dict[str, int]
    """Sampled readings each poller never saw (its database, its deadline)."""
    visible_samples: dict[str, int]
    visible_p50_ms: dict[str, float]
    visible_p99_ms: dict[str, float]
    visible_max_ms: dict[str, float]
    poll_ms: float
    puback_p50_ms: float
    """From the device's publish to the broker's acknowledgement (device and broker side alone)."""
    puback_p99_ms: float
    stored_p50_ms: float
    stored_p99_ms: float
    cpu: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _connect(env: Deployed, device_id: str) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device_id, protocol=mqtt.MQTTv5)
    login = env.login()
    if login is not None:
        client.username_pw_set(*login)
    client.tls_set_context(env.tls(device_id))
    client.max_inflight_messages_set(INFLIGHT)
    client.max_queued_messages_set(0)
    connected = threading.Event()
    refused: list[Any] = []

    def on_connect(_c, _u, _f, reason, _p) -> None:  # noqa: ANN001 - paho's callback signature
        if reason.is_failure:
            refused.append(reason)
        connected.set()

    client.on_connect = on_connect
    client.connect(*env.broker, keepalive=60)
    client.loop_start()
    if not connected.wait(CONNECT_TIMEOUT_S) or refused:
        client.loop_stop()
        raise RuntimeError(f"{device_id}: no CONNACK or refused ({refused}) from {env.broker}")
    return client


def _close(clients: list[mqtt.Client]) -> None:
    for client in clients:
        client.disconnect()
        client.loop_stop()


def run_load(
    env: Deployed,
    plan: LoadPlan,
    *,
    poll_s: float = 0.05,
    drain_timeout_s: float = 120,
    cpu_pods: dict[str, str] | None = None,
    progress=lambda _m: None,  # noqa: ANN001
) -> LoadReport:
    """Publish the plan, wait until everything acknowledged is stored (bounded), report; the
    devices' certificates (where they use them) are deleted in any case."""
    plan.check()
    try:
        began = time.monotonic()
        env.prepare_devices(plan.device_ids)
        with ThreadPoolExecutor(8) as pool:
            clients = list(pool.map(lambda d: _connect(env, d), plan.device_ids))
        how = "own certificates" if env.certificates else f"{env.device_class}'s password"
        progress(f"{plan.devices} devices connected over TLS to {env.broker[0]}:{env.broker[1]} with {how} "
                 f"in {time.monotonic() - began:.1f}s")  # fmt: skip
        try:
            return _publish_and_measure(env, plan, clients, poll_s, drain_timeout_s, cpu_pods, progress)
        finally:
            _close(clients)
    finally:
        env.retire_devices()


def _publish_and_measure(env, plan, clients, poll_s, drain_timeout_s, cpu_pods, progress) -> LoadReport:  # noqa: ANN001, PLR0913
    counters = {"sent": 0, "acked": 0}
    lock = threading.Lock()
    pubacks: list[float] = []
    sent_at: list[dict[int, float]] = [{} for _ in clients]
    for index, client in enumerate(clients):

        def on_publish(_c, _u, mid, _reason, _p, index: int = index) -> None:  # noqa: ANN001 - paho's signature
            sent = sent_at[index].pop(mid, None)
            if sent is not None:
                pubacks.append(time.monotonic() - sent)

        client.on_publish = on_publish
    interval = plan.threads / plan.rate_per_s
    started_wall = datetime.now(UTC) - timedelta(seconds=1)
    with env.databases() as databases:
        samplers = {role: _Sampler(info, poll_s) for role, info in databases.items()}
        for sampler in samplers.values():
            sampler.start()

        def publisher(thread: int) -> None:
            devices = plan.devices_of(thread)
            ids = [plan.device_ids[d] for d in devices]
            topics = [env.topic(i) for i in ids]
            last_ts: dict[str, datetime] = {}
            infos = []
            start = time.monotonic()
            for n in range(plan.per_thread):
                delay = start + n * interval - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                which = n % len(devices)
                index, device_id = devices[which], ids[which]
                client = clients[index]
                now = time.time()
                ts = datetime.fromtimestamp(now, UTC)
                if device_id in last_ts and ts <= last_ts[device_id]:
                    ts = last_ts[device_id] + timedelta(microseconds=1)  # (device, ts) is the key
                last_ts[device_id] = ts
                payload = f'{{"ts":"{ts.isoformat()}","metrics":{{"n":{n}}}}}'
                published_at = time.monotonic()
                info = client.publish(topics[which], payload, qos=1)
                sent_at[index].setdefault(info.mid, published_at)  # unless its PUBACK already came
                infos.append(info)
                if n % plan.sample_every == 0:
                    for sampler in samplers.values():
                        sampler.add(device_id, ts, now)
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

        cpu = CpuWindow(cpu_pods or {})
        threads = [threading.Thread(target=publisher, args=(i,), name=f"devices-{i}") for i in range(plan.threads)]
        began = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        publish_seconds = time.monotonic() - began
        progress(f"published {counters['sent']} (acknowledged {counters['acked']}) in {publish_seconds:.1f}s")

        like = f"{plan.run_id}-%"
        deadline = time.monotonic() + drain_timeout_s
        drained_at = time.monotonic()
        with psycopg.connect(**databases["primary"], autocommit=True) as conn:
            while True:
                stored = conn.execute("SELECT count(*) FROM readings WHERE device_id LIKE %s", (like,)).fetchone()[0]
                drained_at = time.monotonic()
                if stored >= counters["acked"] or drained_at > deadline:
                    break
                time.sleep(0.2)
            cpu_used = cpu.read()
            unseen = {role: s.finish(timeout_s=10) for role, s in samplers.items()}
            rows = conn.execute(
                "SELECT extract(epoch FROM stored_at), extract(epoch FROM stored_at - ts) FROM readings "
                "WHERE device_id LIKE %s AND ts >= %s",
                (like, started_wall),
            ).fetchall()
    stored_at = [float(r[0]) for r in rows]
    lag = [float(r[1]) for r in rows]
    latencies = {role: s.latencies for role, s in samplers.items()}
    for role, sampler in samplers.items():
        if sampler.error:
            progress(f"sampler on the {role} stopped: {sampler.error}")

    def ms(values: list[float], q: float) -> float:
        return round(percentile(values, q) * 1000, 1)

    report = LoadReport(
        environment=plan.environment,
        devices=plan.devices,
        threads=plan.threads,
        certificates=env.certificates,
        planned=plan.total,
        rate_per_s=plan.rate_per_s,
        sent=counters["sent"],
        acked=counters["acked"],
        publish_seconds=round(publish_seconds, 2),
        publish_rate_per_s=round(counters["sent"] / publish_seconds, 1) if publish_seconds else 0.0,
        stored=len(rows),
        stored_per_s=round(sustained_rate(stored_at), 1),
        drain_seconds=round(drained_at - began - publish_seconds, 1),
        missing=max(counters["acked"] - len(rows), 0),
        unseen_samples=unseen,
        visible_samples={role: len(v) for role, v in latencies.items()},
        visible_p50_ms={role: ms(v, 0.5) for role, v in latencies.items()},
        visible_p99_ms={role: ms(v, 0.99) for role, v in latencies.items()},
        visible_max_ms={role: ms(v, 1.0) for role, v in latencies.items()},
        poll_ms=poll_s * 1000,
        puback_p50_ms=ms(pubacks, 0.5),
        puback_p99_ms=ms(pubacks, 0.99),
        stored_p50_ms=ms(lag, 0.5),
        stored_p99_ms=ms(lag, 0.99),
        cpu=cpu_used,
    )
    progress(
        f"stored {report.stored} ({report.stored_per_s}/s steady); PUBACK p50/p99 {report.puback_p50_ms}/"
        f"{report.puback_p99_ms} ms; visible p50/p99 "
        + ", ".join(f"{r} {report.visible_p50_ms[r]}/{report.visible_p99_ms[r]} ms" for r in latencies)
    )
    return report
