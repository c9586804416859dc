"""Reads a psql script the way psql and PostgreSQL would, for the unit tests of what it means.

The init script of smartnation.program.daemon_config.postgres mixes SQL, psql meta-commands
(``\\set``, ``\\connect``), ``:'var'`` interpolation, ``SELECT format(...) ... \\gexec`` (the
query's result is run as a statement) and PL/pgSQL ``DO`` blocks. This reader parses every
part with pglast (PostgreSQL's own parser, libpg_query): a statement that PostgreSQL would
refuse to parse fails here, and so does a ``format()`` template with a specifier PostgreSQL does
not know. What each ``\\gexec`` query generates is rendered (``%I``, ``%L``, ``%s`` as
PostgreSQL's format() does) and parsed too, so tests read the statements the server runs,
not the text that produces them.

Steps are JSON trees as libpg_query gives them (``pglast.parser.parse_sql_json``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pglast import parse_plpgsql
from pglast.parser import parse_sql_json

# What a psql variable interpolated as a literal (:'name') becomes in the parsed text.
PSQL_VARIABLE = "psql-variable:"
# What a column (a row of the \gexec query) becomes where format() puts it.
COLUMN = "column_"

# psql's meta-commands the init script may use, with their exact spelling (psql's commands and
# its special variables are case-sensitive: \sET or on_error_stop are not these).
META_COMMANDS = frozenset({"set", "connect"})

_IDENT = re.compile(r"[a-z_][a-z0-9_]*")


class ScriptError(ValueError):
    """What psql or PostgreSQL would refuse."""


@dataclass(frozen=True)
class Step:
    """One thing psql does: a meta-command, a statement, or a \\gexec query and what it runs."""

    kind: str
    """``meta``, ``sql`` (one statement), ``gexec`` (a query whose result is run) or ``do``."""
    database: str
    """The database the session is connected to (\\connect), ``postgres`` at first."""
    in_transaction: bool
    """Between BEGIN and COMMIT."""
    node: dict[str, Any] = field(default_factory=dict)
    """``sql``: the statement; ``gexec``: the SELECT; ``do``: the DO statement."""
    generated: dict[str, Any] = field(default_factory=dict)
    """``gexec``: the statement format() renders, parsed."""
    template: str = ""
    """``gexec``: format()'s template."""
    meta: tuple[str, ...] = ()
    """``meta``: the command and its arguments."""
    plpgsql: Any = None
    """``do``: the body as parsed by PL/pgSQL's parser."""

    @property
    def statement(self) -> dict[str, Any]:
        """What the server runs: the statement, or the one the \\gexec query generates."""
        return self.generated if self.kind == "gexec" else self.node

    @property
    def type(self) -> str:
        """The statement's node type (``GrantStmt``, ``AlterRoleStmt``...)."""
        return next(iter(self.statement)) if self.statement else ""

    @property
    def body(self) -> dict[str, Any]:
        return self.statement[self.type]


def _parse(sql: str) -> list[dict[str, Any]]:
    try:
        tree = json.loads(parse_sql_json(sql))
    except Exception as error:  # pglast.parser.ParseError: what the server would refuse to parse
        raise ScriptError(f"{error}: {sql!r}") from None
    return [raw["stmt"] for raw in tree.get("stmts", [])]


def _substitute_variables(sql: str, variables: list[str]) -> str:
    # psql replaces :'name' by the variable's value as a quoted literal, before the server sees it
    # (not in a comment).
    def literal(match: re.Match[str]) -> str:
        variables.append(match.group(1))
        return f"'{PSQL_VARIABLE}{match.group(1)}'"

    return "\n".join(
        line if line.lstrip().startswith("--") else re.sub(r":'([A-Za-z_][A-Za-z0-9_]*)'", literal, line)
        for line in sql.split("\n")
    )


def quote_ident(value: str) -> str:
    """%I of format(): bare if it needs no quotes, else double-quoted (keywords aside)."""
    return value if _IDENT.fullmatch(value) else '"' + value.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def render_format(template: str, args: list[str]) -> str:
    """PostgreSQL's format() with %I, %L, %s and %%; any other specifier is an error there too."""
    out: list[str] = []
    position = 0
    pieces = re.split(r"(%.)", template)
    for piece in pieces:
        if not piece.startswith("%") or len(piece) != 2:
            if "%" in piece:
                raise ScriptError(f"format({template!r}): a lone % at the end")
            out.append(piece)
            continue
        spec = piece[1]
        if spec == "%":
            out.append("%")
            continue
        if spec not in "ILs":
            raise ScriptError(f'format({template!r}): unrecognized format() type specifier "{spec}"')
        if position >= len(args):
            raise ScriptError(f"format({template!r}): too few arguments")
        value = args[position]
        position += 1
        out.append({"I": quote_ident, "L": quote_literal, "s": str}[spec](value))
    return "".join(out)


def _argument(node: dict[str, Any]) -> str:
    if "A_Const" in node and "sval" in node["A_Const"]:
        return node["A_Const"]["sval"]["sval"]
    if "ColumnRef" in node:
        return COLUMN + node["ColumnRef"]["fields"][-1]["String"]["sval"]
    raise ScriptError(f"format() argument neither a string constant nor a column: {node}")


def _gexec(select: dict[str, Any], database: str, in_transaction: bool) -> Step:
    if list(select) != ["SelectStmt"]:
        raise ScriptError(f"\\gexec after a statement that is not a SELECT: {select}")
    targets = select["SelectStmt"].get("targetList", [])
    if len(targets) != 1:
        raise ScriptError(f"\\gexec query selects {len(targets)} columns, expected one format(): {select}")
    call = targets[0]["ResTarget"]["val"].get("FuncCall", {})
    if [name["String"]["sval"] for name in call.get("funcname", [])] != ["format"]:
        raise ScriptError(f"\\gexec query does not select format(...): {select}")
    args = [_argument(arg) for arg in call.get("args", [])]
    template, values = args[0], args[1:]
    generated = _parse(render_format(template, values))
    if len(generated) != 1:
        raise ScriptError(f"format({template!r}) renders {len(generated)} statements, expected one")
    return Step("gexec", database, in_transaction, node=select, generated=generated[0], template=template)


def _do(node: dict[str, Any], database: str, in_transaction: bool) -> Step:
    (option,) = node["DoStmt"]["args"]
    body = option["DefElem"]["arg"]["String"]["sval"]
    try:
        parsed = parse_plpgsql(
            f"CREATE FUNCTION do_block() RETURNS void LANGUAGE plpgsql AS $do_block${body}$do_block$"
        )
    except Exception as error:
        raise ScriptError(f"DO block: {error}: {body!r}") from None
    return Step("do", database, in_transaction, node=node, plpgsql=parsed[0]["PLpgSQL_function"])


@dataclass
class Script:
    """The steps of a psql script, in order, and the psql variables it interpolates."""

    steps: list[Step]
    variables: list[str]

    def of_type(self, node_type: str) -> list[Step]:
        return [step for step in self.steps if step.type == node_type]


def read(script: str) -> Script:
    """Every step of ``script`` as psql would run it; ScriptError where psql or the server would stop."""
    steps: list[Step] = []
    variables: list[str] = []
    database = "postgres"
    in_transaction = False
    buffer: list[str] = []

    def add(step: Step) -> None:
        nonlocal in_transaction
        steps.append(step)
        if step.type == "TransactionStmt":
            kind = step.body["kind"]
            if kind == "TRANS_STMT_BEGIN":
                if in_transaction:
                    raise ScriptError("BEGIN inside a transaction")
                in_transaction = True
            elif kind == "TRANS_STMT_COMMIT":
                if not in_transaction:
                    raise ScriptError("COMMIT outside a transaction")
                in_transaction = False

    def flush() -> None:
        text = _substitute_variables("\n".join(buffer), variables)
        buffer.clear()
        for node in _parse(text):
            add(statement(node))

    def statement(node: dict[str, Any]) -> Step:
        return _do(node, database, in_transaction) if "DoStmt" in node else Step("sql", database, in_transaction, node)

    for line in script.splitlines():
        if line.startswith("\\"):
            flush()
            words = line[1:].split()
            if not words or words[0] not in META_COMMANDS:
                raise ScriptError(f"unknown psql meta-command: {line!r}")
            if in_transaction and words[0] == "connect":
                raise ScriptError(f"{line!r} inside a transaction (psql would end it with the session)")
            if words[0] == "connect":
                (database,) = words[1:]
            steps.append(Step("meta", database, in_transaction, meta=tuple(words)))
        elif line.rstrip().endswith("\\gexec"):
            buffer.append(line.rstrip().removesuffix("\\gexec"))
            text = _substitute_variables("\n".join(buffer), variables)
            buffer.clear()
            # psql has sent every statement ended by ';' already: \gexec runs the unended last one.
            if text.rstrip().endswith(";"):
                raise ScriptError(f"\\gexec after a statement already sent: {text!r}")
            *before, query = _parse(text)
            for node in before:
                add(statement(node))
            add(_gexec(query, database, in_transaction))
        else:
            buffer.append(line)
    flush()
    if in_transaction:
        raise ScriptError("the script ends inside a transaction")
    return Script(steps, variables)


def walk(node: Any) -> Iterator[dict[str, Any]]:
    """Every dict in a JSON tree, depth first."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def column_equals(node: Any) -> set[tuple[str, str]]:
    """(column, constant) of every ``column = 'constant'`` in a tree (WHERE clauses, subqueries)."""
    found = set()
    for expr in (n["A_Expr"] for n in walk(node) if "A_Expr" in n):
        if expr["kind"] != "AEXPR_OP" or expr["name"][0]["String"]["sval"] != "=":
            continue
        left, right = expr.get("lexpr", {}), expr.get("rexpr", {})
        if "ColumnRef" in left and "A_Const" in right and "sval" in right["A_Const"]:
            found.add((left["ColumnRef"]["fields"][-1]["String"]["sval"], right["A_Const"]["sval"]["sval"]))
    return found


def strings(node: Any) -> list[str]:
    """Every string constant in a tree."""
    return [n["A_Const"]["sval"]["sval"] for n in walk(node) if "A_Const" in n and "sval" in n["A_Const"]]


def role_names(role_specs: list[dict[str, Any]]) -> list[str]:
    """The names of a grantee list (RoleSpec nodes; PUBLIC as ``PUBLIC``)."""
    names = []
    for spec in role_specs:
        spec = spec.get("RoleSpec", spec)
        names.append("PUBLIC" if spec["roletype"] == "ROLESPEC_PUBLIC" else spec["rolename"])
    return names
