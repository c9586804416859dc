"""A second checkout of a deployed environment (issue 11 item 7, issue 12), on Monaco's real node.

Stack files are never committed, so a fresh clone meets a deployed stack without one. dev is
deployed with `smartnation up --init-secrets` from a first scratch project (project
``<prefix>-co``, a private file backend); a second scratch project runs the same program with the
same backend and no stack file, and one role more in its settings. Then, in this order:

1. `smartnation up dev` there: refused before the engine runs (BAD_INPUT), the error names the
   stack file and a missing key; no update recorded, no stack file written;
2. `smartnation up dev --init-secrets` there: every secret the deployed stack had is taken from
   its last update, unchanged; only the new role's password is generated; the setup Job ran with
   the superuser password the server has (the new role exists and logs in), the primary was not
   restarted and answers the first checkout's superuser password;
3. a stack file that lacks one secret: `smartnation up dev` is refused naming that key, nothing
   recorded; `--init-secrets` puts the deployed value back.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import yaml

from smartnation.cli import exit_codes
from smartnation.program.components import database
from smartnation.settings.stack_secrets import CONFIG_NAMESPACE, DATABASE_SUPERUSER_PASSWORD, database_role_password
from tests.integration.platform_project import PROJECT, REPO, PlatformProject
from tests.integration.running_pods import port_forward

pytestmark = pytest.mark.integration

CLI = REPO / ".venv" / "bin" / "smartnation"
ENVIRONMENT = "dev"
CLUSTER = "monaco-onprem"
NAME = f"{PROJECT}-co"
NAMESPACE = f"{NAME}-{ENVIRONMENT}"
PRIMARY_POD = f"{ENVIRONMENT}-database-primary-0"
PROBE_ROLE = "second_checkout_probe"
STACK_FILE = f"environments/stacks/Pulumi.{ENVIRONMENT}.yaml"


class Checkout:
    """One scratch project and the CLI run against it, as an operator in that checkout would."""

    def __init__(self, project: PlatformProject) -> None:
        self.project = project

    @property
    def stack_file(self) -> Path:
        return self.project.root / STACK_FILE

    def cli(self, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            **self.project.tools.env,
            **self.project.env,
            "SMARTNATION_PROJECT_DIR": str(self.project.root),
            "SMARTNATION_OPERATOR": "integration-tests@smartnation.mc",
        }
        proc = subprocess.run(
            [str(CLI), *args], cwd=self.project.root, env=env, capture_output=True, text=True, timeout=timeout,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        # Shown by pytest when a test fails: what the operator would have seen.
        print(f"$ smartnation {' '.join(args)}  -> {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
        return proc

    def secrets(self) -> dict[str, str]:
        shown = json.loads(self.project.pulumi("config", "--show-secrets", "--json", "--stack", ENVIRONMENT).stdout)
        prefix = f"{CONFIG_NAMESPACE}:"
        return {k.removeprefix(prefix): v["value"] for k, v in shown.items() if k.startswith(prefix)}


def updates(checkout: Checkout) -> int:
    """How many updates the backend recorded for the stack (read from the first checkout: in one
    without a stack file `pulumi stack history` would write one)."""
    return len(json.loads(checkout.project.pulumi("stack", "history", "--json", "--stack", ENVIRONMENT).stdout))


def superuser_sql(tools, password: str, sql: str) -> list[tuple]:
    with port_forward(tools, CLUSTER, NAMESPACE, PRIMARY_POD, database.PORT) as port:
        dsn = f"host=127.0.0.1 port={port} user=postgres password={password} dbname=postgres sslmode=disable"
        with psycopg.connect(dsn, connect_timeout=10) as conn:
            return conn.execute(sql).fetchall()


def primary_uid(tools) -> str:
    return tools.kubectl_json(CLUSTER, "-n", NAMESPACE, "get", "pod", PRIMARY_POD)["metadata"]["uid"]


@pytest.fixture(scope="module")
def backend(tmp_path_factory) -> dict[str, str]:
    state = tmp_path_factory.mktemp("second-checkout-state")
    return {"PULUMI_BACKEND_URL": f"file://{state}", "PULUMI_CONFIG_PASSPHRASE": "integration-tests"}


@pytest.fixture(scope="module")
def first(tmp_path_factory, tools, clusters, backend) -> Iterator[Checkout]:
    """The checkout that deployed dev, as `make up` does (its stack file written by --init-secrets)."""
    project = PlatformProject.create(tmp_path_factory.mktemp("first-checkout"), tools, backend, name=NAME)
    project.set_cluster(ENVIRONMENT, CLUSTER)
    checkout = Checkout(project)
    try:
        deployed = checkout.cli("up", ENVIRONMENT, "--yes", "--init-secrets")
        assert deployed.returncode == exit_codes.OK, deployed.stderr[-3000:]
        yield checkout
    finally:
        project.destroy(ENVIRONMENT)


@pytest.fixture(scope="module")
def second(tmp_path_factory, tools, backend, first) -> Checkout:
    """A fresh clone: the same program and backend, no stack file, one role added since."""
    project = PlatformProject.create(tmp_path_factory.mktemp("second-checkout"), tools, backend, name=NAME)
    project.set_cluster(ENVIRONMENT, CLUSTER)
    defaults = project.root / "environments" / "defaults.yaml"
    data = yaml.safe_load(defaults.read_text())
    data["database"]["roles"].append({"name": PROBE_ROLE})
    data["database"]["grants"].append({"role": PROBE_ROLE, "database": "telemetry", "privilege": "read"})
    defaults.write_text(yaml.safe_dump(data, sort_keys=False))
    checkout = Checkout(project)
    assert not checkout.stack_file.exists()
    return checkout


def test_up_without_the_stack_file_is_refused_before_the_engine_runs(first: Checkout, second: Checkout) -> None:
    recorded = updates(first)
    proc = second.cli("up", ENVIRONMENT, "--yes")
    assert proc.returncode == exit_codes.BAD_INPUT
    assert f"{STACK_FILE}: config.{CONFIG_NAMESPACE}:" in proc.stderr
    assert "missing secret(s)" in proc.stderr
    assert updates(first) == recorded
    assert not second.stack_file.exists()


def test_init_secrets_in_a_second_checkout_keeps_every_deployed_secret(
    first: Checkout, second: Checkout, tools
) -> None:
    deployed = first.secrets()
    primary = primary_uid(tools)
    proc = second.cli("up", ENVIRONMENT, "--yes", "--init-secrets")
    assert proc.returncode == exit_codes.OK, proc.stderr[-3000:]
    assert "taken from the last update" in proc.stderr
    values = second.secrets()
    probe_key = database_role_password(PROBE_ROLE)
    assert {k: v for k, v in values.items() if k != probe_key} == deployed
    assert probe_key not in deployed and len(values[probe_key]) >= 16
    # The database still answers the superuser password it always had; the setup Job (run again
    # for the new role) logged in with it, and the primary was not restarted.
    assert superuser_sql(tools, deployed[DATABASE_SUPERUSER_PASSWORD], "SELECT current_user") == [("postgres",)]
    assert superuser_sql(
        tools, deployed[DATABASE_SUPERUSER_PASSWORD], f"SELECT rolcanlogin FROM pg_roles WHERE rolname = '{PROBE_ROLE}'"
    ) == [(True,)]
    assert primary_uid(tools) == primary


def test_a_stack_file_lacking_one_secret_is_refused_then_filled_from_the_last_update(
    first: Checkout, second: Checkout
) -> None:
    key = database_role_password("telemetry_ingest")
    deployed = first.secrets()[key]
    second.project.pulumi("config", "rm", "--stack", ENVIRONMENT, f"{CONFIG_NAMESPACE}:{key}")
    recorded = updates(first)
    before = second.stack_file.read_bytes()
    proc = second.cli("up", ENVIRONMENT, "--yes")
    assert proc.returncode == exit_codes.BAD_INPUT
    assert f"{STACK_FILE}: config.{CONFIG_NAMESPACE}:{key}: missing secret(s)" in proc.stderr
    assert updates(first) == recorded
    assert second.stack_file.read_bytes() == before

    proc = second.cli("up", ENVIRONMENT, "--yes", "--init-secrets")
    assert proc.returncode == exit_codes.OK, proc.stderr[-3000:]
    assert second.secrets()[key] == deployed
