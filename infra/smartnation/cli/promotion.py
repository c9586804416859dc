"""Promotion as data: the order (environments/promotion.yaml), the releases copy, the audit log.

Everything here is pure file work, so it is unit-tested without an engine; the gates that need
stacks are in smartnation.cli.promote.
"""

from __future__ import annotations

import getpass
import io
import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from smartnation.settings import SettingsError

PROMOTION_FILE = "promotion.yaml"
AUDIT_FILE = "audit/promotions.jsonl"
RELEASES_KEY = "releases"
OPERATOR_VARIABLE = "SMARTNATION_OPERATOR"


def _shown(directory: Path, name: str) -> str:
    return f"{directory.name}/{name}"


def load_order(environments: Path) -> tuple[str, ...]:
    """`order:` of environments/promotion.yaml: the one path releases travel, first to last."""
    path = environments / PROMOTION_FILE
    shown = _shown(environments, PROMOTION_FILE)
    try:
        data = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise SettingsError(shown, "<file>", f"cannot read: {error.strerror}") from error
    except YAMLError as error:
        raise SettingsError(shown, "<file>", f"not valid YAML: {error}") from error
    if not isinstance(data, Mapping) or set(data) != {"order"}:
        raise SettingsError(shown, "<top level>", "expected a mapping with the one key `order`")
    order = data["order"]
    if (
        not isinstance(order, list)
        or len(order) < 2
        or not all(isinstance(name, str) and name for name in order)
        or len(set(order)) != len(order)
    ):
        raise SettingsError(shown, "order", f"expected a list of two or more distinct environment names, got {order!r}")
    for name in order:
        if not (environments / f"{name}.yaml").is_file():
            raise SettingsError(shown, "order", f"{name!r} has no environment file {name}.yaml")
    return tuple(order)


def check_promotion(source: str, target: str, order: Sequence[str], shown: str = "environments/promotion.yaml") -> None:
    """Raise SettingsError (-> BAD_INPUT) unless TARGET is the environment right after SOURCE."""
    chain = " -> ".join(order)
    for role, name in (("SOURCE", source), ("TARGET", target)):
        if name not in order:
            raise SettingsError(
                shown, "order", f"{role} {name!r} is not an environment of the promotion order ({chain})"
            )
    if source == target:
        raise SettingsError(
            shown, "order", f"cannot promote {source!r} to itself: promote to the next environment ({chain})"
        )
    step = order.index(target) - order.index(source)
    if step < 0:
        raise SettingsError(
            shown, "order", f"{source} -> {target} goes backwards: releases only move forward ({chain})"
        )
    if step > 1:
        skipped = ", ".join(order[order.index(source) + 1 : order.index(target)])
        raise SettingsError(
            shown, "order", f"{source} -> {target} skips {skipped}: promote one step at a time ({chain})"
        )


# --- the releases copy --------------------------------------------------------------------------


def _round_trip() -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    return yaml


def _load_rt(text: str, shown: str) -> Any:
    try:
        data = _round_trip().load(text)
    except YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"<line {mark.line + 1}, column {mark.column + 1}>" if mark else "<file>"
        raise SettingsError(shown, where, f"not valid YAML: {getattr(error, 'problem', None) or error}") from error
    if not isinstance(data, Mapping) or RELEASES_KEY not in data:
        raise SettingsError(shown, RELEASES_KEY, "required key is missing (every environment file states it in full)")
    return data


def _block_lines(text: str, shown: str) -> tuple[list[str], int, int]:
    """The file's lines and the [start, end) line range of its top-level `releases:` block.

    The range runs from the `releases:` line up to the next top-level key, without the blank
    and unindented comment lines just before that key (they introduce the next block).
    """
    data = _load_rt(text, shown)
    lines = text.splitlines(keepends=True)
    keys = list(data)
    start = data.lc.key(RELEASES_KEY)[0]
    following = keys.index(RELEASES_KEY) + 1
    end = data.lc.key(keys[following])[0] if following < len(keys) else len(lines)
    while end > start + 1 and (not lines[end - 1].strip() or lines[end - 1].startswith("#")):
        end -= 1
    return lines, start, end


def copy_releases(source_text: str, target_text: str, source_shown: str, target_shown: str) -> str:
    """TARGET's text with its `releases:` block replaced by SOURCE's, everything else byte-identical.

    ruamel.yaml's round-trip loader finds the block (line numbers of the top-level keys); the
    block's lines are then spliced as text, because re-dumping a document can still move
    blank lines and comments across a replaced node. The result is parsed again to prove it.
    """
    src_lines, src_start, src_end = _block_lines(source_text, source_shown)
    tgt_lines, tgt_start, tgt_end = _block_lines(target_text, target_shown)
    block = src_lines[src_start:src_end]
    if block and not block[-1].endswith("\n"):
        block[-1] += "\n"
    result = "".join([*tgt_lines[:tgt_start], *block, *tgt_lines[tgt_end:]])

    # Proof: releases are SOURCE's, every other key is TARGET's, in TARGET's order.
    new, old, src = (_load_rt(t, target_shown) for t in (result, target_text, source_text))
    if _plain(new[RELEASES_KEY]) != _plain(src[RELEASES_KEY]) or [k for k in new if k != RELEASES_KEY] != [
        k for k in old if k != RELEASES_KEY
    ]:
        raise AssertionError(f"copying {RELEASES_KEY} from {source_shown} into {target_shown} went wrong")
    if any(_plain(new[k]) != _plain(old[k]) for k in old if k != RELEASES_KEY):
        raise AssertionError(f"copying {RELEASES_KEY} changed another block of {target_shown}")
    return result


def releases_of(text: str, shown: str) -> dict[str, Any]:
    """The `releases:` block of an environment file's text as plain data."""
    return _plain(_load_rt(text, shown)[RELEASES_KEY])


def _plain(node: Any) -> Any:
    """ruamel's commented containers and scalars as plain JSON-ready Python."""
    if isinstance(node, Mapping):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    return str(node)


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` in one rename, so a crash never leaves half a settings file."""
    tmp = path.with_name(f".{path.name}.smartnation-tmp")
    tmp.write_text(text, encoding="utf-8")
    if path.exists():
        os.chmod(tmp, path.stat().st_mode & 0o7777)
    os.replace(tmp, path)


# --- the audit log ------------------------------------------------------------------------------

APPLIED = "applied"
WRITTEN_ONLY = "written-only"
REFUSED = "refused"
FAILED = "failed"  # the file was written, the update of TARGET failed
RESULTS = (APPLIED, WRITTEN_ONLY, REFUSED, FAILED)


@dataclass(frozen=True)
class SourceUpdate:
    """The SOURCE stack's last update, the one whose releases are promoted."""

    version: int | None
    """The stack's update number (`pulumi stack history`)."""
    time: str | None
    """When it ended (UTC, ISO 8601)."""
    result: str | None
    """`succeeded`, `failed` or `in-progress`."""


@dataclass(frozen=True)
class AuditEntry:
    """One line of environments/audit/promotions.jsonl."""

    when: str
    """UTC time the promotion ended, ISO 8601 with a Z."""
    who: str
    """$SMARTNATION_OPERATOR, else git's user.email, else the login name."""
    source: str
    target: str
    result: str
    """One of RESULTS."""
    reason: str
    """Why it was refused or failed; what was done otherwise."""
    source_update: SourceUpdate | None = None
    releases: Mapping[str, Any] | None = None
    """SOURCE's releases block (what TARGET got or would have got)."""
    target_update: SourceUpdate | None = None
    """TARGET's update run by --apply."""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        data = asdict(self)
        if not data["extra"]:
            del data["extra"]
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def operator(project: Path) -> str:
    """Who is promoting: $SMARTNATION_OPERATOR, else git user.email, else the login name."""
    if os.environ.get(OPERATOR_VARIABLE):
        return os.environ[OPERATOR_VARIABLE]
    try:
        email = subprocess.run(
            ["git", "config", "user.email"], cwd=project, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        email = ""
    if email:
        return email
    return os.environ.get("USER") or getpass.getuser()


def append_audit(environments: Path, entry: AuditEntry) -> Path:
    path = environments / AUDIT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as stream:
        stream.write(entry.to_json() + "\n")
    return path


def read_audit(environments: Path) -> list[dict[str, Any]]:
    path = environments / AUDIT_FILE
    if not path.is_file():
        return []
    entries = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise SettingsError(_shown(environments, AUDIT_FILE), f"<line {number}>", f"not JSON: {error}") from error
    return entries


def render_audit(entries: Sequence[Mapping[str, Any]]) -> str:
    """The audit entries as a plain-text table, oldest first."""
    header = ("when", "who", "promotion", "source update", "result", "reason")
    rows = [header]
    for entry in entries:
        update = entry.get("source_update") or {}
        rows.append(
            (
                str(entry.get("when", "")),
                str(entry.get("who", "")),
                f"{entry.get('source', '?')} -> {entry.get('target', '?')}",
                f"#{update['version']}" if update.get("version") is not None else "-",
                str(entry.get("result", "")),
                str(entry.get("reason", "")),
            )
        )
    return render_table(rows)


def render_table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    out = io.StringIO()
    for row in rows:
        out.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() + "\n")
    return out.getvalue()
