"""The one way smartnation reads its own YAML files: strictly, with errors naming file and line.

PyYAML's ``safe_load`` silently keeps the last of two equal keys, so a repeated block in a
settings file would drop half of what someone wrote without a word. Every file the project
reads for its own use (environments, cluster profiles, the toolchain pins, kwok's stage files)
goes through here instead, and every problem is a ``SettingsError``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from smartnation.settings.errors import SettingsError


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML would silently keep the last one)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_yaml(path: Path, shown: str | None = None) -> Any:
    """The single document in ``path``; an empty file reads as ``{}``.

    ``shown`` is how messages name the file (``environments/staging.yaml``); the path itself
    by default.
    """
    text = _read_text(path, shown)
    with _parse_errors(shown or str(path)):
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    return {} if data is None else data


def read_yaml_documents(path: Path, shown: str | None = None) -> list[Any]:
    """Every non-empty document of a multi-document file (``---`` separated), in order."""
    text = _read_text(path, shown)
    with _parse_errors(shown or str(path)):
        return [d for d in yaml.load_all(text, Loader=_StrictLoader) if d is not None]  # noqa: S506


def _read_text(path: Path, shown: str | None) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as error:
        raise SettingsError(shown or str(path), "<file>", f"cannot read: {error.strerror}") from error


@contextmanager
def _parse_errors(shown: str) -> Iterator[None]:
    """Turns a YAML syntax error into a SettingsError naming the line and column."""
    try:
        yield
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"<line {mark.line + 1}, column {mark.column + 1}>" if mark else "<file>"
        problem = getattr(error, "problem", None) or str(error)
        raise SettingsError(shown, where, f"not valid YAML: {problem}") from error
