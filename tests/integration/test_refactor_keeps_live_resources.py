"""A staging deployed by an older release is previewed by this checkout: nothing is replaced or deleted.

A refactor that renames or re-parents a resource without an alias changes its URN, and the engine
then plans a delete of the live object and a create of a new one: for a StatefulSet or a namespace
that is data loss. This test deploys staging with the program of each BASELINE (the last commit before
the architecture was reshaped: packages moved, components split; and the last release that landed,
which `make up` upgrades from) and previews it with this one. Updates are allowed (a later release
may change a value on purpose); a replacement or a delete is not. Move a BASELINE forward only to a
commit that itself passed this test.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from smartnation.settings.stack_secrets import CONFIG_NAMESPACE, broker_password
from tests.integration.platform_project import REPO, PlatformProject

pytestmark = pytest.mark.integration

BASELINES = {
    "before-the-reshape": "16df945ef2357e7ae8d8355d1b5532e22a400da5",
    # Session 3's landed release: upgrading a staging it deployed replaced the database's and
    # the broker's StatefulSets until ConfigMaps and Secrets became mutable.
    "last-landed": "d9fd29f3c82fd0a7af97de4ff966b5c82abb1a8f",
}
"""The release before the architecture issue (packages moved, components split)."""
ENVIRONMENT, CONTEXT = "staging", "dusseldorf-test"


REBUILT_FROM_INPUTS = ("kubernetes:batch/v1:Job", "kubernetes:core/v1:ConfigMap")
"""Kinds whose objects are made wholly from the program's inputs and hold nothing else: the
hash-named setup Jobs and the immutable ConfigMaps of the scripts they run. A new release that
changes a script or an image replaces them on purpose (the setup runs again, idempotently)."""


def _rebuilt_from_inputs(urn: str) -> bool:
    return urn.split("::")[-2].split("$")[-1] in REBUILT_FROM_INPUTS


@pytest.fixture(params=sorted(BASELINES), ids=sorted(BASELINES))
def baseline(request, tmp_path: Path) -> Path:
    commit = BASELINES[request.param]
    checkout = tmp_path / "baseline"
    added = subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", str(checkout), commit],
        capture_output=True,
        text=True,
    )
    assert added.returncode == 0, f"cannot check out the baseline {commit} (a full clone is needed): {added.stderr}"
    # The baseline's own images were built on the machine of its day: on a new machine the site
    # registries hold only what `make images` built from this checkout. What the test is about is
    # the resources' URNs, not their images, so the baseline deploys this checkout's (same format).
    # A baseline from before the lock existed named no digests: nothing to replace there.
    lock = checkout / "environments" / "images.lock.yaml"
    if lock.is_file():
        shutil.copyfile(REPO / "environments" / "images.lock.yaml", lock)
    yield checkout
    subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(checkout)], capture_output=True)


def test_preview_of_a_staging_deployed_by_the_baseline_replaces_and_deletes_nothing(
    tmp_path, tools, clusters, baseline
):
    backend = {"PULUMI_BACKEND_URL": f"file://{tmp_path}", "PULUMI_CONFIG_PASSPHRASE": "integration-tests"}
    (tmp_path / ".pulumi").mkdir()
    project = PlatformProject.create(tmp_path / "project", tools, backend, checkout=baseline)
    try:
        project.init_stack(ENVIRONMENT)
        # The baseline gave every device class a password (devices have certificates since);
        # init_stack seeds what this checkout's settings need, so add the baseline's.
        classes = yaml.safe_load((baseline / "environments" / "defaults.yaml").read_text())["broker"]["device_classes"]
        pairs = [f"{CONFIG_NAMESPACE}:{broker_password(c['name'])}={secrets.token_urlsafe(24)}" for c in classes]
        project.pulumi("config", "set-all", "--stack", ENVIRONMENT, *[x for p in pairs for x in ("--secret", p)])
        project.pulumi("up", "--yes", "--skip-preview", "--stack", ENVIRONMENT)
        # The stack itself is not a step of a preview; everything else is.
        deployed = {r["urn"] for r in project.resources(ENVIRONMENT) if r["type"] != "pulumi:pulumi:Stack"}

        project.use_checkout(REPO)
        preview = json.loads(project.pulumi("preview", "--json", "--stack", ENVIRONMENT).stdout)
        ops = [(step["op"], step["urn"]) for step in preview["steps"]]
        # Setup Jobs and their script ConfigMaps may be replaced (REBUILT_FROM_INPUTS); nothing
        # that holds data or an address may.
        unsafe = [
            (op, urn)
            for op, urn in ops
            if op in ("replace", "create-replacement", "delete-replaced", "delete") and not _rebuilt_from_inputs(urn)
        ]
        assert unsafe == [], "this checkout would replace or delete live resources:\n" + "\n".join(
            f"  {op} {urn}" for op, urn in unsafe
        )
        # The summary counts every resource, the unchanged ones too (steps lists only changes):
        # each one the baseline deployed is kept, under the same URN or an alias.
        summary = preview["changeSummary"]
        assert set(summary) <= {"same", "update", "create", "replace"}, summary
        kept = summary.get("same", 0) + summary.get("update", 0) + summary.get("replace", 0)
        assert kept == len(deployed), f"{len(deployed)} resources deployed, {kept} kept: {summary}"
    finally:
        project.use_checkout(REPO)
        project.pulumi("destroy", "--yes", "--skip-preview", "--stack", ENVIRONMENT)
        assert [r for r in project.resources(ENVIRONMENT) if not r["type"].startswith("pulumi:")] == []
