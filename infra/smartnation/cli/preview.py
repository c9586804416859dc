"""`smartnation preview [--base REF] [--output FILE] [--redacted] [ENV ...]`: what a change would do.

Without ENV, the environments come from the files the change touches (smartnation.cli.changes);
each is previewed with diff and the policy pack, and the Markdown summary goes to FILE (the
pull-request comment) or stdout. Progress goes to stderr. ``--redacted`` (pull requests: no
passphrase, no backend) compares the base and the head under mocks instead
(smartnation.cli.redacted_preview).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from smartnation.cli import exit_codes
from smartnation.cli.changes import affected_environments, changed_files, git_toplevel
from smartnation.cli.engine_preview import preview_environment
from smartnation.cli.environment_names import check_environments, known_environments
from smartnation.cli.redacted_preview import MODE, preview_redacted, redacted_inputs
from smartnation.cli.report import ERROR, POLICY, EnvironmentPreview, render_markdown
from smartnation.paths import environments_dir, project_dir
from smartnation.settings import SettingsError
from smartnation.settings.yaml_files import read_yaml

log = logging.getLogger("smartnation")


def _cluster_of(environments: Path) -> Callable[[str], str | None]:
    """The cluster an environment file names; None when the file cannot tell (then every cluster counts)."""

    def cluster_of(environment: str) -> str | None:
        try:
            data = read_yaml(environments / f"{environment}.yaml")
        except SettingsError:
            return None
        cluster = data.get("cluster") if isinstance(data, dict) else None
        return cluster if isinstance(cluster, str) else None

    return cluster_of


def exit_code_for(previews: list[EnvironmentPreview]) -> int:
    """An engine error is worse than a policy violation (that environment was not fully judged)."""
    results = {p.result for p in previews}
    if ERROR in results:
        return exit_codes.FAILED
    if POLICY in results:
        return exit_codes.POLICY_VIOLATION
    return exit_codes.OK


def cmd_preview(args: argparse.Namespace) -> int:
    environments = environments_dir()
    project = project_dir()
    header: list[str] = []
    merge_base = ""
    if args.environments:
        check_environments(args.environments, environments)
        selected = {env: [] for env in args.environments}
        header.append("Environments named on the command line: " + ", ".join(args.environments) + ".")
        if args.redacted:  # the base to compare with is still --base's merge base
            merge_base, _ = changed_files(git_toplevel(project), args.base)
    else:
        top = git_toplevel(project)
        merge_base, paths = changed_files(top, args.base)
        try:
            prefix = environments.resolve().relative_to(top.resolve()).as_posix()
        except ValueError:
            prefix = "environments"
        selected = affected_environments(paths, known_environments(environments), _cluster_of(environments), prefix)
        header.append(
            f"Compared with `{args.base}` (merge base `{merge_base[:12]}`) including uncommitted changes: "
            f"{len(paths)} file(s) changed, {len(selected)} environment(s) affected."
        )
        log.info("%d changed file(s) since %s; affected: %s", len(paths), args.base, ", ".join(selected) or "none")

    if args.redacted:
        header.append(
            f"**Redacted preview** ({MODE}): the program at the merge base and at the head, run under "
            "Pulumi's mocks with a placeholder per secret; no engine, no state backend, no passphrase. "
            "Secret values are shown only as changed or unchanged, never decrypted."
        )
        with tempfile.TemporaryDirectory(prefix="smartnation-redacted-") as workdir:
            previews = _previews(
                selected,
                lambda environment, reasons: preview_redacted(
                    environment,
                    reasons,
                    redacted_inputs(
                        git_toplevel(project), merge_base, environments, project, Path(workdir), environment
                    ),
                ),
            )
    else:
        previews = _previews(
            selected,
            lambda environment, reasons: preview_environment(
                environment, reasons, on_output=_verbose if args.verbose else None
            ),
        )
    title = "smartnation preview (redacted)" if args.redacted else "smartnation preview"
    markdown = render_markdown(previews, header, title=title)
    if args.output:
        Path(args.output).write_text(markdown, encoding="utf-8")
        log.info("summary written to %s", os.path.abspath(args.output))
    else:
        sys.stdout.write(markdown)
    return exit_code_for(previews)


def _previews(
    selected: dict[str, list[str]], preview: Callable[[str, tuple[str, ...]], EnvironmentPreview]
) -> list[EnvironmentPreview]:
    previews: list[EnvironmentPreview] = []
    for number, (environment, reasons) in enumerate(selected.items(), start=1):
        log.info("[%d/%d] previewing %s ...", number, len(selected), environment)
        result = preview(environment, tuple(reasons))
        c = result.counts()
        log.info(
            "[%d/%d] %s on %s: %d to create, %d to update, %d to replace, %d to delete; "
            "%d stateful warning(s), %d mandatory / %d advisory violation(s): %s",
            number,
            len(selected),
            environment,
            result.cluster,
            c["create"],
            c["update"],
            c["replace"],
            c["delete"],
            len(result.destructive),
            len(result.mandatory_violations),
            len(result.violations) - len(result.mandatory_violations),
            result.result,
        )
        previews.append(result)
    return previews


def _verbose(line: str) -> None:
    sys.stderr.write(line if line.endswith("\n") else line + "\n")


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "preview",
        help="preview the environments a change affects, with the policy pack (Markdown summary)",
        description="Without ENV, the environments are those the files changed since the merge base of "
        "--base and HEAD (plus uncommitted and untracked files) affect.",
    )
    parser.add_argument("environments", nargs="*", metavar="ENV", help="preview these instead of the change's")
    parser.add_argument("--base", default="origin/main", help="git ref the change is compared with (origin/main)")
    parser.add_argument("--output", metavar="FILE", help="write the Markdown summary here instead of stdout")
    parser.add_argument("--verbose", action="store_true", help="stream the engine's own output to stderr")
    parser.add_argument(
        "--redacted",
        action="store_true",
        help="no engine, backend or passphrase: diff the base and the head under mocks (pull requests)",
    )
    parser.set_defaults(func=cmd_preview)
