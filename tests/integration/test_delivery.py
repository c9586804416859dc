"""Delivery: `smartnation preview`, `promote`, `status` and `audit` with the real engine on the local clusters.

One scratch project for the whole module (a git repository holding a copy of environments/ and a
Pulumi.yaml that runs this checkout's program), a private file backend, and the CLI as operators
run it: `.venv/bin/smartnation` in a subprocess, pointed at the scratch project through
SMARTNATION_PROJECT_DIR / SMARTNATION_ENVIRONMENTS_DIR. The tests run in file order and build on
each other (a full `up` takes minutes, so there are four: staging twice, production once through
`promote --apply`, and the deliberately failing one).

Its project and its admission policy (cluster-wide) are named after the session's prefix
(SMARTNATION_IT_PROJECT): `<prefix>-dlv` (namespaces `<prefix>-dlv-<env>`) and `<prefix>-deny`, so
two sessions never share them, and a session that starts after a killed run clears both
(conftest.clusters, session_leftovers.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import pty
import re
import select
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from smartnation.cli import exit_codes
from smartnation.cli.releases_copy import copy_releases
from smartnation.paths import IMAGES_LOCK
from smartnation.program.city_platform import release_summary
from smartnation.settings import load_settings
from smartnation.tooling.images.lock import image_key, read_lock, write_lock
from tests.integration import session_leftovers
from tests.integration.platform_project import PROJECT, REPO, PlatformProject

pytestmark = pytest.mark.integration

CLI = REPO / ".venv" / "bin" / "smartnation"
OPERATOR = "integration-tests@smartnation.mc"
# Its own project under the session's prefix, so its namespaces never meet test_platform_stack's,
# `make up`'s or another session's.
PROJECT_NAME = f"{PROJECT}-dlv"
DENY = session_leftovers.deny_policy_name()
DENY_CLUSTER = "dusseldorf-test"


class Scratch:
    """The scratch project, its git repository and the CLI run against it."""

    def __init__(self, project: PlatformProject, state: Path) -> None:
        self.project = project
        self.root = project.root
        self.envdir = project.root / "environments"
        self.state = state
        self.env = {
            **project.env,
            "SMARTNATION_PROJECT_DIR": str(self.root),
            "SMARTNATION_ENVIRONMENTS_DIR": str(self.envdir),
            "SMARTNATION_OPERATOR": OPERATOR,
        }

    def cli(self, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(CLI), *args],
            cwd=self.root,
            env={**self.project.tools.env, **self.env},
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        # Shown by pytest when a test fails: what the operator would have seen.
        print(f"$ smartnation {' '.join(args)}  -> {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
        return proc

    def git(self, *args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=self.root, check=True, capture_output=True, text=True, timeout=60
        ).stdout

    def file(self, name: str) -> Path:
        return self.envdir / name

    def set_release(self, environment: str, component: str, version: str) -> None:
        """Set one component's version and tag in an environment file's releases block (one line),
        and lock that tag as a build of it would: here the bytes of the tag the file named before
        (the site registries hold them by that digest), so the pods still start."""
        path = self.file(f"{environment}.yaml")
        release = yaml.safe_load(path.read_text())["releases"]["components"][component]
        text, count = re.subn(
            rf"^(    {component}: {{version: )[^,]+(, repository: [^,]+, tag: )[^}}]+}}",
            rf"\g<1>{version}\g<2>{version}}}",
            path.read_text(),
            flags=re.MULTILINE,
        )
        assert count == 1, f"no one-line release of {component} in {path}"
        path.write_text(text)
        locked = read_lock(self.file(IMAGES_LOCK))
        digest = locked[image_key(release["repository"], release["tag"])]
        write_lock(self.file(IMAGES_LOCK), {**locked, image_key(release["repository"], version): digest})

    def history(self, environment: str) -> list[dict]:
        proc = self.project.pulumi("stack", "history", "--json", "--stack", environment, check=False)
        return json.loads(proc.stdout) if proc.returncode == 0 else []

    def hashes(self) -> dict[str, str]:
        files = sorted(p for p in self.envdir.rglob("*") if p.is_file())
        return {str(p.relative_to(self.envdir)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}

    def audit(self) -> list[dict]:
        path = self.file("audit/promotions.jsonl")
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def outputs(self, environment: str) -> dict:
        return self.project.outputs(environment)


def _expected_releases(scratch: Scratch, environment: str) -> dict:
    return json.loads(json.dumps(release_summary(load_settings(environment, scratch.envdir))))


def _deployed(scratch: Scratch, environment: str) -> dict:
    deployed = dict(scratch.outputs(environment)["deployed_releases"])
    deployed.pop("helm_releases", None)
    return deployed


@pytest.fixture(scope="module")
def scratch(tmp_path_factory, tools, clusters):
    state = tmp_path_factory.mktemp("delivery-state")
    backend = {"PULUMI_BACKEND_URL": f"file://{state}", "PULUMI_CONFIG_PASSPHRASE": "integration-tests"}
    # The name given here, not patched into Pulumi.yaml afterwards: destroy checks <name>-<env>.
    project = PlatformProject.create(tmp_path_factory.mktemp("delivery") / "project", tools, backend, name=PROJECT_NAME)
    s = Scratch(project, state)
    # As in the real repository (README): stack files hold secrets and are not committed.
    (s.root / ".gitignore").write_text("environments/stacks/\n")
    s.git("init", "-q", "-b", "main")
    s.git("config", "user.email", "ci@smartnation.mc")
    s.git("config", "user.name", "CI")
    s.git("add", ".")
    s.git("commit", "-q", "-m", "scratch project")

    deploy = s.cli("up", "staging", "--yes", "--init-secrets")
    assert deploy.returncode == exit_codes.OK, deploy.stderr[-3000:]
    project.stacks.append("staging")
    yield s
    try:
        for environment in ("production", "staging", "dev"):
            # production's stateful resources are protected (policy protect-production-state).
            project.destroy(environment, unprotect=True)
    finally:
        # Also when a destroy failed: left behind, the cluster-wide policy refuses work. Checked.
        session_leftovers.delete_cluster_wide(tools, DENY_CLUSTER)


def test_a_staging_tag_change_previews_staging_alone_with_updates(scratch: Scratch):
    scratch.set_release("staging", "device_registry", "1.4.1")
    scratch.git("commit", "-q", "-am", "device registry 1.4.1 in staging")

    proc = scratch.cli("preview", "--base", "HEAD~1", "--output", "preview.md")

    assert proc.returncode == exit_codes.OK
    summary = (scratch.root / "preview.md").read_text()
    assert summary.startswith("<!-- smartnation-preview -->")
    sections = [line for line in summary.splitlines() if line.startswith("### ")]
    assert sections == ["### staging on dusseldorf-test"]
    row = next(line for line in summary.splitlines() if line.startswith("| staging |"))
    create, update, replace, delete = (int(c) for c in row.split("|")[3:7])
    # A new release runs its migrations once: the API's migration Job is the only thing replaced.
    replaced = [line for line in summary.splitlines() if line.startswith("- `+-` replace")]
    assert len(replaced) == 1, replaced
    assert replaced[0].startswith("- `+-` replace `batch/v1:Job` `dusseldorf-test-city-apis-device-registry-migrate`")
    assert update >= 1 and replace == 1 and create == delete == 0, row
    assert "device-registry" in summary[summary.index("<details>") :]
    assert "[1/1] previewing staging" in proc.stderr  # progress per environment


def test_promote_refuses_releases_staging_never_ran(scratch: Scratch):
    before = scratch.hashes()

    proc = scratch.cli("promote", "staging", "production", "--yes")

    assert proc.returncode == exit_codes.FAILED
    assert "never ran them" in proc.stderr and "device_registry" in proc.stderr
    entry = scratch.audit()[-1]
    assert (entry["result"], entry["source"], entry["target"], entry["who"]) == (
        "refused",
        "staging",
        "production",
        OPERATOR,
    )
    assert entry["releases"]["components"]["device_registry"]["tag"] == "1.4.1"
    after = scratch.hashes()
    assert after.pop("audit/promotions.jsonl") and {k: v for k, v in after.items()} == {
        k: v for k, v in before.items() if k != "audit/promotions.jsonl"
    }
    assert scratch.history("production") == []

    # Now staging runs it: the update the next tests promote.
    deploy = scratch.cli("up", "staging", "--yes")
    assert deploy.returncode == exit_codes.OK


def test_a_cluster_profile_change_previews_every_environment_on_that_cluster(scratch: Scratch):
    # An annotation on every load balancer of the cluster, uncommitted (the working tree counts).
    profile = scratch.file("clusters/dusseldorf-test.yaml")
    original = profile.read_text()
    profile.write_text(
        original.replace(
            "    kubernetes.io/elb.class: performance\n    kubernetes.io/elb.autocreate",
            "    kubernetes.io/elb.lb-algorithm: ROUND_ROBIN\n    kubernetes.io/elb.class: performance\n"
            "    kubernetes.io/elb.autocreate",
            1,
        )
    )
    assert profile.read_text() != original
    try:
        proc = scratch.cli("preview", "--base", "HEAD", "--output", "cluster.md")
    finally:
        profile.write_text(original)

    summary = (scratch.root / "cluster.md").read_text()
    sections = [line for line in summary.splitlines() if line.startswith("### ")]
    assert sections == ["### dev on dusseldorf-test", "### staging on dusseldorf-test"]
    assert "environments/clusters/dusseldorf-test.yaml" in summary
    # dev was never deployed: previewed against an empty stack, everything to create.
    assert "Never deployed to this backend" in summary.split("### staging")[0]
    staging = next(line for line in summary.splitlines() if line.startswith("| staging |"))
    assert int(staging.split("|")[4]) >= 1, staging  # the broker's load-balancer Service is updated
    # Both environments pass every mandatory rule as written: a policy violation here is a failure.
    assert proc.returncode == exit_codes.OK, proc.stdout[-2000:] + proc.stderr[-2000:]


def test_promote_staging_to_production_copies_exactly_the_releases_and_converges(scratch: Scratch):
    staging_text = scratch.file("staging.yaml").read_text()
    production_text = scratch.file("production.yaml").read_text()
    expected = copy_releases(staging_text, production_text, "staging.yaml", "production.yaml")
    assert expected != production_text

    proc = scratch.cli("promote", "staging", "production", "--yes", "--apply")

    assert proc.returncode == exit_codes.OK, proc.stderr[-3000:]
    scratch.project.stacks.append("production")
    assert scratch.file("production.yaml").read_text() == expected
    assert "+    device_registry: {version: 1.4.1," in proc.stdout  # the diff shown before confirming
    deployed = _deployed(scratch, "production")
    assert deployed == _expected_releases(scratch, "production")
    image = deployed["device_registry"]["image"]
    digest = read_lock(scratch.file(IMAGES_LOCK))[image_key("device-registry", "1.4.1")]
    assert image == f"registry.smartnation.mc/mirror/device-registry@{digest}", image
    assert deployed["device_registry"]["version"] == "1.4.1"
    entry = scratch.audit()[-1]
    assert entry["result"] == "applied"
    assert entry["source_update"]["result"] == "succeeded"
    assert entry["source_update"]["version"] == len(scratch.history("staging"))  # file backend: position
    assert entry["target_update"]["result"] == "succeeded"
    assert entry["releases"]["components"]["device_registry"]["tag"] == "1.4.1"
    assert scratch.history("production")[0]["result"] == "succeeded"
    scratch.project.pulumi("preview", "--expect-no-changes", "--stack", "production")

    listed = scratch.cli("audit", "--last", "1")
    assert "staging -> production" in listed.stdout and "applied" in listed.stdout


def test_status_reports_what_is_really_deployed(scratch: Scratch):
    proc = scratch.cli("status", "--json")

    assert proc.returncode == exit_codes.OK
    status = {s["environment"]: s for s in json.loads(proc.stdout)}
    assert status["dev"]["deployed"] is False
    for environment, cluster in (("staging", "dusseldorf-test"), ("production", "monaco-onprem")):
        s = status[environment]
        assert s["cluster"] == cluster
        assert s["deployed"] is True and s["releases_match_file"] is True
        assert s["releases"] == _deployed(scratch, environment)
        newest = scratch.history(environment)[0]
        assert s["last_update"] == {
            "kind": "update",
            "result": "succeeded",
            "version": len(scratch.history(environment)),
            "time": newest["endTime"][:19] + "Z",
        }
        assert s["drift"] == []
    table = scratch.cli("status", "--no-drift")
    dev = next(line for line in table.stdout.splitlines() if line.startswith("dev "))
    assert "not deployed" in dev
    assert "production runs:" in table.stdout and "device_registry 1.4.1" in table.stdout


def test_promote_refuses_when_staging_drifted(scratch: Scratch, tools):
    before, history = scratch.hashes(), scratch.history("production")
    namespace = scratch.outputs("staging")["namespace"]
    label = "smartnation.mc/environment"
    # A field Pulumi manages (with server-side apply, a label someone else adds is not drift).
    tools.run(
        "kubectl", "--context", "dusseldorf-test", "label", "--overwrite", "namespace", namespace, f"{label}=hand"
    )
    try:
        proc = scratch.cli("promote", "staging", "production", "--yes")
    finally:
        tools.run(
            "kubectl",
            "--context",
            "dusseldorf-test",
            "label",
            "--overwrite",
            "namespace",
            namespace,
            f"{label}=staging",
        )
    assert proc.returncode == exit_codes.FAILED
    assert "staging has drifted" in proc.stderr and "Namespace" in proc.stderr and label in proc.stderr
    assert scratch.audit()[-1]["result"] == "refused"
    assert "drifted" in scratch.audit()[-1]["reason"]
    after = scratch.hashes()
    assert {k: v for k, v in after.items() if "audit" not in k} == {k: v for k, v in before.items() if "audit" not in k}
    assert scratch.history("production") == history
    # The label is gone again; the state never changed (the refresh was a preview).
    status = json.loads(scratch.cli("status", "staging", "--json").stdout)[0]
    assert status["drift"] == [], status


def _lock_files(scratch: Scratch) -> list[Path]:
    return list((scratch.state / ".pulumi" / "locks").rglob("*.json"))


def test_bad_input_is_refused_clearly_and_changes_nothing(scratch: Scratch):
    before = scratch.hashes()
    histories = {env: scratch.history(env) for env in ("staging", "production")}
    audit = scratch.audit()

    unknown = scratch.cli("promote", "staging", "prod", "--yes")
    assert unknown.returncode == exit_codes.BAD_INPUT
    assert "environments/promotion.yaml: order: TARGET 'prod' is not an environment" in unknown.stderr
    assert scratch.cli("status", "prod").returncode == exit_codes.BAD_INPUT
    assert scratch.cli("preview", "qa").returncode == exit_codes.BAD_INPUT

    backwards = scratch.cli("promote", "production", "staging", "--yes")
    assert backwards.returncode == exit_codes.BAD_INPUT
    assert "goes backwards" in backwards.stderr and "promotion.yaml" in backwards.stderr

    staging = scratch.file("staging.yaml")
    good = staging.read_text()
    staging.write_text(good.replace("cluster: dusseldorf-test", "cluster: [dusseldorf-test", 1))
    try:
        for args in (("promote", "staging", "production", "--yes"), ("up", "staging", "--yes"), ("status", "staging")):
            broken = scratch.cli(*args)
            assert broken.returncode == exit_codes.BAD_INPUT, args
            assert "environments/staging.yaml: <line" in broken.stderr and "not valid YAML" in broken.stderr
    finally:
        staging.write_text(good)

    assert scratch.hashes() == before
    assert scratch.audit() == audit  # malformed requests are not promotions
    assert {env: scratch.history(env) for env in histories} == histories


def test_a_stack_locked_by_a_concurrent_update_is_refused_with_its_own_exit_code(scratch: Scratch):
    """An operator's `pulumi up` waiting at its confirmation prompt holds staging's lock (the file
    backend locks for the whole update, prompt included): a real concurrent update, held for as
    long as the test needs, then declined."""
    before = scratch.hashes()
    histories = {env: scratch.history(env) for env in ("staging", "production")}
    configmap = next(
        r["urn"] for r in scratch.project.resources("staging") if r["type"] == "kubernetes:core/v1:ConfigMap"
    )
    master, slave = pty.openpty()
    env = {**scratch.project.tools.env, **scratch.env, "TERM": "xterm"}
    env.pop("CI", None)  # pulumi does not prompt in CI
    holder = subprocess.Popen(
        ["pulumi", "up", "--stack", "staging", "--replace", configmap],
        cwd=scratch.root,
        env=env,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
    )
    os.close(slave)
    seen = b""
    try:
        deadline = time.monotonic() + 300
        while b"Do you want to perform this update?" not in seen:
            assert holder.poll() is None, seen[-3000:].decode(errors="replace")
            assert time.monotonic() < deadline, "the concurrent update never reached its prompt"
            if select.select([master], [], [], 1)[0]:
                seen += os.read(master, 65536)
        assert _lock_files(scratch), "the concurrent update holds no lock file"

        locked_up = scratch.cli("up", "staging", "--yes")
        locked_promote = scratch.cli("promote", "staging", "production", "--yes")
        still_holding = holder.poll() is None and bool(_lock_files(scratch))
    finally:
        os.write(master, b"no\r")  # filter the choices to `no`, confirm: the update is declined
        try:
            holder.wait(timeout=60)
        finally:
            if holder.poll() is None:
                holder.terminate()
                holder.wait(timeout=60)
            os.close(master)
    assert still_holding, "the concurrent update let go of the lock before the CLI ran"
    assert not _lock_files(scratch), "the declined update left its lock behind"
    assert locked_up.returncode == exit_codes.STACK_LOCKED
    assert "locked by another update" in locked_up.stderr
    assert locked_promote.returncode == exit_codes.STACK_LOCKED
    assert scratch.audit()[-1]["result"] == "refused" and "locked" in scratch.audit()[-1]["reason"]
    after = scratch.hashes()
    assert {k: v for k, v in after.items() if "audit" not in k} == {k: v for k, v in before.items() if "audit" not in k}
    assert {env: scratch.history(env) for env in histories} == histories


DENY_POLICY = """
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: POLICY_NAME}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
      - apiGroups: [apps]
        apiVersions: [v1]
        operations: [CREATE, UPDATE]
        resources: [deployments]
  validations:
    # Images are named by digest: the chart labels the Deployment with the release's tag.
    - expression: >-
        !has(object.metadata.labels) || !('app.kubernetes.io/version' in object.metadata.labels)
        || object.metadata.labels['app.kubernetes.io/version'] != '1.4.2'
      message: device-registry 1.4.2 is refused on this cluster (integration test)
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: POLICY_NAME}
spec:
  policyName: POLICY_NAME
  validationActions: [Deny]
  matchResources:
    namespaceSelector:
      matchLabels: {kubernetes.io/metadata.name: NAMESPACE}
"""


def test_promote_refuses_when_stagings_last_update_failed(scratch: Scratch, tools):
    # The API server itself refuses the new Deployment (an admission policy), so the update fails for real.
    deny = DENY_POLICY.replace("NAMESPACE", scratch.outputs("staging")["namespace"]).replace("POLICY_NAME", DENY)
    tools.run("kubectl", "--context", DENY_CLUSTER, "apply", "-f", "-", input=deny)
    time.sleep(2)  # admission policies are picked up asynchronously
    scratch.set_release("staging", "device_registry", "1.4.2")
    try:
        failed = scratch.cli("up", "staging", "--yes")
        assert failed.returncode == exit_codes.FAILED
        assert scratch.history("staging")[0]["result"] == "failed"
        before, history = scratch.hashes(), scratch.history("production")

        proc = scratch.cli("promote", "staging", "production", "--yes")

        assert proc.returncode == exit_codes.FAILED
        assert "last update" in proc.stderr and "failed" in proc.stderr
        assert scratch.audit()[-1]["result"] == "refused"
        assert scratch.audit()[-1]["source_update"]["result"] == "failed"
        after = scratch.hashes()
        assert {k: v for k, v in after.items() if "audit" not in k} == {
            k: v for k, v in before.items() if "audit" not in k
        }
        assert scratch.history("production") == history
    finally:
        scratch.git("checkout", "--", "environments/staging.yaml")
        # Checked: a policy that is already gone is fine, one that cannot be deleted is not.
        tools.run("kubectl", "--context", DENY_CLUSTER, "delete", "-f", "-", "--ignore-not-found", input=deny)
