"""Unit: the daemon configuration renderers as pure functions (validation, determinism, shape).

What the daemons make of the output is tested in tests/contract/ against the real ones.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import stat
import subprocess
from pathlib import Path

import pytest

from smartnation.program.daemon_config import (
    Database,
    DeviceClass,
    Grant,
    Role,
    render_acl_file,
    render_device_acl_file,
    render_init_script,
    render_init_sql,
    render_mosquitto_conf,
    render_password_file,
)

pytestmark = pytest.mark.unit


# --------------------------------------------------------------------------- mosquitto: validation


def device(**overrides) -> DeviceClass:
    fields = {"name": "parking-sensor", "username": "parking", "publish": ("city/parking/+/telemetry",)}
    fields |= {"subscribe": ()} | overrides
    return DeviceClass(**fields)


@pytest.mark.parametrize("topic", ["#", "+", "city/+/telemetry", "city/#", "$SYS/broker/uptime", "a/+/+/#"])
def test_valid_topic_filters_are_accepted(topic: str) -> None:
    assert device(publish=(topic,)).publish == (topic,)


@pytest.mark.parametrize(
    ("topic", "complaint"),
    [
        ("", "non-empty"),
        ("city//telemetry", "empty level"),
        ("/city", "empty level"),
        ("city/", "empty level"),
        ("city/#/telemetry", "'#' must be a whole level and the last one"),
        ("city#", "'#' must be a whole level"),
        ("city/tele#", "'#' must be a whole level"),
        ("city/+x", "'+' must be a whole level"),
        ("city/parking lot", "whitespace"),
        ("city/\x00", "control"),
    ],
)
@pytest.mark.parametrize("field", ["publish", "subscribe"])
def test_invalid_topic_filters_are_rejected(topic: str, complaint: str, field: str) -> None:
    with pytest.raises(ValueError, match=re.escape(complaint)) as error:
        device(**{field: (topic,)})
    assert "parking-sensor" in str(error.value) and field in str(error.value)


@pytest.mark.parametrize(
    ("username", "complaint"),
    [
        ("", "non-empty"),
        ("dev:1", "contains ':'"),
        ("dev 1", "whitespace"),
        ("dev\t1", "whitespace"),
        ("d\n", "whitespace"),
    ],
)
def test_invalid_usernames_are_rejected(username: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=re.escape(complaint)):
        device(username=username)


def test_device_class_rejects_a_string_instead_of_a_tuple_and_empty_access() -> None:
    with pytest.raises(ValueError, match="tuple"):
        device(publish="city/parking/+/telemetry")
    with pytest.raises(ValueError, match="at least one"):
        device(publish=(), subscribe=())
    with pytest.raises(ValueError, match="twice"):
        device(publish=("a/b", "a/b"))
    with pytest.raises(ValueError, match="name"):
        device(name="Parking Sensor")


# --------------------------------------------------------------------------- mosquitto: password file

HASH_LINE = re.compile(
    r"^(?P<user>[^:]+):\$7\$(?P<iter>\d+)\$(?P<salt>[A-Za-z0-9+/]{16})\$(?P<hash>[A-Za-z0-9+/]{86}==)$"
)


def parse_password_file(text: str) -> dict[str, re.Match]:
    lines = text.splitlines()
    matches = [HASH_LINE.fullmatch(line) for line in lines]
    assert all(matches), text
    return {m["user"]: m for m in matches}


def test_password_file_is_mosquitto_pbkdf2_sha512_and_verifies() -> None:
    credentials = {"parking": "correct horse", "ingest": "battery:staple"}
    entries = parse_password_file(render_password_file(credentials))
    assert set(entries) == set(credentials)
    for user, entry in entries.items():
        salt = base64.b64decode(entry["salt"])
        assert len(salt) == 12  # mosquitto refuses other salt lengths
        # Recomputed with hashlib directly, not with the module under test.
        expected = hashlib.pbkdf2_hmac("sha512", credentials[user].encode(), salt, int(entry["iter"]))
        assert base64.b64decode(entry["hash"]) == expected
        assert int(entry["iter"]) >= 101


def test_password_file_is_deterministic_and_order_independent() -> None:
    first = render_password_file({"a": "pw-a", "b": "pw-b"})
    assert render_password_file({"b": "pw-b", "a": "pw-a"}) == first
    assert render_password_file(dict(reversed(list({"a": "pw-a", "b": "pw-b"}.items())))) == first


def test_salts_differ_per_user_and_per_password() -> None:
    entries = parse_password_file(render_password_file({"a": "same", "b": "same"}))
    assert entries["a"]["salt"] != entries["b"]["salt"]
    assert entries["a"]["hash"] != entries["b"]["hash"]
    rotated = parse_password_file(render_password_file({"a": "rotated"}))
    assert rotated["a"]["salt"] != entries["a"]["salt"]


def test_password_file_never_contains_the_cleartext() -> None:
    text = render_password_file({"parking": "hunter2-unique-cleartext"})
    assert "hunter2" not in text


@pytest.mark.parametrize(
    ("credentials", "complaint"),
    [({"a:b": "pw"}, "':'"), ({"a b": "pw"}, "whitespace"), ({"a": ""}, "empty"), ({"": "pw"}, "non-empty")],
)
def test_password_file_rejects_bad_entries(credentials: dict[str, str], complaint: str) -> None:
    with pytest.raises(ValueError, match=re.escape(complaint)):
        render_password_file(credentials)


# --------------------------------------------------------------------------- mosquitto: ACL file


def parse_acl(text: str) -> dict[str, set[tuple[str, str]]]:
    rules: dict[str, set[tuple[str, str]]] = {}
    user = None
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        words = line.split()
        if words[0] == "user":
            user = words[1]
            assert user not in rules, f"user {user} appears twice"
            rules[user] = set()
        else:
            assert words[0] == "topic" and user is not None, f"rule outside a user block: {line}"
            rules[user].add((words[1], words[2]))
    return rules


def test_acl_grants_write_for_publish_and_read_for_subscribe() -> None:
    classes = [
        device(subscribe=("city/parking/+/commands",)),
        DeviceClass(name="telemetry-ingest", username="ingest", publish=(), subscribe=("city/+/+/telemetry",)),
        DeviceClass(name="bridge", username="bridge", publish=("a/#",), subscribe=("a/#", "b/+")),
    ]
    rules = parse_acl(render_acl_file(classes))
    assert rules == {
        "parking": {("write", "city/parking/+/telemetry"), ("read", "city/parking/+/commands")},
        "ingest": {("read", "city/+/+/telemetry")},
        "bridge": {("readwrite", "a/#"), ("read", "b/+")},
    }


def test_acl_has_no_rules_for_everyone() -> None:
    # Rules before the first `user` line would apply to every client.
    text = render_acl_file([device()])
    first_rule = next(line for line in text.splitlines() if line and not line.startswith("#"))
    assert first_rule.startswith("user ")


def test_acl_rejects_a_username_shared_by_two_classes() -> None:
    with pytest.raises(ValueError, match="parking"):
        render_acl_file([device(), device(name="other-sensor")])


def test_acl_is_deterministic() -> None:
    classes = [device(), device(name="air", username="airq", publish=("city/air/+/telemetry",))]
    assert render_acl_file(classes) == render_acl_file(list(classes))


# --------------------------------------------------------------------------- mosquitto: broker config

CONF_ARGS = {
    "plain_port": 1883,
    "tls_port": 8883,
    "certfile": "/tls/tls.crt",
    "keyfile": "/tls/tls.key",
    "cafile": "/tls/ca.crt",
    "password_file": "/auth/passwd",
    "acl_file": "/auth/acl",
    "device_acl_file": "/auth/device-acl",
    "persistence_dir": "/data",
    "internal_tls": True,
}


def parse_conf(text: str) -> tuple[list[tuple[str, str]], list[list[tuple[str, str]]]]:
    """(global directives, [directives of each listener]) as mosquitto reads them."""
    global_part: list[tuple[str, str]] = []
    listeners: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, _, value = line.partition(" ")
        if key == "listener":
            listeners.append([(key, value)])
        elif listeners:
            listeners[-1].append((key, value))
        else:
            global_part.append((key, value))
    return global_part, listeners


def test_conf_each_listener_authenticates_on_its_own() -> None:
    global_part, listeners = parse_conf(render_mosquitto_conf(**CONF_ARGS))
    settings = dict(global_part)
    # Per listener: a password is checked on the plain listener only, a certificate on TLS only.
    assert settings["per_listener_settings"] == "true"
    assert not {"allow_anonymous", "password_file", "acl_file"} & set(settings)
    assert settings["persistence"] == "true"
    assert settings["persistence_location"] == "/data/"  # a directory, also for mosquitto 1.x
    assert ("log_dest", "stderr") in global_part  # unbuffered: each line reaches `kubectl logs` at once
    assert [key for key, _ in global_part].count("log_dest") == 1
    by_port = {dict(listener)["listener"]: dict(listener) for listener in listeners}
    plain, tls = by_port["1883"], by_port["8883"]
    assert (plain["allow_anonymous"], plain["password_file"], plain["acl_file"]) == (
        "false",
        "/auth/passwd",
        "/auth/acl",
    )
    assert tls["allow_anonymous"] == "false"
    assert "password_file" not in tls, "a password must be worth nothing on the TLS listener"
    assert (tls["require_certificate"], tls["use_identity_as_username"]) == ("true", "true")
    assert tls["acl_file"] == "/auth/device-acl"
    for listener in listeners:
        keys = [key for key, _ in listener]
        assert all(keys.count(key) == 1 for key in keys), listener


def test_conf_internal_listener_serves_tls_without_client_certificates() -> None:
    """In the cluster both listeners serve TLS with the same key pair; the internal one checks
    passwords, not client certificates. Plain MQTT only when asked for (the services' harness)."""
    _, listeners = parse_conf(render_mosquitto_conf(**CONF_ARGS))
    by_port = {dict(listener)["listener"]: dict(listener) for listener in listeners}
    assert set(by_port) == {"1883", "8883"}
    internal = by_port["1883"]
    assert (internal["certfile"], internal["keyfile"], internal["tls_version"]) == (
        "/tls/tls.crt",
        "/tls/tls.key",
        "tlsv1.2",
    )
    assert not {"cafile", "require_certificate", "use_identity_as_username"} & set(internal)
    _, plain_listeners = parse_conf(render_mosquitto_conf(**{**CONF_ARGS, "internal_tls": False}))
    plain = {dict(listener)["listener"]: dict(listener) for listener in plain_listeners}["1883"]
    assert not {"certfile", "keyfile", "cafile", "require_certificate"} & set(plain)


def test_conf_device_listener() -> None:
    _, listeners = parse_conf(render_mosquitto_conf(**CONF_ARGS))
    by_port = {dict(listener)["listener"]: dict(listener) for listener in listeners}
    tls = by_port["8883"]
    assert (tls["certfile"], tls["keyfile"], tls["cafile"]) == ("/tls/tls.crt", "/tls/tls.key", "/tls/ca.crt")
    assert tls["tls_version"] == "tlsv1.2"


def test_conf_never_sets_user_so_a_non_root_uid_works() -> None:
    text = render_mosquitto_conf(**CONF_ARGS)
    global_part, listeners = parse_conf(text)
    assert "user" not in {key for key, _ in global_part + [d for listener in listeners for d in listener]}


def test_conf_with_bind_address() -> None:
    _, listeners = parse_conf(render_mosquitto_conf(**CONF_ARGS, bind_address="127.0.0.1"))
    assert sorted(dict(listener)["listener"] for listener in listeners) == ["1883 127.0.0.1", "8883 127.0.0.1"]


def test_conf_comments_every_block() -> None:
    blocks = [block for block in render_mosquitto_conf(**CONF_ARGS).split("\n\n") if block.strip()]
    assert all(block.lstrip().startswith("#") for block in blocks)


@pytest.mark.parametrize(
    ("overrides", "complaint"),
    [
        ({"plain_port": 0}, "plain_port"),
        ({"tls_port": 70000}, "tls_port"),
        ({"tls_port": True}, "tls_port"),
        ({"tls_port": 1883}, "must differ"),
        ({"certfile": "tls.crt"}, "certfile"),
        ({"password_file": "/auth/my passwd"}, "password_file"),
        ({"cafile": "ca.crt"}, "cafile"),
        ({"cafile": None}, "cafile"),
        ({"device_acl_file": "device-acl"}, "device_acl_file"),
    ],
)
def test_conf_rejects_bad_arguments(overrides: dict, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        render_mosquitto_conf(**(CONF_ARGS | overrides))


def test_conf_is_deterministic() -> None:
    assert render_mosquitto_conf(**CONF_ARGS) == render_mosquitto_conf(**CONF_ARGS)


# --------------------------------------------------------------------------- mosquitto: device ACL


def test_device_acl_confines_each_class_to_its_own_id() -> None:
    text = render_device_acl_file(
        [
            device(subscribe=("city/parking/+/commands",)),
            device(name="air", username="airq", publish=("city/air/+/telemetry",), subscribe=()),
            device(name="lamp", username="lamp", publish=("city/lamp/+/state",), subscribe=("city/lamp/+/state",)),
        ]
    )
    rules = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert rules == [
        "pattern write city/parking/%u/telemetry",
        "pattern read city/parking/%u/commands",
        "pattern write city/air/%u/telemetry",
        "pattern readwrite city/lamp/%u/state",
    ]
    # Patterns only: no user gets rights of its own on the devices' listener.
    assert not any(line.startswith(("user ", "topic ")) for line in rules)


@pytest.mark.parametrize(
    "topic", ["city/parking/telemetry", "city/+/+/telemetry", "city/parking/+/#", "city/parking/#"]
)
def test_device_acl_refuses_a_filter_that_does_not_name_one_device(topic: str) -> None:
    with pytest.raises(ValueError, match=r"exactly one '\+' level \(the device id\) and no '#'"):
        render_device_acl_file([device(publish=(topic,), subscribe=())])


# --------------------------------------------------------------------------- postgres: validation


@pytest.mark.parametrize("name", ["Telemetry", "1db", "tele-metry", "tele metry", "", "x" * 64, "tele;drop"])
def test_identifiers_are_validated(name: str) -> None:
    with pytest.raises(ValueError, match="lowercase identifier"):
        Role(name=name, login=True, password_var="pw")
    with pytest.raises(ValueError, match="lowercase identifier"):
        Database(name=name, owner="owner", extensions=())
    with pytest.raises(ValueError, match="lowercase identifier"):
        Grant(role=name, database="db", privilege="read")


def test_identifier_of_63_characters_is_accepted() -> None:
    assert Role(name="r" * 63, login=False, password_var="").name == "r" * 63


@pytest.mark.parametrize("name", ["postgres", "pg_monitor", "public"])
def test_reserved_role_names_are_rejected(name: str) -> None:
    with pytest.raises(ValueError, match="reserved"):
        Role(name=name, login=True, password_var="pw")


def test_reserved_database_names_are_rejected() -> None:
    with pytest.raises(ValueError, match="reserved"):
        Database(name="template1", owner="owner", extensions=())


def test_login_role_needs_a_password_variable() -> None:
    with pytest.raises(ValueError, match="password_var"):
        Role(name="app", login=True, password_var="")
    with pytest.raises(ValueError, match="password_var"):
        Role(name="app", login=True, password_var="APP-PW")
    assert Role(name="group", login=False, password_var="").password_var == ""


def test_privilege_must_be_known() -> None:
    with pytest.raises(ValueError, match=r"'admin' is not one of \['all', 'connect', 'read', 'write'\]"):
        Grant(role="app", database="db", privilege="admin")


def test_extensions_are_validated() -> None:
    with pytest.raises(ValueError, match="tuple"):
        Database(name="db", owner="owner", extensions="timescaledb")
    with pytest.raises(ValueError, match="lowercase identifier"):
        Database(name="db", owner="owner", extensions=("timescaledb; DROP",))


OWNER = Role(name="app_owner", login=True, password_var="app_owner_password")
READER = Role(name="app_reader", login=True, password_var="app_reader_password")
GROUP = Role(name="analysts", login=False, password_var="")
DB = Database(name="app", owner="app_owner", extensions=("timescaledb",))
GRANTS = (Grant(role="app_reader", database="app", privilege="read"),)


@pytest.mark.parametrize(
    ("databases", "roles", "grants", "complaint"),
    [
        ((DB,), (READER,), (), "owner 'app_owner' is not among the roles"),
        ((DB,), (OWNER,), GRANTS, "role 'app_reader' is not among the roles"),
        ((), (OWNER, READER), GRANTS, "database 'app' is not among the databases"),
        ((DB,), (OWNER, READER), GRANTS * 2, "more than one grant"),
        ((DB, DB), (OWNER,), (), "repeated"),
        ((DB,), (OWNER, Role(name="other", login=True, password_var="app_owner_password")), (), "password variables"),
    ],
)
def test_references_are_checked(databases, roles, grants, complaint: str) -> None:
    with pytest.raises(ValueError, match=re.escape(complaint)):
        render_init_sql(databases, roles, grants)
    with pytest.raises(ValueError, match=re.escape(complaint)):
        render_init_script(databases, roles, grants, sql_path="/init/init.sql")


# --------------------------------------------------------------------------- postgres: rendering


def test_sql_carries_passwords_only_as_quoted_psql_variables() -> None:
    sql = render_init_sql((DB,), (OWNER, READER, GROUP), GRANTS)
    for role in (OWNER, READER):
        uses = re.findall(rf":'?{role.password_var}'?", sql)
        assert uses == [f":'{role.password_var}'"], uses  # once, and in the quoted form
    assert not re.search(r"PASSWORD\s+'", sql), "a literal password in the SQL text"
    assert "ON_ERROR_STOP" in sql


def test_sql_creates_databases_with_gexec_outside_do_blocks() -> None:
    sql = render_init_sql((DB,), (OWNER, READER), GRANTS)
    statements = [line for line in sql.splitlines() if "CREATE DATABASE" in line]
    assert statements and all(line.startswith("SELECT format('CREATE DATABASE") for line in statements)
    do_blocks = re.findall(r"DO \$\$.*?\$\$;", sql, flags=re.S)
    assert not any("CREATE DATABASE" in block for block in do_blocks)
    # Every role and database creation is guarded, so a rerun does not fail.
    # (two roles, one database and that database's connect group)
    assert sql.count("WHERE NOT EXISTS") == 2 + 1 + 1


def test_extensions_are_created_only_if_available() -> None:
    sql = render_init_sql((DB,), (OWNER, READER), GRANTS)
    do_blocks = re.findall(r"DO \$\$.*?\$\$;", sql, flags=re.S)
    creates = [line for line in sql.splitlines() if "CREATE EXTENSION" in line]
    assert creates and all("IF NOT EXISTS" in line for line in creates)
    assert all(any(line in block for block in do_blocks) for line in creates)
    assert all("pg_available_extensions" in block for block in do_blocks if "CREATE EXTENSION" in block)


def test_sql_revokes_public_access() -> None:
    sql = render_init_sql((DB,), (OWNER, READER), GRANTS)
    assert "REVOKE ALL ON DATABASE app FROM PUBLIC;" in sql
    assert "REVOKE ALL ON SCHEMA public FROM PUBLIC;" in sql


def test_sql_is_deterministic() -> None:
    assert render_init_sql((DB,), (OWNER, READER), GRANTS) == render_init_sql([DB], [OWNER, READER], list(GRANTS))


# --------------------------------------------------------------------------- postgres: wrapper script


@pytest.fixture
def fake_psql(tmp_path: Path) -> Path:
    """A `psql` on PATH that records its arguments, one per line."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    psql = bin_dir / "psql"
    psql.write_text('#!/bin/sh\nfor arg in "$@"; do printf "%s\\n" "$arg"; done > "$ARGS_OUT"\n')
    psql.chmod(psql.stat().st_mode | stat.S_IXUSR)
    return bin_dir


def run_script(tmp_path: Path, fake_psql: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    sql = tmp_path / "init dir" / "init.sql"
    sql.parent.mkdir(exist_ok=True)
    sql.write_text("SELECT 1;\n")
    script = tmp_path / "init.sh"
    script.write_text(render_init_script((DB,), (OWNER, READER, GROUP), GRANTS, sql_path=str(sql)))
    base = {"PATH": f"{fake_psql}:{os.environ['PATH']}", "ARGS_OUT": str(tmp_path / "args")}
    return subprocess.run(["sh", str(script)], env=base | env, capture_output=True, text=True, timeout=10)


def test_script_passes_each_password_as_a_psql_variable(tmp_path: Path, fake_psql: Path) -> None:
    secret = 'it\'s a "secret" $HOME `id`'
    result = run_script(tmp_path, fake_psql, {"APP_OWNER_PASSWORD": secret, "APP_READER_PASSWORD": "r"})
    assert result.returncode == 0, result.stderr
    args = (tmp_path / "args").read_text().splitlines()
    assert args[:2] == ["-X", "-v"] and "ON_ERROR_STOP=1" in args
    assert f"app_owner_password={secret}" in args  # passed verbatim, no shell expansion
    assert "app_reader_password=r" in args
    assert args[-2:] == ["-f", str(tmp_path / "init dir" / "init.sql")]


def test_script_names_every_missing_variable(tmp_path: Path, fake_psql: Path) -> None:
    result = run_script(tmp_path, fake_psql, {"APP_READER_PASSWORD": ""})
    assert result.returncode != 0
    assert "APP_OWNER_PASSWORD" in result.stderr and "APP_READER_PASSWORD" in result.stderr
    assert not (tmp_path / "args").exists(), "psql ran although passwords were missing"
