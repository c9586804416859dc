"""Unit: what the PostgreSQL init script means, read by PostgreSQL's own parser (pglast).

render_init_sql's text is not compared with a snapshot: tests/unit/psql_script.py runs it the way
psql would (meta-commands, :'var', \\gexec's generated statements, PL/pgSQL DO blocks), every
statement parsed by libpg_query, and these tests read the parsed statements: which roles exist
with which attributes, which privileges each role holds once the script has run (the GRANTs and
REVOKEs played in order over "unknown" — what an earlier run or a hand left), what each
database gets, what is guarded against a rerun. tests/contract/test_postgres*.py run the script
against a real PostgreSQL; this is the fast check the mutation runs use.
"""

from __future__ import annotations

from typing import Any

import pytest

from smartnation.program.daemon_config.postgres import (
    MANAGED_COMMENT,
    Database,
    Grant,
    Role,
    connect_group,
    render_init_sql,
)
from tests.unit.psql_script import (
    COLUMN,
    PSQL_VARIABLE,
    Script,
    ScriptError,
    Step,
    column_equals,
    read,
    role_names,
    strings,
    walk,
)

pytestmark = pytest.mark.unit

DATABASES = (
    Database("parking", "parking_owner", ("timescaledb", "postgis")),
    Database("traffic", "traffic_owner", ()),
)
ROLES = (
    Role("parking_owner", True, "parking_owner_password"),
    Role("traffic_owner", True, "traffic_owner_password"),
    Role("reader", True, "reader_password"),
    Role("writer", True, "writer_password"),
    Role("admin", True, "admin_password"),
    Role("analysts", False, ""),
)
# The order matters: a grant to the owner, an 'all' and a 'connect' each followed by others.
GRANTS = (
    Grant("parking_owner", "parking", "read"),
    Grant("admin", "parking", "all"),
    Grant("analysts", "parking", "connect"),
    Grant("reader", "parking", "read"),
    Grant("writer", "parking", "write"),
    Grant("reader", "traffic", "write"),
    Grant("parking_owner", "traffic", "connect"),
)


def script(databases=DATABASES, roles=ROLES, grants=GRANTS) -> Script:
    return read(render_init_sql(databases, roles, grants))


# --------------------------------------------------------------------------- the script as a whole


def test_every_statement_parses_and_so_does_every_statement_a_gexec_query_generates() -> None:
    # read() raises where psql or the server would stop: a statement that does not parse, a
    # format() specifier PostgreSQL does not know, a DO body PL/pgSQL refuses, \connect inside a
    # transaction, an unknown meta-command, a transaction left open.
    steps = script().steps
    kinds = {step.kind for step in steps}
    assert kinds == {"meta", "sql", "gexec", "do"}
    # psql's commands and special variables are case-sensitive: the script stops at its first
    # error and prints nothing but what matters, whoever runs it.
    metas = [step.meta for step in steps if step.kind == "meta"]
    assert metas == [
        ("set", "ON_ERROR_STOP", "1"),
        ("set", "QUIET", "1"),
        ("connect", "parking"),
        ("connect", "traffic"),
    ]
    assert all(step.template for step in steps if step.kind == "gexec")


def test_the_reader_refuses_what_psql_or_postgresql_would_refuse() -> None:
    # The reader itself can fail: each of these is an error on a real server.
    for broken, complaint in [
        ("XXSELECT 1;", "syntax error"),
        ("SELECT format('alter role %i', 'x') \\gexec", 'specifier "i"'),
        ("\\sET ON_ERROR_STOP 1", "meta-command"),
        ("BEGIN;\n\\connect other\nCOMMIT;", "inside a transaction"),
        ("BEGIN;", "ends inside a transaction"),
        ("DO $$\nXXBEGIN\nEND\n$$;", "DO block"),
    ]:
        with pytest.raises(ScriptError, match=complaint):
            read(broken)


def test_no_declared_name_is_spliced_into_a_format_template() -> None:
    # Every name reaches a generated statement through %I (an identifier, quoted if it must be)
    # or %L (a literal): the template itself is fixed text.
    names = {role.name for role in ROLES} | {database.name for database in DATABASES}
    for step in script().steps:
        if step.kind == "gexec":
            assert not any(name in step.template for name in names), step.template
            assert "%s" not in step.template, step.template


# --------------------------------------------------------------------------- roles


def _options(body: dict[str, Any]) -> dict[str, Any]:
    """An ALTER/CREATE ROLE's options by name (canlogin, superuser, password, ...)."""
    options = {}
    for option in body.get("options", []):
        element = option["DefElem"]
        arg = element.get("arg")
        if arg is None:
            value = None
        elif "Boolean" in arg:
            value = arg["Boolean"].get("boolval", False)
        elif "Integer" in arg:
            value = arg["Integer"].get("ival", 0)
        else:
            value = arg["String"]["sval"]
        options[element["defname"]] = value
    return options


def _guard_roles(step: Step) -> set[str]:
    """The role names a \\gexec query's WHERE looks up in pg_roles (rolname = '...')."""
    return {value for column, value in column_equals(step.node) if column == "rolname"}


def _not_exists(step: Step) -> bool:
    """The \\gexec query runs its statement only if its subquery finds nothing."""
    where = step.node["SelectStmt"].get("whereClause", {})
    boolean = where.get("BoolExpr", {})
    return (
        boolean.get("boolop") == "NOT_EXPR"
        and boolean["args"][0].get("SubLink", {}).get("subLinkType") == "EXISTS_SUBLINK"
    )


def test_each_declared_role_is_created_once_if_missing_and_every_attribute_reset() -> None:
    parsed = script()
    creates = [step for step in parsed.of_type("CreateRoleStmt")]
    created = {step.body["role"]: step for step in creates}
    groups = {connect_group(database.name) for database in DATABASES}
    assert sorted(step.body["role"] for step in creates) == sorted({role.name for role in ROLES} | groups)
    for name, step in created.items():
        assert step.kind == "gexec" and _not_exists(step), f"CREATE ROLE {name} is not guarded"
        assert _guard_roles(step) == {name}, f"CREATE ROLE {name} looks up another role"
    resets = {
        step.body["role"]["rolename"]: _options(step.body)
        for step in parsed.of_type("AlterRoleStmt")
        if step.kind == "sql" and "canlogin" in _options(step.body)
    }
    for role in ROLES:
        # A hand-made SUPERUSER, CREATEDB, ... does not survive the next run.
        assert resets[role.name] == {
            "canlogin": role.login,
            "superuser": False,
            "createdb": False,
            "createrole": False,
            "isreplication": False,
            "bypassrls": False,
            "inherit": True,
            "connectionlimit": -1,
        }, role.name
    # Each role is created before its attributes are set.
    for role in ROLES:
        (reset,) = [
            index
            for index, step in enumerate(parsed.steps)
            if step.type == "AlterRoleStmt"
            and step.kind == "sql"
            and step.body["role"]["rolename"] == role.name
            and "canlogin" in _options(step.body)
        ]
        assert parsed.steps.index(created[role.name]) < reset, role.name


def test_every_role_the_script_makes_is_commented_as_managed() -> None:
    comments = {
        step.body["object"]["String"]["sval"]: step.body["comment"]
        for step in script().of_type("CommentStmt")
        if step.body["objtype"] == "OBJECT_ROLE"
    }
    groups = {connect_group(database.name) for database in DATABASES}
    assert comments == dict.fromkeys({role.name for role in ROLES} | groups, MANAGED_COMMENT)


def test_passwords_come_only_from_each_roles_own_psql_variable_with_statement_logging_off() -> None:
    parsed = script()
    passwords: dict[str, Any] = {}
    first_password = None
    for index, step in enumerate(parsed.steps):
        if step.type == "AlterRoleStmt" and "password" in _options(step.body):
            passwords.setdefault(step.body["role"]["rolename"], []).append(_options(step.body)["password"])
            first_password = index if first_password is None else first_password
    for role in ROLES:
        expected = [PSQL_VARIABLE + role.password_var] if role.password_var else [None]
        assert passwords.pop(role.name) == expected, role.name
    # What is left: the connect groups' and the retired roles' PASSWORD NULL.
    groups = {connect_group(database.name) for database in DATABASES}
    assert passwords == dict.fromkeys(groups | {COLUMN + "rolname"}, [None])
    assert sorted(parsed.variables) == sorted(role.password_var for role in ROLES if role.password_var)
    # No password literal anywhere: every string constant of every statement is something else.
    for step in parsed.steps:
        for value in strings(step.statement):
            assert "password" not in value or value.startswith(PSQL_VARIABLE), value
    # ALTER ROLE ... PASSWORD carries the cleartext: before it, the session logs no statement,
    # not even a failing one, and no slow one.
    settings = {
        step.body["name"]: _setting(step.body)
        for step in parsed.steps[:first_password]
        if step.type == "VariableSetStmt"
    }
    assert settings == {
        "client_min_messages": "warning",
        "log_statement": "none",
        "log_min_error_statement": "panic",
        "log_min_duration_statement": "-1",
    }


def _setting(body: dict[str, Any]) -> str:
    """A SET's value as the server reads it (enum values are case-insensitive)."""
    (arg,) = body["args"]
    constant = arg["A_Const"]
    return str(constant["sval"]["sval"]).lower() if "sval" in constant else str(constant["ival"]["ival"])


# --------------------------------------------------------------------------- connect groups


def test_each_connect_group_holds_exactly_the_owner_and_the_login_roles_granted_on_its_database() -> None:
    parsed = script()
    granted = {}
    for step in parsed.of_type("GrantRoleStmt"):
        if step.kind == "sql" and step.body.get("is_grant"):
            (group,) = [priv["AccessPriv"]["priv_name"] for priv in step.body["granted_roles"]]
            granted[group] = set(role_names(step.body["grantee_roles"]))
    assert granted == {
        connect_group("parking"): {"parking_owner", "admin", "reader", "writer"},  # analysts: no login
        connect_group("traffic"): {"traffic_owner", "reader", "parking_owner"},
    }
    # Whoever else is a member (added by hand, or granted before) is revoked.
    revokes = [step for step in parsed.of_type("GrantRoleStmt") if step.kind == "gexec"]
    assert len(revokes) == len(DATABASES)
    for step in revokes:
        assert step.template == "REVOKE %I FROM %I" and not step.body.get("is_grant", False)
        (group,) = [priv["AccessPriv"]["priv_name"] for priv in step.body["granted_roles"]]
        assert role_names(step.body["grantee_roles"]) == [COLUMN + "rolname"]
        where = step.node["SelectStmt"]["whereClause"]
        assert ("rolname", group) in column_equals(where)
        kept = [
            set(strings(expr["A_Expr"]["rexpr"]))
            for expr in walk(where)
            if "A_Expr" in expr and expr["A_Expr"]["kind"] == "AEXPR_OP_ALL"
        ]
        assert kept == [granted[group]], group
    # Each group: created, then reset to a role nobody logs in as and that inherits nothing.
    resets = {
        step.body["role"]["rolename"]: _options(step.body)
        for step in parsed.of_type("AlterRoleStmt")
        if step.body["role"].get("rolename", "").startswith("smartnation_connect_")
    }
    for database in DATABASES:
        assert resets[connect_group(database.name)] == {
            "canlogin": False,
            "superuser": False,
            "createdb": False,
            "createrole": False,
            "isreplication": False,
            "bypassrls": False,
            "inherit": False,
            "password": None,
        }


# --------------------------------------------------------------------------- retired roles


def _retired_query(node: Any) -> tuple[set[str], set[tuple[str, str]]]:
    """The names a retired-roles query keeps (NOT IN) and its equality conditions."""
    kept = set()
    for expr in walk(node):
        if "A_Expr" in expr and expr["A_Expr"]["kind"] == "AEXPR_IN":
            kept |= set(strings(expr["A_Expr"]["rexpr"]))
    return kept, column_equals(node)


def test_roles_no_longer_declared_are_those_commented_managed_and_not_declared() -> None:
    parsed = script()
    declared = {role.name for role in ROLES} | {connect_group(database.name) for database in DATABASES}
    queries = []
    # The logins taken, before any database is entered.
    (retire,) = [
        step
        for step in parsed.of_type("AlterRoleStmt")
        if step.kind == "gexec" and step.body["role"].get("rolename", "").startswith(COLUMN)
    ]
    assert _options(retire.body) == {"canlogin": False, "password": None, "connectionlimit": 0}
    assert retire.database == "postgres"
    queries.append(retire.node)
    # In each database: what they owned goes to its owner, then their privileges go.
    for database in DATABASES:
        inside = [step for step in parsed.steps if step.database == database.name and step.kind == "gexec"]
        reassign = [
            s for s in inside if s.type == "ReassignOwnedStmt" and role_names(s.body["roles"])[0].startswith(COLUMN)
        ]
        drop = [s for s in inside if s.type == "DropOwnedStmt"]
        assert len(reassign) == 1 and len(drop) == 1, database.name
        assert reassign[0].body["newrole"]["rolename"] == database.owner
        assert parsed.steps.index(reassign[0]) < parsed.steps.index(drop[0])
        assert reassign[0].in_transaction and drop[0].in_transaction
        queries += [reassign[0].node, drop[0].node]
    # Then dropped, each on its own so one that something still depends on stays.
    (drop_block,) = [step for step in parsed.of_type("DoStmt") if "DROP ROLE" in str(step.plpgsql)]
    assert drop_block is parsed.steps[-1]
    loop = next(n["PLpgSQL_stmt_fors"] for n in walk(drop_block.plpgsql) if "PLpgSQL_stmt_fors" in n)
    queries.append(read(loop["query"]["PLpgSQL_expr"]["query"] + ";").steps[0].node)
    conditions = [c["PLpgSQL_condition"]["condname"] for c in walk(loop) if "PLpgSQL_condition" in c]
    assert conditions == ["dependent_objects_still_exist"]
    for query in queries:
        kept, equals = _retired_query(query)
        assert kept == declared
        assert ("description", MANAGED_COMMENT) in equals
        # Comments on roles, not on other objects with the same oid ('...'::regclass folds case).
        assert "pg_catalog.pg_authid" in [value.lower() for value in strings(query)]


# --------------------------------------------------------------------------- databases, extensions


def test_each_database_is_created_if_missing_with_its_owner_before_anything_is_done_inside() -> None:
    parsed = script()
    first_connect = next(i for i, s in enumerate(parsed.steps) if s.meta[:1] == ("connect",))
    for database in DATABASES:
        (create,) = [s for s in parsed.of_type("CreatedbStmt") if s.body["dbname"] == database.name]
        assert create.kind == "gexec" and _not_exists(create) and not create.in_transaction
        assert column_equals(create.node["SelectStmt"]["whereClause"]) == {("datname", database.name)}
        owner = [_options(create.body).get("owner")]
        assert owner == [database.owner]
        (alter,) = [s for s in parsed.of_type("AlterOwnerStmt") if s.body["object"]["String"]["sval"] == database.name]
        assert alter.body["objectType"] == "OBJECT_DATABASE" and alter.body["newowner"]["rolename"] == database.owner
        assert parsed.steps.index(create) < parsed.steps.index(alter) < first_connect


def test_each_extension_is_created_in_its_own_database_only_where_the_server_offers_it() -> None:
    parsed = script()
    created: dict[str, list[str]] = {}
    for step in parsed.of_type("DoStmt"):
        for branch in (n["PLpgSQL_stmt_if"] for n in walk(step.plpgsql) if "PLpgSQL_stmt_if" in n):
            condition = read("SELECT " + branch["cond"]["PLpgSQL_expr"]["query"] + ";").steps[0].node
            (then,) = branch["then_body"]
            (create,) = read(then["PLpgSQL_stmt_execsql"]["sqlstmt"]["PLpgSQL_expr"]["query"] + ";").steps
            extension = create.body["extname"]
            assert create.type == "CreateExtensionStmt" and create.body["if_not_exists"], extension
            assert ("name", extension) in column_equals(condition)
            assert "pg_available_extensions" in str(condition)
            (warning,) = branch["else_body"]
            assert extension in warning["PLpgSQL_stmt_raise"]["message"]
            assert step.in_transaction
            created.setdefault(step.database, []).append(extension)
    assert created == {"parking": ["timescaledb", "postgis"]}


# --------------------------------------------------------------------------- privileges

# Every privilege of each kind of object (what ALL means there; PostgreSQL 15-17).
ALL = {
    "OBJECT_DATABASE": {"create", "connect", "temporary"},
    "OBJECT_SCHEMA": {"usage", "create"},
    "OBJECT_TABLE": {"select", "insert", "update", "delete", "truncate", "references", "trigger", "maintain"},
    "OBJECT_SEQUENCE": {"usage", "select", "update"},
    "OBJECT_FUNCTION": {"execute"},
}
UNKNOWN = None  # what an earlier run or a hand left: the script must revoke it to know


def _privileges(body: dict[str, Any], objtype: str) -> set[str]:
    if "privileges" not in body:
        return set(ALL[objtype])
    names = {p["AccessPriv"]["priv_name"] for p in body["privileges"]}
    names = {"temporary" if name == "temp" else name for name in names}
    unknown = names - ALL[objtype]
    if unknown:
        raise AssertionError(f"{sorted(unknown)} is no privilege of {objtype}")
    return names


def _targets(step: Step, body: dict[str, Any], defaults_for: str | None) -> list[tuple]:
    objtype = body["objtype"]
    names = [o["String"]["sval"] for o in body.get("objects", [])]
    if defaults_for is not None:
        return [(step.database, "default", defaults_for, schema, objtype) for schema in names]
    if body["targtype"] == "ACL_TARGET_ALL_IN_SCHEMA":
        return [(step.database, "all in", schema, objtype) for schema in names]
    if objtype == "OBJECT_DATABASE":
        return [("database", name, objtype) for name in names]
    return [(step.database, objtype, name, objtype) for name in names]


def privileges_after(parsed: Script) -> dict[tuple, set[str] | None]:
    """(target, grantee) -> privileges once the script has run; UNKNOWN where it never revoked all."""
    acl: dict[tuple, set[str] | None] = {}
    for step in parsed.steps:
        if step.type == "GrantStmt":
            body, defaults_for = step.body, None
        elif step.type == "AlterDefaultPrivilegesStmt":
            options = {o["DefElem"]["defname"]: o["DefElem"]["arg"]["List"]["items"] for o in step.body["options"]}
            (defaults_for,) = role_names(options["roles"])
            body = dict(step.body["action"], objects=options["schemas"])
        else:
            continue
        objtype = body["objtype"]
        privileges = _privileges(body, objtype)
        for target in _targets(step, body, defaults_for):
            for grantee in role_names(body["grantees"]):
                held = acl.get((target, grantee), UNKNOWN)
                if body.get("is_grant", False):
                    acl[(target, grantee)] = None if held is None else held | privileges
                elif privileges == ALL[objtype]:
                    acl[(target, grantee)] = set()
                else:
                    acl[(target, grantee)] = None if held is None else held - privileges
    return acl


def expected_privileges(database: Database, privilege: str | None) -> dict[tuple, set[str]]:
    """What a managed role other than the owner holds in ``database`` with ``privilege`` (None: no grant)."""
    db, owner = database.name, database.owner
    write = {"select", "insert", "update", "delete"}
    by_level = {
        None: ({}, set(), set(), set(), set()),
        "connect": ({"connect"}, set(), set(), set(), set()),
        "read": ({"connect"}, {"usage"}, {"select"}, {"select"}, set()),
        "write": ({"connect", "temporary"}, {"usage"}, write, {"select", "usage"}, set()),
        "all": tuple(
            ALL[kind]
            for kind in ("OBJECT_DATABASE", "OBJECT_SCHEMA", "OBJECT_TABLE", "OBJECT_SEQUENCE", "OBJECT_FUNCTION")
        ),
    }
    on_database, on_schema, tables, sequences, functions = by_level[privilege]
    return {
        ("database", db, "OBJECT_DATABASE"): set(on_database),
        (db, "OBJECT_SCHEMA", "public", "OBJECT_SCHEMA"): set(on_schema),
        (db, "all in", "public", "OBJECT_TABLE"): set(tables),
        (db, "all in", "public", "OBJECT_SEQUENCE"): set(sequences),
        (db, "all in", "public", "OBJECT_FUNCTION"): set(functions),
        (db, "default", owner, "public", "OBJECT_TABLE"): set(tables),
        (db, "default", owner, "public", "OBJECT_SEQUENCE"): set(sequences),
        (db, "default", owner, "public", "OBJECT_FUNCTION"): set(functions),
    }


CASES = {
    "two databases, every level": (DATABASES, ROLES, GRANTS),
    "one database, one reader": (
        (Database("app", "app_owner", ()),),
        (Role("app_owner", True, "app_owner_password"), Role("app_reader", True, "app_reader_password")),
        (Grant("app_reader", "app", "read"),),
    ),
    "grants in the other order": (DATABASES, ROLES, tuple(reversed(GRANTS))),
}


@pytest.mark.parametrize("case", CASES)
def test_every_managed_role_ends_with_exactly_its_declared_privileges_and_nothing_more(case: str) -> None:
    databases, roles, grants = CASES[case]
    acl = privileges_after(read(render_init_sql(databases, roles, grants)))
    declared = {(g.role, g.database): g.privilege for g in grants}
    for database in databases:
        for role in roles:
            if role.name == database.owner:
                continue
            want = expected_privileges(database, declared.get((role.name, database.name)))
            held = {target: acl.get((target, role.name), UNKNOWN) for target in want}
            assert held == want, f"{role.name} in {database.name}"
        # PUBLIC: nothing on the database or schema public, whatever it had.
        assert acl[(("database", database.name, "OBJECT_DATABASE"), "PUBLIC")] == set()
        assert acl[((database.name, "OBJECT_SCHEMA", "public", "OBJECT_SCHEMA"), "PUBLIC")] == set()
        # The owner may use and create in schema public (not its own on servers before 15).
        owner_schema = acl[((database.name, "OBJECT_SCHEMA", "public", "OBJECT_SCHEMA"), database.owner)]
        assert owner_schema is UNKNOWN or owner_schema >= ALL["OBJECT_SCHEMA"]
        assert any(
            step.type == "GrantStmt"
            and step.body["objtype"] == "OBJECT_SCHEMA"
            and "privileges" not in step.body
            and role_names(step.body["grantees"]) == [database.owner]
            for step in read(render_init_sql(databases, roles, grants)).steps
            if step.database == database.name
        )


def test_a_read_grant_holds_no_privilege_that_writes_or_creates() -> None:
    acl = privileges_after(script())
    writes = {"insert", "update", "delete", "truncate", "create", "temporary", "trigger", "references", "maintain"}
    held = set()
    for (target, grantee), privileges in acl.items():
        if grantee == "reader" and "parking" in target[:2]:
            assert privileges is not UNKNOWN, target
            held |= privileges
    assert held == {"connect", "usage", "select"}
    assert not held & writes


def test_revokes_precede_grants_inside_one_transaction_in_the_database_they_concern() -> None:
    parsed = script()
    for database in DATABASES:
        changes = [step for step in parsed.steps if step.type in ("GrantStmt", "AlterDefaultPrivilegesStmt")]
        inside = [step for step in changes if step.database == database.name]
        assert inside and all(step.in_transaction for step in inside), database.name
        for step in changes:
            body = step.body if step.type == "GrantStmt" else step.body["action"]
            if body["objtype"] == "OBJECT_DATABASE":
                # GRANT/REVOKE ON DATABASE d: only from d's own transaction.
                assert [o["String"]["sval"] for o in body["objects"]] == [step.database]
        # Apart from the owner's GRANT ALL ON SCHEMA public: every REVOKE before the first GRANT.
        body = [s.body if s.type == "GrantStmt" else s.body["action"] for s in inside]
        is_grant = [b.get("is_grant", False) for b in body if role_names(b["grantees"]) != [database.owner]]
        assert False in is_grant and True in is_grant, database.name
        assert is_grant == sorted(is_grant), f"a GRANT before a REVOKE in {database.name}"


def test_what_roles_owning_no_database_made_goes_to_the_owner_when_they_own_a_lasting_object() -> None:
    parsed = script()
    owners = {database.owner for database in DATABASES}
    for database in DATABASES:
        handed = {}
        for step in parsed.of_type("ReassignOwnedStmt"):
            (name,) = role_names(step.body["roles"])
            if step.database != database.name or name.startswith(COLUMN):
                continue
            assert step.in_transaction
            assert step.body["newrole"]["rolename"] == database.owner
            where = step.node["SelectStmt"]["whereClause"]
            # Only where it owns a table, sequence or function that is not temporary.
            assert column_equals(where) == {("rolname", name)}
            assert {"pg_class", "pg_proc"} <= {n["RangeVar"]["relname"] for n in walk(where) if "RangeVar" in n}
            assert "t" in strings(where) and "relpersistence" in str(where)
            handed[name] = step
        assert set(handed) == {role.name for role in ROLES} - owners, database.name
