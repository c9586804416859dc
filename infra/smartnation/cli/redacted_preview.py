"""`smartnation preview --redacted`: what a change does, without an engine, a backend or a passphrase.

A pull request's job holds no passphrase (docs/operations.md, "Secrets in CI"), so this preview
never decrypts anything. For each affected environment:

1. The program of the base revision (the merge base, from `git archive`) and of the head (this
   checkout and the working tree's environment files) runs under Pulumi's mocks
   (smartnation.cli.mock_program, one subprocess each), with the same placeholder for every
   secret key at both ends. The registrations are compared by URN (aliases followed): created,
   deleted, updated with the changed property paths, replaced where the Kubernetes provider
   would replace (``FORCE_NEW``). It is a desired-state diff: what the cluster actually runs,
   defaults the API server fills in and drift are not seen.
2. Secret values: a property holding a secret (or derived from one) is named, never shown. The
   stack secrets themselves are compared by ciphertext in the stack files at both ends
   (changed / unchanged / added / removed), or "not compared" when a stack file is missing
   (they are never committed, so in CI they always are).
3. The policy pack's rules run over the head's registrations (smartnation.cli.policy_sweep).

The result is the normal preview's report (smartnation.cli.report), so the pull-request comment
keeps its shape.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from smartnation.cli import mock_program
from smartnation.cli.mock_program import Registered, from_record, is_secret, placeholder_secret
from smartnation.cli.policy_sweep import NOT_JUDGED_UNDER_MOCKS, judge
from smartnation.cli.report import CREATE, DELETE, REPLACE, SAME, UPDATE, EnvironmentPreview, Step, Violation
from smartnation.paths import REPO, STACKS_DIR
from smartnation.settings import Settings, SettingsError, load_settings
from smartnation.settings.stack_secrets import CONFIG_NAMESPACE, required_secrets

log = logging.getLogger("smartnation")

MODE = "desired-state diff under mocks"

# Secret comparison outcomes (by ciphertext in the stack files; never by value).
SECRET_CHANGED, SECRET_UNCHANGED, SECRET_ADDED, SECRET_REMOVED = "changed", "unchanged", "added", "removed"
NOT_COMPARED = "not compared"

# Where the Kubernetes provider replaces instead of updating (its forceNew table, pulumi-kubernetes
# provider/pkg/provider/diff.go, kept to the kinds we deploy): group -> kind -> property paths.
# Every kind also replaces on metadata.name and metadata.namespace. ConfigMaps and Secrets are
# replaced on a data change because the provider treats them as immutable unless told otherwise.
FORCE_NEW_METADATA = ("metadata.name", "metadata.namespace")
FORCE_NEW: Mapping[str, Mapping[str, tuple[str, ...]]] = {
    "apps": {
        "StatefulSet": ("spec.podManagementPolicy", "spec.selector", "spec.serviceName", "spec.volumeClaimTemplates"),
        "Deployment": ("spec.selector",),
        "DaemonSet": ("spec.selector",),
    },
    "batch": {"Job": ("spec.selector", "spec.template")},
    "core": {
        "ConfigMap": ("data", "binaryData"),
        "Secret": ("type", "data", "stringData"),
        "PersistentVolumeClaim": ("spec",),
        "Service": ("spec.clusterIP", "spec.type"),
        "ResourceQuota": ("spec.scopes",),
    },
    "rbac.authorization.k8s.io": {"RoleBinding": ("roleRef",), "ClusterRoleBinding": ("roleRef",)},
    "storage.k8s.io": {"StorageClass": ("parameters", "provisioner", "reclaimPolicy", "volumeBindingMode")},
}

CHECKOUT = "<checkout>"

# The runner for mock_program.py in another checkout: no script directory on sys.path, so
# `smartnation` resolves through PYTHONPATH to that checkout's infra/.
_RUNNER = "import runpy, sys; path = sys.argv.pop(1); runpy.run_path(path, run_name='__main__')"


class RenderFailed(Exception):
    """The program of one revision could not be run under mocks."""


@dataclass(frozen=True)
class Revision:
    """A tree to render: its program (``infra`` holds smartnation/) and its environment files."""

    label: str
    infra: Path
    environments: Path


# --- rendering ----------------------------------------------------------------------------------


def render_revision(revision: Revision, environment: str, project: str) -> list[Registered]:
    """Every registration of ``environment`` in ``revision``, from a fresh interpreter."""
    with tempfile.TemporaryDirectory(prefix="smartnation-render-") as tmp:
        out = Path(tmp) / "registrations.json"
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(revision.infra), os.environ.get("PYTHONPATH")])),
            "SMARTNATION_ENVIRONMENTS_DIR": str(revision.environments),
        }
        command = [
            sys.executable,
            "-c",
            _RUNNER,
            mock_program.__file__,
            str(out),
            environment,
            str(revision.environments),
            project,
        ]
        proc = subprocess.run(command, cwd=tmp, env=env, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.strip().splitlines()[-12:])
            raise RenderFailed(f"{revision.label}: the program did not run under mocks:\n{tail}")
        # Paths into the checkout (the chart's directory) differ between the two trees, not
        # between the revisions: one neutral name for both.
        text = out.read_text(encoding="utf-8").replace(str(revision.infra.parent.resolve()), CHECKOUT)
        return [from_record(item) for item in json.loads(text)]


def extract_revision(repo: Path, rev: str, into: Path) -> Path:
    """The tree of ``rev`` (committed files only) written under ``into``."""
    proc = subprocess.run(["git", "archive", "--format=tar", rev], cwd=repo, capture_output=True, timeout=300)
    if proc.returncode != 0:
        raise SettingsError("git", f"archive {rev}", proc.stderr.decode(errors="replace").strip())
    with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as archive:
        archive.extractall(into, filter="data")
    return into


def git_show(repo: Path, rev: str, path: str) -> str | None:
    """A file's text at ``rev``; None if it is not there."""
    proc = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=repo, capture_output=True, text=True, timeout=60)
    return proc.stdout if proc.returncode == 0 else None


# --- the diff -----------------------------------------------------------------------------------


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def changed_paths(old: Any, new: Any, path: str = "") -> list[tuple[str, bool]]:
    """(property path, is secret) for every difference between two input trees.

    A secret is compared as a whole (the placeholders are the same at both ends, so a difference
    is in how the secret is used) and never descended into; lists of another length count as
    one change of the list."""
    if is_secret(old) or is_secret(new):
        return [] if old == new else [(path, True)]
    if isinstance(old, dict) and isinstance(new, dict):
        found: list[tuple[str, bool]] = []
        for key in sorted(set(old) | set(new), key=str):
            if key not in old or key not in new:
                found.append((_join(path, str(key)), _holds_secret(old.get(key)) or _holds_secret(new.get(key))))
            else:
                found += changed_paths(old[key], new[key], _join(path, str(key)))
        return found
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        pairs = enumerate(zip(old, new, strict=True))
        return [change for i, (a, b) in pairs for change in changed_paths(a, b, f"{path}[{i}]")]
    if old == new:
        return []
    return [(path, _holds_secret(old) or _holds_secret(new))]


def _holds_secret(value: Any) -> bool:
    if is_secret(value):
        return True
    if isinstance(value, dict):
        return any(_holds_secret(v) for v in value.values())
    if isinstance(value, list):
        return any(_holds_secret(v) for v in value)
    return False


def _group_kind(resource_type: str) -> tuple[str, str] | None:
    # kubernetes:apps/v1:StatefulSet -> (apps, StatefulSet); kubernetes:core/v1:Secret -> (core, Secret)
    parts = resource_type.split(":")
    if len(parts) != 3 or parts[0] != "kubernetes":
        return None
    return parts[1].split("/")[0], parts[2]


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith((prefix + ".", prefix + "["))


def replacing(resource_type: str, paths: Iterable[str]) -> list[str]:
    """The changed paths that make the Kubernetes provider replace the resource."""
    group_kind = _group_kind(resource_type)
    if group_kind is None:
        return []
    group, kind = group_kind
    force_new = (*FORCE_NEW_METADATA, *FORCE_NEW.get(group, {}).get(kind, ()))
    # A path above a force-new one (a whole `spec` appearing) counts too.
    return [p for p in paths if any(_under(p, prefix) or _under(prefix, p) for prefix in force_new)]


_ALIAS_FIELD = re.compile(r'(name|type|parentUrn|urn): "([^"]*)"')


def alias_urns(resource: Registered) -> list[str]:
    """The URNs ``resource`` answers to besides its own (its aliases, resolved)."""
    head, _, _ = resource.urn.partition("::")  # urn:pulumi:<stack>
    project = resource.urn.split("::")[1] if resource.urn.count("::") >= 3 else ""
    own_chain = resource.urn.split("::")[2].split("$")[:-1] if resource.urn.count("::") >= 3 else []
    found = []
    for alias in resource.aliases:
        fields = dict(_ALIAS_FIELD.findall(alias))
        if fields.get("urn"):
            found.append(fields["urn"])
            continue
        name = fields.get("name") or resource.name
        own_type = fields.get("type") or resource.type
        chain = own_chain
        if fields.get("parentUrn"):  # "" means the resource's own parent
            chain = fields["parentUrn"].split("::")[2].split("$")
        if "noParent: true" in alias:
            chain = []
        found.append(f"{head}::{project}::{'$'.join([*chain, own_type])}::{name}")
    return found


def _options_changed(old: Registered, new: Registered) -> list[str]:
    changed = []
    if bool(old.protect) != bool(new.protect):
        changed.append("[protect]")
    if old.delete_before_replace != new.delete_before_replace:
        changed.append("[deleteBeforeReplace]")
    if old.ignore_changes != new.ignore_changes:
        changed.append("[ignoreChanges]")
    return changed


def _provider_name(reference: str) -> str:
    return reference.split("::")[-2] if reference.count("::") >= 2 else reference


def diff_registrations(base: Sequence[Registered], head: Sequence[Registered]) -> list[Step]:
    """One step per resource of either side: what going from ``base`` to ``head`` does to it."""
    old_by_urn = {r.urn: r for r in base}
    steps: list[Step] = []
    matched: set[str] = set()
    for new in head:
        old = old_by_urn.get(new.urn)
        if old is None:
            old = next((old_by_urn[u] for u in alias_urns(new) if u in old_by_urn and u not in matched), None)
        if old is None:
            steps.append(Step(CREATE, new.urn, new.type))
            continue
        matched.add(old.urn)
        changes = changed_paths(old.inputs, new.inputs)
        paths = [f"{p} (secret)" if secret else p for p, secret in changes]
        paths += _options_changed(old, new)
        replace_keys = replacing(new.type, [p for p, _ in changes])
        if new.custom and _provider_name(old.provider) != _provider_name(new.provider):
            paths.append("[provider]")
            replace_keys.append("[provider]")
        if replace_keys:
            marked = [f"{p} (secret)" if (p, True) in changes else p for p in replace_keys]
            steps.append(Step(REPLACE, new.urn, new.type, tuple(paths), tuple(marked)))
        elif paths:
            steps.append(Step(UPDATE, new.urn, new.type, tuple(paths)))
        else:
            steps.append(Step(SAME, new.urn, new.type))
    steps += [Step(DELETE, old.urn, old.type) for old in base if old.urn not in matched]
    return steps


# --- secrets by ciphertext ----------------------------------------------------------------------


def stack_ciphertexts(text: str | None) -> tuple[dict[str, str], str] | None:
    """(secret key -> ciphertext, encryption salt) of a stack file's text; None without a file."""
    if text is None:
        return None
    data = yaml.safe_load(text) or {}
    config = data.get("config") or {}
    found = {}
    for key, value in config.items():
        if isinstance(key, str) and key.startswith(f"{CONFIG_NAMESPACE}:") and isinstance(value, dict):
            found[key.removeprefix(f"{CONFIG_NAMESPACE}:")] = str(value.get("secure", ""))
    return found, str(data.get("encryptionsalt", ""))


def compare_secrets(keys: Iterable[str], base_text: str | None, head_text: str | None) -> dict[str, str]:
    """Each secret key -> changed / unchanged / added / removed / not compared (never a value).

    Ciphertext is compared, not plaintext: the same value encrypted again reads as changed."""
    base, head = stack_ciphertexts(base_text), stack_ciphertexts(head_text)
    keys = sorted(set(keys) | (set(base[0]) if base else set()) | (set(head[0]) if head else set()))
    if base is None or head is None:
        missing = " and ".join(side for side, found in (("base", base), ("head", head)) if found is None)
        return {key: f"{NOT_COMPARED} (no stack file at the {missing})" for key in keys}
    result = {}
    for key in keys:
        old, new = base[0].get(key), head[0].get(key)
        if old is None and new is None:
            result[key] = f"{NOT_COMPARED} (in neither stack file)"
        elif old is None:
            result[key] = SECRET_ADDED
        elif new is None:
            result[key] = SECRET_REMOVED
        else:
            result[key] = SECRET_UNCHANGED if old == new else SECRET_CHANGED
    return result


def render_secrets(secrets: Mapping[str, str]) -> list[str]:
    """The stack secrets' comparison as Markdown: the tally, then each key (names only)."""
    tally: dict[str, int] = {}
    for status in secrets.values():
        tally[status] = tally.get(status, 0) + 1
    summary = "; ".join(f"{count} {status}" for status, count in sorted(tally.items()))
    return [
        "",
        f"<details><summary>Stack secrets by ciphertext: {summary}</summary>",
        "",
        "| secret | value |",
        "| --- | --- |",
        *(f"| `{key}` | {status} |" for key, status in secrets.items()),
        "",
        "</details>",
    ]


# --- one environment ----------------------------------------------------------------------------


@dataclass
class RedactedInputs:
    """What a redacted preview of one environment needs to know about the change."""

    repo: Path
    """The git top level."""
    merge_base: str
    base: Revision | None
    """None when the environment has no file at the base (every resource is created)."""
    head: Revision
    project: str
    head_stack_file: Path
    """The environment's stack file in the working tree (it may not exist)."""
    base_stack_file: str | None
    """The same file's path in the repository, for `git show` at the merge base; None outside it."""


def _scrub(text: str, secrets: Iterable[str]) -> str:
    for value in secrets:
        if value:
            text = text.replace(value, "<secret>")
    return text


def preview_redacted(environment: str, reasons: tuple[str, ...], inputs: RedactedInputs) -> EnvironmentPreview:
    """The redacted preview of one environment; never raises for a program that does not run."""
    settings: Settings = load_settings(environment, inputs.head.environments)
    keys = list(required_secrets(settings))
    placeholders = [placeholder_secret(key) for key in keys]
    result = EnvironmentPreview(environment, settings.cluster.name, reasons=reasons)
    result.notes.append(
        f"*{MODE}*: base `{inputs.merge_base[:12]}` against the head; no engine, backend or passphrase. "
        "Defaults the API server fills in, drift and the city APIs' chart contents are not seen."
    )
    try:
        head = render_revision(inputs.head, environment, inputs.project)
        base = render_revision(inputs.base, environment, inputs.project) if inputs.base else []
    except RenderFailed as error:
        result.errors.append(_scrub(str(error), placeholders))
        result.finish(engine_failed=True)
        return result
    if inputs.base is None:
        result.notes += ["", f"New at the head: the base has no `{environment}.yaml`, so every resource is created."]
    result.steps = diff_registrations(base, head)
    result.violations = [
        Violation(v.policy, _scrub(v.message, placeholders), v.level, v.urn) for v in judge(head, settings)
    ]
    charts = sum(1 for r in head if r.type == NOT_JUDGED_UNDER_MOCKS)
    policy_note = f"Policy pack: its rules ran over the head's {len(head)} registrations without an engine."
    if charts:
        chart = NOT_JUDGED_UNDER_MOCKS.removeprefix("kubernetes:")
        policy_note += f" What the {charts} `{chart}` resource(s) render is judged only by an engine preview."
    result.notes += ["", policy_note]
    base_stack = git_show(inputs.repo, inputs.merge_base, inputs.base_stack_file) if inputs.base_stack_file else None
    secrets = compare_secrets(keys, base_stack, _read(inputs.head_stack_file))
    result.notes += render_secrets(secrets)
    result.finish(engine_failed=False)
    return result


def _read(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.is_file() else None


def redacted_inputs(
    repo: Path, merge_base: str, environments: Path, project_dir: Path, workdir: Path, environment: str
) -> RedactedInputs:
    """Where the head and the base of ``environment`` are; the base tree is extracted into ``workdir``."""
    environments_prefix = _relative(environments, repo) or "environments"
    # Pulumi.yaml's stackConfigDir: the stack files are the project's, not the environments copy's.
    stack_file = project_dir / "environments" / STACKS_DIR / f"Pulumi.{environment}.yaml"
    base_tree = workdir / "base"
    if not base_tree.exists():
        extract_revision(repo, merge_base, base_tree)
    base_environments = base_tree / environments_prefix
    # The program always comes from a checkout's infra/ (smartnation.paths): the base's own when
    # the repository holds it, this checkout's otherwise (a project kept apart from the code).
    base_infra = base_tree / "infra" if (base_tree / "infra" / "smartnation").is_dir() else REPO / "infra"
    base = None
    if (base_environments / f"{environment}.yaml").is_file():
        base = Revision(f"base {merge_base[:12]}", base_infra, base_environments)
    return RedactedInputs(
        repo=repo,
        merge_base=merge_base,
        base=base,
        head=Revision("head", REPO / "infra", environments),
        project=_project_name(project_dir),
        head_stack_file=stack_file,
        base_stack_file=_relative(stack_file, repo),
    )


def _relative(path: Path, top: Path) -> str | None:
    try:
        return path.resolve().relative_to(top.resolve()).as_posix()
    except ValueError:
        return None


def _project_name(project_dir: Path) -> str:
    try:
        return str((yaml.safe_load((project_dir / "Pulumi.yaml").read_text(encoding="utf-8")) or {})["name"])
    except (OSError, KeyError, TypeError, yaml.YAMLError):
        return "smartnation"
