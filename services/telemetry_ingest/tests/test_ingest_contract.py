"""telemetry-ingest against the real daemons: two independent Mosquitto brokers (two broker
pods) with the project's ACLs, PostgreSQL 15 + TimescaleDB with the project's roles, and MinIO
set up by the program's own script. The service runs as its container runs it
(``python -m telemetry_ingest``), configured only by the variables the chart sets."""

from __future__ import annotations

import contextlib
import gzip
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import httpx
import pytest
from psycopg_pool import ConnectionPool

from service_testing.daemons import Platform, RunningService, start_service, wait_until
from service_testing.devices import Device, reading
from telemetry_ingest.database import HeldForSource, ReadingStore, Written
from telemetry_ingest.validation import Reading

pytestmark = pytest.mark.contract


@pytest.fixture(scope="module")
def ingest(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    env = platform.env("telemetry-ingest") | {"ARCHIVE_INTERVAL_SECONDS": "3600"}
    service = start_service("telemetry_ingest", env, tmp_path_factory.mktemp("ingest"))
    wait_until(lambda: httpx.get(f"{service.url}/readyz").status_code == 200, 30, what="ingest ready")
    yield service
    service.terminate()


@pytest.fixture()
def devices(platform: Platform) -> Iterator[list[Device]]:
    """A parking sensor connected to each broker pod."""
    user, password = platform.device_credentials("parking-sensor")
    connected = [Device(port, user, password) for port in platform.brokers.ports]
    yield connected
    for device in connected:
        device.close()


def stored(platform: Platform, device_id: str) -> int:
    return int(platform.postgres.sql(f"SELECT count(*) FROM readings WHERE device_id = '{device_id}'", "telemetry"))


def stats(service: RunningService) -> dict:
    return httpx.get(f"{service.url}/v1/stats").json()


def new_id() -> str:
    return f"p-{uuid.uuid4().hex[:10]}"


def test_the_readings_table_is_a_hypertable(platform: Platform, ingest: RunningService) -> None:
    names = platform.postgres.sql("SELECT hypertable_name FROM timescaledb_information.hypertables", "telemetry")
    assert names.split() == ["readings"]


def test_readings_on_every_broker_pod_reach_the_hypertable(
    platform: Platform, ingest: RunningService, devices: list[Device]
) -> None:
    ids = [new_id() for _ in devices]
    for device, device_id in zip(devices, ids, strict=True):
        device.publish(f"city/parking/{device_id}/telemetry", reading({"occupied": 1}))
    for device_id in ids:
        wait_until(lambda device_id=device_id: stored(platform, device_id) == 1, what=f"{device_id} stored")
    row = platform.postgres.sql(f"SELECT domain, metrics FROM readings WHERE device_id = '{ids[1]}'", "telemetry")
    assert row == 'parking|{"occupied": 1}'


def test_a_reading_delivered_twice_is_stored_once(
    platform: Platform, ingest: RunningService, devices: list[Device]
) -> None:
    device_id = new_id()
    payload = reading({"occupied": 0}, ts=time.time())
    before = stats(ingest)["duplicates"]
    devices[0].publish(f"city/parking/{device_id}/telemetry", payload)
    wait_until(lambda: stored(platform, device_id) == 1, what="first copy stored")
    # The same reading again: a QoS 1 redelivery on the same pod, and a re-send via the other pod.
    devices[0].publish(f"city/parking/{device_id}/telemetry", payload)
    devices[1].publish(f"city/parking/{device_id}/telemetry", payload)
    wait_until(lambda: stats(ingest)["duplicates"] >= before + 2, what="duplicates counted")
    assert stored(platform, device_id) == 1


def test_malformed_messages_are_counted_and_the_service_stays_up(
    platform: Platform, ingest: RunningService, devices: list[Device]
) -> None:
    device_id = new_id()
    topic = f"city/parking/{device_id}/telemetry"
    before = stats(ingest)["rejected"]
    bad = {
        "not_json": [b"\x00\xff garbage", b"{"],
        "schema": [b"[]", b'{"metrics": {"a": 1}}'],
        "ts": [b'{"ts": "not a time", "metrics": {"a": 1}}'],
        "metrics": [reading({"a": "high"}).encode()],  # type: ignore[dict-item]
        "ts_too_old": [b'{"ts": 1, "metrics": {"a": 1}}'],
        "too_large": [b"x" * 20_000],
    }
    for payloads in bad.values():
        for payload in payloads:
            devices[0].publish(topic, payload)
    devices[0].publish("city/parking/bad*id/telemetry", reading({"a": 1}))
    devices[0].publish(topic, reading({"occupied": 1}))  # after all that, a good one

    wait_until(lambda: stored(platform, device_id) == 1, what="the valid reading after the bad ones")
    after = stats(ingest)["rejected"]
    for reason, payloads in bad.items():
        assert after.get(reason, 0) - before.get(reason, 0) == len(payloads), reason
    assert after.get("topic", 0) - before.get("topic", 0) == 1
    assert ingest.proc.poll() is None
    assert httpx.get(f"{ingest.url}/healthz").status_code == 200
    assert 'ingest_messages_rejected_total{reason="not_json"}' in httpx.get(f"{ingest.url}/metrics").text


def test_readyz_turns_false_while_the_database_is_down_and_nothing_is_lost(
    platform: Platform, ingest: RunningService, devices: list[Device]
) -> None:
    device_id = new_id()
    platform.postgres.stop()
    try:
        response = wait_until(
            lambda: (r := httpx.get(f"{ingest.url}/readyz", timeout=10)).status_code == 503 and r,
            what="readyz 503",
        )
        checks = response.json()["checks"]
        assert checks["database"]["ok"] is False
        assert checks["brokers"]["ok"] is True and checks["storage"]["ok"] is True
        # Published while the database is down: the broker has it, the ingest holds it unacknowledged.
        devices[1].publish(f"city/parking/{device_id}/telemetry", reading({"occupied": 1}))
        time.sleep(1)
        assert httpx.get(f"{ingest.url}/healthz").status_code == 200
    finally:
        platform.postgres.start()
    wait_until(lambda: httpx.get(f"{ingest.url}/readyz", timeout=10).status_code == 200, 30, what="ready again")
    wait_until(lambda: stored(platform, device_id) == 1, 30, what="the reading from the outage stored")


FENCE = "ALTER SYSTEM SET default_transaction_read_only = on"
ENDED = (
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
    "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
)


@contextlib.contextmanager
def fenced(platform: Platform) -> Iterator[None]:
    """What a move's cutover does to the old site's database: read-only by default for every new
    transaction, every session ended. A hot standby refuses writes with the same SQLSTATE (25006)."""
    platform.postgres.sql(FENCE)
    try:
        platform.postgres.sql("SELECT pg_reload_conf()")
        wait_until(lambda: platform.postgres.sql("SHOW default_transaction_read_only") == "on", 10, what="fenced")
        platform.postgres.sql(ENDED)
        yield
    finally:
        platform.postgres.sql("ALTER SYSTEM RESET default_transaction_read_only")
        platform.postgres.sql("SELECT pg_reload_conf()")


def test_a_fenced_database_keeps_the_ingest_ready_and_its_readings_wait(
    platform: Platform, ingest: RunningService, devices: list[Device], tmp_path: Path
) -> None:
    """A move's cutover fences the old site's database (read-only by default, every session ended)
    and its new site runs the ingest against a standby: the ingest connects, stays ready and
    holds the readings it cannot store, unacknowledged; once the database takes writes they are
    stored. A second ingest started while the database is fenced becomes ready too."""
    device_id = new_id()
    with fenced(platform):
        devices[0].publish(f"city/parking/{device_id}/telemetry", reading({"occupied": 1}))
        time.sleep(3)
        assert stored(platform, device_id) == 0, "nothing stored while fenced"
        assert httpx.get(f"{ingest.url}/readyz", timeout=10).status_code == 200, "its probes still answer"
        env = platform.env("telemetry-ingest") | {"ARCHIVE_INTERVAL_SECONDS": "3600", "HOSTNAME": "second-ingest"}
        (tmp_path / "second").mkdir()
        second = start_service("telemetry_ingest", env, tmp_path / "second")
        try:
            wait_until(lambda: httpx.get(f"{second.url}/readyz").status_code == 200, 30, what="a new ingest ready")
        finally:
            second.terminate()
    wait_until(lambda: stored(platform, device_id) == 1, 30, what="the reading held during the fence stored")


SOURCE_METRICS = {"occupied": 7}


def store_as_source(platform: Platform, device_id: str, times: list[datetime]) -> None:
    """Rows as the old site's ingest stores them and replication brings them (here, before the fence)."""
    values = ", ".join(
        f"('{device_id}', '{ts.isoformat()}', 'parking', '{json.dumps(SOURCE_METRICS)}', now())" for ts in times
    )
    platform.postgres.sql(
        f"INSERT INTO readings (device_id, ts, domain, metrics, received_at) VALUES {values}", "telemetry"
    )


def stamps(count: int) -> list[datetime]:
    start = datetime.now(UTC) - timedelta(seconds=30)
    return [start + timedelta(milliseconds=n, microseconds=n) for n in range(count)]


def stored_by_source_metric(service: RunningService) -> float:
    for line in httpx.get(f"{service.url}/metrics").text.splitlines():
        if line.startswith("ingest_readings_stored_by_source_total "):
            return float(line.split()[1])
    raise AssertionError("no ingest_readings_stored_by_source_total in /metrics")


def test_on_a_fenced_database_readings_its_source_stored_are_acknowledged_without_a_write(
    platform: Platform, ingest: RunningService, devices: list[Device]
) -> None:
    """A move's new site: the bridge delivers to its ingest every reading the old site's ingest
    stores, which replication brings to the standby. Readings already there are acknowledged,
    not held for the whole replicate phase (the broker's queue would overflow and drop)."""
    device_id = new_id()
    readings_ts = stamps(3)
    store_as_source(platform, device_id, readings_ts)
    before, metric_before = stats(ingest), stored_by_source_metric(ingest)
    with fenced(platform):
        for n, ts in enumerate(readings_ts):
            devices[n % 2].publish(f"city/parking/{device_id}/telemetry", reading(SOURCE_METRICS, ts=ts))
        after = wait_until(
            lambda: (s := stats(ingest))["stored_by_source"] >= before["stored_by_source"] + 3 and s,
            30,
            what="the readings acknowledged as stored by the source while fenced",
        )
        assert platform.postgres.sql("SHOW default_transaction_read_only") == "on", "still fenced: nothing written"
        assert after["stored"] == before["stored"]
        assert after["duplicates"] - before["duplicates"] == 3
        assert after["batches"] > before["batches"]  # a batch counts once its readings are acknowledged
        assert stored_by_source_metric(ingest) - metric_before == 3
    assert stored(platform, device_id) == 3


def test_on_a_fenced_database_a_batch_missing_a_reading_is_held_then_stored_once_writes_are_back(
    platform: Platform, ingest: RunningService, devices: list[Device]
) -> None:
    """Two readings the source stored and one it did not (yet): the one is held, unacknowledged,
    while the database takes no writes; once it does, it is stored and the others are duplicates."""
    device_id = new_id()
    readings_ts = stamps(3)
    store_as_source(platform, device_id, readings_ts[:2])
    before = stats(ingest)
    with fenced(platform):
        for ts in readings_ts:
            devices[0].publish(f"city/parking/{device_id}/telemetry", reading({"occupied": 1}, ts=ts))
        wait_until(
            lambda: "not stored yet; held until" in stats(ingest)["last_error"],
            30,
            what="the batch held for its source",
        )
        time.sleep(1)
        assert stored(platform, device_id) == 2
        assert httpx.get(f"{ingest.url}/readyz", timeout=10).status_code == 200
    wait_until(lambda: stored(platform, device_id) == 3, 30, what="the held reading stored once writes are back")
    after = wait_until(
        lambda: (s := stats(ingest))["stored"] + s["duplicates"] >= before["stored"] + before["duplicates"] + 3 and s,
        what="the batch counted",
    )
    assert (after["stored"] - before["stored"], after["duplicates"] - before["duplicates"]) == (1, 2)
    metrics = platform.postgres.sql(
        f"SELECT metrics FROM readings WHERE device_id = '{device_id}' ORDER BY ts", "telemetry"
    ).splitlines()
    assert metrics == [json.dumps(SOURCE_METRICS)] * 2 + ['{"occupied": 1}'], "the source's rows are kept"


def test_the_store_on_a_fenced_database_acknowledges_only_what_it_holds(platform: Platform) -> None:
    """The store itself, as the ingest's role, one batch at a time: the whole batch is held while
    one of its readings is missing, and written (the present ones skipped by the key) once the
    database takes writes."""
    env = platform.env("telemetry-ingest")
    conninfo = {"host": env["PGHOST"], "port": env["PGPORT"], "dbname": env["PGDATABASE"],
                "user": env["PGUSER"], "password": env["PGPASSWORD"]}  # fmt: skip
    device_id = new_id()
    now = datetime.now(UTC)
    batch = [Reading(device_id, "parking", ts, '{"occupied": 1}', now) for ts in stamps(3)]
    store_as_source(platform, device_id, [r.ts for r in batch[:2]])
    with fenced(platform):
        pool = ConnectionPool(kwargs=conninfo, min_size=1, open=True)
        try:
            store = ReadingStore(pool)
            assert store.write_batch(batch[:2]) == Written(0, 2, 2)
            with pytest.raises(HeldForSource, match="1 of 3 readings not stored yet"):
                store.write_batch(batch)
            assert stored(platform, device_id) == 2
        finally:
            pool.close()

    def written() -> Written | None:
        with ConnectionPool(kwargs=conninfo, min_size=1) as writable:
            try:
                return ReadingStore(writable).write_batch(batch)
            except HeldForSource:
                return None  # the reload not seen yet

    assert wait_until(written, 10, what="writes back") == Written(1, 2, 0)
    assert stored(platform, device_id) == 3


def test_closed_hours_are_archived_to_the_bucket(
    platform: Platform, ingest: RunningService, devices: list[Device], tmp_path: Path
) -> None:
    hour = (datetime.now(UTC) - timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
    device_id = new_id()
    for minute in range(5):
        devices[minute % 2].publish(
            f"city/parking/{device_id}/telemetry", reading({"occupied": minute}, ts=hour + timedelta(minutes=minute))
        )
    wait_until(lambda: stored(platform, device_id) == 5, what="old readings stored")
    # A second replica: its archiver runs at start (the first one's runs hourly). The advisory
    # lock and archived_hours keep the two from archiving an hour twice.
    env = platform.env("telemetry-ingest") | {"ARCHIVE_INTERVAL_SECONDS": "1", "ARCHIVE_GRACE_SECONDS": "0"}
    second = start_service("telemetry_ingest", env, tmp_path)
    try:
        key = f"readings/{hour:%Y/%m/%d/%H}.csv.gz"
        s3 = boto3.client(
            "s3", endpoint_url=platform.minio.endpoint, aws_access_key_id=platform.minio.root_user,
            aws_secret_access_key=platform.minio.root_password, region_name="us-east-1",
        )  # fmt: skip

        def archived() -> bytes | None:
            try:
                return s3.get_object(Bucket="telemetry-archive", Key=key)["Body"].read()
            except s3.exceptions.NoSuchKey:
                return None

        body = wait_until(archived, 30, what=f"{key} in telemetry-archive")
        lines = gzip.decompress(body).decode().splitlines()
        assert lines[0] == "device_id,ts,domain,metrics"
        assert sum(1 for line in lines if line.startswith(device_id)) == 5
        recorded = platform.postgres.sql(
            f"SELECT object_key, readings FROM archived_hours WHERE hour = '{hour.isoformat()}'", "telemetry"
        )
        assert recorded == f"{key}|{len(lines) - 1}"
    finally:
        assert second.terminate() == 0


def test_sigterm_drains_the_queue_and_exits_zero(platform: Platform, devices: list[Device], tmp_path: Path) -> None:
    service = start_service("telemetry_ingest", platform.env("telemetry-ingest"), tmp_path)
    wait_until(lambda: httpx.get(f"{service.url}/readyz").status_code == 200, 30, what="ready")
    device_id = new_id()
    start = datetime.now(UTC) - timedelta(seconds=10)
    infos = [
        devices[i % 2].publish_async(
            f"city/parking/{device_id}/telemetry", reading({"n": i}, ts=start + timedelta(milliseconds=i))
        )
        for i in range(500)
    ]
    for info in infos:
        info.wait_for_publish(10)
    assert service.terminate() == 0
    assert '"message": "ingest stopped"' in service.logs()
    # Whatever the stopped replica had taken, it stored before it left (the module's ingest, in
    # the same shared subscription, stores the rest).
    wait_until(lambda: stored(platform, device_id) == 500, 30, what="all 500 stored")


def test_one_broker_pod_away_is_a_normal_state(
    platform: Platform, ingest: RunningService, devices: list[Device]
) -> None:
    """docs/broker-ha.md: the ingest keeps the other pods, stays ready, and re-subscribes to the
    pod when it is back."""
    platform.brokers.stop(0)
    try:
        response = wait_until(
            lambda: "disconnected" in (r := httpx.get(f"{ingest.url}/readyz")).text and r, what="broker 0 seen gone"
        )
        assert response.status_code == 200 and response.json()["checks"]["brokers"]["ok"] is True
        device_id = new_id()
        devices[1].publish(f"city/parking/{device_id}/telemetry", reading({"occupied": 1}))
        wait_until(lambda: stored(platform, device_id) == 1, what="a reading through the remaining pod")
    finally:
        platform.brokers.start(0)
    wait_until(lambda: "disconnected" not in httpx.get(f"{ingest.url}/readyz").text, 30, what="broker 0 back")
    user, password = platform.device_credentials("parking-sensor")
    back = Device(platform.brokers.ports[0], user, password)
    try:
        device_id = new_id()
        back.publish(f"city/parking/{device_id}/telemetry", reading({"occupied": 1}))
        wait_until(lambda: stored(platform, device_id) == 1, what="a reading through the returned pod")
    finally:
        back.close()


def test_a_crashed_ingest_gets_its_unacknowledged_readings_again(
    platform: Platform, ingest: RunningService, devices: list[Device], tmp_path: Path
) -> None:
    """At-least-once across a crash: readings the ingest held but had not stored (the database
    was down) when it was killed come back to the restarted container, which has the same pod
    name, hence the same client ids and MQTT sessions."""
    env = platform.env("telemetry-ingest") | {"HOSTNAME": f"telemetry-ingest-crash-{uuid.uuid4().hex[:6]}"}
    crashing = start_service("telemetry_ingest", env, tmp_path)
    wait_until(lambda: httpx.get(f"{crashing.url}/readyz").status_code == 200, 30, what="ready")
    device_id = new_id()
    platform.postgres.stop()
    try:
        for n in range(40):
            devices[n % 2].publish(f"city/parking/{device_id}/telemetry", reading({"n": n}, ts=time.time() + n / 1000))
        # Both members of the share group hold some of them, unacknowledged.
        wait_until(lambda: "store failed" in crashing.logs(), 30, what="the crashing ingest holds readings")
        crashing.kill()
    finally:
        platform.postgres.start()
    restarted = start_service("telemetry_ingest", env, tmp_path)
    try:
        wait_until(lambda: stored(platform, device_id) == 40, 60, what="all 40 stored after the crash")
    finally:
        assert restarted.terminate() == 0


def test_the_service_writes_nothing_outside_tmp(ingest: RunningService) -> None:
    """A read-only root filesystem in the pod: the service opens no file for writing."""
    fds = Path(f"/proc/{ingest.proc.pid}/fd")
    written = []
    for fd in fds.iterdir():
        try:
            target = fd.readlink()
        except OSError:
            continue
        flags = int((Path(f"/proc/{ingest.proc.pid}/fdinfo") / fd.name).read_text().split("flags:")[1].split()[0], 8)
        if str(target).startswith("/") and flags & 0o3 and not str(target).startswith(("/tmp", "/dev")):
            written.append(str(target))
    assert written == [str(ingest.log)] or written == [], written
