"""The preview summary from a recorded stream of engine events (as the Automation API delivers them)."""

from __future__ import annotations

import pytest
from pulumi.automation import EngineEvent

from smartnation.cli import exit_codes
from smartnation.cli.drift import DriftCollector
from smartnation.cli.preview import exit_code_for
from smartnation.cli.report import (
    ERROR,
    MARKER,
    OK,
    POLICY,
    EnvironmentPreview,
    EventCollector,
    is_stateful,
    render_markdown,
)

pytestmark = pytest.mark.unit

STACK = "urn:pulumi:staging::smartnation::"
DB = "smartnation:database:Database"
APIS = "smartnation:city_apis:CityApis"
GUARD = "smartnation:guardrails:Guardrails"


def urn(types: str, name: str) -> str:
    return f"{STACK}{types}::{name}"


def step(kind: str, op: str, types: str, name: str, **extra) -> dict:
    own = types.split("$")[-1]
    return {
        "sequence": 0,
        "timestamp": 0,
        kind: {"metadata": {"op": op, "urn": urn(types, name), "type": own, "provider": "", **extra}, "planning": True},
    }


def policy(name: str, level: str, message: str, resource: str | None) -> dict:
    return {
        "sequence": 0,
        "timestamp": 0,
        "policyEvent": {
            "message": message,
            "color": "never",
            "policyName": name,
            "policyPackName": "smartnation-guardrails",
            "policyPackVersion": "0.1.0",
            "policyPackVersionTag": "0.1.0",
            "enforcementLevel": level,
            **({"resourceUrn": resource} if resource else {}),
        },
    }


DEPLOYMENT = f"{APIS}$kubernetes:apps/v1:Deployment"
STATEFULSET = f"{DB}$kubernetes:apps/v1:StatefulSet"
DB_SECRET = f"{DB}$kubernetes:core/v1:Secret"
NAMESPACE = f"{GUARD}$kubernetes:core/v1:Namespace"
CONFIGMAP = f"{APIS}$kubernetes:core/v1:ConfigMap"

RECORDED = [
    {"sequence": 0, "timestamp": 0, "preludeEvent": {"config": {}}},
    step("resourcePreEvent", "same", "pulumi:pulumi:Stack", "smartnation-staging"),
    step("resourcePreEvent", "update", DEPLOYMENT, "staging-device-registry", diffs=["spec"]),
    step("resOutputsEvent", "update", DEPLOYMENT, "staging-device-registry", diffs=["spec"]),
    # a replacement arrives as three steps of one resource
    step("resourcePreEvent", "create-replacement", STATEFULSET, "staging-db", keys=["spec.volumeClaimTemplates"]),
    step("resourcePreEvent", "replace", STATEFULSET, "staging-db", keys=["spec.volumeClaimTemplates"]),
    step("resourcePreEvent", "delete-replaced", STATEFULSET, "staging-db"),
    step("resourcePreEvent", "delete", DB_SECRET, "staging-db-old-role"),
    step("resourcePreEvent", "create", CONFIGMAP, "staging-open-data-api-config"),
    step("resourcePreEvent", "same", NAMESPACE, "staging-namespace"),
    step("resourcePreEvent", "read", "kubernetes:core/v1:Secret", "external"),
    policy(
        "no-latest-image",
        "mandatory",
        "image swr.../device-registry:latest has no version tag",
        urn(DEPLOYMENT, "staging-device-registry"),
    ),
    policy(
        "topology-spread",
        "advisory",
        "spread over topology.kubernetes.io/zone",
        urn(DEPLOYMENT, "staging-device-registry"),
    ),
    policy("namespace-default-deny", "mandatory", "Namespace smartnation-staging | has no deny-all", None),
    {
        "sequence": 0,
        "timestamp": 0,
        "diagnosticEvent": {"message": "mandatory policy violation", "color": "never", "severity": "info"},
    },
    {
        "sequence": 0,
        "timestamp": 0,
        "summaryEvent": {"maybeCorrupt": False, "durationSeconds": 3, "resourceChanges": {"update": 1, "replace": 1}},
    },
]


def collect(events: list[dict]) -> EventCollector:
    collector = EventCollector()
    for data in events:
        collector(EngineEvent.from_json(data))
    return collector


def preview_of(events: list[dict], failed: bool = False) -> EnvironmentPreview:
    result = EnvironmentPreview.from_collector(
        "staging", "dusseldorf-test", collect(events), reasons=("environments/staging.yaml",)
    )
    result.finish(engine_failed=failed, output_tail="error: preview failed")
    return result


def test_steps_are_classified_once_per_resource():
    result = preview_of(RECORDED)
    assert result.counts() == {"create": 1, "update": 1, "replace": 1, "delete": 1, "same": 2}
    replaced = next(s for s in result.steps if s.kind == "replace")
    assert replaced.replace_keys == ("spec.volumeClaimTemplates",)


def test_stateful_means_data_kinds_and_anything_inside_a_data_component():
    assert is_stateful(urn(STATEFULSET, "x"))
    assert is_stateful(urn(DB_SECRET, "x"))
    assert is_stateful(urn(NAMESPACE, "x"))
    assert is_stateful(urn("kubernetes:core/v1:PersistentVolumeClaim", "x"))
    assert not is_stateful(urn(DEPLOYMENT, "x"))
    assert not is_stateful(urn(CONFIGMAP, "x"))
    result = preview_of(RECORDED)
    assert [(s.kind, s.name) for s in result.destructive] == [
        ("delete", "staging-db-old-role"),
        ("replace", "staging-db"),
    ]


def test_policy_violations_are_kept_with_level_and_resource():
    result = preview_of(RECORDED, failed=True)
    assert result.result == POLICY
    assert sorted(v.policy for v in result.mandatory_violations) == ["namespace-default-deny", "no-latest-image"]
    stack_level = next(v for v in result.violations if v.policy == "namespace-default-deny")
    assert stack_level.resource == "(stack)"
    assert exit_code_for([result]) == exit_codes.POLICY_VIOLATION


def test_the_markdown_calls_out_stateful_changes_before_violations_and_details():
    text = render_markdown([preview_of(RECORDED, failed=True)], ["Compared with `origin/main`."])
    assert text.startswith(MARKER + "\n")
    section = text[text.index("### staging on dusseldorf-test") :]
    caution = section.index("[!CAUTION]")
    counts = section.index("| create | update | replace | delete | unchanged |")
    violations = section.index("**Policy violations**")
    details = section.index("<details>")
    assert caution < counts < violations < details
    assert "**replace** `apps/v1:StatefulSet` `staging-db`" in section
    assert "| 1 | 1 | 1 | 1 | 2 |" in section
    # mandatory first; a `|` inside a message does not break the table
    rows = [line for line in section.splitlines() if line.startswith("| mandatory") or line.startswith("| advisory")]
    assert [r.split("|")[1].strip() for r in rows] == ["mandatory", "mandatory", "advisory"]
    assert "smartnation-staging \\| has no deny-all" in section
    assert "Affected by `environments/staging.yaml`." in section
    overview = text[: text.index("### staging")]
    assert "| staging | dusseldorf-test | 1 | 1 | 1 | 1 | 2 | 2/1 | **mandatory policy violation** |" in overview


def test_an_engine_error_without_violations_is_a_failure_with_its_message():
    events = [e for e in RECORDED if "policyEvent" not in e]
    events.append(
        {
            "sequence": 0,
            "timestamp": 0,
            "diagnosticEvent": {
                "message": "kubernetes:apps/v1:Deployment resource 'x' has a problem: unreachable",
                "color": "never",
                "severity": "error",
            },
        }
    )
    result = preview_of(events, failed=True)
    assert result.result == ERROR
    assert exit_code_for([result]) == exit_codes.FAILED
    assert "unreachable" in render_markdown([result])


def test_a_clean_preview_and_no_environment_at_all():
    clean = preview_of([step("resourcePreEvent", "same", NAMESPACE, "n")])
    assert clean.result == OK and exit_code_for([clean]) == exit_codes.OK
    assert "No changes." in render_markdown([clean])
    nothing = render_markdown([], ["Compared with `origin/main`: 1 file(s) changed."])
    assert nothing.startswith(MARKER) and "No environment is affected by this change." in nothing
    assert exit_code_for([]) == exit_codes.OK


def test_drift_is_what_a_refresh_would_change():
    collector = DriftCollector()
    for data in [
        step("resourcePreEvent", "refresh", "pulumi:pulumi:Stack", "smartnation-staging", diffs=["x"]),
        step("resOutputsEvent", "refresh", DEPLOYMENT, "unchanged"),
        step(
            "resOutputsEvent",
            "update",
            DEPLOYMENT,
            "scaled-by-hand",
            detailedDiff={"spec.replicas": {"diffKind": "update", "inputDiff": False}},
        ),
        step("resOutputsEvent", "delete", CONFIGMAP, "deleted-by-hand"),
    ]:
        collector(EngineEvent.from_json(data))
    assert sorted(collector.drifted.values()) == [
        "apps/v1:Deployment scaled-by-hand (spec.replicas)",
        "core/v1:ConfigMap deleted-by-hand (gone)",
    ]
