"""Fixtures: Pulumi mocks installed by fixtures (never at import), and stack builds.

``build_stack(environment, cluster=None)`` returns the recorded build of one environment on
one cluster. Builds are pure functions of the repository's files, so each (environment,
cluster) is built once per session and shared read-only; tests that change inputs (missing
secrets, broken settings) use ``recorder`` and build for themselves.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pulumi
import pytest

from smartnation.settings import load_settings
from tests.unit.harness import (
    REPO_ENVIRONMENTS,
    BuiltStack,
    Recorder,
    build_settings,
    environments_copy,
    install_mocks,
)


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    rec = install_mocks()
    yield rec
    pulumi.runtime.set_all_config({})


@pytest.fixture(scope="session")
def _stack_builds(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, str | None], BuiltStack]:
    cache: dict[tuple[str, str | None], BuiltStack] = {}

    def get(environment: str, cluster: str | None) -> BuiltStack:
        key = (environment, cluster)
        # While mutmut records which tests reach which function (`make mutation`), every test
        # builds for itself: a shared build would credit its code to the first test alone.
        if key not in cache or os.environ.get("MUTANT_UNDER_TEST") == "stats":
            root = environments_copy(tmp_path_factory.mktemp("env"), environment, cluster) if cluster else None
            cache[key] = build_settings(load_settings(environment, root))
        return cache[key]

    return get


@pytest.fixture
def build_stack(_stack_builds: Callable[[str, str | None], BuiltStack]) -> Callable[..., BuiltStack]:
    """``build_stack(environment, cluster=None)`` -> the recorded build (do not mutate it)."""

    def _build(environment: str, cluster: str | None = None) -> BuiltStack:
        return _stack_builds(environment, cluster)

    return _build


@pytest.fixture
def envdir(tmp_path: Path) -> Path:
    """A writable copy of the repository's environments/ (without stack files)."""
    root = tmp_path / "environments"
    shutil.copytree(REPO_ENVIRONMENTS, root, ignore=shutil.ignore_patterns("stacks"))
    return root
