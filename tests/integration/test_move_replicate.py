"""The replicate phase of a move on real Pods (docs/move.md): dev deployed on Düsseldorf with
readings; `move: {to: monaco-onprem, phase: replicate}` previews with nothing of Düsseldorf
replaced or deleted, and `pulumi up` makes Monaco's database a hot standby streaming from
Düsseldorf's primary over the site link (TLS verify-full against Düsseldorf's CA), which sees
it connect from the link address; the lag reaches 0, the rows (hypertable chunks included)
compare equal, and rows written on Düsseldorf afterwards arrive. Removing `move:` again (the
rollback from replicate) removes Monaco's side and leaves Düsseldorf's primary untouched.
`smartnation move dev --status --json` (the real CLI) reads it all live: no move declared before,
then the phase, both namespaces, the standby in recovery and the walsender from the link address.
`smartnation move dev --to monaco-onprem --yes` (the real driver) applies the replicate phase:
its preview and `smartnation up` run the policy pack, which judges each object against the
cluster it lands on (Monaco's standby against Monaco's registry and storage classes) and admits
the published database Service only as the move declares it (the link address alone); then it
waits for lag 0 and verifies by data (a report with equal fingerprints), each step audited and
recorded. The published primary's node port (Düsseldorf's profile allocates node ports) lets the
link address through and drops the host beside the node. Killed with -9 in its lag wait (a
fresh run, Monaco's replay paused so the lag stays above 0), the driver run again does not redo
the preview or the apply (no new stack update), waits until the resumed replay catches up and
verifies: 400 readings on both sides, equal fingerprints.

Needs what `make clusters` starts: both clusters, their real nodes and the site link.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from smartnation.cli import compare, exit_codes
from smartnation.cli.compare_data import DATABASE_SQL, Snapshot, differences
from smartnation.program.components.database import PORT as POSTGRES_PORT
from smartnation.tooling.local_clusters import site_link
from tests.integration import node_pods, primary_sql
from tests.integration.platform_project import PROJECT, REPO, PlatformProject

pytestmark = pytest.mark.integration

ENVIRONMENT = "dev"
# Its own project: under the session's default name, its Monaco side would be the shared dev's
# namespace (conftest.dev_on_monaco), which the rollback deletes.
NAME = f"{PROJECT}-mv"
NAMESPACE = f"{NAME}-{ENVIRONMENT}"
SOURCE, TARGET = "dusseldorf-test", "monaco-onprem"
LINK_ADDRESS = "10.213.0.253"
"""The site link's router on Düsseldorf's link: where Monaco's connections arrive from."""
PRIMARY = f"{ENVIRONMENT}-database-primary-0"
BROKER = f"{ENVIRONMENT}-broker-0"
MOVE = "move: {to: monaco-onprem, phase: replicate}\n"
# The ingest's hourly archiver writes on its own; hold it so both sides are still when compared.
HOLD_ARCHIVER = """
city_apis:
  telemetry_ingest:
    extra_env: {ARCHIVE_GRACE_SECONDS: "2592000"}
"""
UNSAFE_OPS = {"replace", "create-replacement", "delete-replaced"}


def _readings(first: int, count: int) -> str:
    """``count`` readings three days apart in chunks (17 minutes each), numbered from ``first``."""
    return f"""\
INSERT INTO readings (device_id, ts, domain, metrics, received_at, stored_at)
SELECT 'traffic-' || lpad((i % 5)::text, 3, '0'), timestamptz '2026-11-27 00:00:00+00' + i * interval '17 minutes',
       'traffic', jsonb_build_object('vehicles', i), timestamptz '2026-11-29 00:00:00+00',
       timestamptz '2026-11-29 00:00:01+00'
FROM generate_series({first}, {first + count - 1}) AS i;
"""


def _psql(tools, context: str, database: str, sql: str) -> str:
    return primary_sql.psql(tools, context, NAMESPACE, ENVIRONMENT, database, sql)


# Objects written on Düsseldorf through its telemetry-ingest Pod (boto3, the object storage's root
# credentials on stdin): (bucket, key, size) each, its bytes derived from the key; or a delete.
OBJECTS_PY = """
import hashlib, json, os, sys
import boto3
from botocore.config import Config
given = json.loads(sys.stdin.readline())
s3 = boto3.client("s3", endpoint_url=os.environ["S3_ENDPOINT"], region_name="us-east-1",
                  aws_access_key_id=given["user"], aws_secret_access_key=given["password"],
                  config=Config(s3={"addressing_style": "path"}, signature_version="s3v4"))
for op, bucket, key, size in given["ops"]:
    if op == "delete":
        s3.delete_object(Bucket=bucket, Key=key)
        continue
    block = hashlib.sha256(key.encode()).digest() * 2048
    body = (block * (size // len(block) + 1))[:size]
    s3.put_object(Bucket=bucket, Key=key, Body=body)
print("done", len(given["ops"]))
"""
SEEDED = [("put", "telemetry-archive", f"2026/11/2{i % 7}/part-{i:03d}.jsonl.gz", 37 * i * i) for i in range(1, 25)] + [
    ("put", "open-data", "parking/occupancy.csv", 0),
    ("put", "open-data", "lights/energy-2026-11.parquet", 6 * 1024 * 1024 + 5),  # multipart on the way over
    ("put", "backups", "manual/dev-before-move.sql.gz", 300_000),
]
"""27 objects of mixed sizes, an empty one and one of 6 MiB among them, in the three buckets."""


def _write_objects(
    tools, ops: list[tuple[str, str, str, int]], namespace: str = NAMESPACE, cluster: str = SOURCE
) -> None:
    """``ops`` on ``cluster``'s MinIO of ``namespace`` (Düsseldorf's by default), through its telemetry-ingest Pod."""
    side = compare.side_of(ENVIRONMENT, cluster, namespace)
    pod, container = side.running_pod(compare.reader_selector(ENVIRONMENT))
    root = f"{ENVIRONMENT}-object-storage-root"
    given = {"user": side.secret_value(root, "MINIO_ROOT_USER"),
             "password": side.secret_value(root, "MINIO_ROOT_PASSWORD"), "ops": ops}  # fmt: skip
    said = side.kubectl("exec", "-i", pod, "-c", container, "--", "python3.11", "-c", OBJECTS_PY,
                        input=json.dumps(given) + "\n", timeout=600)  # fmt: skip
    assert said.strip() == f"done {len(ops)}", said


def _objects(cluster: str) -> Snapshot:
    """compare's object fingerprints (sha256 each) of one side: Düsseldorf's through its
    telemetry-ingest Pod, Monaco's through the bucket mirror's reader."""
    side = compare.side_of(ENVIRONMENT, cluster, NAMESPACE)
    reader = None if cluster == SOURCE else compare.mirror_reader(ENVIRONMENT)
    return compare.read_objects(side, reader)


def _until(what: str, fetch, expected: str, seconds: float = 180.0) -> float:
    """``fetch()`` until it returns ``expected``; the seconds it took, or its last value in the failure."""
    began, last = time.monotonic(), None
    while time.monotonic() - began < seconds:
        last = fetch()
        if last == expected:
            return time.monotonic() - began
        time.sleep(2)
    raise AssertionError(f"{what}: not within {seconds:.0f} s; last: {last!r}")


def _steps(project: PlatformProject) -> list[tuple[str, str, str]]:
    """(op, cluster prefix of the resource's name, type) of each step of a preview."""
    preview = json.loads(project.pulumi("preview", "--json", "--stack", ENVIRONMENT).stdout)
    steps = []
    for step in preview["steps"]:
        name, kind = step["urn"].split("::")[-1], step["urn"].split("::")[-2].split(":")[-1]
        site = SOURCE if name.startswith(SOURCE) else TARGET if name.startswith(TARGET) else "-"
        steps.append((step["op"], site, kind))
    return steps


def _tables(tools, cluster: str) -> Snapshot:
    """compare's per-table and per-chunk fingerprints of every database on ``cluster``."""
    side = compare.side_of(ENVIRONMENT, cluster, NAMESPACE)
    snapshot = Snapshot(side.where)
    password = side.secret_value(f"{ENVIRONMENT}-database-credentials", "POSTGRES_PASSWORD")
    listed = "SELECT datname FROM pg_database WHERE NOT datistemplate AND datname <> 'postgres' ORDER BY 1;"
    for name in compare._psql(side, PRIMARY, "postgres", password, "postgres", listed).split():
        snapshot.add_lines(compare._psql(side, PRIMARY, "postgres", password, name, DATABASE_SQL))
    return snapshot


def _replication(tools) -> str:
    """Düsseldorf's view of its walsenders: address, state, replay lag in bytes."""
    return _psql(tools, SOURCE, "postgres",
                 "SELECT host(client_addr) || ' ' || state || ' ' || (pg_current_wal_lsn() - replay_lsn) "
                 "FROM pg_stat_replication;")  # fmt: skip


def _cli_env(tools, project: PlatformProject) -> dict[str, str]:
    return {**tools.env, **project.env, "SMARTNATION_PROJECT_DIR": str(project.root),
            "SMARTNATION_OPERATOR": "integration-tests"}  # fmt: skip


def _move_to(tools, project: PlatformProject, report) -> subprocess.CompletedProcess[str]:
    """`smartnation move dev --to monaco-onprem --yes`, the real driver on the scratch project."""
    argv = ["move", ENVIRONMENT, "--to", TARGET, "--yes", "--timeout", "300", "--report", str(report)]
    began = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "smartnation.cli.main", *argv], cwd=REPO,
                          env=_cli_env(tools, project), capture_output=True, text=True, timeout=1800,
                          stdin=subprocess.DEVNULL)  # fmt: skip
    print(f"$ smartnation {' '.join(argv)} -> {proc.returncode} in {time.monotonic() - began:.0f} s\n"
          f"{proc.stdout}\n{proc.stderr}")  # fmt: skip
    return proc


def _move_status(tools, project: PlatformProject) -> dict:
    """`smartnation move dev --status --json`, the real CLI on the scratch project; it must read everything."""
    proc = subprocess.run(
        [sys.executable, "-m", "smartnation.cli.main", "move", ENVIRONMENT, "--status", "--json"], cwd=REPO,
        env={**tools.env, **project.env, "SMARTNATION_PROJECT_DIR": str(project.root)}, capture_output=True,
        text=True, timeout=300, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    print(f"$ smartnation move {ENVIRONMENT} --status --json -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    assert proc.returncode == exit_codes.OK, proc.stdout + proc.stderr
    status = json.loads(proc.stdout)
    assert status["problems"] == [] and status["source"]["namespace"] == NAMESPACE, status
    return status


def _move_audit(project: PlatformProject) -> list[dict]:
    """The move lines of the scratch project's audit log, oldest first."""
    lines = (project.root / "environments" / "audit" / "promotions.jsonl").read_text().splitlines()
    return [entry for entry in map(json.loads, lines) if entry["extra"].get("operation") == "move"]


@contextmanager
def _driver_running(tools, project: PlatformProject, report: Path, out: Path) -> Iterator[subprocess.Popen]:
    """The real `smartnation move dev --to monaco-onprem --yes` in the background, in a process
    group of its own, everything it prints in ``out``; killed with its group if still running after."""
    argv = ["move", ENVIRONMENT, "--to", TARGET, "--yes", "--timeout", "300", "--interval", "1",
            "--report", str(report)]  # fmt: skip
    with out.open("w") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "smartnation.cli.main", *argv], cwd=REPO,
                                env={**_cli_env(tools, project), "PYTHONUNBUFFERED": "1"}, stdout=sink,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    print(f"$ smartnation {' '.join(argv)} & (pid {proc.pid}, its own process group)")
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        print(f"--- its output ({proc.returncode}) ---\n{out.read_text()}")


def _driver_killed(
    tools,
    project: PlatformProject,
    report: Path,
    out: Path,
    what: str,
    seen: Callable[[str], bool],
    seconds: float,
    settle: float = 0.0,
) -> tuple[str, str]:
    """The real driver run in the background (_driver_running) and killed with -9, its whole
    process group, ``settle`` s after ``seen`` of what it printed: what it had said when seen, and
    everything it printed."""
    with _driver_running(tools, project, report, out) as proc:
        said = _until_said(proc, out, what, seen, seconds)
        time.sleep(settle)
        os.killpg(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    return said, out.read_text()


def _lags(said: str) -> list[int]:
    """The lag of each of the wait's progress lines, in bytes (an unknown lag is left out)."""
    return [int(lag) for lag in re.findall(r"^  lag (\d+) bytes,", said, re.MULTILINE)]


def _until_said(proc: subprocess.Popen, out: Path, what: str, seen: Callable[[str], bool], seconds: float) -> str:
    """What the driver printed so far, once ``seen`` of it (it must still run)."""
    began = time.monotonic()
    while time.monotonic() - began < seconds:
        said = out.read_text()
        if seen(said):
            print(f"{what}: after {time.monotonic() - began:.1f} s")
            return said
        assert proc.poll() is None, f"the driver exited {proc.returncode} before {what}:\n{said}"
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {seconds:.0f} s:\n{out.read_text()}")


def _updates(project: PlatformProject) -> int:
    """How many updates the engine's history of the stack holds."""
    return len(json.loads(project.pulumi("stack", "history", "--json", "--stack", ENVIRONMENT).stdout))


PROBE = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])).close()
    print("connected")
except OSError as error:
    print(f"{type(error).__name__}: {error}")
"""
NOT_REACHED = ("TimeoutError: ", "ConnectionRefusedError: ", "OSError: [Errno 113] ")
"""A probe whose SYN was dropped, refused, or answered by "no route" (a firewall's reject)."""


def _probe(address: str, port: int, netns: str | None = None, seconds: float = 3.0) -> str:
    """One TCP connect to address:port (from the host, or from the network namespace ``netns``):
    "connected", or the error."""
    argv = [sys.executable, "-c", PROBE, address, str(port), str(seconds)]
    if netns is not None:
        argv = ["nsenter", f"--net=/run/netns/{netns}", "--", *argv]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30)
    said = (proc.stdout.strip() or proc.stderr.strip()).splitlines()[-1:] or [f"no output, exit {proc.returncode}"]
    print(f"probe {address}:{port} from {netns or 'the host'}: {said[0]}")
    return said[0]


@pytest.fixture
def dev_on_dusseldorf(tmp_path, tools, clusters) -> Iterator[PlatformProject]:
    """dev deployed on Düsseldorf with 300 readings; destroyed at the end, checked on both sites."""
    assert site_link.for_local_clusters(clusters).status() == "up", "`make clusters` sets up the site link"
    state = tmp_path / "state"
    state.mkdir()
    backend = {"PULUMI_BACKEND_URL": f"file://{state}", "PULUMI_CONFIG_PASSPHRASE": "integration-tests"}
    project = PlatformProject.create(tmp_path / "project", tools, backend, name=NAME)
    with (project.root / "environments" / f"{ENVIRONMENT}.yaml").open("a") as file:
        file.write(HOLD_ARCHIVER)
    try:
        project.init_stack(ENVIRONMENT)
        project.pulumi("up", "--yes", "--skip-preview", "--stack", ENVIRONMENT, timeout=2400)
        _psql(tools, SOURCE, "telemetry", _readings(1, 300))
        _write_objects(tools, SEEDED)
        yield project
    finally:
        project.destroy(ENVIRONMENT)
        left = tools.run("kubectl", "--context", TARGET, "get", "namespace", NAMESPACE, check=False)
        assert left.returncode != 0, f"{NAMESPACE} is still on {TARGET} after the destroy"


def test_replicate_streams_to_monaco_and_rolls_back_by_one_phase_change(dev_on_dusseldorf, tools, clusters) -> None:
    project = dev_on_dusseldorf
    env_file = project.root / "environments" / f"{ENVIRONMENT}.yaml"
    without_move = env_file.read_text()
    before = tools.kubectl_json(SOURCE, "-n", NAMESPACE, "get", "pod", PRIMARY)["metadata"]["uid"]
    broker_before = tools.kubectl_json(SOURCE, "-n", NAMESPACE, "get", "pod", BROKER)["metadata"]["uid"]
    status = _move_status(tools, project)
    assert (status["move"], status["phase"], status["target"]) == (None, None, None), status
    assert (status["source"]["cluster"], status["source"]["namespace_exists"]) == (SOURCE, True)
    assert status["source"]["in_recovery"] is False and status["source"]["replication"] == []

    # --- replicate: previewed, nothing of Düsseldorf replaced or deleted -------------------
    env_file.write_text(without_move + MOVE)
    steps = _steps(project)
    on_source = {(op, kind) for op, site, kind in steps if site == SOURCE}
    # The broker's ACL (ConfigMap) and password file (Secret) gain the bridge's user in place: no
    # StatefulSet is updated, its reloader has the running broker read them.
    assert on_source == {("create", "Service"), ("create", "NetworkPolicy"), ("update", "ConfigMap"),
                         ("update", "Secret"), ("update", "ResourceQuota")}, steps  # fmt: skip
    assert {op for op, site, _ in steps if site == TARGET} == {"create"}, steps
    # Applied by the driver, with the policy pack in its preview and in `smartnation up` (the
    # pack judges Monaco's standby against Monaco's profile and admits the published Service).
    report = project.root / "verify-replicate.json"
    declared = env_file.read_text()
    applied = _move_to(tools, project, report)
    assert applied.returncode == exit_codes.OK, applied.stdout + applied.stderr
    for number, step in enumerate(("preview", "apply", "wait", "verify"), start=1):
        assert f"[{number}/4 {step}] finished in " in applied.stdout, applied.stdout
    assert "Policy Packs run:" in applied.stdout and "smartnation-guardrails" in applied.stdout, "the pack judged"
    assert "[mandatory]" not in applied.stdout and "next: declare `phase: cutover`" in applied.stdout
    audited = [json.loads(line) for line in
               (project.root / "environments" / "audit" / "promotions.jsonl").read_text().splitlines()]  # fmt: skip
    steps = [(e["extra"]["step"], e["result"]) for e in audited if e["extra"].get("operation") == "move"]
    assert steps == [(step, result) for step in ("preview", "apply", "wait", "verify")
                     for result in ("started", "finished")], steps  # fmt: skip
    assert (project.root / ".smartnation" / "move" / f"{ENVIRONMENT}.json").exists(), "each step recorded"
    assert env_file.read_text() == declared, "the driver never edits the environment file"
    verified = json.loads(report.read_text())
    assert verified["equal"] is True and verified["differences"] == [], verified
    assert verified["fingerprints"]["source"]["tables"]["telemetry.public.readings"].startswith("rows=300 ")
    # The bucket mirror copied every object: the same sha256 on Monaco, each bucket's count too.
    objects = verified["fingerprints"]["target"]["objects"]
    assert {f"{bucket}/{key}" for _, bucket, key, _ in SEEDED} <= set(objects), sorted(objects)
    assert objects["open-data/lights/energy-2026-11.parquet"].startswith(f"size={6 * 1024 * 1024 + 5} sha256=")
    assert {"backups", "open-data", "telemetry-archive"} <= set(verified["fingerprints"]["target"]["buckets"])
    assert verified["fingerprints"]["source"]["objects"] == objects
    move = project.outputs(ENVIRONMENT)["move"]
    assert (move["to"], move["phase"], move["replication_sources"]) == (TARGET, "replicate", [f"{LINK_ADDRESS}/32"])

    assert _psql(tools, TARGET, "postgres", "SELECT pg_is_in_recovery();") == "t", "Monaco's is a standby"
    took = _until("Düsseldorf streams to the link address with lag 0", lambda: _replication(tools),
                  f"{LINK_ADDRESS} streaming 0")  # fmt: skip
    print(f"walsender on {SOURCE}: streaming to {LINK_ADDRESS}, lag 0 bytes after {took:.0f} s more")
    hba = _psql(tools, SOURCE, "postgres",
                f"SELECT type || ' ' || array_to_string(database, ',') || ' ' || array_to_string(user_name, ',') "
                f"FROM pg_hba_file_rules WHERE address = '{LINK_ADDRESS}';")  # fmt: skip
    assert hba == "hostssl replication replicator", "the link address is admitted for replication only"

    # --- the published primary's node port: open to the link address only ---------------------
    # Düsseldorf's profile allocates node ports for LoadBalancer Services and kube-proxy applies
    # loadBalancerSourceRanges to the load-balancer address only: the primary is on a port of
    # the node too, where only the NetworkPolicy (the link address) and pg_hba keep others out.
    services = tools.kubectl_json(SOURCE, "-n", NAMESPACE, "get", "service")["items"]
    balanced = {s["metadata"]["name"]: s for s in services if s["spec"]["type"] == "LoadBalancer"}
    published = balanced.pop(f"{ENVIRONMENT}-database-published")
    storage = balanced.pop(f"{ENVIRONMENT}-object-storage-published")
    storage_address = storage["status"]["loadBalancer"]["ingress"][0]["ip"]
    # The broker pod's internal listener, published for Monaco's bridge: the link reaches it, the host does not.
    bridged = balanced.pop(f"{ENVIRONMENT}-broker-published-0")["status"]["loadBalancer"]["ingress"][0]["ip"]
    said = _probe(bridged, 1883, site_link.WAN_NETNS)
    assert said == "connected", f"the link address did not reach the broker pod at {bridged}:1883: {said}"
    said = _probe(bridged, 1883)
    assert said.startswith(NOT_REACHED), f"the broker pod's published address {bridged} is open to the host: {said}"
    # MinIO's published address: the link reaches it, the host beside the node does not.
    said = _probe(storage_address, 9000, site_link.WAN_NETNS)
    assert said == "connected", f"the link address did not reach MinIO at {storage_address}:9000: {said}"
    said = _probe(storage_address, 9000)
    assert said.startswith(NOT_REACHED), f"MinIO's published address {storage_address} is open to the host: {said}"
    node_port = published["spec"]["ports"][0].get("nodePort")
    assert isinstance(node_port, int), published["spec"]
    address = published["status"]["loadBalancer"]["ingress"][0]["ip"]
    # The broker's Service, the same kind (node port, externalTrafficPolicy Local), admits devices
    # from anywhere (dev's device_source_ranges: 0.0.0.0/0): the probe's "connected" to compare.
    assert len(balanced) == 1, f"the broker's alone besides the published one: {sorted(balanced)}"
    (broker,) = balanced.values()
    open_port = broker["spec"]["ports"][0]["nodePort"]
    node = tools.kubectl_json(SOURCE, "-n", NAMESPACE, "get", "pod", PRIMARY)["status"]["hostIP"]
    # The link's address (the WAN router's namespace) reaches the published address...
    said = _probe(address, POSTGRES_PORT, site_link.WAN_NETNS)
    assert said == "connected", f"the link address did not reach {address}:{POSTGRES_PORT}: {said}"
    # ... the host, on the node's own network, reaches the node's open node port, and neither the
    # primary's node port nor its published address.
    said = _probe(node, open_port)
    assert said == "connected", f"the host did not reach the broker's node port {node}:{open_port}: {said}"
    said = _probe(node, node_port)
    assert said.startswith(NOT_REACHED), f"the primary's node port {node}:{node_port} is open to the host: {said}"
    said = _probe(address, POSTGRES_PORT)
    assert said.startswith(NOT_REACHED), f"the published address {address} is open to the host: {said}"
    # A Pod of another namespace on the same node (one of ours, no policy of its own) neither.
    with node_pods.scratch_namespace(tools, SOURCE, "move-probe") as other:
        node_pods.apply(tools, SOURCE, other, node_pods.client_pod("client", node_pods.real_node(tools, SOURCE), {}))
        node_pods.wait_ready(tools, SOURCE, other, "client")
        code, said, _ = node_pods.fetch(tools, SOURCE, other, "client", node, open_port)
        assert code == 0, f"a Pod did not reach the broker's node port {node}:{open_port}: {said}"
        for where, port in ((node, node_port), (address, POSTGRES_PORT)):
            code, said, _ = node_pods.fetch(tools, SOURCE, other, "client", where, port)
            print(f"nc {where}:{port} from a Pod of {other}: exit {code}, {said.strip()!r}")
            assert code != 0 and ("can't connect" in said or "timed out" in said), f"{where}:{port} is open to Pods"
    source, target = _tables(tools, SOURCE), _tables(tools, TARGET)
    assert differences(source, target, ("tables", "chunks")) == []
    assert source.sections["tables"]["telemetry.public.readings"].startswith("rows=300 ")
    assert len(source.sections["chunks"]) >= 3, "three days of readings: a chunk per day, each compared"

    # --- objects written on Düsseldorf afterwards arrive, overwritten and removed alike --------
    changes = [
        ("put", "telemetry-archive", "2026/11/29/part-late.jsonl.gz", 70_000),
        ("put", "open-data", "parking/occupancy.csv", 4_321),  # was empty
        ("delete", "telemetry-archive", "2026/11/21/part-001.jsonl.gz", 0),
    ]
    began = time.monotonic()
    _write_objects(tools, changes)
    while True:
        source_objects, target_objects = _objects(SOURCE), _objects(TARGET)
        found = differences(source_objects, target_objects, compare.OBJECT_SECTIONS)
        if not found:
            break
        if time.monotonic() - began > 180:
            mirror = f"deployment/{ENVIRONMENT}-object-storage-mirror"
            logs = tools.run("kubectl", "--context", TARGET, "-n", NAMESPACE, "logs", "--tail", "60", mirror,
                             "-c", "mirror", check=False)  # fmt: skip
            said = logs.stdout + logs.stderr
            raise AssertionError(f"the mirror did not follow within 180 s: {found}\nits log:\n{said}")
        time.sleep(2)
    print(f"3 object changes on {SOURCE} mirrored to {TARGET} within {time.monotonic() - began:.0f} s")
    listed = source_objects.sections["objects"]
    assert listed["open-data/parking/occupancy.csv"].startswith("size=4321 ")
    assert "telemetry-archive/2026/11/29/part-late.jsonl.gz" in listed
    assert "telemetry-archive/2026/11/21/part-001.jsonl.gz" not in target_objects.sections["objects"]

    # --- rows written on Düsseldorf afterwards arrive ---------------------------------------
    _psql(tools, SOURCE, "telemetry", _readings(301, 50))
    took = _until("the 50 new rows on Monaco",
                  lambda: _psql(tools, TARGET, "telemetry", "SELECT count(*) FROM readings;"), "350")  # fmt: skip
    print(f"50 rows written on {SOURCE} counted on {TARGET} after {took:.0f} s")
    status = _move_status(tools, project)
    source, target = status["source"], status["target"]
    assert (status["phase"], status["move"]) == ("replicate", {"to": TARGET, "phase": "replicate"}), status
    assert (source["cluster"], target["cluster"]) == (SOURCE, TARGET)
    assert source["namespace_exists"] is True and target["namespace_exists"] is True
    assert source["in_recovery"] is False and target["in_recovery"] is True, "Monaco's is a standby"
    streaming = [row for row in source["replication"] if row["state"] == "streaming"]
    assert [row["client_address"] for row in streaming] == [LINK_ADDRESS], source["replication"]
    lag = streaming[0]["lag_bytes"]
    assert isinstance(lag, int | float) and not isinstance(lag, bool) and lag >= 0, streaming
    assert target["receiver_status"] == "streaming", target
    mirror = target["mirror"]
    assert (mirror["phase"], mirror["ready"], mirror["waiting"]) == ("Running", True, None), mirror
    assert mirror["pod"].startswith(f"{ENVIRONMENT}-object-storage-mirror-") and source["mirror"] is None
    # The 50 rows were a transaction replayed on Monaco: the time since then is known.
    since = target["seconds_since_last_replay"]
    assert isinstance(since, int | float) and since >= 0, target
    assert differences(_tables(tools, SOURCE), _tables(tools, TARGET), ("tables", "chunks")) == []

    # --- the driver killed with -9 in its lag wait, then run again: it resumes there ------------
    # A fresh start (docs/move.md, section 7: without its progress file every step runs again).
    progress_file = project.root / ".smartnation" / "move" / f"{ENVIRONMENT}.json"
    progress_file.unlink()
    # PostgreSQL's own pause of the standby's replay holds a lag above 0 on Düsseldorf's
    # walsender (its replay position stays behind 50 more rows) until it is resumed: the wait
    # cannot finish, the kill lands in it every time.
    _psql(tools, TARGET, "postgres", "SELECT pg_wal_replay_pause();")
    _until("Monaco's replay paused", lambda: _psql(tools, TARGET, "postgres", "SELECT pg_is_wal_replay_paused();"),
           "t", 30)  # fmt: skip
    _psql(tools, SOURCE, "telemetry", _readings(351, 50))
    report = project.root / "verify-resumed.json"
    before_kill = len(_move_audit(project))
    out = project.root / "move-killed.out"
    began = time.monotonic()
    said, _ = _driver_killed(tools, project, report, out, "two of the wait's readings show a lag above 0",
                             lambda said: "[3/4 wait] started" in said and sum(lag > 0 for lag in _lags(said)) >= 2,
                             600)  # fmt: skip
    print(f"driver killed with -9 in its wait {time.monotonic() - began:.0f} s after it started")
    assert "[1/4 preview] finished in " in said and "[2/4 apply] finished in " in said, said
    assert "[3/4 wait] finished" not in said and "[4/4 verify]" not in said, said
    killed = _move_audit(project)[before_kill:]
    assert [(e["extra"]["step"], e["result"]) for e in killed] == [
        ("preview", "started"), ("preview", "finished"), ("apply", "started"), ("apply", "finished"),
        ("wait", "started"),
    ], killed  # fmt: skip
    assert len({e["extra"]["run"] for e in killed}) == 1, killed
    recorded = json.loads(progress_file.read_text())
    assert sorted(recorded["finished"]) == ["apply", "preview"], recorded
    updates = _updates(project)
    assert _psql(tools, TARGET, "telemetry", "SELECT count(*) FROM readings;") == "350", "the replay is held"

    out = project.root / "move-resumed.out"
    began = time.monotonic()
    with _driver_running(tools, project, report, out) as proc:
        _until_said(proc, out, "the resumed wait reads the lag still above 0",
                    lambda said: "[3/4 wait] started" in said and any(lag > 0 for lag in _lags(said)), 120)  # fmt: skip
        _psql(tools, TARGET, "postgres", "SELECT pg_wal_replay_resume();")
        code = proc.wait(timeout=600)
    said = out.read_text()
    print(f"resumed driver run: exit {code} in {time.monotonic() - began:.0f} s")
    assert code == exit_codes.OK, said
    for number, step in enumerate(("preview", "apply"), start=1):
        update = recorded["stack_update"]
        done = rf"^\[{number}/4 {step}\] finished at \S+ for this phase and stack update #{update}: not redone$"
        assert re.search(done, said, re.MULTILINE), said
        assert f"[{number}/4 {step}] started" not in said, said
    for number, step in enumerate(("wait", "verify"), start=3):
        assert f"[{number}/4 {step}] started" in said and f"[{number}/4 {step}] finished in " in said, said
    assert "Policy Packs run:" not in said, "nothing was previewed or updated"
    assert re.search(r"streams with lag 0 bytes after \d+ s", said), said
    resumed = _move_audit(project)[before_kill + len(killed) :]
    assert [(e["extra"]["step"], e["result"]) for e in resumed] == [
        ("wait", "started"), ("wait", "finished"), ("verify", "started"), ("verify", "finished"),
    ], resumed  # fmt: skip
    assert len({e["extra"]["run"] for e in resumed} | {killed[0]["extra"]["run"]}) == 2, "a run of its own"
    assert _updates(project) == updates, "the apply did not run again: the stack has no new update"
    progress = json.loads(progress_file.read_text())
    assert sorted(progress["finished"]) == ["apply", "preview", "verify", "wait"], progress
    assert (progress["stack_update"], progress["finished"]["apply"]) == (
        recorded["stack_update"], recorded["finished"]["apply"]
    ), progress  # fmt: skip
    verified = json.loads(report.read_text())
    assert verified["equal"] is True and verified["differences"] == [], verified
    fingerprints = verified["fingerprints"]
    assert fingerprints["source"] == fingerprints["target"]
    assert fingerprints["source"]["tables"]["telemetry.public.readings"].startswith("rows=400 ")
    assert len(fingerprints["source"]["chunks"]) >= 3
    counts = [_psql(tools, side, "telemetry", "SELECT count(*) FROM readings;") for side in (SOURCE, TARGET)]
    assert counts == ["400", "400"], f"rows lost: {SOURCE} and {TARGET} count {counts}"

    # --- rollback from replicate: one phase change ------------------------------------------
    env_file.write_text(without_move)
    steps = _steps(project)
    assert not [s for s in steps if s[0] in UNSAFE_OPS], steps
    assert {(op, kind) for op, site, kind in steps if site == SOURCE} == {
        ("delete", "Service"), ("delete", "NetworkPolicy"), ("update", "ConfigMap"), ("update", "Secret"),
        ("update", "ResourceQuota")}, steps  # fmt: skip
    assert {op for op, site, _ in steps if site == TARGET} == {"delete"}, steps
    project.pulumi("up", "--yes", "--skip-preview", "--stack", ENVIRONMENT, timeout=2400)
    assert "move" not in project.outputs(ENVIRONMENT)
    gone = tools.run("kubectl", "--context", TARGET, "get", "namespace", NAMESPACE, check=False)
    assert gone.returncode != 0, f"{NAMESPACE} is still on {TARGET} after the rollback"
    pod = tools.kubectl_json(SOURCE, "-n", NAMESPACE, "get", "pod", PRIMARY)
    assert pod["metadata"]["uid"] == before, "Düsseldorf's primary ran throughout"
    broker = tools.kubectl_json(SOURCE, "-n", NAMESPACE, "get", "pod", BROKER)
    assert broker["metadata"]["uid"] == broker_before, "the bridge's user came and went without a broker restart"
    restarts = [c["restartCount"] for c in broker["status"]["containerStatuses"] if c["name"] == "mosquitto"]
    assert restarts == [0], broker["status"]["containerStatuses"]
    assert _psql(tools, SOURCE, "telemetry", "SELECT count(*) FROM readings;") == "400"
    admitted = f"SELECT count(*) FROM pg_hba_file_rules WHERE address = '{LINK_ADDRESS}';"
    _until("pg_hba without the link address", lambda: _psql(tools, SOURCE, "postgres", admitted), "0")
