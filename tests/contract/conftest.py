"""Session fixtures for the contract tests: real daemons, started once, stopped at the end.

The helpers live in contract_daemons.py, which the test modules import too: importing
from a conftest module is fragile, fixtures alone belong here.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .contract_daemons import Broker, PgCluster, start_broker, start_pg_cluster, stop_broker, stop_pg_cluster


@pytest.fixture(scope="session")
def testinfra_host():
    """testinfra's view of this machine, for process, socket and file checks."""
    import testinfra

    return testinfra.get_host("local://")


@pytest.fixture(scope="session")
def broker() -> Iterator[Broker]:
    """One mosquitto for the session, started as its unprivileged user."""
    running = start_broker()
    yield running
    stop_broker(running)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """One throwaway PostgreSQL 15 cluster for the session, run by the ``postgres`` user."""
    cluster = start_pg_cluster()
    yield cluster
    stop_pg_cluster(cluster)


@pytest.fixture(scope="session")
def pg_initialized(pg_cluster: PgCluster) -> PgCluster:
    """The cluster after the generated init script ran twice, as it does on two pod starts."""
    for attempt in (1, 2):
        result = pg_cluster.run_init()
        assert result.returncode == 0, f"init run {attempt} failed:\n{result.stdout}\n{result.stderr}"
    return pg_cluster
