"""`smartnation verify ENV` against the dev the session deployed on monaco-onprem's real node
(conftest.dev_on_monaco; staging on dusseldorf-test is verified in test_platform_stack), so a
fresh machine's `make test` needs nothing `make up` left.

verify uses an environment as any operator's verify does: it publishes a few readings of a
`smartnation-verify-<random>` device, registers and retires one device, runs the backup once and
restores it into scratch databases it drops again, and (the passing run) records its result on
the namespace. The failure case is a bound no reading can meet (0 s).
"""

from __future__ import annotations

import json
import re
import subprocess
from datetime import UTC, datetime

import psycopg
import pytest

from smartnation.cli import exit_codes, verify
from smartnation.program.components import database
from smartnation.settings import load_settings
from smartnation.settings.stack_secrets import CONFIG_NAMESPACE, DATABASE_SUPERUSER_PASSWORD
from tests.integration.conftest import REPO, Tools
from tests.integration.running_pods import port_forward

pytestmark = pytest.mark.integration

CLI = REPO / ".venv" / "bin" / "smartnation"
LINE = re.compile(r"^(PASS|FAIL)  (\S+) +(\d+\.\d)s  (.*)$")


@pytest.fixture(scope="module")
def deployment(dev_on_monaco):
    """(environment, the CLI's environment variables for the project and state backend of the dev
    the session deployed on Monaco's real node; staging is verified in test_platform_stack)."""
    return "dev", {**dev_on_monaco.backend, "SMARTNATION_PROJECT_DIR": str(dev_on_monaco.root)}


def smartnation(tools: Tools, deployment, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    _environment, env = deployment
    proc = subprocess.run(
        [str(CLI), *args], cwd=REPO, env={**tools.env, **env}, capture_output=True, text=True, timeout=timeout,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    # Shown by pytest when a test fails: what the operator would have seen.
    print(f"$ smartnation {' '.join(args)}  -> {proc.returncode}\n{proc.stdout}\n{proc.stderr[-4000:]}")
    return proc


def report(stdout: str) -> dict[str, tuple[str, float, str]]:
    """check name -> (PASS/FAIL, seconds, detail) from verify's lines."""
    lines = [LINE.match(line) for line in stdout.splitlines()]
    return {m.group(2): (m.group(1), float(m.group(3)), m.group(4)) for m in lines if m}


def _databases(tools: Tools, project) -> list[str]:
    """The databases on the dev's primary, read as the superuser through a port-forward."""
    shown = json.loads(project.pulumi("config", "--show-secrets", "--json", "--stack", "dev").stdout)
    password = shown[f"{CONFIG_NAMESPACE}:{DATABASE_SUPERUSER_PASSWORD}"]["value"]
    namespace = f"{project.name}-dev"
    pods = tools.kubectl_json(
        "monaco-onprem", "-n", namespace, "get", "pods", "-l", "app.kubernetes.io/component=primary"
    )
    (pod,) = [p["metadata"]["name"] for p in pods["items"] if p["status"].get("phase") == "Running"]
    with port_forward(tools, "monaco-onprem", namespace, pod, database.PORT) as port:
        # The superuser is admitted on the Pod's loopback without TLS only (daemon_config/postgres.py).
        dsn = f"host=127.0.0.1 port={port} user=postgres password={password} dbname=postgres sslmode=disable"
        with psycopg.connect(dsn, connect_timeout=10, autocommit=True) as conn:
            return [row[0] for row in conn.execute("SELECT datname FROM pg_database").fetchall()]


def test_verify_passes_on_the_deployed_environment_and_status_shows_it(tools: Tools, deployment, dev_on_monaco):
    environment = deployment[0]
    started = datetime.now(UTC).replace(microsecond=0)
    proc = smartnation(tools, deployment, "verify", environment)

    assert proc.returncode == exit_codes.OK, proc.stderr[-2000:]
    lines = report(proc.stdout)
    assert list(lines) == [c.name for c in verify.CHECKS]
    assert all(verdict == "PASS" for verdict, _, _ in lines.values()), lines
    assert proc.stdout.splitlines()[-1].startswith(f"verify {environment}: {len(lines)}/{len(lines)} passed in ")
    # The reading arrived within the environment's stated bound, and the time reported is the one measured.
    bound = load_settings(environment, REPO / "environments").verify.reading_bound_seconds
    served = re.search(r"served (\d+\.\d)s after", lines["reading-in-open-data-api"][2])
    assert served and float(served.group(1)) <= bound
    assert f"(bound {bound:g}s)" in lines["reading-in-open-data-api"][2]
    # The backup CronJob's Job ran once; its set was in the bucket and restored with equal tables.
    backup = lines["backup-restores"][2]
    assert re.search(r"backup \d{8}T\d{6}Z in bucket backups .* counts and checksums equal", backup), backup
    # Its scratch databases were dropped again; the live ones are still there.
    databases = _databases(tools, dev_on_monaco)
    assert "telemetry" in databases and not [d for d in databases if "_verify_" in d], databases
    # Devices have their own certificates: one cannot publish as another, and the internal
    # subscriber's password is refused on the public listener.
    assert "Not authorized, not delivered" in lines["broker-acl-other-device-topic"][2]
    assert "refused" in lines["broker-refuses-passwords"][2]
    assert "own certificate" in lines["broker-tls-publish"][2]
    # verify retired the device certificates it made.
    made = tools.kubectl_json("monaco-onprem", "-n", f"{dev_on_monaco.name}-dev", "get", "certificates.cert-manager.io")
    assert not [c for c in made["items"] if c["metadata"]["name"].startswith("smartnation-verify-")], made

    health = json.loads(smartnation(tools, deployment, "status", environment, "--json", "--no-drift").stdout)[0]
    assert health["health_error"] is None
    assert health["workloads"] and all(w["ready"] == w["desired"] for w in health["workloads"])
    passed = datetime.fromisoformat(health["last_verify_passed"].replace("Z", "+00:00"))
    assert passed >= started
    table = smartnation(tools, deployment, "status", environment, "--no-drift").stdout
    assert f"verified {health['last_verify_passed']}" in table


def test_verify_reports_a_reading_over_its_bound_and_exits_non_zero(tools: Tools, deployment):
    environment = deployment[0]
    before = json.loads(smartnation(tools, deployment, "status", environment, "--json", "--no-drift").stdout)[0]
    proc = smartnation(
        tools,
        deployment,
        "verify",
        environment,
        "--check",
        "broker-tls-publish",
        "--check",
        "reading-in-open-data-api",
        "--reading-bound",
        "0",
        "--no-record",
    )

    assert proc.returncode == exit_codes.FAILED
    lines = report(proc.stdout)
    assert lines["broker-tls-publish"][0] == "PASS"
    verdict, _, detail = lines["reading-in-open-data-api"]
    assert verdict == "FAIL" and "over the bound of 0s" in detail, detail
    summary = proc.stdout.splitlines()[-1]
    assert summary.startswith(f"verify {environment}: 1/2 passed") and summary.endswith(
        "FAILED: reading-in-open-data-api"
    )
    # --no-record: the failed run left the recorded last pass as it was.
    after = json.loads(smartnation(tools, deployment, "status", environment, "--json", "--no-drift").stdout)[0]
    assert after["last_verify_passed"] == before["last_verify_passed"]


def test_an_unknown_check_is_refused_before_anything_runs(tools: Tools, deployment):
    environment = deployment[0]
    proc = smartnation(tools, deployment, "verify", environment, "--check", "no-such-check")
    assert proc.returncode == exit_codes.BAD_INPUT
    assert "unknown check; known: workloads-ready" in proc.stderr
    assert report(proc.stdout) == {}
