"""PostgreSQL: an idempotent init script for roles, databases, extensions and grants.

The script runs at every start of the database pod (an init container), so it must
converge: creating what is missing, resetting attributes, passwords and grants to what
the program says, and succeeding when nothing changed. Secrets never appear in the SQL:
passwords come in as psql variables that the shell wrapper fills from the environment.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

_IDENT_RE = re.compile(r"^[a-z_][a-z0-9_]*$")
# NAMEDATALEN - 1: longer identifiers are silently truncated by PostgreSQL.
_IDENT_MAX = 63
# Names PostgreSQL or the Debian package own; converging their attributes would break them.
_RESERVED_ROLES = frozenset({"postgres", "public"})
_RESERVED_DATABASES = frozenset({"postgres", "template0", "template1"})

PRIVILEGES = frozenset({"connect", "read", "write", "all"})

MANAGED_COMMENT = "managed by smartnation"
"""COMMENT ON ROLE of every role the init script made: a role with this comment that the program
no longer declares is retired (login, password and grants taken, then dropped when nothing
depends on it); a role without it (made by hand, by PostgreSQL, the replication role) is never touched."""


CONNECT_GROUP_PREFIX = "smartnation_connect_"
"""``smartnation_connect_<database>``: a NOLOGIN role per managed database whose members are the
login roles that own it or are granted on it. pg_hba admits ``+<group>`` to the database, so it
names no role: a role added or removed changes memberships, never the file (no reload, no
restart)."""


def connect_group(database: str) -> str:
    """The group role pg_hba admits to ``database`` (CONNECT_GROUP_PREFIX)."""
    return f"{CONNECT_GROUP_PREFIX}{database}"


def _validate_identifier(kind: str, value: str) -> None:
    if not isinstance(value, str) or not _IDENT_RE.fullmatch(value) or len(value) > _IDENT_MAX:
        raise ValueError(
            f"{kind} {value!r}: expected a lowercase identifier [a-z_][a-z0-9_]* of at most {_IDENT_MAX} characters"
        )


@dataclass(frozen=True)
class Role:
    """A PostgreSQL role that the init script creates and keeps converged."""

    name: str
    """Role name, a lowercase identifier; not ``postgres`` and not starting with ``pg_``."""
    login: bool
    """Whether the role may log in (LOGIN); group-like roles set this to False."""
    password_var: str
    """psql variable that carries the password; the wrapper reads it from the environment
    variable of the same name in upper case. Empty only for roles without login (no password)."""

    def __post_init__(self) -> None:
        _validate_identifier("role name", self.name)
        if self.name in _RESERVED_ROLES or self.name.startswith("pg_"):
            raise ValueError(f"role name {self.name!r} is reserved by PostgreSQL")
        if not isinstance(self.login, bool):
            raise ValueError(f"role {self.name!r}: login must be a bool, got {self.login!r}")
        if self.password_var or self.login:
            _validate_identifier(f"role {self.name!r} password_var", self.password_var)

    @property
    def password_env(self) -> str:
        """Environment variable the init script reads the password from."""
        return self.password_var.upper()


@dataclass(frozen=True)
class Database:
    """A database, its owner and the extensions it should have where the server offers them."""

    name: str
    """Database name, a lowercase identifier; not ``postgres`` or a template."""
    owner: str
    """Owning role; must be one of the roles passed to the renderer."""
    extensions: tuple[str, ...]
    """Extensions to create (e.g. ``timescaledb``); each is created only if the server has it
    in pg_available_extensions, so vanilla PostgreSQL runs the same script."""

    def __post_init__(self) -> None:
        _validate_identifier("database name", self.name)
        if self.name in _RESERVED_DATABASES:
            raise ValueError(f"database name {self.name!r} is reserved by PostgreSQL")
        _validate_identifier(f"database {self.name!r} owner", self.owner)
        if isinstance(self.extensions, str) or not isinstance(self.extensions, tuple):
            raise ValueError(f"database {self.name!r}: extensions must be a tuple, got {self.extensions!r}")
        for extension in self.extensions:
            _validate_identifier(f"database {self.name!r} extension", extension)
        if len(set(self.extensions)) != len(self.extensions):
            raise ValueError(f"database {self.name!r}: an extension is listed twice: {self.extensions!r}")


@dataclass(frozen=True)
class Grant:
    """What one role may do in one database.

    ``connect``: CONNECT only. ``read``: CONNECT, USAGE on schema public, SELECT on its
    tables and sequences, now and in future. ``write``: read plus INSERT/UPDATE/DELETE,
    sequence USAGE and temporary tables (a bulk load's staging table); no CREATE, no TRUNCATE.
    ``all``: every privilege on the database, schema public and its objects
    (creating tables included), short of being the owner.
    """

    role: str
    """Role that receives the privilege; must be one of the roles passed to the renderer."""
    database: str
    """Database the privilege applies to; must be one of the databases passed to the renderer."""
    privilege: str
    """One of ``connect``, ``read``, ``write``, ``all``."""

    def __post_init__(self) -> None:
        _validate_identifier("grant role", self.role)
        _validate_identifier("grant database", self.database)
        if self.privilege not in PRIVILEGES:
            raise ValueError(
                f"grant {self.role!r} on {self.database!r}: privilege {self.privilege!r} is not one of "
                f"{sorted(PRIVILEGES)}"
            )


def _check_references(databases: Sequence[Database], roles: Sequence[Role], grants: Sequence[Grant]) -> None:
    role_names = [role.name for role in roles]
    db_names = [database.name for database in databases]
    for name in db_names:
        _validate_identifier(f"database {name!r} connect group", connect_group(name))
    taken = sorted(name for name in role_names if name.startswith(CONNECT_GROUP_PREFIX))
    if taken:
        raise ValueError(f"role names starting with {CONNECT_GROUP_PREFIX!r} are the program's own: {taken}")
    for kind, names in (("role", role_names), ("database", db_names)):
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"{kind} names must be unique, repeated: {duplicates}")
    env_vars = [role.password_env for role in roles if role.password_var]
    duplicate_vars = sorted({var for var in env_vars if env_vars.count(var) > 1})
    if duplicate_vars:
        raise ValueError(f"password variables must be unique per role, repeated: {duplicate_vars}")
    for database in databases:
        if database.owner not in role_names:
            raise ValueError(f"database {database.name!r}: owner {database.owner!r} is not among the roles")
    pairs = set()
    for grant in grants:
        if grant.role not in role_names:
            raise ValueError(f"grant on {grant.database!r}: role {grant.role!r} is not among the roles")
        if grant.database not in db_names:
            raise ValueError(f"grant to {grant.role!r}: database {grant.database!r} is not among the databases")
        if (grant.role, grant.database) in pairs:
            raise ValueError(f"role {grant.role!r} has more than one grant on database {grant.database!r}")
        pairs.add((grant.role, grant.database))


def _lit(value: str) -> str:
    # Only ever called with validated identifiers, which cannot contain a quote.
    return f"'{value}'"


def render_init_sql(databases: Sequence[Database], roles: Sequence[Role], grants: Sequence[Grant]) -> str:
    """Render the idempotent psql script; run it with ``psql -v ON_ERROR_STOP=1`` as a superuser.

    Managed roles and their grants converge: a privilege that is no longer granted in the
    program is revoked on the next run. A role removed from the program is retired at once (no
    login, no password), its grants in every managed database revoked and what it owned there
    handed to the database's owner, then the role is dropped; if something outside the managed
    databases still depends on it, it stays without login and the script warns. Databases
    removed from the program are left alone (dropping data is not something a setup should do).
    """
    databases = tuple(databases)
    roles = tuple(roles)
    grants = tuple(grants)
    _check_references(databases, roles, grants)

    out: list[str] = [
        "-- Generated by smartnation (smartnation.daemon_config.postgres). Do not edit by hand.",
        "-- Idempotent: runs at every pod start. Needs psql (\\gexec, :'var') and a superuser.",
        "-- Passwords arrive as psql variables (-v name=...), never in this text.",
        "",
        "-- Plain, predictable output; stop at the first error (also passed as -v ON_ERROR_STOP=1).",
        "\\set ON_ERROR_STOP 1",
        "\\set QUIET 1",
        "SET client_min_messages = warning;",
        "-- ALTER ROLE ... PASSWORD carries the cleartext to the server: keep this session's",
        "-- statements, even failing ones, out of the server log.",
        "SET log_statement = 'none';",
        "SET log_min_error_statement = panic;",
        "SET log_min_duration_statement = -1;",
        "",
        "-- ===== Roles =====",
    ]
    for role in roles:
        login = "LOGIN" if role.login else "NOLOGIN"
        out += [
            f"-- role {role.name}",
            f"SELECT format('CREATE ROLE %I', {_lit(role.name)})",
            f"WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = {_lit(role.name)}) \\gexec",
            # Reset every attribute each run, so a hand-made change (SUPERUSER, ...) does not stick.
            f"ALTER ROLE {role.name} WITH {login} NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION "
            "NOBYPASSRLS INHERIT CONNECTION LIMIT -1;",
        ]
        if role.password_var:
            # format('%L') quotes the value as a literal whatever it contains; psql substitutes
            # :'var' client side, so the password is sent to the server but never in the file.
            out += [
                f"SELECT format('ALTER ROLE %I WITH PASSWORD %L', {_lit(role.name)}, :'{role.password_var}') \\gexec",
            ]
        else:
            out += [f"ALTER ROLE {role.name} WITH PASSWORD NULL;"]
        out += [f"COMMENT ON ROLE {role.name} IS {_lit(MANAGED_COMMENT)};"]
    out += ["", "-- ===== Who may connect to each database (pg_hba admits +<group>) ====="]
    logins = [role.name for role in roles if role.login]
    for database in databases:
        group = connect_group(database.name)
        members = [database.owner] + [g.role for g in grants if g.database == database.name]
        members = [name for name in dict.fromkeys(members) if name in logins]
        out += [
            f"SELECT format('CREATE ROLE %I', {_lit(group)})",
            f"WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = {_lit(group)}) \\gexec",
            f"ALTER ROLE {group} WITH NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS "
            "NOINHERIT PASSWORD NULL;",
            f"COMMENT ON ROLE {group} IS {_lit(MANAGED_COMMENT)};",
        ]
        if members:
            out.append(f"GRANT {group} TO {', '.join(members)};")
        # Every other member goes, whoever added it (REVOKE of a non-member would warn).
        kept = ", ".join(_lit(name) for name in members)
        out += [
            f"SELECT format('REVOKE %I FROM %I', {_lit(group)}, m.rolname)",
            "FROM pg_catalog.pg_auth_members AS am",
            "JOIN pg_catalog.pg_roles AS g ON g.oid = am.roleid JOIN pg_catalog.pg_roles AS m ON m.oid = am.member",
            f"WHERE g.rolname = {_lit(group)} AND m.rolname <> ALL (ARRAY[{kept}]::text[]) \\gexec",
        ]
    retired = _retired_roles_query(roles, databases)
    out += [
        "",
        "-- ===== Roles no longer declared =====",
        "-- Made by this script (their comment says so) but gone from the program: no login, no",
        "-- password from now on; their grants and objects are dealt with database by database below.",
        "SELECT format('ALTER ROLE %I WITH NOLOGIN PASSWORD NULL CONNECTION LIMIT 0', rolname)",
        f"FROM ({retired}) AS r \\gexec",
    ]
    out += ["", "-- ===== Databases ====="]
    for database in databases:
        out += [
            f"-- database {database.name}",
            # CREATE DATABASE cannot run inside a DO block or a transaction: generate it and \gexec.
            f"SELECT format('CREATE DATABASE %I OWNER %I', {_lit(database.name)}, {_lit(database.owner)})",
            f"WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_database WHERE datname = {_lit(database.name)}) \\gexec",
            f"ALTER DATABASE {database.name} OWNER TO {database.owner};",
        ]
    managed = [role.name for role in roles]
    owners = {database.owner for database in databases}
    for database in databases:
        out += ["", f"-- ===== Inside database {database.name} ====="]
        # \connect opens a new session, so session settings are set again.
        out += [f"\\connect {database.name}", "SET client_min_messages = warning;", "BEGIN;"]
        out += _extensions_sql(database)
        out += _hand_over_sql(database, [name for name in managed if name not in owners])
        out += _privileges_sql(database, managed, [g for g in grants if g.database == database.name])
        out += _retire_in_database_sql(database, retired)
        out += ["COMMIT;"]
    out += [
        "",
        "-- ===== Drop the retired roles =====",
        "-- Only once nothing depends on them; a grant in a database the program does not manage",
        "-- keeps one (without login) and says so.",
        "DO $$",
        "DECLARE r record;",
        "BEGIN",
        f"  FOR r IN {retired} LOOP",
        "    BEGIN",
        "      EXECUTE format('DROP ROLE %I', r.rolname);",
        "    EXCEPTION WHEN dependent_objects_still_exist THEN",
        "      RAISE WARNING 'role % is no longer declared: login taken, not dropped: %', r.rolname, SQLERRM;",
        "    END;",
        "  END LOOP;",
        "END",
        "$$;",
    ]
    out += ["", "-- Done."]
    return "\n".join(out) + "\n"


def _retired_roles_query(roles: Sequence[Role], databases: Sequence[Database]) -> str:
    """SELECT of the roles this script made (MANAGED_COMMENT) that ``roles`` no longer declares
    (a database's connect group goes with the database)."""
    names = [role.name for role in roles] + [connect_group(database.name) for database in databases]
    declared = ", ".join(_lit(name) for name in names)
    return (
        "SELECT a.rolname FROM pg_catalog.pg_roles AS a JOIN pg_catalog.pg_shdescription AS d "
        "ON d.objoid = a.oid AND d.classoid = 'pg_catalog.pg_authid'::regclass "
        f"WHERE d.description = {_lit(MANAGED_COMMENT)} AND a.rolname NOT IN ({declared})"
    )


def _hand_over_sql(database: Database, non_owners: Sequence[str]) -> list[str]:
    """Only the owner owns anything in its database: what another managed role made there (an
    API that ran its own migrations as the database's owner, before the owner became a role of
    its own) becomes the owner's, so that role keeps its granted DML and cannot DROP or ALTER.

    ``non_owners``: managed roles that own no declared database. REASSIGN OWNED also hands over
    the databases a role owns (shared objects), so a declared owner is never named here.

    Only when the role owns a lasting table, sequence or function here: REASSIGN would also take
    the temporary tables of the role's open sessions (the ingest's COPY staging table), which
    its session could then no longer write. So a run of the setup leaves a running API alone;
    only the one run that hands over an upgraded database's tables takes them from the sessions
    of the API's old Pods, which the release replaces right after (their unacknowledged
    readings are delivered again)."""
    out = []
    for name in non_owners:
        role = f"(SELECT oid FROM pg_catalog.pg_roles WHERE rolname = {_lit(name)})"
        out += [
            f"SELECT format('REASSIGN OWNED BY %I TO %I', {_lit(name)}, {_lit(database.owner)})",
            f"WHERE EXISTS (SELECT FROM pg_catalog.pg_class WHERE relowner = {role} AND relpersistence <> 't')",
            f"OR EXISTS (SELECT FROM pg_catalog.pg_proc WHERE proowner = {role}) \\gexec",
        ]
    if out:
        out.insert(0, "-- What managed roles that own no database made here goes to its owner (temporary tables stay).")
    return out


def _retire_in_database_sql(database: Database, retired: str) -> list[str]:
    # REASSIGN keeps the data (tables a retired role made now belong to the database's owner);
    # DROP OWNED then drops nothing but its privileges and default privileges here.
    return [
        "-- Roles no longer declared: what they owned goes to the owner, their privileges go.",
        f"SELECT format('REASSIGN OWNED BY %I TO %I', rolname, {_lit(database.owner)}) FROM ({retired}) AS r \\gexec",
        f"SELECT format('DROP OWNED BY %I', rolname) FROM ({retired}) AS r \\gexec",
    ]


def _extensions_sql(database: Database) -> list[str]:
    out: list[str] = []
    for extension in database.extensions:
        # Vanilla PostgreSQL (the contract tests, a dev laptop) has no TimescaleDB: create the
        # extension only where the server offers it, and say so when it does not.
        out += [
            f"-- extension {extension}, only where the server has it",
            "DO $$",
            "BEGIN",
            f"  IF EXISTS (SELECT FROM pg_catalog.pg_available_extensions WHERE name = {_lit(extension)}) THEN",
            f"    CREATE EXTENSION IF NOT EXISTS {extension};",
            "  ELSE",
            f"    RAISE WARNING 'extension {extension} is not available on this server; not created';",
            "  END IF;",
            "END",
            "$$;",
        ]
    return out


def _privileges_sql(database: Database, managed: Sequence[str], grants: Sequence[Grant]) -> list[str]:
    db, owner = database.name, database.owner
    out = [
        "-- Nothing for PUBLIC: only roles granted below may connect, create or use schema public.",
        f"REVOKE ALL ON DATABASE {db} FROM PUBLIC;",
        "REVOKE ALL ON SCHEMA public FROM PUBLIC;",
        # PostgreSQL 15 makes pg_database_owner own schema public; older servers make it the
        # bootstrap superuser's, so say explicitly that the database owner may use it.
        f"GRANT ALL ON SCHEMA public TO {owner};",
    ]
    others = [name for name in managed if name != owner]
    if others:
        who = ", ".join(others)
        out += [
            "-- Converge: take back everything from the managed roles, then grant what the program says.",
            "-- One transaction, so a client never sees the gap between the two.",
            f"REVOKE ALL ON DATABASE {db} FROM {who};",
            f"REVOKE ALL ON SCHEMA public FROM {who};",
            f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {who};",
            f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {who};",
            f"REVOKE ALL ON ALL FUNCTIONS IN SCHEMA public FROM {who};",
            f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public REVOKE ALL ON TABLES FROM {who};",
            f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public REVOKE ALL ON SEQUENCES FROM {who};",
            f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public REVOKE ALL ON FUNCTIONS FROM {who};",
        ]
    for grant in grants:
        role = grant.role
        if role == owner:
            # The owner already holds every privilege; nothing to grant or revoke.
            out.append(f"-- {role} owns {db}: grant {grant.privilege!r} is implied")
            continue
        out.append(f"-- {role}: {grant.privilege}")
        # Default privileges are set FOR ROLE owner: tables created later by the owner (the
        # application's migrations) get the same grants as the existing ones.
        default = f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public GRANT"
        if grant.privilege == "all":
            out += [
                f"GRANT ALL PRIVILEGES ON DATABASE {db} TO {role};",
                f"GRANT ALL ON SCHEMA public TO {role};",
                f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role};",
                f"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role};",
                f"GRANT ALL ON ALL FUNCTIONS IN SCHEMA public TO {role};",
                f"{default} ALL ON TABLES TO {role};",
                f"{default} ALL ON SEQUENCES TO {role};",
                f"{default} ALL ON FUNCTIONS TO {role};",
            ]
            continue
        out.append(f"GRANT CONNECT ON DATABASE {db} TO {role};")
        if grant.privilege == "connect":
            continue
        if grant.privilege == "write":
            # A session's own temporary tables: the ingest COPYs each batch into one (gone at the
            # session's end; no permanent table can be made, dropped or altered through it).
            out.append(f"GRANT TEMPORARY ON DATABASE {db} TO {role};")
        table_privileges = "SELECT" if grant.privilege == "read" else "SELECT, INSERT, UPDATE, DELETE"
        sequence_privileges = "SELECT" if grant.privilege == "read" else "SELECT, USAGE"
        out += [
            f"GRANT USAGE ON SCHEMA public TO {role};",
            f"GRANT {table_privileges} ON ALL TABLES IN SCHEMA public TO {role};",
            f"GRANT {sequence_privileges} ON ALL SEQUENCES IN SCHEMA public TO {role};",
            f"{default} {table_privileges} ON TABLES TO {role};",
            f"{default} {sequence_privileges} ON SEQUENCES TO {role};",
        ]
    return out


def render_init_script(
    databases: Sequence[Database], roles: Sequence[Role], grants: Sequence[Grant], *, sql_path: str
) -> str:
    """Render the POSIX sh wrapper that feeds the passwords to psql and runs ``sql_path``.

    The connection comes from the usual libpq environment (PGHOST, PGPORT, PGUSER, ...);
    the database defaults to ``postgres``. Every password variable must be set and non-empty.
    """
    databases = tuple(databases)
    roles = tuple(roles)
    grants = tuple(grants)
    _check_references(databases, roles, grants)
    if not isinstance(sql_path, str) or not sql_path:
        raise ValueError(f"sql_path: expected a path, got {sql_path!r}")

    password_roles = [role for role in roles if role.password_var]
    lines = [
        "#!/bin/sh",
        "# Generated by smartnation (smartnation.daemon_config.postgres). Do not edit by hand.",
        "# Creates or converges roles, databases and grants. Safe to run at every start.",
        "# Connection: libpq environment (PGHOST, PGPORT, PGUSER, PGPASSWORD...), as a superuser.",
        "set -eu",
        "",
        "missing=''",
    ]
    for role in password_roles:
        env = role.password_env
        lines.append(f'[ -n "${{{env}:-}}" ] || missing="$missing {env}"')
    lines += [
        'if [ -n "$missing" ]; then',
        '    echo "postgres-init: missing or empty environment variable(s):$missing" >&2',
        "    exit 1",
        "fi",
        "",
        f"if [ ! -r {shlex.quote(sql_path)} ]; then",
        f"    echo {shlex.quote(f'postgres-init: cannot read {sql_path}')} >&2",
        "    exit 1",
        "fi",
        "",
        "# -X: ignore any ~/.psqlrc; ON_ERROR_STOP: a failed statement fails the script.",
        "# Passwords go in as psql variables; the SQL quotes them with format('%L').",
        'exec psql -X -v ON_ERROR_STOP=1 --dbname="${PGDATABASE:-postgres}" \\',
    ]
    for role in password_roles:
        lines.append(f'    -v {role.password_var}="${role.password_env}" \\')
    lines.append(f"    -f {shlex.quote(sql_path)}")
    return "\n".join(lines) + "\n"


def render_pg_hba(
    databases: Sequence[Database],
    roles: Sequence[Role],
    grants: Sequence[Grant],
    *,
    superuser: str,
    replication_user: str,
    pod_networks: Sequence[str],
    tls: bool,
) -> str:
    """Render pg_hba.conf: who may connect to what, from where; every login SCRAM authenticated.

    - the server's own socket: anyone (only processes inside the database Pod reach it);
    - loopback: the superuser only, with or without TLS (the readiness probe, ``kubectl
      port-forward``, which arrives on the Pod's loopback);
    - the pod network (``pod_networks``): the replication role for replication only, each
      managed database for the members of its connect group (its owner and the login roles
      granted on it, kept by the init script: ``connect_group``), and the superuser for the
      maintenance Jobs (setup, backup, restore), which cannot work through a lesser role
      (CREATE EXTENSION timescaledb, REPLICATION, pg_dumpall's password hashes);
    - everything else, from anywhere, is rejected, first line that matches wins.

    ``tls``: network lines are ``hostssl`` (a client without TLS is refused) rather than ``host``.
    """
    databases = tuple(databases)
    roles = tuple(roles)
    grants = tuple(grants)
    _check_references(databases, roles, grants)
    for kind, name in (("superuser", superuser), ("replication user", replication_user)):
        _validate_identifier(kind, name)
    if isinstance(pod_networks, str) or not pod_networks:
        raise ValueError(f"pod_networks: expected at least one CIDR, got {pod_networks!r}")
    networks = []
    for network in pod_networks:
        try:
            networks.append(str(ipaddress.ip_network(network, strict=True)))
        except ValueError as error:
            raise ValueError(f"pod_networks: {network!r} is not a network in CIDR notation ({error})") from None
    host = "hostssl" if tls else "host"
    scram = "scram-sha-256"
    rows: list[tuple[str, ...]] = [
        ("local", "all", "all", "", scram),
        # With or without TLS: kubectl port-forward drops its whole tunnel when a TLS session's
        # close resets the connection (and when a refused TLS attempt does), so a client that
        # opens several connections through one tunnel uses sslmode=disable. The tunnel itself
        # is the API server's TLS.
        ("host", "all", superuser, "127.0.0.1/32", scram),
        ("host", "all", superuser, "::1/128", scram),
    ]
    for network in networks:
        rows.append((host, "replication", replication_user, network, scram))
        for database in databases:
            rows.append((host, database.name, f"+{connect_group(database.name)}", network, scram))
        rows.append((host, "all", superuser, network, scram))
    for everywhere in ("0.0.0.0/0", "::/0"):
        rows.append(("host", "all", "all", everywhere, "reject"))
        rows.append(("host", "replication", "all", everywhere, "reject"))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        "# Generated by smartnation (smartnation.daemon_config.postgres). Do not edit by hand.",
        "# Roles from the program only, from the pod network only; the superuser from the network",
        "# only for the maintenance Jobs; the first matching line decides, and the last ones reject.",
        "# "
        + "  ".join(h.ljust(w) for h, w in zip(("TYPE", "DATABASE", "USER", "ADDRESS"), widths, strict=True))
        + "  METHOD",
    ]
    lines += [
        "  " + "  ".join(c.ljust(w) for c, w in zip(row[:4], widths, strict=True)) + "  " + row[4] for row in rows
    ]
    return "\n".join(line.rstrip() for line in lines) + "\n"
