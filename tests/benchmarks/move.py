"""The move section of the benchmarks (`run.py --only-move`): a seeded database moved from
dusseldorf-test to monaco-onprem by the replicate phase, beside a backup-and-restore move of the
same data (issue 10's "Measure").

What runs, all on real Pods, in private projects (namespaces smartnation-movebench-dev on both
clusters, smartnation-movebr-dev on Monaco) with their own file state backends:

1. dev deployed on Düsseldorf (the ingest's archiver held, so the data stays still), then seeded
   straight into its primary: ``DEVICES`` registered devices and ``READINGS`` readings from them
   in the hypertable (a week, one-day chunks); and ``OBJECTS`` objects of mixed sizes into its
   three buckets through its telemetry-ingest Pod;
2. the replicate phase by the real driver (`smartnation move dev --to monaco-onprem --yes`): its
   steps' times as it prints them, and the clone (pg_basebackup) watched from Düsseldorf's
   ``pg_stat_progress_basebackup`` once a second: when it ran and the bytes it streamed; the
   bucket mirror's first pass from its log (the time of its first and last copy); then
   ``OBJECT_BURST`` more objects written on Düsseldorf and how long after the last write Monaco's
   buckets list them too;
3. streaming: ``BURST`` more readings written on Düsseldorf in one statement; the WAL it made, and
   how long after its commit Monaco had replayed it (lag 0), then every table and chunk compared;
4. the cutover (`phase: cutover`) by the real driver: its steps' times, its write pause as it
   prints it (the fence to Monaco promoted), how many objects its verification at the fence had
   to hash again, the verification's result, and whether Monaco then takes writes;
5. backup and restore, as Velero-style tools move a database: dev deployed empty on Monaco in a
   second project, then per database ``pg_dump -Fc`` on Düsseldorf's primary into a file here,
   and ``pg_restore`` of it on Monaco's primary into ``<database>_moved`` (TimescaleDB's pre- and
   post-restore steps around it, as `smartnation restore` does), then compared. To lose nothing
   that way, writes stop from the dump's start to the restore's end: that is its write pause.

Not measured here: the broker bridge under live device traffic (no device publishes during this
run; tests/integration/test_move_cutover.py shows every acknowledged reading arriving). The
figures say so.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from smartnation.cli.compare_data import DATABASE_SQL, DEVICES_SQL, Snapshot, differences
from tests.integration import move_seed

REPO = Path(__file__).resolve().parents[2]
ENVIRONMENT = "dev"
SOURCE, TARGET = "dusseldorf-test", "monaco-onprem"
MOVE_PROJECT = "smartnation-movebench"
BR_PROJECT = "smartnation-movebr"
PRIMARY = f"{ENVIRONMENT}-database-primary-0"
READINGS = 1_000_000
DEVICES = 10_000
BURST = 200_000
OBJECTS = 10_000
OBJECT_BURST = 1_000
"""Objects seeded on Düsseldorf before the move, then written during replicate (the mirror's pace)."""
DATABASES = ("devices", "telemetry")
MOVE = "move: {to: monaco-onprem, phase: replicate}\n"
CUTOVER = "move: {to: monaco-onprem, phase: cutover}\n"
ROLLBACK = "move: {to: monaco-onprem, phase: rollback}\n"
ROLLBACK_WRITES = 10_000
"""Readings written on Monaco after the cutover, which the rollback must bring back."""
HOLD_ARCHIVER = """
city_apis:
  telemetry_ingest:
    extra_env: {ARCHIVE_GRACE_SECONDS: "2592000"}
"""

SEED_DEVICES = move_seed.devices_sql(DEVICES, "seeded by the move benchmark")


def readings_sql(first: int, count: int) -> str:
    return move_seed.readings_sql(first, count, DEVICES)


def write_objects(tools, namespace: str, first: int, count: int, prefix: str) -> int:
    return move_seed.write_objects(namespace, first, count, prefix)


class Cluster:
    """psql and pg_dump/pg_restore in one side's primary container, as its superuser (the password
    read from the namespace's Secret, handed over on stdin, never in an argument)."""

    def __init__(self, tools, context: str, namespace: str) -> None:
        self.tools, self.context, self.namespace = tools, context, namespace
        secret = tools.kubectl_json(context, "-n", namespace, "get", "secret", f"{ENVIRONMENT}-database-credentials")
        self.password = base64.b64decode(secret["data"]["POSTGRES_PASSWORD"]).decode()

    def _exec(self, script: str, *args: str, stdin: bytes, timeout: float) -> bytes:
        argv = ["kubectl", "--context", self.context, "-n", self.namespace, "exec", "-i", PRIMARY, "-c", "postgres",
                "--", "sh", "-c", "read -r PGPASSWORD; export PGPASSWORD; " + script, "sh", *args]  # fmt: skip
        proc = subprocess.run(argv, env=self.tools.env, input=self.password.encode() + b"\n" + stdin,
                              capture_output=True, timeout=timeout)  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"{self.context}: `{script} {' '.join(args)}` failed: {proc.stderr.decode()[-1500:]}")
        return proc.stdout

    def sql(self, database: str, sql: str, db_var: str | None = None, timeout: float = 1800) -> str:
        """``sql`` run by psql in ``database``; ``db_var``: compare's ``:db`` (default the database)."""
        script = 'exec psql -X -A -t -q -v ON_ERROR_STOP=1 -U postgres -d "$1" -v db="$2"'
        return self._exec(script, database, db_var or database, stdin=sql.encode(), timeout=timeout).decode().strip()

    def dump(self, database: str, into: Path) -> int:
        """``pg_dump -Fc`` of ``database`` into the file ``into``; its size."""
        into.write_bytes(self._exec('exec pg_dump -U postgres --format=custom "$1"', database, stdin=b"", timeout=3600))
        return into.stat().st_size

    def restore(self, dump: Path, database: str, owner_of: str) -> None:
        """``dump`` into a new ``database`` owned as ``owner_of`` is here, TimescaleDB's steps around it."""
        create = (f"SELECT format('CREATE DATABASE %I TEMPLATE template0 OWNER %I', '{database}', "
                  f"pg_get_userbyid(datdba)) FROM pg_database WHERE datname = '{owner_of}' \\gexec")  # fmt: skip
        self.sql("postgres", create)
        version = self.sql(owner_of, "SELECT coalesce((SELECT extversion FROM pg_extension "
                                     "WHERE extname = 'timescaledb'), '-');")  # fmt: skip
        if version != "-":
            self.sql(database, f"CREATE EXTENSION IF NOT EXISTS timescaledb VERSION '{version}';\n"
                               "SELECT timescaledb_pre_restore();")  # fmt: skip
        self._exec('exec pg_restore -U postgres --exit-on-error -d "$1"', database, stdin=dump.read_bytes(),
                   timeout=3600)  # fmt: skip
        if version != "-":
            self.sql(database, "SELECT timescaledb_post_restore();")

    def snapshot(self, suffix: str = "") -> Snapshot:
        """compare's fingerprints (every table and chunk, the devices) of ``<database><suffix>``,
        keyed by the database's own name, so a restored copy compares with its source."""
        snapshot = Snapshot(f"{self.context}/{self.namespace}")
        for database in DATABASES:
            snapshot.add_lines(self.sql(database + suffix, DATABASE_SQL, db_var=database))
        snapshot.add_lines(self.sql("devices" + suffix, DEVICES_SQL.format(table="devices"), db_var="devices"))
        return snapshot


def object_listings_equal(namespace: str) -> bool:
    """Monaco's buckets list Düsseldorf's objects (names and sizes), as the driver's wait reads them."""
    from smartnation.cli import compare

    source, target = (compare.side_of(ENVIRONMENT, c, namespace) for c in (SOURCE, TARGET))
    reader = compare.mirror_reader(ENVIRONMENT)
    left = compare.read_objects(source, listing_only=True)
    right = compare.read_objects(target, reader, listing_only=True)
    return not differences(left, right, compare.OBJECT_SECTIONS)


COPY_LINE = re.compile(r"^(\S+) `source/[^`]+` -> `target/")
"""A copy in the mirror's log (`kubectl logs --timestamps`): its time, then what mc printed."""


def mirror_copies(tools, namespace: str) -> list[float]:
    """The times (epoch seconds) of the copies in Monaco's mirror log, oldest first."""
    from datetime import datetime

    said = tools.run("kubectl", "--context", TARGET, "-n", namespace, "logs", "--timestamps",
                     f"deployment/{ENVIRONMENT}-object-storage-mirror", "-c", "mirror", timeout=300).stdout  # fmt: skip
    times = []
    for line in said.splitlines():
        match = COPY_LINE.match(line)
        if match:
            stamp = re.sub(r"(\.\d{6})\d*", r"\1", match.group(1)).replace("Z", "+00:00")
            times.append(datetime.fromisoformat(stamp).timestamp())
    return times


def sizes(cluster: Cluster) -> dict[str, int]:
    listed = cluster.sql("postgres", "SELECT datname || ' ' || pg_database_size(datname) FROM pg_database "
                                     "WHERE NOT datistemplate ORDER BY 1;")  # fmt: skip
    return {name: int(size) for name, size in (line.split() for line in listed.splitlines())}


class CloneWatch:
    """Düsseldorf's ``pg_stat_progress_basebackup`` while the replicate phase runs: one psql in the
    primary's container re-running the query every ``INTERVAL`` s (``\\watch``), each row stamped
    with the server's clock; a row appears only while a base backup runs. From them: when the clone
    was first and last seen, and the bytes it streamed."""

    INTERVAL = 0.25
    QUERY = (
        "SELECT extract(epoch FROM clock_timestamp())::text || ' ' || backup_streamed || ' ' || "
        "coalesce(backup_total, 0) FROM pg_stat_progress_basebackup \\watch {interval}\n"
    )

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.seen: list[tuple[float, int, int]] = []  # (server time, backup_streamed, backup_total)
        self.proc: subprocess.Popen | None = None
        self.thread = threading.Thread(target=self._read, daemon=True)

    def start(self) -> None:
        c = self.cluster
        psql = "read -r PGPASSWORD; export PGPASSWORD; exec psql -X -A -t -q -U postgres -d postgres"
        argv = ["kubectl", "--context", c.context, "-n", c.namespace, "exec", "-i", PRIMARY, "-c", "postgres", "--",
                "sh", "-c", psql]  # fmt: skip
        self.proc = subprocess.Popen(argv, env=c.tools.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{c.password}\n{self.QUERY.format(interval=self.INTERVAL)}")
        self.proc.stdin.flush()
        self.thread.start()

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            fields = line.split()
            if len(fields) == 3:
                self.seen.append((float(fields[0]), int(fields[1]), int(fields[2])))

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()  # our own kubectl, by its handle
            self.proc.wait()
            self.thread.join()

    def figures(self) -> dict:
        if not self.seen:
            return {"seen": False}
        first, last = self.seen[0], self.seen[-1]
        # Seen from first to last read; the clone ran up to one interval longer at each end.
        seconds = max(last[0] - first[0], self.INTERVAL)
        size = max(s[2] for s in self.seen) or last[1]
        return {
            "seen": True,
            "seconds": round(seconds, 2),
            "bytes": size,
            "mib_per_s": round(size / seconds / 2**20, 1),
            "polls": len(self.seen),
            "interval_s": self.INTERVAL,
        }


STEP_LINE = re.compile(r"^\[\d+/\d+ ([\w-]+)\] finished in (\d+) s", re.MULTILINE)
PAUSE_LINE = re.compile(r"the write pause was ([\d.]+) s")
REHASHED_LINE = re.compile(r"objects: (\d+) objects as hashed before the fence, (\d+) hashed again at the fence")


def run_driver(tools, project, report: Path) -> tuple[int, dict[str, int], str]:
    argv = [sys.executable, "-m", "smartnation.cli.main", "move", ENVIRONMENT, "--to", TARGET, "--yes",
            "--timeout", "1800", "--report", str(report)]  # fmt: skip
    env = {**tools.env, **project.env, "SMARTNATION_PROJECT_DIR": str(project.root),
           "SMARTNATION_OPERATOR": "move-benchmark"}  # fmt: skip
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=3600,
                          stdin=subprocess.DEVNULL)  # fmt: skip
    steps = {name: int(seconds) for name, seconds in STEP_LINE.findall(proc.stdout)}
    return proc.returncode, steps, proc.stdout + proc.stderr


def wal_lsn(cluster: Cluster) -> str:
    return cluster.sql("postgres", "SELECT pg_current_wal_lsn();")


def until_replayed(source: Cluster, lsn: str, seconds: float = 900) -> float:
    """Seconds until Düsseldorf's walsender reports ``lsn`` replayed by its standby."""
    began = time.monotonic()
    while time.monotonic() - began < seconds:
        replayed = source.sql("postgres", f"SELECT bool_or(replay_lsn >= '{lsn}') FROM pg_stat_replication;")
        if replayed == "t":
            return time.monotonic() - began
        time.sleep(0.5)
    raise SystemExit(f"the standby had not replayed {lsn} after {seconds:.0f} s")


def timed(fn) -> tuple[float, object]:
    began = time.monotonic()
    value = fn()
    return time.monotonic() - began, value


def say(message: str) -> None:
    print(f"move benchmark: {message}", file=sys.stderr, flush=True)


@contextmanager
def scratch_project(tools, root: Path, name: str, cluster: str) -> Iterator:
    """dev of project ``name`` on ``cluster``, the ingest's archiver held; destroyed, checked, after."""
    from tests.integration.platform_project import PlatformProject

    state = root / "state"
    state.mkdir(parents=True)
    backend = {"PULUMI_BACKEND_URL": f"file://{state}", "PULUMI_CONFIG_PASSPHRASE": "move-benchmark"}
    project = PlatformProject.create(root / "project", tools, backend, name=name)
    if cluster != SOURCE:
        project.set_cluster(ENVIRONMENT, cluster)
    with (project.root / "environments" / f"{ENVIRONMENT}.yaml").open("a") as file:
        file.write(HOLD_ARCHIVER)
    # What an interrupted earlier run left of the benchmark's own namespaces.
    for context in (SOURCE, TARGET):
        tools.run("kubectl", "--context", context, "delete", "namespace", f"{name}-{ENVIRONMENT}",
                  "--ignore-not-found", "--wait=true", timeout=600)  # fmt: skip
    try:
        project.init_stack(ENVIRONMENT)
        yield project
    finally:
        env_file = project.root / "environments" / f"{ENVIRONMENT}.yaml"
        env_file.write_text(env_file.read_text().replace(MOVE, ""))
        project.destroy(ENVIRONMENT)


def bench_move(env: Mapping[str, str], workdir: Path) -> dict:
    from tests.integration.conftest import Tools

    tools = Tools(env=dict(env))
    figures: dict = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "readings": READINGS,
        "devices": DEVICES,
        "burst": BURST,
    }
    with scratch_project(tools, workdir / "move", MOVE_PROJECT, SOURCE) as project:
        say(f"deploying dev on {SOURCE}")
        figures["deploy_s"] = round(timed(lambda: project.pulumi(
            "up", "--yes", "--skip-preview", "--stack", ENVIRONMENT, timeout=2400))[0], 1)  # fmt: skip
        source = Cluster(tools, SOURCE, f"{MOVE_PROJECT}-{ENVIRONMENT}")
        say(f"seeding {DEVICES:,} devices and {READINGS:,} readings")
        devices_s, _ = timed(lambda: source.sql("devices", SEED_DEVICES))
        readings_s, _ = timed(lambda: source.sql("telemetry", readings_sql(0, READINGS)))
        chunks = source.sql("telemetry", "SELECT count(*) FROM timescaledb_information.chunks;")
        say(f"seeding {OBJECTS:,} objects")
        namespace = f"{MOVE_PROJECT}-{ENVIRONMENT}"
        objects_s, object_bytes = timed(lambda: write_objects(tools, namespace, 0, OBJECTS, "seed"))
        figures["seed"] = {
            "devices_s": round(devices_s, 1),
            "readings_s": round(readings_s, 1),
            "chunks": int(chunks),
            "database_bytes": sizes(source),
            "objects_s": round(objects_s, 1),
            "object_bytes": object_bytes,
        }

        say("replicate: `smartnation move dev --to monaco-onprem --yes`")
        env_file = project.root / "environments" / f"{ENVIRONMENT}.yaml"
        env_file.write_text(env_file.read_text() + MOVE)
        report = workdir / "replicate-verify.json"
        watch = CloneWatch(source)
        watch.start()
        try:
            took, (code, steps, said) = timed(lambda: run_driver(tools, project, report))
        finally:
            watch.stop()
        if code != 0:
            raise SystemExit(f"the replicate driver exited {code}:\n{said[-4000:]}")
        verified = json.loads(report.read_text())
        figures["replicate"] = {
            "driver_s": round(took, 1),
            "steps_s": steps,
            "clone": watch.figures(),
            "verify_equal": verified["equal"],
            "verify_differences": len(verified["differences"]),
            "readings_compared": verified["fingerprints"]["source"]["tables"]["telemetry.public.readings"],
        }
        copies = mirror_copies(tools, namespace)
        figures["objects"] = {
            "first_pass_copies": len(copies),
            "first_pass_s": round(copies[-1] - copies[0], 1) if copies else None,
            "objects_compared": verified["fingerprints"]["source"]["buckets"],
        }
        say(f"objects: {OBJECT_BURST:,} more written on {SOURCE} during replicate")
        began = time.monotonic()
        burst_bytes = write_objects(tools, namespace, OBJECTS, OBJECT_BURST, "burst")
        written = time.monotonic() - began
        while not object_listings_equal(namespace):
            if time.monotonic() - began > 1800:
                raise SystemExit(f"the mirror did not follow {OBJECT_BURST} objects within 1800 s")
            time.sleep(1)
        figures["objects"].update(
            {
                "burst_write_s": round(written, 1),
                "burst_bytes": burst_bytes,
                "burst_mirrored_after_write_s": round(time.monotonic() - began - written, 1),
            }
        )
        target = Cluster(tools, TARGET, f"{MOVE_PROJECT}-{ENVIRONMENT}")

        say(f"streaming: {BURST:,} more readings on {SOURCE}")
        before = wal_lsn(source)
        insert_s, _ = timed(lambda: source.sql("telemetry", readings_sql(READINGS, BURST)))
        after = wal_lsn(source)
        wal = int(source.sql("postgres", f"SELECT pg_wal_lsn_diff('{after}', '{before}');"))
        catch_up = until_replayed(source, after)
        left, right = source.snapshot(), target.snapshot()
        found = differences(left, right)
        figures["streaming"] = {
            "insert_s": round(insert_s, 1),
            "wal_bytes": wal,
            "replayed_after_commit_s": round(catch_up, 1),
            "wal_mib_per_s_while_writing": round(wal / 2**20 / (insert_s + catch_up), 1),
            "readings_source": left.sections["tables"]["telemetry.public.readings"],
            "readings_target": right.sections["tables"]["telemetry.public.readings"],
            "differences": len(found),
        }

        say("cutover: `phase: cutover`, `smartnation move dev --to monaco-onprem --yes`")
        env_file.write_text(env_file.read_text().replace(MOVE, CUTOVER))
        report = workdir / "cutover-verify.json"
        took, (code, steps, said) = timed(lambda: run_driver(tools, project, report))
        if code != 0:
            raise SystemExit(f"the cutover driver exited {code}:\n{said[-4000:]}")
        verified = json.loads(report.read_text())
        pause, rehashed = PAUSE_LINE.search(said), REHASHED_LINE.search(said)
        figures["cutover"] = {
            "driver_s": round(took, 1),
            "steps_s": steps,
            "write_pause_s": float(pause.group(1)) if pause else None,
            "objects_kept": int(rehashed.group(1)) if rehashed else None,
            "objects_rehashed": int(rehashed.group(2)) if rehashed else None,
            "verify_equal": verified["equal"],
            "verify_differences": len(verified["differences"]),
            "readings_compared": verified["fingerprints"]["source"]["tables"]["telemetry.public.readings"],
            "target_takes_writes": target.sql("postgres", "SELECT NOT pg_is_in_recovery();") == "t",
        }

        with scratch_project(tools, workdir / "br", BR_PROJECT, TARGET) as br_project:
            say(f"backup and restore: dev deployed empty on {TARGET} (not part of the pause)")
            deploy_s, _ = timed(lambda: br_project.pulumi("up", "--yes", "--skip-preview", "--stack", ENVIRONMENT,
                                                          timeout=2400))  # fmt: skip
            br_target = Cluster(tools, TARGET, f"{BR_PROJECT}-{ENVIRONMENT}")
            dumps, restores, dump_bytes = {}, {}, {}
            for database in DATABASES:
                path = workdir / f"{database}.dump"
                say(f"pg_dump {database} on {SOURCE}")
                dumps[database], dump_bytes[database] = timed(lambda d=database, p=path: source.dump(d, p))
                say(f"pg_restore {database} into {database}_moved on {TARGET}")
                restores[database], _ = timed(lambda d=database, p=path: br_target.restore(p, f"{d}_moved", d))
            found = differences(source.snapshot(), br_target.snapshot("_moved"))
            dump_s, restore_s = sum(dumps.values()), sum(restores.values())
            figures["backup_restore"] = {
                "target_deploy_s": round(deploy_s, 1),
                "dump_s": {d: round(s, 1) for d, s in dumps.items()},
                "restore_s": {d: round(s, 1) for d, s in restores.items()},
                "dump_bytes": dump_bytes,
                "write_pause_s": round(dump_s + restore_s, 1),
                "differences": len(found),
            }

        say(f"rollback: {ROLLBACK_WRITES:,} readings written on {TARGET}, then `phase: rollback`")
        target.sql("telemetry", readings_sql(READINGS + BURST, ROLLBACK_WRITES))
        env_file.write_text(env_file.read_text().replace(CUTOVER, ROLLBACK))
        report = workdir / "rollback-verify.json"
        took, (code, steps, said) = timed(lambda: run_driver(tools, project, report))
        if code != 0:
            raise SystemExit(f"the rollback driver exited {code}:\n{said[-4000:]}")
        verified = json.loads(report.read_text())
        pause = PAUSE_LINE.search(said)
        figures["rollback_from_cutover"] = {
            "written_on_target": ROLLBACK_WRITES,
            "driver_s": round(took, 1),
            "steps_s": steps,
            "write_pause_s": float(pause.group(1)) if pause else None,
            "verify_equal": verified["equal"],
            "verify_differences": len(verified["differences"]),
            "readings_compared": verified["fingerprints"]["source"]["tables"]["telemetry.public.readings"],
            "source_readings": int(source.sql("telemetry", "SELECT count(*) FROM readings;")),
        }
    say("done")
    return figures


def _object_rows(move: Mapping) -> list[str]:
    """The bucket mirror's rows (runs from before the mirror existed have none)."""
    objects, seed = move.get("objects"), move["seed"]
    if not objects:
        return []
    compared = sum(int(count.removeprefix("objects=")) for count in objects["objects_compared"].values())
    first = objects["first_pass_s"]
    rate = f", {objects['first_pass_copies'] / first:,.0f} objects/s, {seed['object_bytes'] / 2**20 / first:.1f} MiB/s"
    return [
        f"| objects seeded on Düsseldorf ({OBJECTS:,}: 1 MiB every 200th, else 1-16 KiB; 16 writers) | "
        f"{seed['objects_s']} s, {_mib(seed['object_bytes'])} |",
        f"| the bucket mirror's first pass on Monaco (its log: first copy to last) | "
        f"{objects['first_pass_copies']:,} objects in **{first} s**{rate if first else ''} |",
        f"| the verification: objects equal by sha256 | {compared:,} objects in "
        f"{len(objects['objects_compared'])} buckets |",
        f"| {OBJECT_BURST:,} more objects written on Düsseldorf during replicate | "
        f"{objects['burst_write_s']} s, {_mib(objects['burst_bytes'])} |",
        f"| ... listed alike on Monaco after the last write | **{objects['burst_mirrored_after_write_s']} s** |",
    ]


def _losses(move: Mapping) -> str:
    """What the comparisons found, said as the figures have it."""
    rep, stream, br = move["replicate"], move["streaming"], move["backup_restore"]
    back = move.get("rollback_from_cutover") or {"verify_differences": 0, "verify_equal": True}
    ours = rep["verify_differences"] + stream["differences"] + (0 if rep["verify_equal"] else 1)
    ours += back["verify_differences"] + (0 if back["verify_equal"] else 1)
    if ours == 0 and br["differences"] == 0:
        what = "table, chunk, device and object" if move.get("objects") else "table, chunk and device"
        return f"Nothing lost by either method: every {what} compared equal."
    rolled = f", the rollback {back['verify_differences']}" if "rollback_from_cutover" in move else ""
    return (
        f"**Differences found**: replicate {rep['verify_differences']} at its verification and "
        f"{stream['differences']} after streaming{rolled}; backup and restore {br['differences']}."
    )


def _mib(n: int) -> str:
    mib = n / 2**20
    return f"{mib:,.0f} MiB" if mib >= 10 else f"{mib:.1f} MiB" if mib >= 0.1 else f"{n / 2**10:.0f} KiB"


def render_move(move: Mapping | None) -> list[str]:
    if not move:
        not_yet = "Not measured yet: `python -m tests.benchmarks.run --only-move`."
        return ["## Move to Monaco (issue 10)", "", not_yet, ""]
    seed, rep, stream, br = move["seed"], move["replicate"], move["streaming"], move["backup_restore"]
    clone = rep["clone"]
    data = sum(v for k, v in seed["database_bytes"].items())
    # In the driver's order (BENCHMARKS.json keeps its keys sorted).
    order = ["preview", "apply", "wait", "verify"]
    ranked = sorted(rep["steps_s"].items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order))
    steps = ", ".join(f"{name} {seconds} s" for name, seconds in ranked)
    clone_line = (
        f"the clone itself (pg_basebackup, read in Düsseldorf's `pg_stat_progress_basebackup` every "
        f"{clone['interval_s']} s, {clone['polls']} reads while it ran) streamed {_mib(clone['bytes'])} in "
        f"{clone['seconds']} s from the first read to the last, **{clone['mib_per_s']} MiB/s** (at most: it "
        f"ran up to {clone['interval_s']} s longer at either end)"
        if clone.get("seen")
        else "the clone was over between two reads of `pg_stat_progress_basebackup` (0.25 s apart)"
    )
    return [
        f"## Move to Monaco: the replicate phase beside backup and restore ({move['date']})",
        "",
        "`python -m tests.benchmarks.run --only-move` (`tests/benchmarks/move.py`), on real Pods: dev on "
        f"dusseldorf-test's real node seeded with **{move['devices']:,} registered devices and "
        f"{move['readings']:,} readings** from them (a week of one-day chunks, {seed['chunks']} chunks; "
        f"seeding took {seed['devices_s']} s and {seed['readings_s']} s), {_mib(data)} of databases in all. "
        "Figures from one run on this 2-core machine.",
        "",
        "| what | figure |",
        "| --- | ---: |",
        f"| replicate, the driver's run (`smartnation move dev --to monaco-onprem --yes`) | {rep['driver_s']:.0f} s |",
        f"| its steps | {steps} |",
        f"| its verification: every table and chunk equal | {rep['verify_equal']} "
        f"({rep['readings_compared'].split()[0]}) |",
        f"| streaming: {move['burst']:,} more readings written on Düsseldorf in one statement | "
        f"{stream['insert_s']} s, {_mib(stream['wal_bytes'])} of WAL |",
        f"| ... replayed on Monaco after the commit | **{stream['replayed_after_commit_s']} s** |",
        f"| ... then compared: differences (readings on each side) | {stream['differences']} "
        f"({stream['readings_source'].split()[0]} / {stream['readings_target'].split()[0]}) |",
        *_object_rows(move),
        *_cutover_rows(move),
        "| backup and restore: `pg_dump -Fc` on Düsseldorf | "
        + ", ".join(f"{d} {s} s" for d, s in br["dump_s"].items())
        + f" ({', '.join(_mib(b) for b in br['dump_bytes'].values())}) |",
        "| ... `pg_restore` on Monaco (TimescaleDB pre/post restore) | "
        + ", ".join(f"{d} {s} s" for d, s in br["restore_s"].items())
        + " |",
        f"| ... its write pause (dump start to restore end: no write may land in between) | "
        f"**{br['write_pause_s']} s** |",
        f"| ... then compared: differences | {br['differences']} |",
        *_rollback_rows(move),
        "",
        f"In the replicate phase {clone_line}; the apply step also waits for Düsseldorf's new pg_hba line to "
        "reach the running primary (the kubelet's ConfigMap refresh, up to about a minute) before the clone "
        f"is admitted. {_losses(move)}",
        "",
        _pause_compared(move),
        "",
    ]


def _cutover_rows(move: Mapping) -> list[str]:
    """The cutover's rows; a run from before it existed measured the rollback from replicate instead."""
    cut = move.get("cutover")
    if not cut:
        return [f"| rollback (`move:` removed, one `pulumi up`) | {move['rollback_s']:.0f} s |"]
    order = ["preview", "hash-objects", "fence", "catch-up", "verify", "promote", "apply"]
    ranked = sorted(cut["steps_s"].items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order))
    rehashed = (
        f"{cut['objects_kept']:,} as hashed before the fence, {cut['objects_rehashed']:,} hashed again"
        if cut.get("objects_kept") is not None
        else "not said"
    )
    return [
        f"| cutover, the driver's run (`phase: cutover`) | {cut['driver_s']:.0f} s |",
        f"| its steps | {', '.join(f'{name} {seconds} s' for name, seconds in ranked)} |",
        f"| its write pause (the fence to Monaco promoted: catch-up, verify, promote) | **{cut['write_pause_s']} s** |",
        f"| its verification at the fence: every table, chunk, device and object equal | {cut['verify_equal']} "
        f"({cut['readings_compared'].split()[0]}; objects: {rehashed}) |",
        f"| Monaco takes writes after it | {cut['target_takes_writes']} |",
    ]


def _rollback_rows(move: Mapping) -> list[str]:
    """The rollback from the cutover's rows (runs from before it existed have none)."""
    back = move.get("rollback_from_cutover")
    if not back:
        return []
    order = ["preview", "apply", "fence-target", "backup-target", "copy-back", "restore-source", "objects-back",
             "verify", "unfence-source"]  # fmt: skip
    ranked = sorted(back["steps_s"].items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order))
    return [
        f"| rollback from the cutover (`phase: rollback`), {back['written_on_target']:,} readings written on Monaco "
        f"first: the driver's run | {back['driver_s']:.0f} s |",
        f"| its steps | {', '.join(f'{name} {seconds} s' for name, seconds in ranked)} |",
        f"| its write pause (Monaco fenced to Düsseldorf unfenced: a dump, a copy and a restore of everything) "
        f"| **{back['write_pause_s']} s** |",
        f"| its verification: both sites equal; readings on Düsseldorf after it | {back['verify_equal']} "
        f"({back['readings_compared'].split()[0]}); {back['source_readings']:,} |",
    ]


def _pause_compared(move: Mapping) -> str:
    """Our write pause beside backup and restore's, or why there is none to compare."""
    cut, br, stream = move.get("cutover"), move["backup_restore"], move["streaming"]
    if not cut or cut.get("write_pause_s") is None:
        return (
            "Not measured in this run: the cutover, so the write pause of our own move (the streaming row "
            f"above replayed {move['burst']:,} readings' WAL {stream['replayed_after_commit_s']} s after their "
            f"commit, where backup and restore stops writes for {br['write_pause_s']} s)."
        )
    ours, theirs = cut["write_pause_s"], br["write_pause_s"]
    objects = move.get("objects") or {}
    copy = objects.get("first_pass_s")
    if copy:
        # Backup and restore stops writes for the databases' dump and restore and for one whole copy of
        # the objects: at least the longer of the two (run side by side), the sum one after the other.
        least, most = max(theirs, copy), round(theirs + copy, 1)
        said = (
            f"backup and restore's {theirs} s for the databases and {copy} s for one whole copy of the objects "
            f"(the bucket mirror's first pass above), so at least {least} s (side by side) and {most} s one after "
            f"the other"
        )
    else:
        least, said = theirs, f"backup and restore's {theirs} s for the databases"
    shorter = f"{least / ours:.1f} times shorter" if ours < least else f"{ours / least:.1f} times longer"
    compared = " than the least of it" if copy else ""
    return (
        f"**Write pause: ours {ours} s, {said}: ours is {shorter}{compared}.** Ours holds the last "
        "WAL's replay up to the fence, the verification of every table, chunk and device, of each object "
        "changed since it was hashed and of the retained messages (read beside the databases), and the "
        "promotion. No device publishes during this run: the broker bridge's carrying of live readings "
        "across the cutover is shown by tests/integration/test_move_cutover.py, not measured here."
    )
