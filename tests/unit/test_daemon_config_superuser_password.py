"""Unit: the primary's start script that sets the superuser's password from its Secret
(smartnation/program/daemon_config/superuser_password.py), run by sh with `postgres` and the
image's entrypoint stood in.

tests/contract/test_postgres_superuser_password.py runs it against a real PostgreSQL 15;
test_secret_consumers.py checks the primary's container runs it. Here, fast enough for every
mutant: when it sets the password (an existing primary only), the exact statement it pipes (a
quote doubled, a newline kept, the password never on a command line), that any error stops the
container before the server starts, and that it always ends in the entrypoint with its args.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from smartnation.program.daemon_config.superuser_password import SUPERUSER, set_password_script

pytestmark = pytest.mark.unit

# Records its argv (one a line), its stdin and PG_GRANDPARENT_PID; prints $POSTGRES_SAYS on
# stderr and exits $POSTGRES_EXIT.
POSTGRES = """#!/bin/sh
for arg in "$@"; do printf '%s\\n' "$arg"; done > "$CALLS/postgres.argv"
cat > "$CALLS/postgres.stdin"
echo "${PG_GRANDPARENT_PID:-unset}" > "$CALLS/postgres.grandparent"
echo "on stdout, not collected"
[ -n "${POSTGRES_SAYS:-}" ] && echo "$POSTGRES_SAYS" >&2
exit "${POSTGRES_EXIT:-0}"
"""
ENTRYPOINT = """#!/bin/sh
for arg in "$@"; do printf '%s\\n' "$arg"; done > "$CALLS/entrypoint.argv"
"""


def _run(tmp_path: Path, *, cluster: bool = True, standby: bool = False, **env: str) -> subprocess.CompletedProcess:
    tools, calls, pgdata = tmp_path / "bin", tmp_path / "calls", tmp_path / "pgdata"
    for folder in (tools, calls, pgdata):
        folder.mkdir(exist_ok=True)
    pgdata.chmod(0o750)
    if cluster:
        (pgdata / "PG_VERSION").write_text("15\n")
    if standby:
        (pgdata / "standby.signal").write_text("")
    for name, body in (("postgres", POSTGRES), ("entrypoint", ENTRYPOINT)):
        path = tools / name
        path.write_text(body)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    script = set_password_script(str(tools / "entrypoint"))
    base = {"PATH": f"{tools}:/usr/bin:/bin", "CALLS": str(calls), "PGDATA": str(pgdata), "POSTGRES_PASSWORD": "pw"}
    return subprocess.run(
        ["sh", "-c", script, "postgres-primary", "postgres", "-c", "config_file=/etc/pg.conf"],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def _calls(tmp_path: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in (tmp_path / "calls").iterdir()}


def test_on_an_existing_primary_it_sets_the_password_then_starts_the_server(tmp_path: Path) -> None:
    proc = _run(tmp_path, POSTGRES_PASSWORD="it's a 'pass'\nword")
    assert proc.returncode == 0, proc.stderr
    calls = _calls(tmp_path)
    # A quote doubled, the newline kept as data (-j: only ";" and an empty line end it).
    assert calls["postgres.stdin"] == "ALTER ROLE postgres PASSWORD 'it''s a ''pass''\nword';\n\n"
    assert calls["postgres.argv"].splitlines() == [
        "--single",
        "-j",
        "-D",
        str(tmp_path / "pgdata"),
        "-c",
        "log_min_error_statement=panic",
        "-c",
        "log_statement=none",
        "-c",
        "log_min_messages=error",
        SUPERUSER,
    ]
    # The shell that runs the pipeline: PostgreSQL then takes the old server's lock as stale.
    assert calls["postgres.grandparent"].strip().isdigit()
    assert proc.stdout.splitlines() == ["database: superuser password set from its Secret"]
    # The server starts only now, with the container's own arguments.
    assert calls["entrypoint.argv"].splitlines() == ["postgres", "-c", "config_file=/etc/pg.conf"]
    # PostgreSQL refuses a data directory others may read.
    assert stat.S_IMODE(os.stat(tmp_path / "pgdata").st_mode) == 0o700


def test_a_password_without_quotes_goes_as_it_is(tmp_path: Path) -> None:
    proc = _run(tmp_path, POSTGRES_PASSWORD="plain")
    assert proc.returncode == 0, proc.stderr
    assert _calls(tmp_path)["postgres.stdin"] == "ALTER ROLE postgres PASSWORD 'plain';\n\n"


@pytest.mark.parametrize(("cluster", "standby"), [(False, False), (True, True)])
def test_a_new_cluster_or_a_standby_goes_straight_to_the_entrypoint(
    tmp_path: Path, cluster: bool, standby: bool
) -> None:
    proc = _run(tmp_path, cluster=cluster, standby=standby)
    assert proc.returncode == 0, proc.stderr
    calls = _calls(tmp_path)
    assert "postgres.argv" not in calls
    assert calls["entrypoint.argv"].splitlines() == ["postgres", "-c", "config_file=/etc/pg.conf"]
    assert proc.stdout == ""


def test_an_empty_pg_version_is_no_cluster(tmp_path: Path) -> None:
    (tmp_path / "pgdata").mkdir()
    (tmp_path / "pgdata" / "PG_VERSION").write_text("")
    proc = _run(tmp_path, cluster=False)
    assert proc.returncode == 0, proc.stderr
    assert "postgres.argv" not in _calls(tmp_path)


@pytest.mark.parametrize(
    ("says", "code"),
    [
        ("ERROR:  role does not exist", "0"),
        ("FATAL:  lock file exists", "0"),
        ("PANIC:  could not write", "0"),
        ("could not start", "1"),
    ],
)
def test_any_error_stops_the_container_before_the_server_starts(tmp_path: Path, says: str, code: str) -> None:
    proc = _run(tmp_path, POSTGRES_SAYS=says, POSTGRES_EXIT=code)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"database: setting the superuser password failed: {says}"
    assert "entrypoint.argv" not in _calls(tmp_path)


def test_a_warning_alone_does_not_stop_it(tmp_path: Path) -> None:
    proc = _run(tmp_path, POSTGRES_SAYS="WARNING:  something harmless")
    assert proc.returncode == 0, proc.stderr
    assert "entrypoint.argv" in _calls(tmp_path)


def test_the_password_is_never_on_a_command_line(tmp_path: Path) -> None:
    proc = _run(tmp_path, POSTGRES_PASSWORD="s3cret-value")
    assert proc.returncode == 0, proc.stderr
    calls = _calls(tmp_path)
    assert "s3cret-value" not in calls["postgres.argv"] + calls["entrypoint.argv"]
    assert "s3cret-value" not in set_password_script("/entrypoint")


@pytest.mark.parametrize(
    ("unset", "message"),
    [("PGDATA", "PGDATA must name the data directory"), ("POSTGRES_PASSWORD", "POSTGRES_PASSWORD must hold")],
)
def test_without_its_data_directory_or_password_it_refuses_to_start(tmp_path: Path, unset: str, message: str) -> None:
    proc = _run(tmp_path, **{unset: ""})
    assert proc.returncode != 0
    assert message in proc.stderr
    assert "entrypoint.argv" not in _calls(tmp_path)


def test_another_superuser_is_named_in_the_statement(tmp_path: Path) -> None:
    script = set_password_script("/entrypoint", superuser="admin")
    assert "ALTER ROLE admin PASSWORD" in script
    assert script.endswith('exec /entrypoint "$@"\n')
    assert script.startswith("set -eu\n")
