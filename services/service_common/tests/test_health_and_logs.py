"""Health endpoints and JSON logs."""

from __future__ import annotations

import json
import logging
import time

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from service_common.health import Check, health_router, run_checks
from service_common.logging import JsonFormatter

pytestmark = pytest.mark.unit


def failing() -> str:
    raise ConnectionError("connection refused")


def test_checks_report_each_dependency() -> None:
    ok, results = run_checks([Check("db", lambda: "PostgreSQL 15"), Check("s3", failing)])
    assert not ok
    assert results["db"]["ok"] and results["db"]["detail"] == "PostgreSQL 15"
    assert results["s3"] == {"ok": False, "detail": "ConnectionError: connection refused"}


def test_a_hanging_dependency_is_not_ready_within_the_deadline() -> None:
    started = time.monotonic()
    ok, results = run_checks([Check("slow", lambda: time.sleep(2) or "late")], timeout_s=0.2)
    assert not ok and "no answer" in str(results["slow"]["detail"])
    assert time.monotonic() - started < 3


@pytest.mark.parametrize(("live", "ready"), [("/healthz", "/readyz"), ("/healthz/live", "/healthz/ready")])
def test_routes(live: str, ready: str) -> None:
    state = {"up": True}
    app = FastAPI()
    app.include_router(health_router(lambda: [Check("db", lambda: "ok" if state["up"] else failing())]))
    client = TestClient(app)
    assert client.get(live).json() == {"status": "alive"}
    assert client.get(ready).status_code == 200
    state["up"] = False
    response = client.get(ready)
    assert response.status_code == 503 and response.json()["ready"] is False
    assert client.get(live).status_code == 200  # alive although not ready


def test_json_log_lines_carry_extras() -> None:
    record = logging.makeLogRecord(
        {"name": "x", "levelname": "WARNING", "levelno": 30, "msg": "rejected %s", "args": ("one",), "reason": "ts"}
    )
    line = json.loads(JsonFormatter("telemetry-ingest", "dev").format(record))
    assert line["message"] == "rejected one"
    assert line["reason"] == "ts" and line["level"] == "warning"
    assert line["service"] == "telemetry-ingest" and line["environment"] == "dev"
