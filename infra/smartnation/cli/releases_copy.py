"""Copying SOURCE's `releases:` block into TARGET's environment file, every other byte kept.

Pure text work, unit-tested without an engine; the gates that need stacks are in
smartnation.cli.promote.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from smartnation.settings import SettingsError

RELEASES_KEY = "releases"


def _parse(text: str, shown: str) -> tuple[yaml.MappingNode, dict[str, Any]]:
    """(node tree, data) of an environment file that has a top-level `releases:`, parsed once.

    The node tree says on which line each top-level key starts. Duplicate keys are not looked
    for here: `promote` has read both files with the settings loader first, which refuses them,
    and validates the result the same way before the engine sees it.
    """
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"<line {mark.line + 1}, column {mark.column + 1}>" if mark else "<file>"
        raise SettingsError(shown, where, f"not valid YAML: {getattr(error, 'problem', None) or error}") from error
    finally:
        loader.dispose()
    if not isinstance(node, yaml.MappingNode) or not isinstance(data, Mapping) or RELEASES_KEY not in data:
        raise SettingsError(shown, RELEASES_KEY, "required key is missing (every environment file states it in full)")
    return node, data


def _block_lines(text: str, shown: str) -> tuple[list[str], int, int]:
    """The file's lines and the [start, end) line range of its top-level `releases:` block.

    The range runs from the `releases:` line up to the next top-level key, without the blank
    and unindented comment lines just before that key (they introduce the next block).
    """
    node, _ = _parse(text, shown)
    lines = text.splitlines(keepends=True)
    starts = [(key.value, key.start_mark.line) for key, _ in node.value]  # 0-based, in file order
    index = next(i for i, (key, _) in enumerate(starts) if key == RELEASES_KEY)
    start = starts[index][1]
    end = starts[index + 1][1] if index + 1 < len(starts) else len(lines)
    while end > start + 1 and (not lines[end - 1].strip() or lines[end - 1].startswith("#")):
        end -= 1
    return lines, start, end


def copy_releases(source_text: str, target_text: str, source_shown: str, target_shown: str) -> str:
    """TARGET's text with its `releases:` block replaced by SOURCE's, everything else byte-identical.

    The YAML node tree finds the block (the lines where the top-level keys start); the block's
    lines are then spliced as text, because re-dumping a document would lose comments and move
    blank lines. The result is parsed again to prove it.
    """
    src_lines, src_start, src_end = _block_lines(source_text, source_shown)
    tgt_lines, tgt_start, tgt_end = _block_lines(target_text, target_shown)
    block = src_lines[src_start:src_end]
    if block and not block[-1].endswith("\n"):
        block[-1] += "\n"
    result = "".join([*tgt_lines[:tgt_start], *block, *tgt_lines[tgt_end:]])

    # Proof: releases are SOURCE's, every other key is TARGET's, in TARGET's order.
    new, old, src = (_parse(t, target_shown)[1] for t in (result, target_text, source_text))
    if _plain(new[RELEASES_KEY]) != _plain(src[RELEASES_KEY]) or [k for k in new if k != RELEASES_KEY] != [
        k for k in old if k != RELEASES_KEY
    ]:
        raise AssertionError(f"copying {RELEASES_KEY} from {source_shown} into {target_shown} went wrong")
    if any(_plain(new[k]) != _plain(old[k]) for k in old if k != RELEASES_KEY):
        raise AssertionError(f"copying {RELEASES_KEY} changed another block of {target_shown}")
    return result


def releases_of(text: str, shown: str) -> dict[str, Any]:
    """The `releases:` block of an environment file's text as plain data."""
    return _plain(_parse(text, shown)[1][RELEASES_KEY])


def _plain(node: Any) -> Any:
    """Loaded YAML as JSON-ready Python: string keys, anything else that is not JSON (dates) as text."""
    if isinstance(node, Mapping):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, bool | int | float) or node is None:
        return node
    return str(node)


TMP_SUFFIX = ".smartnation-tmp"


def unfinished_writes(path: Path) -> list[Path]:
    """Temporary files a killed write_atomically left beside ``path`` (``path`` itself is intact)."""
    return sorted(path.parent.glob(f".{path.name}.*{TMP_SUFFIX}"))


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` in one rename, so a crash never leaves half a settings file.

    The new text goes to a temporary file of its own beside ``path`` (unique: two writers never
    share it), is flushed to disk, takes ``path``'s mode, and is renamed over ``path``; the folder
    is then flushed so the rename itself survives a power cut. Killed at any point, ``path`` holds
    the old text or the new one; a failure removes the temporary file.
    """
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(tmp, path.stat().st_mode & 0o7777 if path.exists() else 0o644)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
