"""The promotion order's rules and the reading of killed promotions, as pure functions.

The CLI tests drive `promote` end to end; these pin each refusal's file, key and wording and the
edges of the order file (two names, distinct, each with a file), which mutation testing showed
unguarded (`make mutation`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from smartnation.cli.promotion_order import check_promotion, load_order
from smartnation.cli.promotion_runs import Finding, run_id, unfinished, what_happened
from smartnation.settings import SettingsError

ORDER = ("dev", "staging", "production")
CHAIN = "dev -> staging -> production"


def environments(tmp_path: Path, order_text: str, files: tuple[str, ...] = ORDER) -> Path:
    root = tmp_path / "environments"
    root.mkdir(parents=True)
    for name in files:
        (root / f"{name}.yaml").write_text("{}\n")
    (root / "promotion.yaml").write_text(order_text)
    return root


@pytest.mark.unit
def test_the_order_is_read_first_to_last(tmp_path: Path) -> None:
    assert load_order(environments(tmp_path, "order: [dev, staging, production]\n")) == ORDER
    # Two names are enough.
    assert load_order(environments(tmp_path / "two", "order: [dev, staging]\n")) == ("dev", "staging")


@pytest.mark.unit
@pytest.mark.parametrize(
    ("text", "key", "says"),
    [
        ("[dev, staging]\n", "<top level>", "expected a mapping with the one key `order`"),
        ("order: [dev, staging]\nextra: 1\n", "<top level>", "expected a mapping with the one key `order`"),
        ("order: [dev]\n", "order", "expected a list of two or more distinct environment names, got ['dev']"),
        ("order: dev\n", "order", "expected a list of two or more distinct environment names, got 'dev'"),
        ("order: [dev, dev]\n", "order", "distinct environment names, got ['dev', 'dev']"),
        ("order: [dev, '']\n", "order", "got ['dev', '']"),
        ("order: [dev, 3]\n", "order", "got ['dev', 3]"),
        ("order: [dev, qa]\n", "order", "'qa' has no environment file qa.yaml"),
    ],
)
def test_a_bad_order_file_is_refused_naming_file_and_key(tmp_path: Path, text: str, key: str, says: str) -> None:
    with pytest.raises(SettingsError) as error:
        load_order(environments(tmp_path, text))
    assert error.value.file == "environments/promotion.yaml"
    assert error.value.key_path == key
    assert says in str(error.value)


@pytest.mark.unit
def test_the_next_environment_is_the_one_promotion_allowed() -> None:
    check_promotion("dev", "staging", ORDER)
    check_promotion("staging", "production", ORDER)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("source", "target", "message"),
    [
        ("qa", "staging", f"SOURCE 'qa' is not an environment of the promotion order ({CHAIN})"),
        ("dev", "qa", f"TARGET 'qa' is not an environment of the promotion order ({CHAIN})"),
        ("staging", "staging", f"cannot promote 'staging' to itself: promote to the next environment ({CHAIN})"),
        ("production", "staging", f"production -> staging goes backwards: releases only move forward ({CHAIN})"),
        ("staging", "dev", f"staging -> dev goes backwards: releases only move forward ({CHAIN})"),
        ("dev", "production", f"dev -> production skips staging: promote one step at a time ({CHAIN})"),
    ],
)
def test_every_other_promotion_is_refused_saying_why(source: str, target: str, message: str) -> None:
    with pytest.raises(SettingsError) as error:
        check_promotion(source, target, ORDER, shown="environments/promotion.yaml")
    assert (error.value.file, error.value.key_path) == ("environments/promotion.yaml", "order")
    assert str(error.value) == f"environments/promotion.yaml: order: {message}"


@pytest.mark.unit
def test_a_skip_names_every_environment_skipped() -> None:
    with pytest.raises(SettingsError, match=r"a -> d skips b, c: promote one step"):
        check_promotion("a", "d", ("a", "b", "c", "d"))


def started(run: str | None, target: str = "production", **extra: object) -> dict:
    entry = {"result": "started", "source": "staging", "target": target, "when": "T0", "who": "ops", **extra}
    if run is not None:
        entry["extra"] = {"run": run}
    return entry


@pytest.mark.unit
def test_the_run_id_is_read_from_extra_only() -> None:
    assert run_id({"extra": {"run": "r1"}}) == "r1"
    assert run_id({"extra": {"run": 7}}) == "7"
    assert run_id({"extra": {"run": ""}}) is None
    assert run_id({"extra": "r1"}) is None
    assert run_id({"run": "r1"}) is None


@pytest.mark.unit
def test_only_started_runs_of_the_target_with_no_later_entry_are_unfinished() -> None:
    killed = started("r1")
    entries = [
        killed,
        started("r2"),
        {"result": "applied", "target": "production", "extra": {"run": "r2"}},
        started("r3", target="staging"),
        started(None),
        # Any end entry ends a run: refused, failed, written-only, or reported as interrupted.
        started("r4"),
        {"result": "interrupted", "target": "production", "extra": {"run": "r4"}},
        started("r5"),
        {"result": "failed", "target": "production", "extra": {"run": "r5"}},
    ]
    assert unfinished(entries, "production") == [killed]
    assert unfinished(entries, "staging") == [entries[3]]
    assert unfinished(entries, "dev") == []


@pytest.mark.unit
def test_a_killed_promotion_that_wrote_its_file_is_told_apart_from_one_that_did_not() -> None:
    entry = started("r1", releases={"broker": "1.2"})
    head = "the promotion staging -> production started at T0 by ops (run r1) never ended"
    written = what_happened(entry, {"broker": "1.2"}, "environments/production.yaml")
    assert written == Finding(
        "r1",
        f"{head}: environments/production.yaml holds the releases it promoted (the file was written; the update "
        "of production may not have run: `smartnation up production` converges it)",
    )
    not_written = what_happened(entry, {"broker": "1.1"}, "environments/production.yaml")
    assert not_written == Finding(
        "r1",
        f"{head}: environments/production.yaml does not hold the releases it promoted (the file was never written)",
    )
    # No releases recorded in the started entry: nothing to compare, so never "written".
    unknown = what_happened(started(None), None, "environments/production.yaml")
    assert unknown.run == "?"
    assert "does not hold the releases" in unknown.message
    assert "(run ?)" in unknown.message


SOURCE = """cluster: a
releases:
  broker: {version: 2.0.12, tags: [x, 3]}
  built: 2026-11-29

# the next block
database: {replicas: 2}
"""
TARGET = """cluster: b
releases:
  broker: {version: 2.0.11, tags: [x]}
# comment before the next key, kept with it

database: {replicas: 3}
"""


@pytest.mark.unit
def test_the_releases_block_is_copied_and_every_other_byte_kept() -> None:
    from smartnation.cli.releases_copy import copy_releases, releases_of

    result = copy_releases(SOURCE, TARGET, "staging.yaml", "production.yaml")
    assert result == (
        "cluster: b\nreleases:\n  broker: {version: 2.0.12, tags: [x, 3]}\n  built: 2026-11-29\n"
        "# comment before the next key, kept with it\n\ndatabase: {replicas: 3}\n"
    )
    # Lists stay lists of plain values; dates become text.
    assert releases_of(result, "production.yaml") == {
        "broker": {"version": "2.0.12", "tags": ["x", 3]},
        "built": "2026-11-29",
    }


@pytest.mark.unit
def test_a_releases_block_at_the_end_without_a_newline_is_copied_whole() -> None:
    from smartnation.cli.releases_copy import copy_releases

    source = "releases:\n  a: 1\n  b: 2"
    assert copy_releases(source, "releases:\n  a: 0\n", "s.yaml", "t.yaml") == "releases:\n  a: 1\n  b: 2\n"


@pytest.mark.unit
@pytest.mark.parametrize(
    ("source", "target", "blamed", "key"),
    [
        ("cluster: a\n", TARGET, "staging.yaml", "releases"),
        (SOURCE, "cluster: b\n", "production.yaml", "releases"),
        ("releases: [\n", TARGET, "staging.yaml", "<line 2, column 1>"),
        (SOURCE, "releases:\n  a: [\n", "production.yaml", "<line 3, column 1>"),
    ],
)
def test_a_file_without_a_releases_block_or_not_yaml_is_named(source: str, target: str, blamed: str, key: str) -> None:
    from smartnation.cli.releases_copy import copy_releases

    with pytest.raises(SettingsError) as error:
        copy_releases(source, target, "staging.yaml", "production.yaml")
    assert (error.value.file, error.value.key_path) == (blamed, key)


@pytest.mark.unit
def test_releases_of_names_the_file_it_reads() -> None:
    from smartnation.cli.releases_copy import releases_of

    with pytest.raises(SettingsError, match=r"^production\.yaml: releases: required key is missing"):
        releases_of("cluster: b\n", "production.yaml")
