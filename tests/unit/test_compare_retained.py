"""`compare.read_retained`, which a move's verification calls on each site: the broker's retained
messages, read through the reader API's Pod with that API's topics, and nothing else of the side
(no object storage, no credentials); an environment whose reader API subscribes to nothing reads
nothing."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from smartnation.cli import compare
from smartnation.cli.compare_data import MARKER

pytestmark = pytest.mark.unit

SELECTOR = "app.kubernetes.io/instance=dev-telemetry-ingest,app.kubernetes.io/component=telemetry-ingest"


@dataclass(frozen=True)
class FakeSide(compare.Side):
    """A side whose kubectl answers from the test: two Running reader Pods (and a Pending one)."""

    calls: list[tuple[tuple[str, ...], str | None]] = field(default_factory=list)
    printed: str = f"{MARKER}|retained|city/traffic/t-1/telemetry|sha256=ab\n{MARKER}-DONE\n"

    def kubectl(self, *args: str, input: str | None = None, timeout: float = 120) -> str:
        self.calls.append((args, input))
        if args[:2] == ("get", "pods"):
            assert args[2:] == ("-l", SELECTOR, "-o", "json"), args
            pods = [
                {"metadata": {"name": name}, "status": {"phase": phase}, "spec": {"containers": [{"name": "api"}]}}
                for name, phase in (("dev-telemetry-ingest-b", "Running"), ("dev-telemetry-ingest-a", "Pending"),
                                    ("dev-telemetry-ingest-c", "Running"))
            ]  # fmt: skip
            return json.dumps({"items": pods})
        assert args[0] == "exec", args
        return self.printed


def side() -> FakeSide:
    return FakeSide("dusseldorf", "ctx", "ns", "dev", {})


def settings(*classes: Any) -> Any:
    """What read_retained reads of the settings: the broker's classes."""
    return SimpleNamespace(broker=SimpleNamespace(device_classes=list(classes)))


def broker_class(name: str, subscribe: tuple[str, ...]) -> SimpleNamespace:
    return SimpleNamespace(name=name, subscribe=subscribe)


READER = broker_class("telemetry-ingest", ("city/+/+/telemetry", "city/+/+/status"))


def test_the_retained_messages_are_read_through_a_running_reader_pod_with_its_topics(caplog) -> None:
    reading = side()
    with caplog.at_level(logging.INFO, logger="smartnation"):
        snapshot = compare.read_retained(reading, settings(broker_class("other", ("x/#",)), READER), 2.5)
    assert snapshot.where == "dusseldorf/ns"
    assert snapshot.sections["retained"] == {"city/traffic/t-1/telemetry": "sha256=ab"}
    assert [n for n, items in snapshot.sections.items() if items] == ["retained"]
    (args, given), = [(a, i) for a, i in reading.calls if a[0] == "exec"]  # fmt: skip
    assert args[:5] == ("exec", "-i", "dev-telemetry-ingest-b", "-c", "api"), "the first Running Pod, by name"
    # The reader's topics and how long it waits for the retained messages; no storage login.
    assert json.loads(given) == {"topics": ["city/+/+/telemetry", "city/+/+/status"], "settle": 2.5}
    assert caplog.messages == ["dusseldorf/ns: reading the broker's retained messages"]


def test_without_topics_for_the_reader_api_nothing_is_read() -> None:
    reading = side()
    snapshot = compare.read_retained(reading, settings(broker_class("other", ("x/#",))), 2.5)
    assert snapshot.where == "dusseldorf/ns"
    assert not any(snapshot.sections.values())
    assert reading.calls == [], "no Pod looked up, no reader run"


def test_a_reader_that_stops_early_is_an_error_naming_the_side() -> None:
    reading = FakeSide("dusseldorf", "ctx", "ns", "dev", {}, printed="Traceback: broker refused the login\n")
    with pytest.raises(compare.CompareError, match="^dusseldorf/ns: the reader in dev-telemetry-ingest-b stopped"):
        compare.read_retained(reading, settings(READER), 2.5)
