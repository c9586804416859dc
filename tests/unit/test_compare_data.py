"""`smartnation compare`'s comparison: what the in-Pod readers print becomes a reading, and two
readings differ exactly where an item is missing on one side or has another fingerprint."""

from __future__ import annotations

import json

import pytest

from smartnation.cli.compare_data import MARKER, SECTIONS, Snapshot, differences, dump, report, summary_lines

pytestmark = pytest.mark.unit

PRINTED = f"""\
{MARKER}|tables|telemetry.public.readings|rows=300 sum=-123
{MARKER}|chunks|telemetry.public.readings [2026-11-27 00:00:00+00, 2026-11-28 00:00:00+00)|rows=84 sum=7
{MARKER}|objects|open-data/a|b.csv|size=3 sha256=ab
{MARKER}|buckets|open-data|objects=1
{MARKER}|devices|traffic-000|0f0f
{MARKER}|retained|city/traffic/traffic-000/telemetry|sha256=cd
psql: a notice that is not ours
{MARKER}-DONE
"""


def reading(where: str = "a", text: str = PRINTED) -> Snapshot:
    snapshot = Snapshot(where)
    snapshot.add_lines(text)
    return snapshot


def test_printed_lines_become_a_reading_keys_may_hold_the_separator() -> None:
    snapshot = reading()
    assert snapshot.counts() == dict.fromkeys(SECTIONS, 1)
    assert snapshot.sections["objects"] == {"open-data/a|b.csv": "size=3 sha256=ab"}
    assert snapshot.sections["tables"]["telemetry.public.readings"] == "rows=300 sum=-123"


def test_an_unknown_section_is_an_error_not_ignored() -> None:
    with pytest.raises(ValueError, match="unknown section"):
        Snapshot("a").add_lines(f"{MARKER}|queues|x|1")


def test_equal_readings_have_no_difference() -> None:
    assert differences(reading("a"), reading("b")) == []


@pytest.mark.parametrize("section", SECTIONS)
def test_a_changed_fingerprint_in_any_section_is_named(section: str) -> None:
    other = reading("b")
    key = next(iter(other.sections[section]))
    other.sections[section][key] += "x"
    found = differences(reading("a"), other)
    assert [(d.section, d.key) for d in found] == [(section, key)]
    assert "source" in found[0].describe() and "target" in found[0].describe()


def test_an_item_on_one_side_only_is_named_with_its_side() -> None:
    source, target = reading("a"), reading("b")
    del target.sections["devices"]["traffic-000"]
    target.sections["objects"]["open-data/new"] = "size=1 sha256=ee"
    found = {d.key: d.describe() for d in differences(source, target)}
    assert found["traffic-000"].endswith("only on the source (0f0f)")
    assert found["open-data/new"].endswith("only on the target (size=1 sha256=ee)")


def test_the_report_says_where_counts_and_every_difference() -> None:
    source, target = reading("dus/ns"), reading("mco/ns")
    target.sections["tables"]["telemetry.public.readings"] = "rows=299 sum=-1"
    found = differences(source, target)
    data = json.loads(dump(report(source, target, found)))
    assert (data["source"], data["target"], data["equal"]) == ("dus/ns", "mco/ns", False)
    assert data["differences"][0]["key"] == "telemetry.public.readings"
    lines = summary_lines(source, target, found)
    assert any(line.startswith("tables") and "1 DIFFERENT" in line for line in lines)
    assert json.loads(dump(report(source, reading("x"), [])))["equal"] is True


# --- The in-Pod reader's object modes, run by this Python against a stand-in boto3 -------------

FAKE_BOTO3 = """
import io

import json, os

OBJECTS = {"open-data": {"a.csv": b"abc", "big.bin": b"x" * 5}, "backups": {"d.gz": b""}}
GETS = []
# Key -> the error code its read gets: listed, then deleted before it was read (or refused).
GONE = json.loads(os.environ.get("FAKE_GONE", "{}"))


class _Body:
    def __init__(self, data):
        self.data = data

    def iter_chunks(self, size):
        yield self.data


class _Pages:
    def paginate(self, Bucket):
        contents = [{"Key": k, "Size": len(v), "ETag": '"etag-%s"' % k} for k, v in sorted(OBJECTS[Bucket].items())]
        return [{"Contents": contents}]


class _S3:
    def list_buckets(self):
        return {"Buckets": [{"Name": name} for name in OBJECTS]}

    def get_paginator(self, name):
        return _Pages()

    def get_object(self, Bucket, Key):
        GETS.append(Bucket + "/" + Key)
        print("GET " + Bucket + "/" + Key)
        if Key in GONE:
            from botocore.exceptions import ClientError
            raise ClientError({"Error": {"Code": GONE[Key]}}, "GetObject")
        return {"Body": _Body(OBJECTS[Bucket][Key])}


def client(*args, **kwargs):
    return _S3()
"""


def _run_reader(tmp_path, given: dict, gone: dict | None = None, check: bool = True) -> list[str]:
    import subprocess
    import sys

    from smartnation.cli.compare_data import STORE_AND_BROKER_PY

    (tmp_path / "boto3.py").write_text(FAKE_BOTO3)
    (tmp_path / "botocore").mkdir(exist_ok=True)
    (tmp_path / "botocore" / "__init__.py").write_text("")
    (tmp_path / "botocore" / "config.py").write_text("class Config:\n    def __init__(self, **kw): pass\n")
    (tmp_path / "botocore" / "exceptions.py").write_text(
        "class ClientError(Exception):\n"
        "    def __init__(self, response, operation):\n"
        "        super().__init__(response['Error']['Code'])\n"
        "        self.response = response\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", STORE_AND_BROKER_PY],
        input=json.dumps({"storage": {"user": "u", "password": "p"}, "topics": [], **given}) + "\n",
        capture_output=True, text=True, timeout=60, check=check,
        env={"PYTHONPATH": str(tmp_path), "S3_ENDPOINT": "https://minio:9000", "PATH": "/usr/bin:/bin",
             "FAKE_GONE": json.dumps(gone or {})},
    )  # fmt: skip
    return done.stdout.splitlines() if check else [str(done.returncode), *done.stderr.splitlines()]


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def test_the_reader_lists_hashes_all_or_only_the_named_objects(tmp_path) -> None:
    listed = _run_reader(tmp_path, {"listing_only": True, "etags": True})
    assert [line for line in listed if line.startswith("GET ")] == [], "a listing downloads nothing"
    assert f"{MARKER}|objects|open-data/a.csv|size=3 etag=etag-a.csv" in listed
    assert f"{MARKER}|buckets|open-data|objects=2" in listed and listed[-1] == f"{MARKER}-DONE"

    some = _run_reader(tmp_path, {"listing_only": True, "etags": True, "hash_only": ["open-data/big.bin"]})
    assert [line for line in some if line.startswith("GET ")] == ["GET open-data/big.bin"]
    assert f"{MARKER}|objects|open-data/big.bin|size=5 etag=etag-big.bin sha256={_sha(b'xxxxx')}" in some
    assert f"{MARKER}|objects|open-data/a.csv|size=3 etag=etag-a.csv" in some, "the others only listed"

    full = _run_reader(tmp_path, {"listing_only": False})
    assert sorted(line for line in full if line.startswith("GET ")) == [
        "GET backups/d.gz", "GET open-data/a.csv", "GET open-data/big.bin"
    ]  # fmt: skip
    assert f"{MARKER}|objects|open-data/a.csv|size=3 sha256={_sha(b'abc')}" in full, "no ETag unless asked"
    assert f"{MARKER}|objects|backups/d.gz|size=0 sha256={_sha(b'')}" in full


@pytest.mark.parametrize("code", ["NoSuchKey", "404"])
def test_an_object_deleted_between_the_listing_and_its_read_is_not_in_the_reading(tmp_path, code) -> None:
    """A mirror or an API deletes while the reader runs: the object listed but gone when read is
    left out (and out of its bucket's count), not a failed reading; the others are read as ever."""
    read = _run_reader(tmp_path, {"listing_only": False}, gone={"big.bin": code})
    assert "GET open-data/big.bin" in read
    assert not [line for line in read if "open-data/big.bin|" in line], read
    assert f"{MARKER}|objects|open-data/a.csv|size=3 sha256={_sha(b'abc')}" in read
    assert f"{MARKER}|buckets|open-data|objects=1" in read and f"{MARKER}|buckets|backups|objects=1" in read
    assert read[-1] == f"{MARKER}-DONE"


def test_a_read_refused_for_another_reason_fails_the_reading(tmp_path) -> None:
    read = _run_reader(tmp_path, {"listing_only": False}, gone={"big.bin": "AccessDenied"}, check=False)
    assert read[0] != "0" and read[-1].endswith("AccessDenied"), read


def test_a_hypertable_is_the_sum_of_its_chunks_read_once():
    """Named by a hypertables line, a hypertable's table item is its chunks' rows and sums added
    (each chunk read once; the whole, the same rows, not read again); none: rows=0 sum=0."""
    day1, day2 = "[2026-11-27 00:00:00+00, 2026-11-28 00:00:00+00)", "[2026-11-28 00:00:00+00, 2026-11-29 00:00:00+00)"
    text = "\n".join([
        f"{MARKER}|hypertables|telemetry.public.readings|",
        f"{MARKER}|hypertables|telemetry.public.empty|",
        f"{MARKER}|tables|telemetry.public.archived_hours|rows=2 sum=5",
        f"{MARKER}|chunks|telemetry.public.readings {day1}|rows=84 sum=-9223372036854775808",
        f"{MARKER}|chunks|telemetry.public.readings {day2}|rows=16 sum=-7",
        f"{MARKER}|chunks|telemetry.public.readings_2 {day2}|rows=1 sum=1",
    ])  # fmt: skip
    snapshot = Snapshot("a")
    assert snapshot.add_lines(text) == 6
    assert snapshot.sections["tables"] == {
        "telemetry.public.archived_hours": "rows=2 sum=5",
        "telemetry.public.readings": "rows=100 sum=-9223372036854775815",
        "telemetry.public.empty": "rows=0 sum=0",
    }
    assert "hypertables" not in snapshot.sections


def test_the_database_reading_names_hypertables_and_reads_them_by_chunk_only():
    from smartnation.cli.compare_data import DATABASE_SQL

    with_timescale, without = DATABASE_SQL.split("\\else")
    assert "timescaledb_information.hypertables ORDER BY 1;" in with_timescale
    assert "WHERE NOT EXISTS (SELECT FROM timescaledb_information.hypertables h" in with_timescale
    assert "FROM timescaledb_information.chunks" in with_timescale
    assert "hypertables" not in without and "|tables|" in without
