"""The rules each kind of settings string is checked to (settings.validation.KINDS), at their edges.

The loader tests show that a bad value is refused with its file and key; these pin down where
each rule's edge is (63 vs 64 characters, minute 59 vs 60, ...) and what the message says, so
that a rule loosened or tightened by one character, or a message that stops saying what is
expected, fails a test (mutation testing found both unguarded: `make mutation`).
"""

from __future__ import annotations

import pytest

from smartnation.settings.validation import SQL_IDENTIFIER_MAX, check_kind, parse_quantity

ACCEPTED = [
    ("dns_label", "a"),
    ("dns_label", "a" * 63),
    ("dns_label", "a-0"),
    ("dns_subdomain", "a.b-c.d"),
    ("dns_subdomain", "a" * 253),
    ("hostname", "a" * 63 + ".b"),
    ("label_key", "app.kubernetes.io/name"),
    ("label_key", "Name_1.x"),
    ("label_value", ""),
    ("label_value", "A" * 63),
    ("label_value", "a_b.c-D"),
    ("cidr", "198.51.100.0/24"),
    ("cidr", "0.0.0.0/0"),
    ("cron", "15 2 * * *"),
    ("cron", "0 0 1 1 0"),
    ("cron", "59 23 31 12 7"),
    ("cron", "*/5 1-3 1,15 jan-dec mon-fri"),
    ("cron", "0-59/59 0-23/23 * * sun"),
    ("cron", "* * * jan-feb sun-sat"),
    ("cron", "* * * JAN *"),
    ("env_var", "_A1"),
    ("env_var", "PGHOST"),
    ("component_name", "street_lighting"),
    ("component_name", "a"),
    ("component_name", "a" * 63),
    ("sql_identifier", "_a1"),
    ("sql_identifier", "a" * SQL_IDENTIFIER_MAX),
    ("sql_identifier", "users"),
    ("topic_filter", "city/+/air/#"),
    ("topic_filter", "a"),
    ("bucket", "abc"),
    ("bucket", "a" * 63),
    ("bucket", "a.b-c"),
]


@pytest.mark.unit
@pytest.mark.parametrize(("kind", "value"), ACCEPTED, ids=[f"{k}:{v[:20]}" for k, v in ACCEPTED])
def test_a_value_within_the_rules_of_its_kind_is_accepted(kind: str, value: str) -> None:
    assert check_kind(kind, value) is None


REFUSED = [
    # (kind, value, text the message must hold)
    ("dns_label", "a" * 64, "lowercase letters, digits and '-', at most 63 characters"),
    ("dns_label", "A", "lowercase letters, digits and '-'"),
    ("dns_label", "-a", "at most 63 characters"),
    ("dns_subdomain", "a" * 254, "lowercase DNS labels separated by '.', at most 253 characters"),
    ("dns_subdomain", "a..b", "lowercase DNS labels separated by '.'"),
    ("hostname", "a" * 64 + ".b", "each label at most 63 characters"),
    ("hostname", "A.b", "lowercase DNS labels"),
    ("label_key", "/name", "its prefix before '/' must be a DNS subdomain"),
    ("label_key", "Bad_Prefix/name", "its prefix before '/' must be a DNS subdomain"),
    ("label_key", "example.com/", "a name of letters, digits, '-', '_' and '.'"),
    ("label_key", "-name", "starting and ending alphanumeric, at most 63"),
    ("label_value", "a" * 64, "at most 63 letters, digits, '-', '_', '.', alphanumeric ends"),
    ("label_value", "a b", "alphanumeric ends"),
    ("cidr", "198.51.100.0", "the prefix length (/NN) must be written"),
    ("cidr", "198.51.100.1/24", "has host bits set"),
    ("cron", "* * * *", "five fields (minute hour day-of-month month day-of-week), got 4"),
    ("cron", "* * * * * *", "got 6"),
    ("cron", "60 * * * *", "minute field '60': '60' is not a value from 0 to 59"),
    ("cron", "* 24 * * *", "hour field '24': '24' is not a value from 0 to 23"),
    ("cron", "* * 0 * *", "day of month field '0': '0' is not a value from 1 to 31"),
    ("cron", "* * 32 * *", "'32' is not a value from 1 to 31"),
    ("cron", "* * * 13 *", "month field '13': '13' is not a value from 1 to 12"),
    ("cron", "* * * 0 *", "'0' is not a value from 1 to 12"),
    ("cron", "* * * * 8", "day of week field '8': '8' is not a value from 0 to 7"),
    ("cron", "* * * * mon-", "'mon-' is not a value from 0 to 7"),
    ("cron", "* * * * xyz", "'xyz' is not a value from 0 to 7"),
    ("cron", "5-1 * * * *", "range '5-1' runs backwards"),
    ("cron", "* * * feb-jan *", "range 'feb-jan' runs backwards"),
    ("cron", "* * * * sat-sun", "range 'sat-sun' runs backwards"),
    ("cron", "*/0 * * * *", "step '0' must be a number from 1 to 59"),
    ("cron", "*/60 * * * *", "step '60' must be a number from 1 to 59"),
    ("cron", "*/x * * * *", "step 'x' must be a number from 1 to 59"),
    ("cron", "1,60 * * * *", "minute field '1,60'"),
    ("env_var", "1A", "letters, digits and '_', not starting with a digit"),
    ("env_var", "A-B", "letters, digits and '_'"),
    ("component_name", "Street", "lowercase letters, digits and '_', starting with a letter"),
    ("component_name", "a_", "ending alphanumeric, at most 63 characters"),
    ("component_name", "a" * 64, "at most 63 characters"),
    ("sql_identifier", "a" * (SQL_IDENTIFIER_MAX + 1), "a lowercase SQL identifier [a-z_][a-z0-9_]* of at most 63"),
    ("sql_identifier", "1a", "a lowercase SQL identifier"),
    ("sql_identifier", "user", "a name that is not a reserved SQL key word"),
    ("sql_identifier", "select", "not a reserved SQL key word"),
    ("topic_filter", "#", "a filter with at least one literal level (wildcards alone reach every topic)"),
    ("topic_filter", "+/#", "wildcards alone reach every topic"),
    ("topic_filter", "a//b", "has an empty level"),
    ("bucket", "ab", "3 to 63 lowercase letters, digits, '.' and '-', alphanumeric ends, no '..'"),
    ("bucket", "a" * 64, "3 to 63"),
    ("bucket", "a..b", "no '..'"),
    ("bucket", "a.-b", "no '..'"),
    ("bucket", "a-.b", "no '..'"),
    ("bucket", "192.168.1.10", "not an IP address, no 'xn--' prefix, no '-s3alias' suffix"),
    ("bucket", "xn--abc", "no 'xn--' prefix"),
    ("bucket", "abc-s3alias", "no '-s3alias' suffix"),
]


@pytest.mark.unit
@pytest.mark.parametrize(("kind", "value", "says"), REFUSED, ids=[f"{k}:{v[:20]}" for k, v, _ in REFUSED])
def test_a_value_past_the_rules_of_its_kind_is_refused_saying_what_is_expected(
    kind: str, value: str, says: str
) -> None:
    problem = check_kind(kind, value)
    assert problem is not None, f"{kind} accepted {value!r}"
    assert says in problem
    # The message always opens with what the kind expects and closes with the value given.
    assert problem.endswith(f"), got {value!r}")


@pytest.mark.unit
def test_the_message_names_the_kind_expected_and_the_value() -> None:
    assert check_kind("cidr", "x") == (
        "expected an IP network in CIDR notation such as 198.51.100.0/24 "
        "('x' does not appear to be an IPv4 or IPv6 network), got 'x'"
    )
    assert check_kind("cron", "x") == (
        "expected a five-field cron schedule such as '15 2 * * *' "
        "(five fields (minute hour day-of-month month day-of-week), got 1), got 'x'"
    )


@pytest.mark.unit
@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500m", 0.5),
        ("2", 2.0),
        ("1.5", 1.5),
        ("1Ki", 1024.0),
        ("1Mi", 2.0**20),
        ("1Gi", 2.0**30),
        ("1Ti", 2.0**40),
        ("1Pi", 2.0**50),
        ("1k", 1e3),
        ("1M", 1e6),
        ("1G", 1e9),
        ("1T", 1e12),
        ("1P", 1e15),
    ],
)
def test_quantities_are_read_as_kubernetes_reads_them(text: str, value: float) -> None:
    assert parse_quantity(text) == value


@pytest.mark.unit
@pytest.mark.parametrize("text", ["", "1 Gi", "1gi", "Gi", "-1", "1.Gi", "1e3"])
def test_malformed_quantities_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_quantity(text)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("field", "amount", "shown"),
    [
        ("pods", 24.0, "24"),
        ("persistent_volume_claims", 7.0, "7"),
        ("requests_memory", 3 * 2**30, "3Gi"),
        ("limits_memory", 1.5 * 2**30, "1.5Gi"),
        ("requests_storage", 40 * 2**30, "40Gi"),
        ("requests_cpu", 6.5, "6.5"),
        ("limits_cpu", 12.0, "12"),
    ],
)
def test_a_quota_need_is_shown_in_the_unit_the_quota_is_written_in(field: str, amount: float, shown: str) -> None:
    from smartnation.settings.models import _amount

    assert _amount(field, amount) == shown


@pytest.mark.unit
@pytest.mark.parametrize(
    ("value", "described"),
    [({"a": 1}, "a mapping"), ([1], "a list"), (None, "nothing (null)"), ("x", "'x'"), (3, "3")],
)
def test_a_wrong_value_is_described_without_dumping_it(value: object, described: str) -> None:
    from smartnation.settings.validation import _describe

    assert _describe(value) == described


@pytest.mark.unit
def test_a_missing_key_is_blamed_on_the_file_that_should_hold_it() -> None:
    from smartnation.settings.validation import Origins

    told = Origins("environments/staging.yaml", lambda path: f"defaults for {'.'.join(path)}")
    assert told.missing_file_for(("broker", "replicas")) == "defaults for broker.replicas"
    plain = Origins("environments/staging.yaml")
    plain.record(("broker",), "environments/defaults.yaml")
    assert plain.missing_file_for(("broker", "replicas")) == "environments/defaults.yaml"
    assert plain.missing_file_for(("database",)) == "environments/staging.yaml"
    assert plain.file_for(()) == "environments/staging.yaml"


@pytest.mark.unit
def test_every_document_of_a_multi_document_file_is_read_and_empty_ones_dropped(tmp_path) -> None:
    from smartnation.settings import SettingsError
    from smartnation.settings.yaml_files import read_yaml_documents

    path = tmp_path / "stages.yaml"
    path.write_text("a: 1\n---\n---\nb: 2\n")
    assert read_yaml_documents(path) == [{"a": 1}, {"b": 2}]
    assert read_yaml_documents(path, "shown.yaml") == [{"a": 1}, {"b": 2}]
    path.write_text("a: 1\n---\nb: [\n")
    with pytest.raises(SettingsError, match=r"^shown\.yaml: <line \d+, column \d+>: not valid YAML"):
        read_yaml_documents(path, "shown.yaml")
    with pytest.raises(SettingsError, match=r"^absent\.yaml: <file>: cannot read"):
        read_yaml_documents(tmp_path / "absent.yaml", "absent.yaml")
