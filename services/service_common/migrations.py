"""Ordered, idempotent schema migrations, applied by whoever owns the database.

Deployed, the owner is a role of its own that only each release's migration Job logs in as
(``python -m <service>.migrate``); the running service checks the schema (:func:`require`) and
has DML only. Locally, ``MIGRATE_ON_START`` (default on) lets a service that owns its database
migrate at start.

Each service lists ``(version, sql)`` pairs; :func:`apply` runs the missing ones in one
transaction under an advisory lock (replicas starting together wait for each other) and records
them in ``schema_migrations``. :class:`Migrator` retries in the background until the database
answers, so a service starts (and is alive) before its database is reachable, and turns ready
once the schema is in place.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence

import psycopg
from psycopg_pool import ConnectionPool

log = logging.getLogger(__name__)

Migration = tuple[int, str]


def apply(
    conn: psycopg.Connection,
    lock_id: int,
    migrations: Sequence[Migration],
    precheck: Callable[[psycopg.Connection], None] | None = None,
) -> int:
    """Apply what is missing; returns the schema version."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_id,))
        if precheck is not None:
            precheck(conn)
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        applied = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
        for version, sql in migrations:
            if version in applied:
                continue
            conn.execute(sql)  # type: ignore[arg-type] - our own constant SQL
            conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
            log.info("applied migration", extra={"version": version})
    return max(version for version, _ in migrations)


def connect_when_up(
    conninfo: Mapping[str, object],
    *,
    wait_s: float = 120.0,
    connect: Callable[..., psycopg.Connection] = psycopg.connect,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> psycopg.Connection:
    """The migration Job's one connection. A new Pod's first packets can be refused until the
    node's network-policy agent has admitted its address, so a refused connection is tried again
    every 2 s for ``wait_s``; then the last error is raised (the Job's backoff takes over)."""
    deadline = clock() + wait_s
    while True:
        try:
            return connect(**conninfo)
        except psycopg.OperationalError as error:
            if clock() >= deadline:
                raise
            log.warning("database not reachable yet; retrying", extra={"error": str(error).splitlines()[0][:200]})
            sleep(2.0)


class SchemaBehind(RuntimeError):
    """The database's schema lacks migrations this code needs (the migration Job has not run)."""


def require(conn: psycopg.Connection, migrations: Sequence[Migration]) -> int:
    """For a service that does not migrate (its role has DML only; a Job migrates as the owner):
    check that every migration it knows is applied; returns the schema version."""
    wanted = {version for version, _ in migrations}
    try:
        with conn.transaction():
            applied = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
    except psycopg.errors.UndefinedTable:
        applied = set()
    missing = sorted(wanted - applied)
    if missing:
        raise SchemaBehind(f"schema migrations {missing} not applied yet (the release's migration Job applies them)")
    return max(wanted)


class Migrator:
    """Runs ``migrate(conn)`` until it succeeds, on a background thread."""

    def __init__(self, pool: ConnectionPool, migrate: Callable[[psycopg.Connection], object]) -> None:
        self._pool = pool
        self._migrate = migrate
        self._stop = threading.Event()
        self.done = threading.Event()
        self.last_error = "waiting for the database"
        self._thread = threading.Thread(target=self._run, name="migrator", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        delay = 0.5
        while not self._stop.is_set():
            try:
                with self._pool.connection(timeout=10) as conn:
                    self._migrate(conn)
                self.last_error = ""
                self.done.set()
                return
            except Exception as error:  # noqa: BLE001 - retried; readiness shows why
                self.last_error = f"{type(error).__name__}: {error}"[:300]
                log.warning("schema migration failed; retrying", extra={"error": self.last_error})
            self._stop.wait(delay)
            delay = min(delay * 2, 10)

    def probe(self) -> str:
        if not self.done.is_set():
            raise RuntimeError(f"schema not migrated yet: {self.last_error}")
        return "migrated"
