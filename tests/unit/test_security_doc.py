"""docs/security.md stays true to the code it cites: every file it names exists, every test it
names is in that file, and it is linked from README.md.

The page names code by short paths (`program/preflight.py` under infra/smartnation,
`tests/unit/...` from the repository root); a renamed or deleted file fails here rather than
leaving the threat model pointing at nothing.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
PAGE = REPO / "docs" / "security.md"
# Where a short path in the page may start.
BASES = (
    REPO,
    REPO / "infra" / "smartnation",
    REPO / "infra" / "smartnation" / "program",
    REPO / "docs",
    REPO / ".github" / "workflows",
)
CITED = re.compile(r"`([\w./-]+\.(?:py|sh|yml|yaml|md))(?:::(\w+)|\.(\w+))?`")


def cited(text: str) -> list[tuple[str, str | None]]:
    """(path, test or function name or None) for each file the text names in backticks."""
    return [(path, test or function) for path, test, function in CITED.findall(text)]


def resolve(path: str) -> Path | None:
    if "*" in path:
        return None
    for base in BASES:
        if (base / path).is_file():
            return base / path
    return None


def problems(text: str) -> list[str]:
    found = []
    for path, name in cited(text):
        where = resolve(path)
        if where is None:
            found.append(f"{path}: no such file under {[str(b.relative_to(REPO)) or '.' for b in BASES]}")
        elif name and not re.search(rf"\b(def|class)\s+{name}\b|^{name}\s*=", where.read_text(), re.M):
            found.append(f"{path}: names {name}, which it does not define")
    return found


def test_every_file_and_test_the_page_cites_exists():
    text = PAGE.read_text()
    assert len(cited(text)) >= 20, "the page cites the code it describes"
    assert problems(text) == []


def test_the_check_finds_a_missing_file_and_a_missing_test():
    text = "`program/preflight.py` `cli/nothing_here.py` `tests/contract/test_workflows.py::test_no_such_test`"
    assert problems(text) == [
        "cli/nothing_here.py: no such file under "
        "['.', 'infra/smartnation', 'infra/smartnation/program', 'docs', '.github/workflows']",
        "tests/contract/test_workflows.py: names test_no_such_test, which it does not define",
    ]


def test_the_readme_links_the_page():
    assert "(docs/security.md)" in (REPO / "README.md").read_text()
