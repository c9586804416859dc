"""Seeding an environment at a city's scale for the move's test and benchmark: registered devices
and their readings written straight into the source's primary (SQL, so a million readings take
seconds), objects of mixed sizes into its three buckets through its telemetry-ingest Pod."""

from __future__ import annotations

import json

from smartnation.cli import compare

ENVIRONMENT = "dev"
SOURCE = "dusseldorf-test"


def devices_sql(count: int, label: str) -> str:
    """``count`` registered devices ``sensor-00000`` on, of the four classes in turn."""
    return f"""\
INSERT INTO devices (id, device_class, latitude, longitude, location_label)
SELECT 'sensor-' || lpad(i::text, 5, '0'), (ARRAY['traffic', 'parking', 'lighting', 'air'])[1 + i % 4],
       43.72 + (i % 100) * 0.0001, 7.41 + (i / 100) * 0.0001, '{label}'
FROM generate_series(0, {count - 1}) AS i;
"""


def readings_sql(first: int, count: int, devices: int) -> str:
    """``count`` readings numbered from ``first``: reading i is device i mod ``devices``'s (i div
    ``devices``)-th, 100 minutes after its previous one; for 10,000 devices a million span a week
    of one-day chunks."""
    return f"""\
INSERT INTO readings (device_id, ts, domain, metrics, received_at, stored_at)
SELECT 'sensor-' || lpad((i % {devices})::text, 5, '0'),
       timestamptz '2026-11-20 00:00:00+00' + (i / {devices}) * interval '100 minutes'
           + (i % {devices}) * interval '1 ms',
       'traffic', jsonb_build_object('vehicles', i % 997, 'speed_kmh', 30 + i % 41),
       timestamptz '2026-11-28 00:00:00+00', timestamptz '2026-11-28 00:00:01+00'
FROM generate_series({first}, {first + count - 1}) AS i;
"""


# In the telemetry-ingest Pod (boto3, 16 at a time; the root credentials on stdin): ``count``
# objects numbered from ``first`` into the three buckets, 1 MiB every 200th, else 1-16 KiB; its
# bytes derived from the key. Prints the bytes written.
OBJECTS_PY = """
import hashlib, json, os, sys
from concurrent.futures import ThreadPoolExecutor
import boto3
from botocore.config import Config
given = json.loads(sys.stdin.readline())
s3 = boto3.client("s3", endpoint_url=os.environ["S3_ENDPOINT"], region_name="us-east-1",
                  aws_access_key_id=given["user"], aws_secret_access_key=given["password"],
                  config=Config(s3={"addressing_style": "path"}, signature_version="s3v4",
                                max_pool_connections=16))
buckets = ("telemetry-archive", "open-data", "backups")
def put(i):
    key = "bench/%s/object-%06d.bin" % (given["prefix"], i)
    size = 1 << 20 if i % 200 == 0 else 1024 * (1 + i % 16)
    block = hashlib.sha256(key.encode()).digest() * 32
    s3.put_object(Bucket=buckets[i % 3], Key=key, Body=(block * (size // len(block) + 1))[:size])
    return size
with ThreadPoolExecutor(16) as pool:
    print(sum(pool.map(put, range(given["first"], given["first"] + given["count"]))))
"""


def write_objects(namespace: str, first: int, count: int, prefix: str, cluster: str = SOURCE) -> int:
    """``count`` objects written on ``cluster`` (OBJECTS_PY); the bytes written."""
    side = compare.side_of(ENVIRONMENT, cluster, namespace)
    pod, container = side.running_pod(compare.reader_selector(ENVIRONMENT))
    root = f"{ENVIRONMENT}-object-storage-root"
    given = {"user": side.secret_value(root, "MINIO_ROOT_USER"),
             "password": side.secret_value(root, "MINIO_ROOT_PASSWORD"),
             "first": first, "count": count, "prefix": prefix}  # fmt: skip
    said = side.kubectl("exec", "-i", pod, "-c", container, "--", "python3.11", "-c", OBJECTS_PY,
                        input=json.dumps(given) + "\n", timeout=3600)  # fmt: skip
    return int(said.strip())
