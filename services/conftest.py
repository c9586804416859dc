"""Fixtures shared by the services' tests. The platform's daemons start once per session and
only when a contract test asks for them."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from service_testing import daemons


@pytest.fixture(scope="session")
def platform() -> Iterator[daemons.Platform]:
    with daemons.platform(brokers=2) as running:
        yield running


@pytest.fixture()
def service_dir() -> Iterator[Path]:
    """Where a service's log goes (the service itself writes nothing)."""
    with tempfile.TemporaryDirectory(prefix="smartnation-svc-") as directory:
        yield Path(directory)
