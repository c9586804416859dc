"""Promotion as data: the order, the releases copy (byte-exact outside `releases:`), the audit log."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from smartnation.cli.audit_log import AuditEntry, SourceUpdate, append_audit, operator, read_audit, render_audit
from smartnation.cli.promotion_order import check_promotion, load_order
from smartnation.cli.releases_copy import copy_releases, releases_of
from smartnation.paths import IMAGES_LOCK
from smartnation.settings import SettingsError, load_settings
from smartnation.tooling.images.lock import read_lock
from tests.unit.harness import REPO_ENVIRONMENTS

pytestmark = pytest.mark.unit

ORDER = ("dev", "staging", "production")

# --- order ------------------------------------------------------------------------------------


def test_the_repository_order_is_dev_staging_production():
    assert load_order(REPO_ENVIRONMENTS) == ORDER


@pytest.mark.parametrize(("source", "target"), [("dev", "staging"), ("staging", "production")])
def test_one_step_forward_is_allowed(source, target):
    check_promotion(source, target, ORDER)


@pytest.mark.parametrize(
    ("source", "target", "words"),
    [
        ("production", "staging", "goes backwards"),
        ("staging", "dev", "goes backwards"),
        ("dev", "production", "skips staging"),
        ("staging", "staging", "to itself"),
        ("staging", "prod", "TARGET 'prod' is not an environment"),
        ("qa", "staging", "SOURCE 'qa' is not an environment"),
    ],
)
def test_anything_else_is_refused_naming_the_file_and_key(source, target, words):
    with pytest.raises(SettingsError) as caught:
        check_promotion(source, target, ORDER)
    assert caught.value.file == "environments/promotion.yaml"
    assert caught.value.key_path == "order"
    assert words in caught.value.detail
    assert "dev -> staging -> production" in caught.value.detail


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("order: [dev]\n", "two or more"),
        ("order: [dev, dev, staging]\n", "distinct"),
        ("order: [dev, qa]\n", "'qa' has no environment file"),
        ("steps: [dev, staging]\n", "the one key `order`"),
        ("order: [dev, staging\n", "not valid YAML"),
    ],
)
def test_a_bad_promotion_file_is_refused(tmp_path: Path, content: str, words: str):
    envdir = tmp_path / "environments"
    shutil.copytree(REPO_ENVIRONMENTS, envdir, ignore=shutil.ignore_patterns("stacks", "audit"))
    (envdir / "promotion.yaml").write_text(content)
    with pytest.raises(SettingsError, match="promotion.yaml") as caught:
        load_order(envdir)
    assert words in str(caught.value)


# --- the releases copy ------------------------------------------------------------------------

SOURCE = """\
# staging
cluster: dusseldorf-test

releases:
  chart_version: 0.2.0              # charts/city-api/Chart.yaml `version`
  # new API build, tested in staging
  components:
    broker: {version: 2.0.21, repository: eclipse-mosquitto, tag: "2.0.21-openssl"}
    device_registry: {version: 1.5.0, repository: smartnation/device-registry, tag: 1.5.0}

# the broker is sized for staging
broker:
  replicas: 3
"""

TARGET = """\
# Production: the data vault.
cluster: monaco-onprem   # never moves lightly

# Stated in full in every environment.
releases:
  chart_version: 0.1.0
  components:
    broker: {version: 2.0.20, repository: eclipse-mosquitto, tag: 2.0.20-openssl}
    device_registry:
      version: 1.4.0
      repository: smartnation/device-registry
      tag: '1.4.0'

  # trailing comment, indented: part of the releases block

# Overrides below
broker:
  replicas: 3                       # one per zone
  resources:
    requests: {cpu: "500m", memory: 512Mi}
guardrails:
  quota: {pods: 150}
"""

EXPECTED = """\
# Production: the data vault.
cluster: monaco-onprem   # never moves lightly

# Stated in full in every environment.
releases:
  chart_version: 0.2.0              # charts/city-api/Chart.yaml `version`
  # new API build, tested in staging
  components:
    broker: {version: 2.0.21, repository: eclipse-mosquitto, tag: "2.0.21-openssl"}
    device_registry: {version: 1.5.0, repository: smartnation/device-registry, tag: 1.5.0}

# Overrides below
broker:
  replicas: 3                       # one per zone
  resources:
    requests: {cpu: "500m", memory: 512Mi}
guardrails:
  quota: {pods: 150}
"""


def test_only_the_releases_block_changes_comments_order_and_quotes_stay():
    assert copy_releases(SOURCE, TARGET, "staging.yaml", "production.yaml") == EXPECTED


def test_releases_as_the_last_block_of_either_file():
    source = "cluster: a\nreleases:\n  chart_version: 0.3.0\n  components: {}"  # no final newline
    target = "cluster: b\n\nreleases:\n  chart_version: 0.1.0\n  components: {}\n\n# end of file\n"
    assert copy_releases(source, target, "s", "t") == (
        "cluster: b\n\nreleases:\n  chart_version: 0.3.0\n  components: {}\n\n# end of file\n"
    )


def test_copying_equal_releases_leaves_the_file_byte_identical():
    target = (REPO_ENVIRONMENTS / "production.yaml").read_text()
    source = (REPO_ENVIRONMENTS / "staging.yaml").read_text()
    assert releases_of(source, "s") == releases_of(target, "t")  # the repository's files agree today
    assert copy_releases(source, target, "staging.yaml", "production.yaml") == target


def _device_registry_at(text: str, tag: str) -> str:
    """``text`` with the device registry's release line (one line, flow style) at ``tag``."""
    line = f"    device_registry: {{version: {tag}, repository: device-registry, tag: {tag}}}"
    changed, count = re.subn(r"(?m)^    device_registry: \{[^}]*\}$", line, text)
    assert count == 1
    return changed


def test_the_real_files_a_changed_staging_tag_reaches_production_and_nothing_else(tmp_path: Path):
    envdir = tmp_path / "environments"
    shutil.copytree(REPO_ENVIRONMENTS, envdir, ignore=shutil.ignore_patterns("stacks", "audit"))
    staging = (envdir / "staging.yaml").read_text()
    changed = _device_registry_at(staging, "0.1.1")
    assert changed != staging
    production = (envdir / "production.yaml").read_text()
    # As a build of device-registry 0.1.1 would have locked it (the same bytes, another tag).
    lock = envdir / IMAGES_LOCK
    digest = read_lock(lock)["device-registry:0.1.0"]
    lock.write_text(lock.read_text() + f"  device-registry:0.1.1: {digest}\n")

    result = copy_releases(changed, production, "staging.yaml", "production.yaml")

    # Whole-file comparison: production's text with exactly the device_registry line changed.
    assert result == _device_registry_at(production, "0.1.1")
    (envdir / "production.yaml").write_text(result)
    settings = load_settings("production", envdir)
    assert settings.releases.components["device_registry"].tag == "0.1.1"
    assert settings.releases.components["device_registry"].digest == digest
    assert settings.cluster.name == "monaco-onprem"
    before = yaml.safe_load(production)
    after = yaml.safe_load(result)
    assert {k: v for k, v in after.items() if k != "releases"} == {k: v for k, v in before.items() if k != "releases"}


def test_a_file_without_releases_is_refused():
    with pytest.raises(SettingsError, match="releases"):
        copy_releases(SOURCE, "cluster: x\n", "staging.yaml", "production.yaml")


def test_an_unparseable_file_is_refused_with_its_line():
    with pytest.raises(SettingsError, match=r"production.yaml: <line \d+, column \d+>: not valid YAML"):
        copy_releases(SOURCE, "releases:\n  a: [1\n b: 2\n", "staging.yaml", "production.yaml")


# --- the audit log ----------------------------------------------------------------------------


def entry(**changes) -> AuditEntry:
    fields = dict(
        when="2025-01-02T03:04:05Z",
        who="ops@smartnation.mc",
        source="staging",
        target="production",
        result="applied",
        reason="production updated",
        source_update=SourceUpdate(version=7, time="2025-01-02T02:00:00Z", result="succeeded"),
        releases={"chart_version": "0.1.0", "components": {"broker": {"version": "2.0.20"}}},
        target_update=SourceUpdate(version=3, time="2025-01-02T03:04:00Z", result="succeeded"),
    )
    return AuditEntry(**{**fields, **changes})


def test_an_audit_entry_is_one_json_line_with_every_field():
    line = entry().to_json()
    assert "\n" not in line
    assert json.loads(line) == {
        "when": "2025-01-02T03:04:05Z",
        "who": "ops@smartnation.mc",
        "source": "staging",
        "target": "production",
        "result": "applied",
        "reason": "production updated",
        "source_update": {"version": 7, "time": "2025-01-02T02:00:00Z", "result": "succeeded"},
        "releases": {"chart_version": "0.1.0", "components": {"broker": {"version": "2.0.20"}}},
        "target_update": {"version": 3, "time": "2025-01-02T03:04:00Z", "result": "succeeded"},
    }


def test_entries_are_appended_and_listed_oldest_first(tmp_path: Path):
    envdir = tmp_path / "environments"
    envdir.mkdir()
    append_audit(envdir, entry())
    append_audit(envdir, entry(result="refused", reason="staging has drifted", source_update=None, target_update=None))
    lines = (envdir / "audit" / "promotions.jsonl").read_text().splitlines()
    assert len(lines) == 2
    entries = read_audit(envdir)
    assert [e["result"] for e in entries] == ["applied", "refused"]
    table = render_audit(entries).splitlines()
    assert table[0].split() == ["when", "who", "promotion", "source", "update", "result", "reason"]
    assert "staging -> production" in table[1] and "#7" in table[1] and "applied" in table[1]
    assert "refused" in table[2] and "staging has drifted" in table[2]


def test_the_operator_is_taken_from_the_environment_first(monkeypatch, tmp_path: Path):
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)  # this suite also runs in CI
    monkeypatch.setenv("SMARTNATION_OPERATOR", "night-shift@smartnation.mc")
    assert operator(tmp_path) == "night-shift@smartnation.mc"
    monkeypatch.delenv("SMARTNATION_OPERATOR")
    monkeypatch.setenv("USER", "someone")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "none"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    assert operator(tmp_path) == "someone"


def test_in_github_actions_the_operator_is_the_actor_and_cannot_be_set(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_ACTOR", "alice")
    monkeypatch.setenv("SMARTNATION_OPERATOR", "mallory")
    assert operator(tmp_path) == "github:alice"


def test_in_github_actions_a_missing_actor_is_refused(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.delenv("GITHUB_ACTOR", raising=False)
    monkeypatch.setenv("SMARTNATION_OPERATOR", "mallory")
    with pytest.raises(SettingsError, match=r"\$GITHUB_ACTOR"):
        operator(tmp_path)
