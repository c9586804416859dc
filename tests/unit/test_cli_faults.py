"""What a killed update or promotion leaves, read as data: lock holders, stale or live; pending
operations and the recovery steps; unfinished promotions in the audit log; the atomic file write
(killed for real, many times) and a torn audit line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from smartnation.cli.audit_log import AuditEntry, append_audit, read_audit
from smartnation.cli.interrupted import classify, pending_operations
from smartnation.cli.locks import LockHolder, _file_holders, pid_alive, s3_location
from smartnation.cli.promotion_runs import INTERRUPTED, STARTED, unfinished, what_happened
from smartnation.cli.releases_copy import unfinished_writes, write_atomically

pytestmark = pytest.mark.unit

HOST = "ops-host"


def holder(pid: int | None = 4242, host: str | None = HOST) -> LockHolder:
    return LockHolder(
        where="/state/.pulumi/locks/organization/p/dev/x.json", pid=pid, username="root", hostname=host, timestamp="t"
    )


# --- locks ------------------------------------------------------------------------------------


def test_a_lock_file_is_read_as_the_engine_writes_it():
    text = json.dumps({"pid": 77, "username": "ana", "hostname": "h1", "timestamp": "2026-11-29T02:00:00Z"})
    read = LockHolder.from_json("f.json", text)
    assert (read.pid, read.username, read.hostname, read.timestamp) == (77, "ana", "h1", "2026-11-29T02:00:00Z")
    assert read.describe() == "ana@h1 (pid 77) since 2026-11-29T02:00:00Z [f.json]"


@pytest.mark.parametrize("text", ["", "{", "[]", '{"pid": "12"}', '{"pid": true}'])
def test_an_unreadable_lock_file_is_a_holder_without_a_pid(text):
    assert LockHolder.from_json("f.json", text).pid is None


def test_only_a_dead_process_on_this_host_makes_a_lock_stale():
    dead, alive = (lambda pid: False), (lambda pid: True)
    assert holder().is_stale(HOST, dead)
    assert not holder().is_stale(HOST, alive)
    assert not holder(host="other-host").is_stale(HOST, dead), "another host's update may still run"
    assert not holder(pid=None).is_stale(HOST, dead), "no pid: nothing proves it gone"


def test_pid_alive_tells_a_running_a_reaped_and_a_zombie_process():
    assert pid_alive(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not pid_alive(child.pid)
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while Path(f"/proc/{zombie.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert not pid_alive(zombie.pid), "a zombie has exited: its lock is stale"
    zombie.wait()


def test_the_file_backend_lock_files_are_found_in_both_layouts(tmp_path: Path):
    new = tmp_path / ".pulumi/locks/organization/smartnation-it/dev"
    old = tmp_path / ".pulumi/locks/dev"
    other = tmp_path / ".pulumi/locks/organization/smartnation-it/staging"
    for folder in (new, old, other):
        folder.mkdir(parents=True)
    (new / "a.json").write_text(json.dumps({"pid": 1, "hostname": "h"}))
    (old / "b.json").write_text("garbage")
    (other / "c.json").write_text("{}")
    found = _file_holders(tmp_path, "smartnation-it", "dev")
    assert [Path(h.where).name for h in found] == ["a.json", "b.json"]
    assert found[0].pid == 1 and found[1].pid is None


def test_an_s3_backend_url_gives_bucket_prefix_and_endpoint():
    url = "s3://pulumi-state/teams/ops?endpoint=127.0.0.1:9000&disableSSL=true&s3ForcePathStyle=true&region=eu-west-3"
    assert s3_location(url) == (
        "pulumi-state",
        "teams/ops/",
        {"endpoint_url": "http://127.0.0.1:9000", "region_name": "eu-west-3"},
    )
    assert s3_location("s3://b") == ("b", "", {})
    assert s3_location("s3://b?endpoint=minio:9000")[2]["endpoint_url"] == "https://minio:9000"


# --- pending operations -------------------------------------------------------------------------

DEPLOYMENT = {
    "resources": [],
    "pending_operations": [
        {
            "resource": {
                "urn": "urn:pulumi:dev::p::kubernetes:apps/v1:StatefulSet::dev-broker",
                "type": "kubernetes:apps/v1:StatefulSet",
            },
            "type": "creating",
        },
        {
            "resource": {
                "urn": "urn:pulumi:dev::p::kubernetes:core/v1:Service::dev-db",
                "type": "kubernetes:core/v1:Service",
            },
            "type": "updating",
        },
    ],
}


def test_pending_operations_are_read_from_the_exported_state():
    found = pending_operations(DEPLOYMENT)
    assert [(p.kind, p.type) for p in found] == [
        ("creating", "kubernetes:apps/v1:StatefulSet"),
        ("updating", "kubernetes:core/v1:Service"),
    ]
    assert found[0].describe() == "creating kubernetes:apps/v1:StatefulSet dev-broker"
    assert pending_operations({"resources": []}) == [] == pending_operations(None)


def test_a_healthy_stack_is_not_interrupted():
    found = classify("dev", [], {"resources": []}, HOST, lambda pid: True)
    assert not found.found and not found.live


def test_a_live_holder_is_not_an_interruption_but_a_lock():
    found = classify("dev", [holder()], {"resources": []}, HOST, lambda pid: True)
    assert not found.found and found.live == [holder()]


def test_an_interrupted_update_names_what_it_left_and_the_exact_steps():
    found = classify("dev", [holder()], DEPLOYMENT, HOST, lambda pid: False)
    assert found.found and not found.live
    text = found.describe()
    assert "stale lock" in text and "pid 4242" in text and "2 pending operation(s)" in text and "dev-broker" in text
    steps = found.recovery_steps()
    assert steps[0].startswith("pulumi cancel --yes --stack dev")
    assert steps[1].startswith("pulumi refresh --yes --clear-pending-creates --stack dev")
    assert steps[2].startswith("smartnation up dev")


def test_pending_operations_alone_need_no_cancel():
    steps = classify("dev", [], DEPLOYMENT, HOST, lambda pid: False).recovery_steps()
    assert not any("cancel" in s for s in steps) and "refresh" in steps[0]


# --- promotions that never ended -----------------------------------------------------------------

RELEASES = {"chart_version": "0.3.0"}


def entry(result: str, run: str, when: str = "t1") -> dict:
    return {
        "when": when,
        "who": "ana",
        "source": "staging",
        "target": "production",
        "result": result,
        "releases": RELEASES,
        "extra": {"run": run},
    }


def test_a_started_promotion_without_an_end_is_unfinished():
    entries = [
        entry(STARTED, "a"),
        entry("applied", "a"),
        entry(STARTED, "b"),
        entry(STARTED, "c"),
        entry(INTERRUPTED, "c"),
    ]
    assert [e["extra"]["run"] for e in unfinished(entries, "production")] == ["b"]
    assert unfinished(entries, "staging") == []
    assert unfinished([{"result": "applied"}, {"result": STARTED, "target": "production"}], "production") == []


def test_what_a_killed_promotion_left_is_told_from_the_target_file():
    written = what_happened(entry(STARTED, "b"), RELEASES, "environments/production.yaml")
    assert written.run == "b" and "holds the releases it promoted" in written.message
    assert "smartnation up production" in written.message
    not_written = what_happened(entry(STARTED, "b"), {"chart_version": "0.2.0"}, "environments/production.yaml")
    assert "never written" in not_written.message


# --- atomic write, torn audit lines ----------------------------------------------------------


def test_write_atomically_keeps_the_mode_and_leaves_no_temporary_file(tmp_path: Path):
    path = tmp_path / "production.yaml"
    path.write_text("old\n")
    path.chmod(0o640)
    write_atomically(path, "new\n")
    assert path.read_text() == "new\n" and path.stat().st_mode & 0o777 == 0o640
    assert unfinished_writes(path) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["production.yaml"]


def test_a_write_that_fails_before_the_rename_leaves_the_old_file_and_no_temporary(tmp_path: Path, monkeypatch):
    path = tmp_path / "production.yaml"
    path.write_text("old\n")

    def crash(*_):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        write_atomically(path, "new\n")
    assert path.read_text() == "old\n" and unfinished_writes(path) == []


WRITER = """
import sys
from pathlib import Path
from smartnation.cli.releases_copy import write_atomically
path, texts = Path(sys.argv[1]), [Path(sys.argv[2]).read_text(), Path(sys.argv[3]).read_text()]
print("ready", flush=True)
i = 0
while True:
    write_atomically(path, texts[i % 2])
    i += 1
"""


def test_a_writer_killed_at_random_points_always_leaves_a_whole_file(tmp_path: Path):
    """kill -9 of a process rewriting the file in a loop, 40 times at random moments: the file
    is always exactly the old or the new text, never a mix or a truncation."""
    path, old, new = tmp_path / "production.yaml", tmp_path / "old", tmp_path / "new"
    old.write_text("releases:\n" + "  a: 1\n" * 20000)
    new.write_text("releases:\n" + "  b: 2\n" * 30000)
    path.write_text(old.read_text())
    texts = {old.read_text(), new.read_text()}
    for attempt in range(40):
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), str(old), str(new)], stdout=subprocess.PIPE, text=True
        )
        assert writer.stdout.readline().strip() == "ready"
        time.sleep(0.002 * (attempt % 17))
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
        writer.stdout.close()
        assert path.read_text() in texts, f"attempt {attempt}: a torn file"
    leftovers = unfinished_writes(path)
    assert all(p.name.startswith(".production.yaml.") for p in leftovers)  # what the next promote removes


def test_a_torn_last_audit_line_never_breaks_the_audit_and_the_next_entry_starts_a_line(tmp_path: Path, caplog):
    first = AuditEntry(when="t1", who="ana", source="staging", target="production", result="applied", reason="ok")
    append_audit(tmp_path, first)
    log = tmp_path / "audit" / "promotions.jsonl"
    with log.open("a") as stream:
        stream.write('{"when":"t2","who":"bo')  # a writer killed mid-line
    assert [e["when"] for e in read_audit(tmp_path)] == ["t1"]
    assert "line 2" in caplog.text and "torn" in caplog.text
    append_audit(
        tmp_path, AuditEntry(when="t3", who="cy", source="staging", target="production", result="refused", reason="r")
    )
    assert [e["when"] for e in read_audit(tmp_path)] == ["t1", "t3"]
    assert log.read_text().endswith("\n") and log.read_text().count("\n") == 3
