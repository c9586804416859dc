"""PostgreSQL through psycopg 3: a small connection pool and the readiness probe."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import psycopg
from psycopg_pool import ConnectionPool


def make_pool(
    conninfo: Mapping[str, object],
    *,
    name: str,
    max_size: int = 4,
    configure: Callable[[psycopg.Connection], None] | None = None,
) -> ConnectionPool:
    """A pool that opens in the background (the service starts even when the database is down
    and turns ready when it answers) and checks a connection before handing it out."""
    pool = ConnectionPool(
        kwargs=dict(conninfo),
        min_size=1,
        max_size=max_size,
        name=name,
        configure=configure,
        timeout=5,  # a caller waiting for a connection fails fast and retries (or reports not ready)
        open=False,
        check=ConnectionPool.check_connection,
        reconnect_timeout=0,  # keep trying for ever; readiness reports the outage
    )
    pool.open(wait=False)
    return pool


def probe(pool: ConnectionPool, timeout_s: float = 2.0) -> str:
    """Readiness: a round trip to the server (raises when it does not answer)."""
    with pool.connection(timeout=timeout_s) as conn:
        row = conn.execute("SELECT current_setting('server_version'), pg_is_in_recovery()").fetchone()
    assert row is not None
    return f"PostgreSQL {row[0]}{' (replica)' if row[1] else ''}"
