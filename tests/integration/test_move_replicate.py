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
recorded. After more rows, its lag wait and verification run again against the real clusters.

Needs what `make clusters` starts: both clusters, their real nodes and the site link.
"""

from __future__ import annotations

import argparse
import base64
import json
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from smartnation.cli import compare, exit_codes, move_driver, workspace
from smartnation.cli.compare_data import DATABASE_SQL, Snapshot, differences
from smartnation.cli.move import move_status
from smartnation.tooling.local_clusters import site_link
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
    secret = tools.kubectl_json(context, "-n", NAMESPACE, "get", "secret", f"{ENVIRONMENT}-database-credentials")
    password = base64.b64decode(secret["data"]["POSTGRES_PASSWORD"]).decode()
    script = 'read -r PGPASSWORD; export PGPASSWORD; exec psql -X -A -t -q -v ON_ERROR_STOP=1 -U postgres -d "$1"'
    return tools.run("kubectl", "--context", context, "-n", NAMESPACE, "exec", "-i", PRIMARY, "-c", "postgres",
                     "--", "sh", "-c", script, "sh", database, input=f"{password}\n{sql}").stdout.strip()  # fmt: skip


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
        yield project
    finally:
        project.destroy(ENVIRONMENT)
        left = tools.run("kubectl", "--context", TARGET, "get", "namespace", NAMESPACE, check=False)
        assert left.returncode != 0, f"{NAMESPACE} is still on {TARGET} after the destroy"


def test_replicate_streams_to_monaco_and_rolls_back_by_one_phase_change(dev_on_dusseldorf, tools, monkeypatch) -> None:
    project = dev_on_dusseldorf
    env_file = project.root / "environments" / f"{ENVIRONMENT}.yaml"
    without_move = env_file.read_text()
    before = tools.kubectl_json(SOURCE, "-n", NAMESPACE, "get", "pod", PRIMARY)["metadata"]["uid"]
    status = _move_status(tools, project)
    assert (status["move"], status["phase"], status["target"]) == (None, None, None), status
    assert (status["source"]["cluster"], status["source"]["namespace_exists"]) == (SOURCE, True)
    assert status["source"]["in_recovery"] is False and status["source"]["replication"] == []

    # --- replicate: previewed, nothing of Düsseldorf replaced or deleted -------------------
    env_file.write_text(without_move + MOVE)
    steps = _steps(project)
    on_source = {(op, kind) for op, site, kind in steps if site == SOURCE}
    assert on_source == {("create", "Service"), ("create", "NetworkPolicy"), ("update", "ConfigMap"),
                         ("update", "ResourceQuota")}, steps  # fmt: skip
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
    source, target = _tables(tools, SOURCE), _tables(tools, TARGET)
    assert differences(source, target, ("tables", "chunks")) == []
    assert source.sections["tables"]["telemetry.public.readings"].startswith("rows=300 ")
    assert len(source.sections["chunks"]) >= 3, "three days of readings: a chunk per day, each compared"

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
    # The 50 rows were a transaction replayed on Monaco: the time since then is known.
    since = target["seconds_since_last_replay"]
    assert isinstance(since, int | float) and since >= 0, target
    assert differences(_tables(tools, SOURCE), _tables(tools, TARGET), ("tables", "chunks")) == []

    # --- the driver's lag wait and verification again, after the new rows --------------------
    assert (status["phase"], status["applied_phase"]) == ("replicate", "replicate"), status
    report = project.root / "verify-after-writes.json"
    # In this process, with the scratch project's env.
    for key, value in _cli_env(tools, project).items():
        monkeypatch.setenv(key, value)
    stack, settings = workspace.select(ENVIRONMENT, create=False)
    args = argparse.Namespace(timeout=300.0, interval=2.0, report=str(report), yes=True)
    run = move_driver.Run(args, settings, NAMESPACE, lambda: move_status(ENVIRONMENT, NAMESPACE, False), stack)
    began = time.monotonic()
    said = move_driver.wait(run)
    print(f"lag wait: {said} ({time.monotonic() - began:.1f} s)")
    assert said.startswith(f"{TARGET} streams with lag 0 bytes after "), said
    began = time.monotonic()
    said = move_driver.verify(run)
    print(f"verification: {said} ({time.monotonic() - began:.1f} s)")
    verified = json.loads(report.read_text())
    assert verified["equal"] is True and verified["differences"] == [], verified
    fingerprints = verified["fingerprints"]
    assert fingerprints["source"] == fingerprints["target"]
    assert fingerprints["source"]["tables"]["telemetry.public.readings"].startswith("rows=350 ")
    assert len(fingerprints["source"]["chunks"]) >= 3

    # --- rollback from replicate: one phase change ------------------------------------------
    env_file.write_text(without_move)
    steps = _steps(project)
    assert not [s for s in steps if s[0] in UNSAFE_OPS], steps
    assert {(op, kind) for op, site, kind in steps if site == SOURCE} == {
        ("delete", "Service"), ("delete", "NetworkPolicy"), ("update", "ConfigMap"), ("update", "ResourceQuota")
    }, steps  # fmt: skip
    assert {op for op, site, _ in steps if site == TARGET} == {"delete"}, steps
    project.pulumi("up", "--yes", "--skip-preview", "--stack", ENVIRONMENT, timeout=2400)
    assert "move" not in project.outputs(ENVIRONMENT)
    gone = tools.run("kubectl", "--context", TARGET, "get", "namespace", NAMESPACE, check=False)
    assert gone.returncode != 0, f"{NAMESPACE} is still on {TARGET} after the rollback"
    pod = tools.kubectl_json(SOURCE, "-n", NAMESPACE, "get", "pod", PRIMARY)
    assert pod["metadata"]["uid"] == before, "Düsseldorf's primary ran throughout"
    assert _psql(tools, SOURCE, "telemetry", "SELECT count(*) FROM readings;") == "350"
    admitted = f"SELECT count(*) FROM pg_hba_file_rules WHERE address = '{LINK_ADDRESS}';"
    _until("pg_hba without the link address", lambda: _psql(tools, SOURCE, "postgres", admitted), "0")
