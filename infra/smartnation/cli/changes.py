"""Which environments a change affects, from the files it touches.

environments/<env>.yaml                 -> that environment
environments/stacks/Pulumi.<env>.yaml   -> that environment (its secrets)
environments/defaults.yaml              -> every environment
environments/clusters/<cluster>.yaml    -> every environment whose settings target that cluster
infra/, charts/, policy/, Pulumi.yaml,
pyproject.toml                          -> every environment (code, chart, guardrails, pins)
anything else                           -> none (docs, tests, CI, promotion.yaml, the audit log)
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path, PurePosixPath

from smartnation.settings import SettingsError

EVERYTHING_PREFIXES = ("infra/", "charts/", "policy/")
EVERYTHING_FILES = ("Pulumi.yaml", "pyproject.toml")


def affected_environments(
    paths: Iterable[str],
    environments: Sequence[str],
    cluster_of: Callable[[str], str | None],
    environments_prefix: str = "environments",
) -> dict[str, list[str]]:
    """Environment -> the changed paths that affect it, in the order of ``environments``.

    ``paths`` are relative to the repository root (what `git diff --name-only` prints);
    ``cluster_of(env)`` names the cluster an environment targets, None when it cannot tell
    (an unreadable file: then a change to any cluster profile counts, to be safe).
    """
    prefix = environments_prefix.strip("/") + "/"
    reasons: dict[str, list[str]] = {env: [] for env in environments}

    def hit(envs: Iterable[str], path: str) -> None:
        for env in envs:
            if path not in reasons[env]:
                reasons[env].append(path)

    for path in paths:
        if path.startswith(EVERYTHING_PREFIXES) or path in EVERYTHING_FILES:
            hit(environments, path)
            continue
        if not path.startswith(prefix):
            continue
        inner = PurePosixPath(path[len(prefix) :])
        parts = inner.parts
        if len(parts) == 1 and inner.suffix == ".yaml":
            if inner.stem == "defaults":
                hit(environments, path)
            elif inner.stem in reasons:
                hit([inner.stem], path)
        elif len(parts) == 2 and parts[0] == "clusters" and inner.suffix == ".yaml":
            cluster = inner.stem
            hit([env for env in environments if cluster_of(env) in (cluster, None)], path)
        elif len(parts) == 2 and parts[0] == "stacks" and parts[1].startswith("Pulumi.") and inner.suffix == ".yaml":
            env = parts[1].removeprefix("Pulumi.").removesuffix(".yaml")
            if env in reasons:
                hit([env], path)
    return {env: found for env, found in reasons.items() if found}


def _git(repo: Path, *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise SettingsError("git", " ".join(args), proc.stderr.strip() or f"exited {proc.returncode}")
    return proc.stdout


def git_toplevel(path: Path) -> Path:
    return Path(_git(path, "rev-parse", "--show-toplevel").strip())


def changed_files(repo: Path, base: str) -> tuple[str, list[str]]:
    """(merge base, changed paths): from the merge base of BASE and HEAD to the working tree.

    Committed, staged, unstaged and untracked files all count; renames count as both paths.
    """
    try:
        merge_base = _git(repo, "merge-base", base, "HEAD").strip()
    except SettingsError as error:
        raise SettingsError("--base", base, f"no merge base with HEAD: {error.detail}") from error
    diffed = _git(repo, "diff", "--name-only", "--no-renames", merge_base).splitlines()
    untracked = _git(repo, "ls-files", "--others", "--exclude-standard").splitlines()
    seen: dict[str, None] = {}
    for path in (*diffed, *untracked):
        if path.strip():
            seen.setdefault(path.strip(), None)
    return merge_base, list(seen)
