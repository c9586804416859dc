"""`smartnation preview --redacted`: a change previewed without engine, backend or passphrase.

The diff and the secret comparison are pure functions, tested on small inputs; the whole command
runs once on a scratch repository (base committed, the change in the working tree), rendering
both ends under mocks in subprocesses, and its report is searched for every secret it could leak.
"""

from __future__ import annotations

import copy
import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from smartnation.cli.main import main
from smartnation.cli.mock_program import SECRET_SIG, SECRET_SIG_KEY, Registered, placeholder_secret
from smartnation.cli.policy_sweep import judge
from smartnation.cli.redacted_preview import (
    MODE,
    NOT_COMPARED,
    compare_secrets,
    diff_registrations,
    replacing,
)
from smartnation.cli.report import CREATE, DELETE, REPLACE, SAME, UPDATE
from smartnation.paths import IMAGES_LOCK, REPO
from smartnation.settings import load_settings
from smartnation.settings.stack_secrets import required_secrets
from tests.unit.harness import REPO_ENVIRONMENTS

pytestmark = pytest.mark.unit

STACK = "urn:pulumi:staging::smartnation::"


def secret(value: object) -> dict:
    return {SECRET_SIG_KEY: SECRET_SIG, "value": value}


def resource(kind: str, name: str, inputs: dict, parent_chain: str = "", **options) -> Registered:
    urn = f"{STACK}{parent_chain}{kind}::{name}"
    provider = f"{STACK}pulumi:providers:kubernetes::cluster::cluster-id" if kind.startswith("kubernetes:") else ""
    return Registered(kind, name, inputs, provider, True, urn, **options)


STATEFULSET = "kubernetes:apps/v1:StatefulSet"


def statefulset(image: str, claim_size: str = "10Gi") -> dict:
    return {
        "metadata": {"name": "broker"},
        "spec": {
            "template": {"spec": {"containers": [{"name": "mosquitto", "image": image}]}},
            "volumeClaimTemplates": [{"spec": {"resources": {"requests": {"storage": claim_size}}}}],
        },
    }


# --- the diff ---------------------------------------------------------------------------------


def test_an_image_change_is_an_update_naming_the_path():
    [step] = diff_registrations(
        [resource(STATEFULSET, "broker", statefulset("mosquitto:2.0.20"))],
        [resource(STATEFULSET, "broker", statefulset("mosquitto:2.0.21"))],
    )
    assert step.kind == UPDATE
    assert step.diffs == ("spec.template.spec.containers[0].image",)


def test_an_immutable_field_is_a_replacement_naming_why():
    [step] = diff_registrations(
        [resource(STATEFULSET, "broker", statefulset("m:1", "10Gi"))],
        [resource(STATEFULSET, "broker", statefulset("m:1", "20Gi"))],
    )
    assert step.kind == REPLACE
    assert step.replace_keys == ("spec.volumeClaimTemplates[0].spec.resources.requests.storage",)
    assert step.destructive  # a StatefulSet: the report calls it out first


def test_the_provider_replacement_table():
    assert replacing("kubernetes:core/v1:Service", ["spec.type", "spec.ports[0].port"]) == ["spec.type"]
    assert replacing("kubernetes:apps/v1:Deployment", ["metadata.name"]) == ["metadata.name"]
    assert replacing("kubernetes:apps/v1:Deployment", ["spec.replicas"]) == []
    assert replacing("kubernetes:core/v1:PersistentVolumeClaim", ["spec"]) == ["spec"]
    assert replacing("smartnation:broker:Broker", ["metadata.name"]) == []


def test_created_deleted_and_unchanged_resources():
    kept = resource("kubernetes:core/v1:ConfigMap", "kept", {"data": {"a": "1"}})
    gone = resource("kubernetes:core/v1:ConfigMap", "gone", {"data": {}})
    new = resource("kubernetes:core/v1:ConfigMap", "new", {"data": {}})
    kinds = {step.name: step.kind for step in diff_registrations([kept, gone], [copy.deepcopy(kept), new])}
    assert kinds == {"kept": SAME, "gone": DELETE, "new": CREATE}


def test_a_renamed_resource_with_an_alias_is_not_deleted():
    old = resource(STATEFULSET, "broker", statefulset("m:1"), "smartnation:broker:Broker$")
    new = resource(
        STATEFULSET,
        "broker-server",
        statefulset("m:1"),
        "smartnation:broker:Broker$",
        aliases=('spec {   name: "broker" } ',),
    )
    [step] = diff_registrations([old], [new])
    assert step.kind == SAME and step.name == "broker-server"


def test_a_secret_is_named_but_never_shown():
    before = {"stringData": {"password": secret("old-password-value")}, "type": "Opaque"}
    after = {"stringData": {"password": secret("new-password-value")}, "type": "Opaque"}
    [step] = diff_registrations(
        [resource("kubernetes:core/v1:Secret", "db", before)], [resource("kubernetes:core/v1:Secret", "db", after)]
    )
    assert step.kind == REPLACE  # the provider replaces Secrets on a data change
    assert step.diffs == ("stringData.password (secret)",)
    assert "password-value" not in repr(step)


def test_protect_is_an_option_change():
    [step] = diff_registrations(
        [resource(STATEFULSET, "broker", statefulset("m:1"))],
        [resource(STATEFULSET, "broker", statefulset("m:1"), protect=True)],
    )
    assert (step.kind, step.diffs) == (UPDATE, ("[protect]",))


# --- secrets by ciphertext --------------------------------------------------------------------


def stack_file(salt: str, **ciphertexts: str) -> str:
    config = {f"smartnation:{key}": {"secure": value} for key, value in ciphertexts.items()}
    return yaml.safe_dump({"encryptionsalt": salt, "config": config})


def test_secrets_compare_by_ciphertext():
    base = stack_file("v1:salt", a="v1:AAA", b="v1:BBB", gone="v1:GGG")
    head = stack_file("v1:salt", a="v1:AAA", b="v1:CCC", new="v1:NNN")
    assert compare_secrets(["a", "b", "new"], base, head) == {
        "a": "unchanged",
        "b": "changed",
        "gone": "removed",
        "new": "added",
    }


def test_without_a_stack_file_secrets_are_not_compared():
    result = compare_secrets(["a"], None, stack_file("v1:salt", a="v1:AAA"))
    assert result == {"a": f"{NOT_COMPARED} (no stack file at the base)"}


# --- the policy pack without an engine --------------------------------------------------------


def test_the_pack_judges_registrations_without_an_engine(build_stack):
    stack = build_stack("production")
    resources = copy.deepcopy(stack.resources)
    assert not [v for v in judge(resources, stack.settings) if v.mandatory]
    broken = next(r for r in resources if r.kind == "StatefulSet")
    container = broken.inputs["spec"]["template"]["spec"]["containers"][0]
    container["securityContext"]["capabilities"]["add"] = ["NET_ADMIN"]
    mandatory = [v for v in judge(resources, stack.settings) if v.mandatory]
    assert mandatory and {v.urn for v in mandatory} == {broken.urn}


# --- the whole command on a scratch repository ------------------------------------------------


def _git(repo: Path, *args: str) -> str:
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.org",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.org",
        "PATH": "/usr/bin:/bin",
    }
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def scratch_change(tmp_path: Path, monkeypatch) -> tuple[Path, dict[str, str], dict[str, str]]:
    """A project whose base has staging's stack file committed (to compare against; real
    repositories never commit it), and a working tree that bumps the broker's image tag and
    holds a new ciphertext for the database superuser's password."""
    repo = tmp_path / "project"
    shutil.copytree(REPO_ENVIRONMENTS, repo / "environments", ignore=shutil.ignore_patterns("stacks", "audit"))
    shutil.copy(REPO / "Pulumi.yaml", repo / "Pulumi.yaml")
    keys = sorted(required_secrets(load_settings("staging", REPO_ENVIRONMENTS)))
    base_values = {key: f"v1:base-ciphertext-{i:03d}" for i, key in enumerate(keys)}
    head_values = {**base_values, "database-superuser-password": "v1:head-ciphertext-rotated"}
    stacks = repo / "environments" / "stacks"
    stacks.mkdir()
    (stacks / "Pulumi.staging.yaml").write_text(stack_file("v1:salt-kept", **base_values), encoding="utf-8")
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "base")
    staging = repo / "environments" / "staging.yaml"
    text = staging.read_text(encoding="utf-8")
    broker = yaml.safe_load(text)["releases"]["components"]["broker"]
    tag = broker["tag"]
    staging.write_text(text.replace(f"tag: {tag}}}", f"tag: {tag}-next}}", 1), encoding="utf-8")
    # As a build of that tag would have locked it: another image, so the broker's pods change.
    lock = repo / "environments" / IMAGES_LOCK
    next_digest = "sha256:" + hashlib.sha256(b"the next broker").hexdigest()
    lock.write_text(lock.read_text() + f"  {broker['repository']}:{tag}-next: {next_digest}\n")
    (stacks / "Pulumi.staging.yaml").write_text(stack_file("v1:salt-kept", **head_values), encoding="utf-8")
    monkeypatch.setenv("SMARTNATION_PROJECT_DIR", str(repo))
    monkeypatch.delenv("SMARTNATION_ENVIRONMENTS_DIR", raising=False)
    return repo, base_values, head_values


def test_a_redacted_preview_of_a_tag_bump_and_a_rotated_secret(scratch_change, tmp_path: Path):
    repo, base_values, head_values = scratch_change
    out = tmp_path / "preview.md"
    assert main(["preview", "--redacted", "--base", "main", "--output", str(out)]) == 0
    report = out.read_text(encoding="utf-8")

    assert report.startswith("<!-- smartnation-preview -->")
    assert MODE in report
    assert "| staging | dusseldorf-test | 0 | 1 | 0 | 0 |" in report
    assert "- `~` update `apps/v1:StatefulSet` `dusseldorf-test-broker-server` " in report
    assert "`spec.template.spec.containers[0].image`" in report
    assert "| `database-superuser-password` | changed |" in report
    assert "| `object-storage-root-password` | unchanged |" in report
    assert "Policy pack: its rules ran over the head's" in report

    keys = required_secrets(load_settings("staging", repo / "environments"))
    leaks = [placeholder_secret(key) for key in keys] + [*base_values.values(), *head_values.values()]
    leaks += ["v1:salt-kept", "base-ciphertext", "head-ciphertext"]
    assert [value for value in leaks if value in report] == []
