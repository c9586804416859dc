"""open-data-api against the real daemons, end to end: a device publishes through a broker pod,
telemetry-ingest stores it, and open-data-api (as the read-only ``open_data`` role on the read
host) returns it; published datasets come from MinIO's ``open-data`` bucket."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import boto3
import httpx
import psycopg
import pytest

from service_testing.daemons import Platform, RunningService, start_service, wait_until
from service_testing.devices import Device, reading

pytestmark = pytest.mark.contract

E2E_BOUND_S = 10  # issue 9: readings appear in open-data-api within 10 s by default


@pytest.fixture(scope="module")
def services(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    workdir = tmp_path_factory.mktemp("open-data")
    ingest = start_service("telemetry_ingest", platform.env("telemetry-ingest"), workdir)
    api = start_service("open_data_api", platform.env("open-data-api"), workdir)
    try:
        for service in (ingest, api):
            wait_until(lambda s=service: httpx.get(f"{s.url}/readyz").status_code == 200, 30, what=f"{service.name}")
        yield api
    finally:
        assert api.terminate() == 0
        assert ingest.terminate() == 0


@pytest.fixture()
def api(services: RunningService) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=services.url, timeout=15) as client:
        yield client


def test_a_published_reading_is_served_within_the_bound(api: httpx.Client, platform: Platform) -> None:
    device_id = f"t-{uuid.uuid4().hex[:10]}"
    user, password = platform.device_credentials("traffic-sensor")
    device = Device(platform.brokers.ports[0], user, password)
    try:
        sent = time.monotonic()
        device.publish(f"city/traffic/{device_id}/telemetry", reading({"vehicles": 12, "speed_kmh": 31.5}))
        latest = wait_until(
            lambda: (r := api.get(f"/v1/devices/{device_id}/latest")).status_code == 200 and r.json(),
            E2E_BOUND_S,
            0.05,
            what="the reading in open-data-api",
        )
        elapsed = time.monotonic() - sent
    finally:
        device.close()
    assert latest["domain"] == "traffic" and latest["metrics"] == {"vehicles": 12, "speed_kmh": 31.5}
    assert elapsed < E2E_BOUND_S
    everyone = api.get("/v1/latest", params={"domain": "traffic"}).json()
    assert device_id in [row["device_id"] for row in everyone]


def test_time_ranges_with_a_bucket_size(api: httpx.Client, platform: Platform) -> None:
    device_id = f"p-{uuid.uuid4().hex[:10]}"
    user, password = platform.device_credentials("parking-sensor")
    device = Device(platform.brokers.ports[1], user, password)
    start = (datetime.now(UTC) - timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    try:
        # Two 10-minute buckets: occupancy 0,1,2 then 10,20.
        for minutes, value in ((1, 0), (2, 1), (3, 2), (11, 10), (12, 20)):
            device.publish(
                f"city/parking/{device_id}/telemetry", reading({"occupied": value}, start + timedelta(minutes=minutes))
            )
    finally:
        device.close()
    params = {"start": start.isoformat(), "end": (start + timedelta(minutes=20)).isoformat()}
    raw = wait_until(
        lambda: len((r := api.get(f"/v1/devices/{device_id}/readings", params=params).json())["readings"]) == 5 and r,
        what="five readings",
    )
    assert [row["metrics"]["occupied"] for row in raw["readings"]] == [0, 1, 2, 10, 20]
    bucketed = api.get(
        f"/v1/devices/{device_id}/readings", params=params | {"bucket": "10m", "metric": "occupied"}
    ).json()["buckets"]
    assert [(b["count"], b["avg"], b["min"], b["max"]) for b in bucketed] == [(3, 1.0, 0.0, 2.0), (2, 15.0, 10.0, 20.0)]
    too_fine = api.get(
        f"/v1/devices/{device_id}/readings",
        params={"start": "2026-01-01T00:00:00Z", "bucket": "1s", "metric": "occupied"},
    )
    assert too_fine.status_code == 422


def test_published_datasets_are_listed_and_served(api: httpx.Client, platform: Platform) -> None:
    root = boto3.client(
        "s3", endpoint_url=platform.minio.endpoint, aws_access_key_id=platform.minio.root_user,
        aws_secret_access_key=platform.minio.root_password, region_name="us-east-1",
    )  # fmt: skip
    name = f"parking/occupancy-{uuid.uuid4().hex[:6]}.csv"
    root.put_object(Bucket="open-data", Key=name, Body=b"zone,occupied\nA,12\n", ContentType="text/csv")
    listed = api.get("/v1/datasets", params={"prefix": "parking/"}).json()
    assert name in [item["name"] for item in listed]
    download = api.get(f"/v1/datasets/{name}")
    assert download.status_code == 200 and download.content == b"zone,occupied\nA,12\n"
    assert download.headers["content-type"].startswith("text/csv")
    assert api.get("/v1/datasets/no/such/file.csv").status_code == 404


def test_its_database_role_cannot_write(platform: Platform) -> None:
    """Read-only twice over: the open_data role's grants, and default_transaction_read_only."""
    env = platform.env("open-data-api")
    with psycopg.connect(
        host=env["PGHOST_READONLY"], port=int(env["PGPORT"]), dbname=env["PGDATABASE"], user=env["PGUSER"],
        password=env["PGPASSWORD"], autocommit=True,
    ) as conn:  # fmt: skip
        assert conn.execute("SELECT count(*) >= 0 FROM readings").fetchone() == (True,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM readings")
