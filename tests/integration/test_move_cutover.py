"""The cutover and complete phases of a move on real Pods (docs/move.md, sections 8 and 9), and
the rollback from the cutover (section 10).

The first test is issue 10's: dev deployed on Düsseldorf and seeded with 10,000 registered
devices, 1,000,000 readings from them, 10,009 objects of mixed sizes and three devices' retained
readings, the devices publishing throughout (through Düsseldorf's public broker endpoint until the
cutover, then reconnected to Monaco's). The real `smartnation move dev --to monaco-onprem --yes`
drives each phase and is killed with -9 once in each, then run again: replicate in its
verification (Monaco's hot standby compared by data while the devices write: what they write
into is compared at the fence), cutover right after its fence (the write pause measured from the
fence, the kill in it, under 30 s; a writer on Düsseldorf refused from the fence on and every row
it committed on Monaco; Monaco promoted; the outputs and `smartnation verify` on Monaco), complete
in its restore of the final backup (the killed run's Job stopped first; the final backup proven
on Monaco; Düsseldorf's namespace removed; `cluster: monaco-onprem` alone previews no change).
Every reading either broker acknowledged is in Monaco's database, and so is every seeded reading
and device.

The second test rolls back from the cutover instead: what Monaco took in between (rows,
readings, objects, a device's publications throughout) all back on Düsseldorf, the driver killed
with -9 once, in its restore, and resumed; then `move:` removed.

Needs what `make clusters` starts: both clusters, their real nodes and the site link.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from urllib.parse import urlparse

import pytest

from smartnation.cli import compare, exit_codes
from smartnation.cli.kubectl import Kubectl
from smartnation.tooling.local_clusters import site_link
from tests.integration import move_seed, primary_sql
from tests.integration.device_load import DeviceLoad
from tests.integration.platform_project import PROJECT, REPO, PlatformProject
from tests.integration.test_move_replicate import (
    HOLD_ARCHIVER,
    _driver_killed,
    _readings,
    _write_objects,
)

pytestmark = pytest.mark.integration

ENVIRONMENT = "dev"
# Its own project (and so namespace): apart from the shared dev and from test_move_replicate's.
NAME = f"{PROJECT}-mc"
NAMESPACE = f"{NAME}-{ENVIRONMENT}"
SOURCE, TARGET = "dusseldorf-test", "monaco-onprem"
REPLICATE = "move: {to: monaco-onprem, phase: replicate}\n"
CUTOVER = "move: {to: monaco-onprem, phase: cutover}\n"
COMPLETE = "move: {to: monaco-onprem, phase: complete}\n"
ROLLBACK = "move: {to: monaco-onprem, phase: rollback}\n"
WRITES = "CREATE TABLE cutover_writes (n integer PRIMARY KEY, at timestamptz NOT NULL DEFAULT now());"
PAUSE_GOAL_S = 30.0
"""Issue 10: the write pause at cutover under 30 s."""
DEVICE = "move-load-1"
LOAD = ("move-load-1", "move-load-3", "move-load-4")
"""The seeded test's devices: publishing on Düsseldorf until the cutover, then on Monaco."""
SEEDED_DEVICES, SEEDED_READINGS, SEEDED_OBJECTS = 10_000, 1_000_000, 10_000
"""Issue 10's seeded environment: registered devices, readings from them, objects of mixed sizes."""
MONACO_DEVICE = "move-load-2"
"""The rollback's device: connected to Monaco's broker after the cutover, as devices reconnect."""
STATS = "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8080/v1/stats').read().decode())"


def _wait_for(condition: Callable[[], bool], timeout: float, why: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, why()
        time.sleep(1)


def _ingest_stats(tools, context: str) -> dict:
    """telemetry-ingest's /v1/stats on ``context``, from inside its Pod."""
    pods = tools.kubectl_json(
        context, "-n", NAMESPACE, "get", "pods", "-l", "app.kubernetes.io/component=telemetry-ingest"
    )
    running = [p["metadata"]["name"] for p in pods["items"] if p["status"].get("phase") == "Running"]
    assert running, f"no telemetry-ingest Pod runs on {context}"
    out = tools.run(
        "kubectl", "--context", context, "-n", NAMESPACE, "exec", running[0], "--", "python3.11", "-c", STATS
    )
    return json.loads(out.stdout)


def _missing(tools, acked: set[str], stored: set[str], where: str = TARGET) -> str:
    """What a failed wait for the device's readings on ``where`` says: which, and what the bridge
    and that site's ingest saw."""
    missing = sorted(acked - stored)
    bridge = tools.run("kubectl", "--context", TARGET, "-n", NAMESPACE, "logs", "deployment/dev-broker-bridge",
                       "--tail", "60", check=False)  # fmt: skip
    return (f"{len(missing)} of {len(acked)} acknowledged readings missing on {where}, {missing[:3]} .. "
            f"{missing[-3:]}; last acknowledged {max(acked)}\n{where}'s ingest: {_ingest_stats(tools, where)}\n"
            f"the bridge's log:\n{bridge.stdout}{bridge.stderr}")  # fmt: skip


def _device_readings(tools, context: str, device: str = DEVICE) -> list[str]:
    """A load device's readings' timestamps in ``context``'s database, as the device wrote them."""
    sql = (f"SELECT to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS') || '+00:00' FROM readings "
           f"WHERE device_id = '{device}' ORDER BY ts;")  # fmt: skip
    return _psql(tools, context, "telemetry", sql).split()


def _psql(tools, context: str, database: str, sql: str) -> str:
    return primary_sql.psql(tools, context, NAMESPACE, ENVIRONMENT, database, sql)


def _cli(tools, project: PlatformProject, *argv: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    """The real CLI on the scratch project."""
    env = {**tools.env, **project.env, "SMARTNATION_PROJECT_DIR": str(project.root),
           "SMARTNATION_OPERATOR": "integration-tests"}  # fmt: skip
    began = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "smartnation.cli.main", *argv], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)  # fmt: skip
    print(f"$ smartnation {' '.join(argv)} -> {proc.returncode} in {time.monotonic() - began:.0f} s\n"
          f"{proc.stdout}\n{proc.stderr}")  # fmt: skip
    return proc


def _seed_objects(tools) -> None:
    """Nine objects of mixed sizes in two buckets, written through Düsseldorf's telemetry-ingest Pod."""
    ops = [("put", "telemetry-archive", f"2026/11/28/part-{i}.jsonl.gz", 1000 * i * i) for i in range(1, 8)]
    ops += [("put", "open-data", "parking/occupancy.csv", 0), ("put", "open-data", "lights/energy.csv", 70_000)]
    _write_objects(tools, ops, NAMESPACE)


class Writer(threading.Thread):
    """Inserts numbered rows on Düsseldorf's primary, one psql session each, until stopped; keeps
    the numbers whose INSERT returned (committed) and the last refusal."""

    def __init__(self, tools) -> None:
        super().__init__(daemon=True)
        self.tools, self.committed, self.refused = tools, [], []
        self.first_refused_at: float | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            try:
                _psql(self.tools, SOURCE, "telemetry", f"INSERT INTO cutover_writes (n) VALUES ({n});")
                self.committed.append(n)
            except AssertionError as error:  # tools.run's: the command's exit, stdout and stderr
                self.first_refused_at = self.first_refused_at or time.time()
                self.refused.append((n, str(error)[-300:]))
                time.sleep(0.5)


class Loads:
    """City devices publishing through one site's public broker endpoint, each a DeviceLoad (its
    own certificate, QoS 1, its first reading retained): the load that runs while the move goes on."""

    def __init__(self, tools, project: PlatformProject, context: str, devices: tuple[str, ...]) -> None:
        outputs = project.outputs(ENVIRONMENT)
        host, address = urlparse(outputs["mqtt_endpoint"]).hostname, outputs["mqtt_load_balancer_address"]
        self.context, self.finished = context, False
        self.devices = [DeviceLoad(Kubectl(context, NAMESPACE, tools.env), host, address, d) for d in devices]

    def start(self, acknowledged: int = 20) -> None:
        for device in self.devices:
            device.start()
        for device in self.devices:
            _wait_for(lambda d=device: len(d.acknowledged) >= acknowledged, 180,
                      lambda d=device: f"{d.device_id} on {self.context}: {d.refused[-3:]}")  # fmt: skip

    def finish(self) -> None:
        """Each device stopped and its certificate retired, once (its site may be gone later)."""
        if not self.finished:
            self.finished = True
            for device in self.devices:
                device.finish()


def _all_stored(tools, loads: list[Loads], where: str) -> None:
    """Every reading any of ``loads``' brokers acknowledged is in ``where``'s database (waits up to 2 min)."""
    for device in LOAD:
        acked = {a.ts for load in loads for d in load.devices if d.device_id == device for a in d.acknowledged}
        stored = lambda device=device: set(_device_readings(tools, where, device))  # noqa: E731
        _wait_for(lambda: acked <= stored(), 120, lambda: _missing(tools, acked, stored(), where))  # noqa: B023
        print(f"{device}: all {len(acked)} acknowledged readings in {where}'s database")


@pytest.fixture
def dev_deployed(tmp_path, tools, clusters) -> Iterator[PlatformProject]:
    """dev deployed on Düsseldorf (the archiver held) with the writer's table; destroyed at the
    end, checked on both sites."""
    assert site_link.for_local_clusters(clusters).status() == "up", "`make clusters` sets up the site link"
    state = tmp_path / "state"
    state.mkdir()
    backend = {"PULUMI_BACKEND_URL": f"file://{state}", "PULUMI_CONFIG_PASSPHRASE": "integration-tests"}
    project = PlatformProject.create(tmp_path / "project", tools, backend, name=NAME)
    env_file = project.root / "environments" / f"{ENVIRONMENT}.yaml"
    with env_file.open("a") as file:
        file.write(HOLD_ARCHIVER)
    try:
        project.init_stack(ENVIRONMENT)
        project.pulumi("up", "--yes", "--skip-preview", "--stack", ENVIRONMENT, timeout=2400)
        _psql(tools, SOURCE, "telemetry", WRITES)
        yield project
    finally:
        project.destroy(ENVIRONMENT)
        for context in (SOURCE, TARGET):
            left = tools.run("kubectl", "--context", context, "get", "namespace", NAMESPACE, check=False)
            assert left.returncode != 0, f"{NAMESPACE} is still on {context} after the destroy"


@pytest.fixture
def dev_replicating(dev_deployed, tools) -> PlatformProject:
    """dev_deployed with 300 readings and nine objects, replicated to Monaco by the driver."""
    project = dev_deployed
    env_file = project.root / "environments" / f"{ENVIRONMENT}.yaml"
    _psql(tools, SOURCE, "telemetry", _readings(1, 300))
    _seed_objects(tools)
    env_file.write_text(env_file.read_text() + REPLICATE)
    applied = _cli(tools, project, "move", ENVIRONMENT, "--to", TARGET, "--yes", "--timeout", "600")
    assert applied.returncode == exit_codes.OK, applied.stdout + applied.stderr
    return project


def _resumed(killed: str, again: str, steps: tuple[str, ...], killed_in: int) -> None:
    """The run after a kill: each step the killed run finished (at least the ``killed_in - 1``
    before the one it was killed in) is *not redone*, each other one finished by this run."""
    for number, step in enumerate(steps, start=1):
        head = f"[{number}/{len(steps)} {step}] finished"
        if number < killed_in or f"{head} in " in killed:
            assert f"{head} in " in killed and re.search(rf"^{re.escape(head)} at .*: not redone$", again,
                                                         re.MULTILINE), (step, again)  # fmt: skip
        else:
            assert f"{head} in " in again, (step, again)


def test_a_seeded_dev_moves_under_load_through_a_kill_in_each_phase_and_loses_nothing(
    dev_deployed, tools, clusters
) -> None:
    """Issue 10's test: dev seeded with SEEDED_DEVICES registered devices, SEEDED_READINGS readings
    from them, SEEDED_OBJECTS objects of mixed sizes and the load devices' retained readings;
    the load publishing throughout (on Düsseldorf until the cutover, then reconnected to Monaco);
    the driver killed with -9 once in each phase (replicate in its verification, cutover right
    after its fence, complete in its restore of the final backup) and run again; nothing lost."""
    project = dev_deployed
    env_file = project.root / "environments" / f"{ENVIRONMENT}.yaml"
    began = time.monotonic()
    _psql(tools, SOURCE, "devices", move_seed.devices_sql(SEEDED_DEVICES, "seeded by test_move_cutover"))
    _psql(tools, SOURCE, "telemetry", move_seed.readings_sql(0, SEEDED_READINGS, SEEDED_DEVICES))
    _seed_objects(tools)
    move_seed.write_objects(NAMESPACE, 0, SEEDED_OBJECTS, "seed")
    print(f"seeded {SEEDED_DEVICES:,} devices, {SEEDED_READINGS:,} readings, {SEEDED_OBJECTS + 9:,} objects in "
          f"{time.monotonic() - began:.0f} s")  # fmt: skip
    on_source = Loads(tools, project, SOURCE, LOAD)
    on_source.start()
    on_target: Loads | None = None
    try:
        _seeded_move(project, env_file, tools, on_source)
        # --- the devices reconnect to Monaco's endpoint (the outputs serve it), then leave Düsseldorf
        on_target = Loads(tools, project, TARGET, LOAD)
        on_target.start()
        on_source.finish()
        _all_stored(tools, [on_source], TARGET)
        _seeded_complete(project, env_file, tools)
        time.sleep(3)  # a few readings more after the complete
    finally:
        on_source.finish()
        if on_target is not None:
            on_target.finish()
    assert on_target is not None
    # Every reading either broker acknowledged, from before the replicate to after the complete.
    _all_stored(tools, [on_source, on_target], TARGET)
    seeded = _psql(tools, TARGET, "telemetry", "SELECT count(*) FROM readings WHERE device_id LIKE 'sensor-%';")
    assert seeded == str(SEEDED_READINGS), seeded
    devices = _psql(tools, TARGET, "devices", "SELECT count(*) FROM devices WHERE id LIKE 'sensor-%';")
    assert devices == str(SEEDED_DEVICES), devices
    after = _cli(tools, project, "verify", ENVIRONMENT, timeout=900)
    assert after.returncode == exit_codes.OK and f"verify {ENVIRONMENT}: 11/11 passed" in after.stdout, after.stdout


def _seeded_move(project: PlatformProject, env_file, tools, load: Loads) -> None:
    """Replicate (killed in its verification) and cutover (killed after its fence), the load on
    Düsseldorf throughout."""
    # --- replicate, the driver killed with -9 in its verification of a million readings --------
    env_file.write_text(env_file.read_text() + REPLICATE)
    report = project.root / "verify-replicate.json"
    out = project.root / "replicate-killed.out"
    _, killed = _driver_killed(tools, project, report, out, "the replicate's verification",
                               lambda said: "[4/4 verify] started" in said, 1500, settle=3)  # fmt: skip
    assert "[4/4 verify] finished" not in killed, "killed in the verification"
    replicated = _cli(tools, project, "move", ENVIRONMENT, "--to", TARGET, "--yes", "--timeout", "900",
                      "--report", str(report))  # fmt: skip
    assert replicated.returncode == exit_codes.OK, replicated.stdout + replicated.stderr
    _resumed(killed, replicated.stdout, ("preview", "apply", "wait", "verify"), killed_in=4)
    verified = json.loads(report.read_text())
    assert verified["equal"] is True and verified["phase"] == "replicate", verified["differences"]
    # Only what the devices write into was live (compared at the fence); every seeded chunk equal.
    assert all(item["key"].startswith("telemetry.public.readings") for item in verified.get("live", [])), verified
    chunks = verified["fingerprints"]["source"]["chunks"]
    seeded = [key for key in chunks if key.startswith("telemetry.public.readings [2026-11-2")]
    assert len(seeded) >= 7 and all(verified["fingerprints"]["target"]["chunks"][k] == chunks[k] for k in seeded)
    assert len(verified["fingerprints"]["target"]["objects"]) >= SEEDED_OBJECTS + 9
    # In replicate Monaco already runs the APIs, read-only against its standby: no migration Job ran there.
    pods = tools.kubectl_json(TARGET, "-n", NAMESPACE, "get", "pods")["items"]
    running = {p["metadata"]["labels"].get("app.kubernetes.io/component") for p in pods
               if p["status"].get("phase") == "Running"}  # fmt: skip
    assert {"telemetry-ingest", "device-registry", "open-data-api", "server", "mirror"} <= running, running
    assert not [p for p in pods if "migrate" in p["metadata"]["name"]], "a standby refuses DDL: no migration Job"
    assert _psql(tools, TARGET, "postgres", "SELECT pg_is_in_recovery();") == "t"
    # Monaco's ingest hears the devices (through the bridge) and, its database a standby,
    # acknowledges each once it arrived by replication: what Düsseldorf stored.
    _wait_for(lambda: _ingest_stats(tools, TARGET).get("stored_by_source", 0) >= 10, 120,
              lambda: f"Monaco's ingest: {_ingest_stats(tools, TARGET)}")  # fmt: skip
    bridged = _ingest_stats(tools, TARGET)
    assert bridged["stored"] == 0 and bridged["received"] >= 10, bridged

    # --- cutover, with a writer on Düsseldorf throughout, the driver killed after its fence ------
    env_file.write_text(env_file.read_text().replace(REPLICATE, CUTOVER))
    writer = Writer(tools)
    writer.start()
    try:
        deadline = time.monotonic() + 60
        while len(writer.committed) < 5:
            assert time.monotonic() < deadline, f"the writer committed nothing: {writer.refused[-1:]}"
            time.sleep(0.5)
        report = project.root / "verify-cutover.json"
        # Killed right after the fence, in the write pause itself (Düsseldorf refuses writes,
        # Monaco is not promoted yet), then run again: it resumes from the fence.
        out = project.root / "cutover-killed.out"
        _, killed = _driver_killed(tools, project, report, out, "the fence",
                                   lambda said: "[3/7 fence] finished in " in said, 900)  # fmt: skip
        assert "[7/7 apply] finished" not in killed, "killed before the end of the phase"
        moved = _cli(tools, project, "move", ENVIRONMENT, "--to", TARGET, "--yes", "--timeout", "600",
                     "--report", str(report))  # fmt: skip
        assert moved.returncode == exit_codes.OK, moved.stdout + moved.stderr
        time.sleep(3)  # the writer is refused from the fence on; let it try a few more times
    finally:
        writer.stop.set()
        writer.join(60)
    steps = ("preview", "hash-objects", "fence", "catch-up", "verify", "promote", "apply")
    _resumed(killed, moved.stdout, steps, killed_in=4)
    # Every object hashed before the fence; in the pause, only listed (nothing changed since).
    assert re.search(r"  objects: \d+ objects as hashed before the fence, 0 hashed again at the fence",
                     killed + moved.stdout)  # fmt: skip
    # Measured from the fence the killed run recorded: the kill and the second run are in it.
    pause = float(re.search(r"the write pause was ([\d.]+) s", moved.stdout).group(1))
    print(f"write pause at cutover: {pause:.1f} s (goal under {PAUSE_GOAL_S:.0f} s), the kill in it; writer "
          f"committed {len(writer.committed)} rows, refused {len(writer.refused)} times")  # fmt: skip
    assert pause < PAUSE_GOAL_S, moved.stdout
    assert writer.refused and "read-only transaction" in writer.refused[-1][1], writer.refused[-3:]
    verified = json.loads(report.read_text())
    assert verified["equal"] is True and verified["phase"] == "cutover", verified["differences"]
    rows = verified["fingerprints"]["source"]["tables"]["telemetry.public.readings"]
    assert int(rows.split()[0].removeprefix("rows=")) > SEEDED_READINGS, rows
    assert len(verified["fingerprints"]["target"]["objects"]) >= SEEDED_OBJECTS + 9
    # The devices' retained readings, published on Düsseldorf, carried by the bridge: the same on Monaco.
    retained = {d.topic: f"sha256={d.retained}" for d in load.devices}
    for side in ("source", "target"):
        assert verified["fingerprints"][side]["retained"] == retained, verified["fingerprints"][side]["retained"]

    # --- nothing the writer committed is lost; Düsseldorf refuses, Monaco takes writes ------
    on_monaco = _psql(tools, TARGET, "telemetry", "SELECT n FROM cutover_writes ORDER BY n;").split()
    assert [int(n) for n in on_monaco] == sorted(writer.committed), "every committed row, nothing else"
    with pytest.raises(AssertionError) as caught:
        _psql(tools, SOURCE, "telemetry", "INSERT INTO cutover_writes (n) VALUES (-1);")
    assert "cannot execute INSERT in a read-only transaction" in str(caught.value), caught.value
    assert _psql(tools, TARGET, "postgres", "SELECT pg_is_in_recovery();") == "f", "Monaco's is promoted"
    _psql(tools, TARGET, "telemetry", "INSERT INTO cutover_writes (n) VALUES (-2);")
    assert _psql(tools, TARGET, "telemetry", "SELECT count(*) FROM cutover_writes WHERE n = -2;") == "1"
    # Every reading Düsseldorf's broker acknowledged, around the fence too, is on Monaco.
    assert writer.first_refused_at is not None
    around = [a for d in load.devices for a in d.acknowledged if a.at >= writer.first_refused_at]
    assert around, "the devices published nothing from the fence on"
    _all_stored(tools, [load], TARGET)

    # --- the outputs serve Monaco; the mirror is gone; the status says so; verify passes -----
    outputs = project.outputs(ENVIRONMENT)
    move = outputs["move"]
    assert (move["phase"], move["serving"]) == ("cutover", TARGET), move
    assert outputs["mqtt_endpoint"] == move["target_mqtt_endpoint"] and ".mc." in outputs["mqtt_endpoint"]
    assert outputs["api_urls"] == move["target_api_urls"]
    gone = tools.run("kubectl", "--context", TARGET, "-n", NAMESPACE, "get", "deployment",
                     f"{ENVIRONMENT}-object-storage-mirror", check=False)  # fmt: skip
    assert gone.returncode != 0, "the bucket mirror was removed"
    status = _cli(tools, project, "move", ENVIRONMENT, "--status", "--json", timeout=300)
    assert status.returncode == exit_codes.OK, status.stdout + status.stderr
    read = json.loads(status.stdout)
    assert read["applied_phase"] == "cutover" and read["source"]["read_only"] is True, read
    assert read["target"]["in_recovery"] is False, read
    # `smartnation verify` runs at the end, once the devices stopped: its backup-restores check
    # compares a restored backup with the live tables exactly, which the devices keep writing
    # (verify_checks.check_backup_restores). the rollback test runs it after its cutover.


def _seeded_complete(project: PlatformProject, env_file, tools) -> None:
    """The complete phase, killed while it restores the final backup on Monaco; then
    `cluster: monaco-onprem` alone previews no change."""
    env_file.write_text(env_file.read_text().replace(CUTOVER, COMPLETE))
    # The driver killed with -9 while its restore of the final backup runs on Monaco (the Job
    # goes on there), then run again: it stops that Job first and restores again.
    out = project.root / "complete-killed.out"
    restoring = "[3/5 verify-backup] started"
    restore_started = lambda said: "job dev-database-final-" in said.partition(restoring)[2]  # noqa: E731
    _, killed = _driver_killed(tools, project, project.root / "verify-complete.json", out,
                               "the final backup's restore Job started", restore_started, 900)  # fmt: skip
    completed = _cli(tools, project, "move", ENVIRONMENT, "--to", TARGET, "--yes", "--timeout", "600")
    assert completed.returncode == exit_codes.OK, completed.stdout + completed.stderr
    _resumed(killed, completed.stdout, ("preview", "final-backup", "verify-backup", "unprotect", "apply"), 3)
    assert "an earlier run's restore Job stopped first: dev-database-final-" in completed.stdout, completed.stdout
    backup = re.search(r"backup (\d{8}T\d{6}Z) restored on monaco-onprem in \d+ s equals", completed.stdout)
    assert backup, completed.stdout
    record = tools.kubectl_json(TARGET, "-n", NAMESPACE, "get", "configmap", f"{ENVIRONMENT}-move-final-backup")
    assert record["data"]["verified"] == "true" and record["data"]["source"] == SOURCE, record["data"]
    assert record["data"]["backup"] == backup.group(1)
    gone = tools.run("kubectl", "--context", SOURCE, "get", "namespace", NAMESPACE, check=False)
    assert gone.returncode != 0, f"{NAMESPACE} is still on {SOURCE} after the complete phase"
    outputs = project.outputs(ENVIRONMENT)
    assert outputs["cluster"] == TARGET and outputs["move"]["phase"] == "complete", outputs
    # The edit that ends the move previews no change: `cluster: monaco-onprem` alone is what runs.
    env_file.write_text(env_file.read_text().replace(COMPLETE, ""))
    project.set_cluster(ENVIRONMENT, TARGET)
    preview = json.loads(project.pulumi("preview", "--json", "--stack", ENVIRONMENT, timeout=900).stdout)
    changed = [(step["op"], step["urn"].split("::")[-1]) for step in preview["steps"] if step["op"] != "same"]
    assert changed == [], changed


def test_a_rollback_from_the_cutover_brings_back_what_monaco_took(dev_replicating, tools, clusters) -> None:
    """docs/move.md, section 10: after the cutover Monaco takes rows, readings, objects and a
    device's publications; `phase: rollback` driven by the real CLI (killed with -9 once, in its
    restore, and run again) brings every one of them back to Düsseldorf (the device publishing
    throughout), Düsseldorf takes writes again and Monaco is fenced; removing `move:` then deletes
    Monaco's side and Düsseldorf still holds everything."""
    project = dev_replicating
    env_file = project.root / "environments" / f"{ENVIRONMENT}.yaml"
    env_file.write_text(env_file.read_text().replace(REPLICATE, CUTOVER))
    moved = _cli(tools, project, "move", ENVIRONMENT, "--to", TARGET, "--yes", "--timeout", "600")
    assert moved.returncode == exit_codes.OK, moved.stdout + moved.stderr
    # Monaco serves: verify follows the stack's serving cluster (`cluster:` still says Düsseldorf).
    verified = _cli(tools, project, "verify", ENVIRONMENT, timeout=900)
    assert verified.returncode == exit_codes.OK, verified.stdout + verified.stderr
    assert f"namespace {NAMESPACE} on {TARGET}, broker " in verified.stderr, verified.stderr
    assert f"verify {ENVIRONMENT}: 11/11 passed" in verified.stdout, verified.stdout

    # --- Monaco takes writes: rows, readings, objects, and a device on its broker --------------
    _psql(tools, TARGET, "telemetry", "INSERT INTO cutover_writes (n) SELECT generate_series(1, 50);")
    _psql(tools, TARGET, "telemetry", _readings(301, 100))
    _write_objects(tools, [("put", "open-data", "after-cutover/written-on-monaco.csv", 12_345),
                           ("delete", "open-data", "parking/occupancy.csv", 0)], NAMESPACE, TARGET)  # fmt: skip
    outputs = project.outputs(ENVIRONMENT)
    assert outputs["move"]["serving"] == TARGET, outputs["move"]
    device = DeviceLoad(Kubectl(TARGET, NAMESPACE, tools.env), urlparse(outputs["mqtt_endpoint"]).hostname,
                        outputs["mqtt_load_balancer_address"], MONACO_DEVICE)  # fmt: skip
    device.start()
    try:
        _wait_for(lambda: len(device.acknowledged) >= 20, 120, lambda: f"device: {device.refused[-3:]}")
        # --- the rollback, the device publishing to Monaco throughout --------------------------
        env_file.write_text(env_file.read_text().replace(CUTOVER, ROLLBACK))
        report = project.root / "verify-rollback.json"
        began = time.time()
        # The driver killed with -9 in the middle of its restore over Düsseldorf's databases (its
        # Job goes on in the cluster), then run again: it resumes there, the Job stopped first.
        out = project.root / "rollback-killed.out"
        said, _ = _driver_killed(tools, project, report, out, "the restore's Job started",
                                 lambda said: "job dev-database-rollback-restore-" in said, 600, settle=2)  # fmt: skip
        assert "[5/9 copy-back] finished in " in said and "[6/9 restore-source] finished" not in said, said
        rolled = _cli(tools, project, "move", ENVIRONMENT, "--to", TARGET, "--yes", "--timeout", "600",
                      "--report", str(report))  # fmt: skip
        time.sleep(3)  # a few readings more after it, through the reversed bridge
    finally:
        device.finish()
    assert rolled.returncode == exit_codes.OK, rolled.stdout + rolled.stderr
    for number, step in enumerate(("preview", "apply", "fence-target", "backup-target", "copy-back"), start=1):
        assert re.search(rf"^\[{number}/9 {step}\] finished at .*: not redone$", rolled.stdout, re.MULTILINE), step
    for number, step in enumerate(("restore-source", "objects-back", "verify", "unfence-source"), start=6):
        assert f"[{number}/9 {step}] finished in " in rolled.stdout, rolled.stdout
    assert "an earlier run's restore Job stopped first: dev-database-rollback-restore-" in rolled.stdout, rolled.stdout
    pause = re.search(r"the write pause was ([\d.]+) s", rolled.stdout)
    assert pause, rolled.stdout
    print(f"write pause of the rollback: {float(pause.group(1)):.1f} s")
    verified = json.loads(report.read_text())
    assert verified["equal"] is True and verified["phase"] == "rollback", verified["differences"]

    # --- Düsseldorf holds what Monaco took, and takes writes; Monaco is fenced ----------------
    on_source = _psql(tools, SOURCE, "telemetry", "SELECT n FROM cutover_writes ORDER BY n;").split()
    assert [int(n) for n in on_source] == list(range(1, 51)), on_source
    seeded = "SELECT count(*) FROM readings WHERE device_id LIKE 'traffic-%';"
    assert _psql(tools, SOURCE, "telemetry", seeded) == "400", "the 300 seeded readings and Monaco's 100"
    acked = {a.ts for a in device.acknowledged}
    during = [a for a in device.acknowledged if a.at >= began]
    assert during, "the device published nothing during the rollback"
    stored = lambda: set(_device_readings(tools, SOURCE, MONACO_DEVICE))  # noqa: E731
    _wait_for(lambda: acked <= stored(), 120, lambda: _missing(tools, acked, stored(), SOURCE))
    print(f"device on Monaco: {len(acked)} readings acknowledged by Monaco's broker ({len(during)} during the "
          f"rollback), all on Düsseldorf; Düsseldorf's ingest: {_ingest_stats(tools, SOURCE)}")  # fmt: skip
    objects = compare.read_objects(compare.side_of(ENVIRONMENT, SOURCE, NAMESPACE), None).sections["objects"]
    assert any(key.endswith("after-cutover/written-on-monaco.csv") for key in objects), sorted(objects)
    assert not any(key.endswith("parking/occupancy.csv") for key in objects), "deleted on Monaco, so on Düsseldorf"
    _psql(tools, SOURCE, "telemetry", "INSERT INTO cutover_writes (n) VALUES (-3);")
    with pytest.raises(AssertionError) as caught:
        _psql(tools, TARGET, "telemetry", "INSERT INTO cutover_writes (n) VALUES (-4);")
    assert "cannot execute INSERT in a read-only transaction" in str(caught.value), caught.value
    record = tools.kubectl_json(SOURCE, "-n", NAMESPACE, "get", "configmap", f"{ENVIRONMENT}-move-rollback")
    assert record["data"]["verified"] == "true" and record["data"]["from"] == TARGET, record["data"]
    outputs = project.outputs(ENVIRONMENT)
    assert (outputs["move"]["phase"], outputs["move"]["serving"]) == ("rollback", SOURCE), outputs["move"]
    assert ".mc." not in outputs["mqtt_endpoint"], outputs["mqtt_endpoint"]
    status = _cli(tools, project, "move", ENVIRONMENT, "--status", "--json", timeout=300)
    assert status.returncode == exit_codes.OK, status.stdout + status.stderr
    read = json.loads(status.stdout)
    assert read["applied_phase"] == "rollback" and read["source"]["read_only"] is False, read

    # --- `move:` removed: Monaco's side deleted, Düsseldorf keeps everything and passes verify --
    env_file.write_text(env_file.read_text().replace(ROLLBACK, ""))
    up = _cli(tools, project, "up", ENVIRONMENT, "--yes", timeout=1800)
    assert up.returncode == exit_codes.OK, up.stdout + up.stderr
    gone = tools.run("kubectl", "--context", TARGET, "get", "namespace", NAMESPACE, check=False)
    assert gone.returncode != 0, f"{NAMESPACE} is still on {TARGET} after the rollback ended"
    outputs = project.outputs(ENVIRONMENT)
    assert outputs["cluster"] == SOURCE and not outputs.get("move"), outputs
    rows = _psql(tools, SOURCE, "telemetry", "SELECT count(*) FROM cutover_writes;")
    assert rows == "51", rows
    after = _cli(tools, project, "verify", ENVIRONMENT, timeout=900)
    assert after.returncode == exit_codes.OK and f"verify {ENVIRONMENT}: 11/11 passed" in after.stdout, after.stdout
