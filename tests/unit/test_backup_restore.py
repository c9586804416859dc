"""The backup CronJob's scripts and `smartnation restore`'s Jobs: rendered, run under dash with
stand-in `pg_dump`/`psql`/`mc` on PATH, and checked against the recorded stack (the restore Job
must be a Pod the NetworkPolicies admit to the primary and the object storage)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from smartnation.cli import exit_codes, restore, restore_pod
from smartnation.cli import main as cli_main
from smartnation.program.components import database
from tests.unit.test_stack import CRONJOB, Network, pod_labels

pytestmark = pytest.mark.unit

DASH = shutil.which("dash") or "/bin/sh"
DATABASES = ["devices", "telemetry"]

# Stand-ins: each records its argv; FAIL_<NAME>=1 makes it fail like the real one would.
FAKE = """#!/bin/sh
echo "$(basename "$0") $*" >> "$CALLS"
name=$(basename "$0" | tr - _)
eval "fail=\\${{FAIL_$name:-}}"
if [ -n "$fail" ]; then echo "$(basename "$0"): connection refused" >&2; exit 1; fi
{body}
"""
BODIES = {
    # pg_dump/pg_dumpall write the file named after -f.
    "pg_dump": 'while [ $# -gt 0 ]; do [ "$1" = -f ] && echo dump > "$2"; shift; done',
    "pg_dumpall": 'while [ $# -gt 0 ]; do [ "$1" = -f ] && echo roles > "$2"; shift; done',
    "pg_restore": "",
    "psql": 'case "$*" in *timescaledb*) case "$*" in *telemetry*) echo 2.17.2;; *) echo -;; esac;; esac',
    "mc": "",
    "pg_isready": "",
}


def _tools(tmp_path: Path) -> dict[str, str]:
    folder = tmp_path / "bin"
    folder.mkdir()
    for name, body in BODIES.items():
        (folder / name).write_text(FAKE.format(body=body))
        (folder / name).chmod(0o755)
    calls = tmp_path / "calls"
    calls.write_text("")
    return {"PATH": f"{folder}:{os.environ['PATH']}", "CALLS": str(calls), "PGHOST": "primary"}


def _run(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DASH, "-c", script], env=env, capture_output=True, text=True, timeout=30)


def _calls(env: dict[str, str]) -> list[str]:
    return Path(env["CALLS"]).read_text().splitlines()


def test_dump_script_dumps_each_database_in_custom_format_and_the_roles(tmp_path: Path) -> None:
    env = _tools(tmp_path)
    backup = tmp_path / "backup"
    done = _run(database.dump_script(DATABASES, str(backup)), env)
    assert done.returncode == 0, done.stderr
    calls = _calls(env)
    assert any(c.startswith("pg_dumpall ") and "--globals-only" in c for c in calls)
    dumps = [c for c in calls if c.startswith("pg_dump ")]
    assert [c.split()[-1] for c in dumps] == DATABASES
    assert all("--format=custom" in c for c in dumps)
    assert (backup / database.BACKUP_MANIFEST).read_text() == "devices -\ntelemetry 2.17.2\n"
    assert {p.name for p in (backup / database.BACKUP_SET).iterdir()} == {
        "globals.sql",
        "devices.dump",
        "telemetry.dump",
    }
    assert (backup / database.BACKUP_STAMP).read_text().strip()


@pytest.mark.parametrize("failing", ["pg_dump", "pg_dumpall", "pg_restore", "psql"])
def test_a_failing_step_fails_the_dump_and_leaves_no_manifest(tmp_path: Path, failing: str) -> None:
    env = {**_tools(tmp_path), f"FAIL_{failing}": "1"}
    backup = tmp_path / "backup"
    done = _run(database.dump_script(DATABASES, str(backup)), env)
    assert done.returncode != 0
    assert "connection refused" in done.stderr
    # The upload container never starts after a failed init container; even if it did, it finds
    # no stamp and no manifest, and restore ignores a set without its manifest.
    assert not (backup / database.BACKUP_MANIFEST).exists()
    assert not (backup / database.BACKUP_STAMP).exists()


def _shell_lines(script: str) -> list[str]:
    """The script without its here-documents (SQL for psql, not shell)."""
    lines, in_sql = [], False
    for line in script.splitlines():
        if in_sql:
            in_sql = line != "SQL"
        else:
            lines.append(line)
            in_sql = line.endswith("<<'SQL'")
    return lines


def test_scripts_use_no_pipe_whose_status_dash_would_lose() -> None:
    scripts = [database.dump_script(DATABASES), database.upload_script(), restore_pod.download_script()]
    scripts += [restore_pod.LIST_SCRIPT, restore_pod.restore_script()]
    for script in scripts:
        assert script.startswith("set -eu\n")
        # The only '|' outside SQL is psql's field separator, quoted.
        assert all("|" not in line.replace("-F '|'", "") for line in _shell_lines(script)), script


def test_upload_sends_the_set_then_the_manifest_last_and_fails_on_a_failed_copy(tmp_path: Path) -> None:
    env = {**_tools(tmp_path), "BUCKET": "backups", "ENVIRONMENT": "dev", "S3_ENDPOINT": "http://s3"}
    env.update(AWS_ACCESS_KEY_ID="k", AWS_SECRET_ACCESS_KEY="s")
    backup = tmp_path / "backup"
    assert _run(database.dump_script(DATABASES, str(backup)), env).returncode == 0
    stamp = (backup / database.BACKUP_STAMP).read_text().strip()
    Path(env["CALLS"]).write_text("")
    done = _run(database.upload_script(str(backup)), env)
    assert done.returncode == 0, done.stderr
    copies = [c.split()[-1] for c in _calls(env) if c.startswith("mc cp")]
    assert copies[-1] == f"store/backups/dev/{stamp}/manifest"
    assert sorted(copies[:-1]) == [f"store/backups/dev/{stamp}/"] * 3
    assert _run(database.upload_script(str(backup)), {**env, "FAIL_mc": "1"}).returncode != 0


def test_the_cronjob_runs_the_rendered_scripts(build_stack) -> None:
    stack = build_stack("dev")
    (cron,) = stack.of_type(CRONJOB)
    spec = cron.plain["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (dump,) = spec["initContainers"]
    (upload,) = spec["containers"]
    names = [d.name for d in stack.settings.database.databases]
    assert dump["command"] == ["sh", "-c", database.dump_script(names)]
    assert upload["command"] == ["sh", "-c", database.upload_script()]
    assert {e["name"] for e in dump["env"]} >= {"PGHOST", "PGUSER", "PGPASSWORD"}


def _cronjob(build_stack) -> tuple[dict, object]:
    stack = build_stack("dev")
    (cron,) = stack.of_type(CRONJOB)
    plain = json.loads(json.dumps(cron.plain))
    plain["metadata"].setdefault("namespace", "smartnation-dev")
    return plain, stack


def test_the_restore_job_is_a_backup_pod_the_network_policies_admit(build_stack) -> None:
    cron, stack = _cronjob(build_stack)
    job = restore_pod.restore_job(cron, "dev-database-restore-x", "20261129T021500Z", "restore")
    pod = job["spec"]["template"]
    net, pods = Network(stack), pod_labels(stack)
    labels = pod["metadata"]["labels"]
    assert net.allows(("pod", labels), ("pod", pods["database/primary"]), database.PORT)
    assert net.allows(("pod", labels), ("pod", pods["object-storage/server"]), 9000)
    assert labels["app.kubernetes.io/managed-by"] == restore_pod.MANAGED_BY
    template = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    spec = pod["spec"]
    (download,) = spec["initContainers"]
    (restorer,) = spec["containers"]
    # Same images, Secrets, placement and security as the backup; only the scripts differ.
    assert download["image"] == template["containers"][0]["image"]
    assert restorer["image"] == template["initContainers"][0]["image"]
    assert download["envFrom"] == template["containers"][0]["envFrom"]
    assert restorer["securityContext"] == template["initContainers"][0]["securityContext"]
    for key in ("nodeSelector", "securityContext", "volumes", "tolerations"):
        assert spec.get(key) == template.get(key)
    env = {e["name"]: e.get("value") for e in restorer["env"]}
    assert env["SUFFIX"] == "restore" and env["COMPARE"] == "1" and env["CLEANUP"] == "0"
    assert {e["name"]: e.get("value") for e in download["env"]}["BACKUP"] == "20261129T021500Z"
    for container in (download, restorer):
        mount = next(m for m in container["volumeMounts"] if m["mountPath"] == database.BACKUP_DIR)
        assert not mount.get("readOnly")
    assert job["spec"]["backoffLimit"] == 0 and job["spec"]["ttlSecondsAfterFinished"] > 0
    listing = restore_pod.list_job(cron, "dev-database-backups-x")["spec"]["template"]
    assert listing["metadata"]["labels"] == labels and "initContainers" not in listing["spec"]


@pytest.mark.parametrize(
    ("backup", "suffix"),
    [("latest", "restore"), ("20261129T021500Z", "Restore"), ("20261129T021500Z", ""), ("x", "a"), ("", "a")],
)
def test_bad_names_are_refused_before_anything_runs(build_stack, backup: str, suffix: str) -> None:
    cron, _ = _cronjob(build_stack)
    with pytest.raises(restore_pod.RestoreError, match="--backup|--into"):
        restore_pod.restore_job(cron, "j", backup, suffix)


def test_a_cronjob_without_the_backup_containers_is_refused(build_stack) -> None:
    cron, _ = _cronjob(build_stack)
    cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["initContainers"][0]["name"] = "dumpall"
    with pytest.raises(restore_pod.RestoreError, match="dump"):
        restore_pod.restore_job(cron, "j", "20261129T021500Z", "restore")


def test_listing_groups_files_by_run_and_knows_an_unfinished_one() -> None:
    def line(key: str, size: int) -> str:
        return json.dumps({"status": "success", "type": "file", "key": key, "size": size})

    log = "\n".join(
        [
            line("20261128T021500Z/globals.sql", 10),
            line("20261128T021500Z/devices.dump", 100),
            line("20261128T021500Z/manifest", 5),
            line("20261129T021500Z/devices.dump", 7),  # no manifest: the run failed half-way
            line("20261127T021500Z.sql.gz", 999),  # a single-file dump of before: not a set
            "mc: <WARN> something",
        ]
    )
    backups = restore_pod.parse_listing(log)
    assert [(b.name, b.complete, b.size) for b in backups] == [
        ("20261128T021500Z", True, 115),
        ("20261129T021500Z", False, 7),
    ]
    assert restore.choose(backups, restore.LATEST).name == "20261128T021500Z"
    with pytest.raises(restore_pod.RestoreError, match="did not finish"):
        restore.choose(backups, "20261129T021500Z")
    with pytest.raises(restore_pod.RestoreError, match="no backup"):
        restore.choose(backups, "20261130T021500Z")


def test_comparison_finds_changed_missing_and_extra_tables() -> None:
    log = "\n".join(
        [
            "restore: telemetry restored",
            "ROW|source|telemetry|public.readings|10|123",
            "ROW|restored|telemetry|public.readings|10|123",
            "ROW|source|telemetry|public.odd|name|2|5",  # a table name holding the separator
            "ROW|restored|telemetry|public.odd|name|2|6",
            "ROW|source|devices|public.devices|3|9",
            "ROW|restored|devices|public.extra|0|0",
        ]
    )
    checks = {(c.database, c.table): c for c in restore_pod.compare(restore_pod.parse_rows(log))}
    assert checks[("telemetry", "public.readings")].same
    assert not checks[("telemetry", "public.odd|name")].same
    assert checks[("devices", "public.devices")].restored is None
    assert checks[("devices", "public.extra")].source is None and not checks[("devices", "public.extra")].same
    report = restore.render_report(list(checks.values()))
    assert report.count("DIFFERENT") == 3 and "(missing)" in report


def test_restore_is_a_cli_command_that_lists_by_default() -> None:
    args = cli_main.build_parser().parse_args(["restore", "staging"])
    assert args.func is restore.cmd_restore and args.backup is None and args.into == restore.DEFAULT_SUFFIX
    args = cli_main.build_parser().parse_args(["restore", "dev", "--backup", "latest", "--into", "rst", "--cleanup"])
    assert (args.backup, args.into, args.cleanup) == ("latest", "rst", True)


def test_over_live_is_asked_for_and_never_combined_with_cleanup(build_stack, capsys) -> None:
    cron, _ = _cronjob(build_stack)
    job = restore_pod.restore_job(cron, "j", "20261129T021500Z", "restore", compare=False, over_live="replaced_1")
    (restorer,) = job["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in restorer["env"]}
    assert (env["OVER_LIVE"], env["REPLACED"], env["COMPARE"]) == ("1", "replaced_1", "0")
    default = restore_pod.restore_job(cron, "j", "20261129T021500Z", "restore")["spec"]["template"]["spec"]
    assert {e["name"]: e.get("value") for e in default["containers"][0]["env"]}["OVER_LIVE"] == "0"
    parser = cli_main.build_parser()
    for argv in (
        ["restore", "dev", "--backup", "latest", "--over-live", "--cleanup"],
        ["restore", "dev", "--over-live"],
    ):
        assert restore.cmd_restore(parser.parse_args(argv)) == exit_codes.FAILED
