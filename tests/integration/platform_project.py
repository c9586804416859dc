"""A private copy of the platform project for integration tests.

The tests must never touch the developer's stacks, stack files or environment files, so each
one runs the real program (infra/ of this checkout, with the checkout's virtualenv) from a
scratch project directory holding its own Pulumi.yaml, environments/ and stack files, against
a private file state backend.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from smartnation.settings import SettingsError, load_settings
from smartnation.settings.stack_secrets import CONFIG_NAMESPACE, generate_missing

REPO = Path(__file__).resolve().parents[2]


def _test_project() -> str:
    """The tests' Pulumi project name, hence the prefix of every namespace they create.

    ``SMARTNATION_IT_PROJECT`` gives a second test session on the same clusters its own prefix:
    each session clears what killed runs left under *its* prefix at start, so two sessions with
    one prefix would delete each other's namespaces. One word: ``smartnation-it-x`` would start
    with ``smartnation-it-``, and the default session would clear its namespaces
    (session_leftovers.py)."""
    name = os.environ.get("SMARTNATION_IT_PROJECT", "smartnation-it")
    if not re.fullmatch(r"smartnation-[a-z0-9]{1,8}", name):
        raise ValueError(
            f"SMARTNATION_IT_PROJECT={name!r}: expected 'smartnation-' and one short lower-case "
            "word, no dash (it prefixes namespaces of at most 63 characters, and a second word "
            "would put it under another session's prefix)"
        )
    return name


PROJECT = _test_project()


@dataclass
class PlatformProject:
    root: Path
    tools: object  # conftest.Tools
    backend: dict[str, str]
    stacks: list[str] = field(default_factory=list)
    python_path: str = str(REPO / "infra")
    name: str = PROJECT
    """Pulumi project name, hence the namespaces ``<name>-<env>``; a test that must not share
    them with the others (which clear ``smartnation-it-*`` left behind) passes its own."""

    @classmethod
    def create(
        cls, root: Path, tools, backend: dict[str, str], checkout: Path = REPO, name: str = PROJECT
    ) -> PlatformProject:
        """A scratch project running the program and environment files of ``checkout``
        (this one by default; a test of an older release passes a worktree of it)."""
        root.mkdir(parents=True, exist_ok=True)
        project = cls(root=root, tools=tools, backend=backend, name=name)
        project.use_checkout(checkout)
        (root / "environments" / "stacks").mkdir()
        return project

    def use_checkout(self, checkout: Path) -> None:
        """Run the program and environment files of ``checkout`` from now on (stack files stay)."""
        environments = self.root / "environments"
        shutil.copytree(
            checkout / "environments", environments, ignore=shutil.ignore_patterns("stacks"), dirs_exist_ok=True
        )
        project = yaml.safe_load((checkout / "Pulumi.yaml").read_text())
        # Its own project name, hence its own namespaces (naming.namespace): the tests never
        # meet what `make up` deployed from the real project on the same clusters.
        project["name"] = self.name
        project["main"] = str(checkout / "infra")
        project["runtime"]["options"]["virtualenv"] = str(REPO / ".venv")
        (self.root / "Pulumi.yaml").write_text(yaml.safe_dump(project, sort_keys=False))
        # The virtualenv's editable install points at this checkout's infra/; the program's
        # own package must win for another checkout.
        self.python_path = str(checkout / "infra")

    @property
    def env(self) -> dict[str, str]:
        return {
            **self.backend,
            "SMARTNATION_ENVIRONMENTS_DIR": str(self.root / "environments"),
            "PYTHONPATH": self.python_path,
        }

    def pulumi(self, *args: str, check: bool = True, timeout: float = 1200):
        return self.tools.run(
            "pulumi", *args, "--non-interactive", cwd=self.root, env=self.env, check=check, timeout=timeout
        )

    def init_stack(self, environment: str) -> None:
        self.pulumi("stack", "init", environment)
        self.stacks.append(environment)
        try:
            settings = load_settings(environment, self.root / "environments")
        except SettingsError:
            # An older release's environment files (the refactor test's baseline) lack what this
            # checkout's loader needs (the images lock); the secrets they need are the same set.
            settings = load_settings(environment, REPO / "environments")
        secrets = generate_missing(settings)
        pairs = [f"{CONFIG_NAMESPACE}:{k}={v}" for k, v in secrets.items()]
        self.pulumi("config", "set-all", "--stack", environment, *[x for p in pairs for x in ("--secret", p)])

    def destroy(self, environment: str, unprotect: bool = False) -> None:
        """Destroys the stack and checks it: a teardown that fails quietly leaves the clusters
        dirty for the next run, so here it fails the test. Tried twice (a transient API error
        mid-destroy is no reason to leave things behind); then the namespace must be gone."""
        listed = json.loads(self.pulumi("stack", "ls", "--json").stdout)
        if any(stack["name"].split("/")[-1] == environment for stack in listed):
            if unprotect:
                self.pulumi("state", "unprotect", "--all", "--yes", "--stack", environment, check=False)
            args = ("destroy", "--yes", "--skip-preview", "--stack", environment)
            if self.pulumi(*args, check=False).returncode != 0:
                self.pulumi(*args)
        cluster = yaml.safe_load((self.root / "environments" / f"{environment}.yaml").read_text())["cluster"]
        namespace = f"{self.name}-{environment}"
        left = self.tools.run("kubectl", "--context", cluster, "get", "namespace", namespace, check=False)
        assert left.returncode != 0, f"{namespace} is still on {cluster} after destroying stack {environment}"

    def set_cluster(self, environment: str, cluster: str) -> None:
        """The one-line change that moves an environment to another cluster."""
        path = self.root / "environments" / f"{environment}.yaml"
        lines = path.read_text().splitlines(keepends=True)
        changed = [f"cluster: {cluster}\n" if line.startswith("cluster:") else line for line in lines]
        assert changed != lines, f"{path} has no top-level 'cluster:' line"
        path.write_text("".join(changed))

    def outputs(self, environment: str) -> dict:
        return json.loads(self.pulumi("stack", "output", "--json", "--stack", environment).stdout)

    def resources(self, environment: str) -> list[dict]:
        state = json.loads(self.pulumi("stack", "export", "--stack", environment).stdout)
        return state["deployment"].get("resources") or []
