"""The string kinds' rules at both ends and their messages to the letter: cron schedules (field
count, each field's range, steps, ranges, names), SQL identifiers, MQTT topic filters, S3 bucket
names; and the device classes' and database roles' own rules. The last survivors of this
session's resumed settings run (validation.py's _cron, _cron_part, _sql_identifier,
_topic_filter, _bucket; DeviceClassSettings, RoleSettings)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from smartnation.settings import SettingsError, load_settings
from smartnation.settings.models import ROLE_NAME_MAX
from smartnation.settings.validation import KINDS, check_kind
from tests.unit.harness import edit

pytestmark = pytest.mark.unit


def problem(kind: str, value: str) -> str | None:
    """The problem alone, from the message check_kind gives (None when ``value`` is taken)."""
    message = check_kind(kind, value)
    if message is None:
        return None
    head, tail = f"expected {KINDS[kind][0]} (", f"), got {value!r}"
    assert message.startswith(head) and message.endswith(tail), message
    return message.removeprefix(head).removesuffix(tail)


@pytest.mark.parametrize(
    "schedule",
    [
        "0 0 * * 7",
        "0 0 1 * *",
        "*/1 * * * *",
        "*/59 * * * *",
        "0 3-3 * * *",
        "0,30 23 31 12 0",
        "0 0 * JAN-dec mon-sat",
    ],
)
def test_a_schedule_at_the_ends_of_each_field_is_taken(schedule: str) -> None:
    assert problem("cron", schedule) is None


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ("15 2 * *", "five fields (minute hour day-of-month month day-of-week), got 4"),
        ("60 2 * * *", "minute field '60': '60' is not a value from 0 to 59"),
        ("0 24 * * *", "hour field '24': '24' is not a value from 0 to 23"),
        ("0 0 0 * *", "day of month field '0': '0' is not a value from 1 to 31"),
        ("0 0 * jan-xyz *", "month field 'jan-xyz': 'jan-xyz' is not a value from 1 to 12"),
        ("0 0 * * 8", "day of week field '8': '8' is not a value from 0 to 7"),
        ("0,61 0 * * *", "minute field '0,61': '61' is not a value from 0 to 59"),
        ("*/0 * * * *", "minute field '*/0': step '0' must be a number from 1 to 59"),
        ("*/60 * * * *", "minute field '*/60': step '60' must be a number from 1 to 59"),
        ("0 5-3 * * *", "hour field '5-3': range '5-3' runs backwards"),
    ],
)
def test_a_schedule_out_of_range_says_which_field_and_why(schedule: str, expected: str) -> None:
    assert problem("cron", schedule) == expected


def test_a_sql_identifier_may_have_63_characters_and_no_more_and_not_be_a_key_word() -> None:
    assert problem("sql_identifier", "a" * 63) is None
    assert problem("sql_identifier", "a" * 64) == "a lowercase SQL identifier [a-z_][a-z0-9_]* of at most 63 characters"
    assert problem("sql_identifier", "select") == "a name that is not a reserved SQL key word"


def test_a_topic_filter_keeps_the_broker_rule_without_its_prefix_and_needs_a_literal_level() -> None:
    assert problem("topic_filter", "city/#/x") == "topic filter 'city/#/x': '#' must be a whole level and the last one"
    assert (
        problem("topic_filter", "+/+/#")
        == "a filter with at least one literal level (wildcards alone reach every topic)"
    )
    assert problem("topic_filter", "city/+/#") is None


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("abc", None),
        ("a" * 63, None),
        ("ab", "3 to 63 lowercase letters, digits, '.' and '-', alphanumeric ends, no '..'"),
        ("a" * 64, "3 to 63 lowercase letters, digits, '.' and '-', alphanumeric ends, no '..'"),
        ("a..b", "3 to 63 lowercase letters, digits, '.' and '-', alphanumeric ends, no '..'"),
        ("a.-b", "3 to 63 lowercase letters, digits, '.' and '-', alphanumeric ends, no '..'"),
        ("a-.b", "3 to 63 lowercase letters, digits, '.' and '-', alphanumeric ends, no '..'"),
        ("192.168.1.1", "not an IP address, no 'xn--' prefix, no '-s3alias' suffix"),
        ("xn--abc", "not an IP address, no 'xn--' prefix, no '-s3alias' suffix"),
        ("abc-s3alias", "not an IP address, no 'xn--' prefix, no '-s3alias' suffix"),
    ],
)
def test_a_bucket_name_follows_s3s_rules(name: str, expected: str | None) -> None:
    assert problem("bucket", name) == expected


def refused(envdir: Path, path: str, value: Any) -> tuple[str, str]:
    edit(envdir, "defaults.yaml", path, value)
    with pytest.raises(SettingsError) as caught:
        load_settings("dev", envdir)
    return caught.value.key_path, caught.value.detail


def test_a_device_class_needs_a_topic_and_one_plus_level_for_the_device_id(envdir) -> None:
    classes = "broker.device_classes"
    assert refused(envdir, f"{classes}.0", {"name": "traffic-sensor"}) == (
        f"{classes}.0",
        "a device class needs at least one publish or subscribe topic",
    )
    for topic in ("city/traffic/telemetry", "city/+/+/telemetry", "city/+/#"):
        assert refused(envdir, f"{classes}.0", {"name": "traffic-sensor", "subscribe": [topic]}) == (
            f"{classes}.0",
            f"subscribe.0 {topic!r}: a device class's topic needs exactly one '+' level (the device id) and no '#'; "
            "an in-cluster client's class says `internal: true`",
        )
    edit(
        envdir, "defaults.yaml", f"{classes}.0", {"name": "traffic-sensor", "subscribe": ["city/+/#"], "internal": True}
    )
    load_settings("dev", envdir)


def test_a_role_name_leaves_room_for_its_password_key(envdir) -> None:
    longest = "r" * ROLE_NAME_MAX
    edit(envdir, "defaults.yaml", "database.roles.2.name", longest)
    edit(envdir, "defaults.yaml", "database.grants.2.role", longest)
    edit(envdir, "defaults.yaml", "city_apis.open_data_api.database.role", longest)
    load_settings("dev", envdir)
    assert refused(envdir, "database.roles.2.name", longest + "r") == (
        "database.roles.2.name",
        f"expected at most {ROLE_NAME_MAX} characters, got {ROLE_NAME_MAX + 1}",
    )
