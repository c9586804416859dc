"""Promotion's files: the order file's errors (file, key, words) and the atomic write of the target.

What `make mutation` found unpinned after test_cli_promotion.py: which key an order error names,
an order step over two environments, a name that is not a string, and where write_atomically puts
its temporary file (beside the target, under the name report_interrupted looks for) and which mode
the written file gets.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from smartnation.cli import releases_copy
from smartnation.cli.promotion_order import check_promotion, load_order
from smartnation.cli.releases_copy import TMP_SUFFIX, unfinished_writes, write_atomically
from smartnation.settings import SettingsError
from tests.unit.harness import REPO_ENVIRONMENTS

pytestmark = pytest.mark.unit


@pytest.fixture()
def envdir(tmp_path: Path) -> Path:
    copy = tmp_path / "environments"
    shutil.copytree(REPO_ENVIRONMENTS, copy, ignore=shutil.ignore_patterns("stacks", "audit"))
    return copy


@pytest.mark.parametrize(
    ("content", "key", "detail"),
    [
        ("steps: [dev, staging]\n", "<top level>", "expected a mapping with the one key `order`"),
        ("- dev\n- staging\n", "<top level>", "expected a mapping with the one key `order`"),
        (
            "order: [dev, 5]\n",
            "order",
            "expected a list of two or more distinct environment names, got ['dev', 5]",
        ),
        (
            "order: [dev, '']\n",
            "order",
            "expected a list of two or more distinct environment names, got ['dev', '']",
        ),
        ("order: [dev, qa]\n", "order", "'qa' has no environment file qa.yaml"),
    ],
)
def test_an_order_error_names_the_file_the_key_and_what_is_wrong(
    envdir: Path, content: str, key: str, detail: str
) -> None:
    (envdir / "promotion.yaml").write_text(content)
    with pytest.raises(SettingsError) as caught:
        load_order(envdir)
    assert (caught.value.file, caught.value.key_path, caught.value.detail) == (
        "environments/promotion.yaml",
        key,
        detail,
    )


def test_a_yaml_error_in_the_order_file_names_it_as_the_operator_knows_it(envdir: Path) -> None:
    (envdir / "promotion.yaml").write_text("order: [dev, staging\n")
    with pytest.raises(SettingsError) as caught:
        load_order(envdir)
    assert caught.value.file == "environments/promotion.yaml"


def test_a_step_over_several_environments_names_each_skipped() -> None:
    with pytest.raises(SettingsError) as caught:
        check_promotion("dev", "production", ("dev", "qa", "staging", "production"))
    assert caught.value.detail == (
        "dev -> production skips qa, staging: promote one step at a time (dev -> qa -> staging -> production)"
    )


def test_the_temporary_file_is_beside_the_target_under_the_name_a_later_run_finds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "production.yaml"
    target.write_text("old\n")
    seen: list[Path] = []
    rename = os.replace

    def replace_after_looking(src, dst) -> None:
        # At the rename the temporary file is whole and is what a killed run would leave.
        seen.extend(unfinished_writes(target))
        assert Path(src) in seen and Path(src).read_text(encoding="utf-8") == "neu: café\n"
        rename(src, dst)

    monkeypatch.setattr(releases_copy.os, "replace", replace_after_looking)
    write_atomically(target, "neu: café\n")
    assert len(seen) == 1
    assert seen[0].parent == tmp_path
    assert seen[0].name.startswith(".production.yaml.") and seen[0].name.endswith(TMP_SUFFIX)
    assert target.read_bytes() == "neu: café\n".encode()
    assert unfinished_writes(target) == []


def test_a_failed_rename_leaves_the_target_and_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "production.yaml"
    target.write_text("old\n")

    def refuse(src, dst) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(releases_copy.os, "replace", refuse)
    with pytest.raises(OSError, match="No space left"):
        write_atomically(target, "new\n")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["production.yaml"]


@pytest.mark.parametrize("mode", [0o640, 0o600, 0o664])
def test_the_written_file_keeps_the_targets_mode(tmp_path: Path, mode: int) -> None:
    target = tmp_path / "production.yaml"
    target.write_text("old\n")
    target.chmod(mode)
    write_atomically(target, "new\n")
    assert stat.S_IMODE(target.stat().st_mode) == mode
    assert target.read_text() == "new\n"


def test_a_new_file_is_readable_by_all_writable_by_its_owner(tmp_path: Path) -> None:
    target = tmp_path / "production.yaml"
    old_umask = os.umask(0o077)  # mkstemp's own 0600 must not leak into the result
    try:
        write_atomically(target, "new\n")
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
