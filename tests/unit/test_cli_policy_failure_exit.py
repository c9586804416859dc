"""A mandatory policy that fails the engine exits POLICY_VIOLATION (3), naming the rules; the
engine's own error says only "preview failed", so the exit code comes from the violations it printed."""

from __future__ import annotations

import argparse
import logging

import pytest
from pulumi import automation as auto
from pulumi.automation._cmd import CommandResult

from smartnation.cli import exit_codes
from smartnation.cli.main import run
from smartnation.cli.policy import mandatory_rules

pytestmark = pytest.mark.unit

PACK = "smartnation-guardrails@v0.1.0"


def _violation(level: str, severity: str, rule: str, resource: str, text: str) -> str:
    return f"    {PACK} [{level}] [severity: {severity}]  {rule}  ({resource}){text}"


# What the engine printed on the local clusters when the pack refused replicate's preview (shortened).
REFUSED = "\n".join(
    [
        "Previewing update (dev):",
        "Policies:",
        _violation("mandatory", "critical", "no-public-data-services", "kubernetes:core/v1:Service: a", "No LB."),
        _violation("mandatory", "high", "allowed-registries", "kubernetes:apps/v1:StatefulSet: b", "Registries."),
        _violation("mandatory", "high", "allowed-registries", "kubernetes:apps/v1:StatefulSet: b", "Registries."),
        _violation("advisory", "low", "resource-limits-set", "kubernetes:apps/v1:Deployment: c", "Advice."),
    ]
)


def _failing(stdout: str, stderr: str = "error: preview failed"):
    def handler(_: argparse.Namespace) -> int:
        raise auto.CommandError(CommandResult(stdout=stdout, stderr=stderr, code=255))

    return handler


def test_the_rules_are_read_from_the_engines_output() -> None:
    assert mandatory_rules(REFUSED) == ["allowed-registries", "no-public-data-services"]
    assert mandatory_rules("[mandatory]  rule-without-severity  (x)") == ["rule-without-severity"]
    assert mandatory_rules("[advisory] [severity: low]  resource-limits-set  (x)") == []


def test_a_mandatory_violation_exits_policy_violation_naming_the_rules(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="smartnation"):
        code = run(argparse.Namespace(), _failing(REFUSED))
    assert code == exit_codes.POLICY_VIOLATION
    assert "a mandatory policy failed (allowed-registries, no-public-data-services)" in caplog.text


def test_an_advisory_violation_beside_another_failure_is_not_a_policy_refusal(caplog: pytest.LogCaptureFixture) -> None:
    advisory_only = "\n".join(line for line in REFUSED.splitlines() if "[mandatory]" not in line)
    with caplog.at_level(logging.ERROR, logger="smartnation"):
        code = run(argparse.Namespace(), _failing(advisory_only, "error: update failed: timed out"))
    assert code == exit_codes.FAILED
    assert "pulumi failed:" in caplog.text and "error: update failed: timed out" in caplog.text
    assert "mandatory" not in caplog.text
