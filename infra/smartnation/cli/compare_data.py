"""What `smartnation compare` reads on each side, and how two readings are compared.

A reading (``Snapshot``) holds, per section, one fingerprint per item:

- ``tables``: per database and table, the row count and an order-independent checksum (the sum
  of each row's 64-bit md5 prefix, over the row's text in a session fixed to UTC and ISO dates,
  so both sites print a row alike): ``rows=<n> sum=<s>``;
- ``chunks``: the same per TimescaleDB chunk, named by hypertable and time range (chunk names
  differ between a source and a logically replicated or restored copy; their ranges do not);
- ``objects``: per ``<bucket>/<key>``, its size and sha256; ``buckets``: the object count per bucket;
- ``devices``: per registered device id, the md5 of its registry row;
- ``retained``: per topic, the sha256 of the retained message a subscriber gets at once.

Every item present on one side only, or with another fingerprint, is a ``Difference``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from smartnation.cli.restore_pod import USER_TABLES

SECTIONS = ("tables", "chunks", "objects", "buckets", "devices", "retained")
MARKER = "SNCMP"
"""Lines the in-Pod readers print: ``SNCMP|<section>|<key>|<fingerprint>`` (key may hold ``|``)."""

# A table's fingerprint, inside format()'s literal (quotes doubled): rows, and the sum of each
# row's 64-bit md5 prefix (a numeric sum: no overflow, and the order of the rows does not count).
_FINGERPRINT = "count(*) || '' sum='' || coalesce(sum((''x'' || left(md5(t::text), 16))::bit(64)::bigint), 0)"

# Per database: every user table, never the extensions' own catalogs; a hypertable per chunk,
# and as a whole from its chunks (HYPERTABLE lines name them; Snapshot.add_lines adds their
# chunks' counts and sums: a hypertable's rows are its chunks' rows, so it is read once, not twice,
# which halves the reading of a large one, and a move's cutover reads inside its write pause).
# psql variables: db. The session settings make a row's text the same on both sides.
HYPERTABLE = "hypertables"
_TABLES = f"""\
SELECT format('SELECT %L || {_FINGERPRINT} FROM %I.%I AS t',
              '{MARKER}|tables|' || :'db' || '.' || nspname || '.' || relname || '|rows=', nspname, relname)
FROM (SELECT n.nspname, c.relname {USER_TABLES}) AS u"""
DATABASE_SQL = f"""\
SET timezone = 'UTC';
SET datestyle = 'ISO, YMD';
SET extra_float_digits = 1;
SET intervalstyle = 'postgres';
SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'timescaledb') AS has_timescaledb \\gset
\\if :has_timescaledb
SELECT '{MARKER}|{HYPERTABLE}|' || :'db' || '.' || hypertable_schema || '.' || hypertable_name || '|'
FROM timescaledb_information.hypertables ORDER BY 1;
{_TABLES}
WHERE NOT EXISTS (SELECT FROM timescaledb_information.hypertables h
                  WHERE h.hypertable_schema = u.nspname AND h.hypertable_name = u.relname) \\gexec
SELECT format('SELECT %L || {_FINGERPRINT} FROM %I.%I AS t',
              '{MARKER}|chunks|' || :'db' || '.' || hypertable_schema || '.' || hypertable_name || ' ['
                  || coalesce(range_start::text, range_start_integer::text) || ', '
                  || coalesce(range_end::text, range_end_integer::text) || ')|rows=',
              chunk_schema, chunk_name)
FROM timescaledb_information.chunks
ORDER BY hypertable_schema, hypertable_name, range_start, range_start_integer \\gexec
\\else
{_TABLES} \\gexec
\\endif
"""

# The device registry's table (services/device_registry/database.py): psql variables db, table.
DEVICES_SQL = f"""\
SET timezone = 'UTC';
SET datestyle = 'ISO, YMD';
SET extra_float_digits = 1;
SELECT '{MARKER}|devices|' || id || '|' || md5(t::text) FROM {{table}} AS t WHERE retired_at IS NULL ORDER BY id;
"""

# Run by a city API's Python (its image has boto3 and paho-mqtt) inside the environment's
# namespace, whose NetworkPolicies let that API reach the object storage and the broker. Its
# input (one JSON line on stdin) carries the object storage's credentials, never an argument;
# ``listing_only`` reads each object's name and size alone (a move's wait for its mirror);
# ``etags`` adds each object's ETag from the listing (a move's cutover tells by it which objects
# changed since it hashed them); ``hash_only`` (bucket/key names) hashes those alone. Objects
# are read READERS at a time (boto3's client is thread-safe), so round trips overlap. On the local
# clusters that did not shorten a move's verification of 10,000 small objects (73 s one at a time,
# 70 s so): likely the reader's own CPU limit, not measured.
READERS = 8
STORE_AND_BROKER_PY = f"""\
import hashlib, json, os, sys, threading, time, uuid
from urllib.parse import urlsplit
given = json.loads(sys.stdin.readline())
def say(section, key, value):
    print("{MARKER}|" + section + "|" + key + "|" + value, flush=True)
if given.get("storage"):
    import boto3
    from botocore.config import Config
    from concurrent.futures import ThreadPoolExecutor
    s3 = boto3.client("s3", endpoint_url=os.environ["S3_ENDPOINT"], region_name="us-east-1",
                      aws_access_key_id=given["storage"]["user"], aws_secret_access_key=given["storage"]["password"],
                      config=Config(s3={{"addressing_style": "path"}}, signature_version="s3v4",
                                    max_pool_connections={READERS}))
    from botocore.exceptions import ClientError
    GONE = "gone"
    def sha256_of(bucket, key):
        digest = hashlib.sha256()
        try:
            body = s3.get_object(Bucket=bucket, Key=key)["Body"]
        except ClientError as error:
            # Deleted between the listing and the read (a mirror or a device's API at work): not
            # there any more, so not in this reading, rather than a failed reading.
            if error.response.get("Error", {{}}).get("Code") in ("NoSuchKey", "404"):
                return GONE
            raise
        for chunk in body.iter_chunks(1 << 20):
            digest.update(chunk)
        return digest.hexdigest()
    with ThreadPoolExecutor({READERS}) as pool:
        for bucket in sorted(b["Name"] for b in s3.list_buckets()["Buckets"]):
            items = [item for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
                     for item in page.get("Contents", [])]
            only = given.get("hash_only")
            if only is not None:
                wanted = set(only)
                hashed = [item for item in items if bucket + "/" + item["Key"] in wanted]
                found = dict(zip([item["Key"] for item in hashed],
                                 pool.map(lambda item: sha256_of(bucket, item["Key"]), hashed)))
                digests = [found.get(item["Key"]) for item in items]
            elif given.get("listing_only"):
                digests = [None] * len(items)
            else:
                digests = pool.map(lambda item: sha256_of(bucket, item["Key"]), items)
            kept = [(item, digest) for item, digest in zip(items, digests) if digest != GONE]
            for item, digest in kept:
                value = "size=%d" % item["Size"]
                if given.get("etags"):
                    value += " etag=" + item["ETag"].strip('"')
                say("objects", bucket + "/" + item["Key"], value if digest is None else value + " sha256=" + digest)
            say("buckets", bucket, "objects=%d" % len(kept))
if given.get("topics"):
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    url = urlsplit(os.environ["MQTT_URL"])
    got, subscribed = {{}}, threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="smartnation-compare-" + uuid.uuid4().hex[:8],
                         protocol=mqtt.MQTTv5)
    client.username_pw_set(os.environ["MQTT_USERNAME"], os.environ["MQTT_PASSWORD"])
    if url.scheme == "mqtts":
        client.tls_set()
    def on_connect(c, userdata, flags, reason, properties):
        c.subscribe([(t, 1) for t in given["topics"]])
    def on_message(c, userdata, message):
        if message.retain:
            got[message.topic] = hashlib.sha256(message.payload).hexdigest()
    client.on_connect = on_connect
    client.on_subscribe = lambda *a: subscribed.set()
    client.on_message = on_message
    client.connect(url.hostname, url.port or (8883 if url.scheme == "mqtts" else 1883))
    client.loop_start()
    if not subscribed.wait(30):
        sys.exit("the broker did not acknowledge the subscription in 30 s")
    time.sleep(given.get("settle", 3))
    client.disconnect()
    client.loop_stop()
    for topic in sorted(got):
        say("retained", topic, "sha256=" + got[topic])
print("{MARKER}-DONE", flush=True)
"""


@dataclass
class Snapshot:
    """One side's reading: section -> item -> fingerprint."""

    where: str
    """Which cluster and namespace it was read from (for the report)."""
    sections: dict[str, dict[str, str]] = field(default_factory=lambda: {s: {} for s in SECTIONS})

    def add_lines(self, text: str) -> int:
        """Takes every ``SNCMP|section|key|fingerprint`` line of ``text``; returns how many. A
        hypertable named by a HYPERTABLE line becomes a ``tables`` item made of its chunks: rows
        and sums added (rows=0 sum=0 with none)."""
        taken = 0
        hypertables = []
        for line in text.splitlines():
            if not line.startswith(MARKER + "|"):
                continue
            head, fingerprint = line.rsplit("|", 1)
            _, section, key = head.split("|", 2)
            if section == HYPERTABLE:
                hypertables.append(key)
                continue
            if section not in self.sections:
                raise ValueError(f"unknown section {section!r} in {line!r}")
            self.sections[section][key] = fingerprint
            taken += 1
        for table in hypertables:
            rows = total = 0
            for key, value in self.sections["chunks"].items():
                if key.startswith(table + " ["):
                    fields = dict(part.split("=", 1) for part in value.split())
                    rows, total = rows + int(fields["rows"]), total + int(fields["sum"])
            self.sections["tables"][table] = f"rows={rows} sum={total}"
            taken += 1
        return taken

    def counts(self) -> dict[str, int]:
        return {s: len(items) for s, items in self.sections.items()}


@dataclass(frozen=True)
class Difference:
    section: str
    key: str
    source: str | None
    """The fingerprint on the source side; None when the item is not there."""
    target: str | None

    def describe(self) -> str:
        if self.source is None:
            return f"{self.section} {self.key}: only on the target ({self.target})"
        if self.target is None:
            return f"{self.section} {self.key}: only on the source ({self.source})"
        return f"{self.section} {self.key}: source {self.source}, target {self.target}"


def differences(source: Snapshot, target: Snapshot, sections: Iterable[str] = SECTIONS) -> list[Difference]:
    found = []
    for section in sections:
        left, right = source.sections.get(section, {}), target.sections.get(section, {})
        for key in sorted(left.keys() | right.keys()):
            if left.get(key) != right.get(key):
                found.append(Difference(section, key, left.get(key), right.get(key)))
    return found


def report(source: Snapshot, target: Snapshot, found: list[Difference]) -> dict:
    """The report file's content (JSON): both sides' counts, every difference, the verdict."""
    return {
        "source": source.where,
        "target": target.where,
        "counts": {"source": source.counts(), "target": target.counts()},
        "equal": not found,
        "differences": [
            {"section": d.section, "key": d.key, "source": d.source, "target": d.target, "what": d.describe()}
            for d in found
        ],
    }


def summary_lines(source: Snapshot, target: Snapshot, found: list[Difference]) -> list[str]:
    """One line a section (items on each side, differences), then each difference (at most 50)."""
    per_section: Mapping[str, int] = {s: sum(1 for d in found if d.section == s) for s in SECTIONS}
    lines = [
        f"{s:9} source {len(source.sections[s]):6}  target {len(target.sections[s]):6}  "
        f"{'equal' if not per_section[s] else str(per_section[s]) + ' DIFFERENT'}"
        for s in SECTIONS
    ]
    lines += [f"  {d.describe()}" for d in found[:50]]
    if len(found) > 50:
        lines.append(f"  ... and {len(found) - 50} more (see the report file)")
    return lines


def dump(data: dict) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"
