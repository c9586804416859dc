"""`smartnation verify` and the status health column: the pure parts, with fakes for the cluster.

The checks against a running environment are in tests/integration/test_verify.py."""

from __future__ import annotations

import argparse
import io
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from smartnation.cli import exit_codes, status, verify
from smartnation.cli.health import WorkloadReadiness, parse_readiness, summarise
from smartnation.cli.verify import Check, CheckResult, report_line, run_check, select_checks, summary_line
from smartnation.cli.verify_checks import CheckFailed, check_workloads, container_security_problems
from smartnation.cli.verify_target import class_password, mqtt_plan, target_from_outputs
from smartnation.settings import SettingsError, load_settings
from tests.unit.harness import REPO_ENVIRONMENTS

pytestmark = pytest.mark.unit

# The shape `smartnation outputs staging` prints (values as the local staging has them).
OUTPUTS = {
    "cluster": "dusseldorf-test",
    "environment": "staging",
    "namespace": "smartnation-staging",
    "mqtt_endpoint": "mqtts://mqtt.staging.dus.smartnation.test:8883",
    "mqtt_load_balancer_address": "10.215.0.32",
    "deployed_releases": {
        "chart_version": "0.2.0",
        "helm_releases": {"open-data-api": "staging-open-data-api", "device-registry": "staging-device-registry"},
    },
}


# --- outputs, secrets, device classes ---------------------------------------------------------


def test_the_target_comes_from_the_stack_outputs():
    target = target_from_outputs("staging", OUTPUTS)
    assert (target.cluster, target.namespace) == ("dusseldorf-test", "smartnation-staging")
    assert (target.mqtt_hostname, target.mqtt_port, target.mqtt_address) == (
        "mqtt.staging.dus.smartnation.test",
        8883,
        "10.215.0.32",
    )
    assert target.api_releases["open-data-api"] == "staging-open-data-api"


@pytest.mark.parametrize(
    ("phase", "serving"), [("replicate", "dusseldorf-test"), ("cutover", "monaco-onprem"), (None, "dusseldorf-test")]
)
def test_during_a_move_the_target_is_the_cluster_serving_the_environment(phase: str | None, serving: str):
    """The cutover switches the endpoints to the new site; verify checks the site that serves."""
    move = {"to": "monaco-onprem", "phase": phase, "serving": serving} if phase else {"to": "monaco-onprem"}
    target = target_from_outputs("staging", {**OUTPUTS, "move": move})
    assert target.cluster == serving


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"namespace": None}, "namespace"),
        ({"mqtt_endpoint": "mqtt://plain:1883"}, "mqtt_endpoint"),
        ({"mqtt_load_balancer_address": "pending"}, "mqtt_load_balancer_address"),
        ({"deployed_releases": {"chart_version": "0.2.0"}}, "deployed_releases.helm_releases"),
    ],
)
def test_a_missing_or_malformed_output_is_named(change: dict[str, Any], key: str):
    outputs = {k: v for k, v in {**OUTPUTS, **change}.items() if v is not None}
    with pytest.raises(SettingsError) as error:
        target_from_outputs("staging", outputs)
    assert "stack outputs of staging" in str(error.value) and key in str(error.value)


def test_the_plan_publishes_as_a_sensor_on_its_topic_and_tries_another_devices_topic():
    classes = load_settings("staging", REPO_ENVIRONMENTS).broker.device_classes
    plan = mqtt_plan(classes, "dev-1", subscriber="telemetry-ingest")
    by_name = {c.name: c for c in classes}
    assert not by_name[plan.device_class].internal
    from paho.mqtt.client import topic_matches_sub

    allowed, heard = by_name[plan.device_class].publish, by_name["telemetry-ingest"].subscribe
    assert any(topic_matches_sub(f, plan.device_topic) for f in allowed)
    # The device's own id in its own topic; the forbidden one is another device's of the same
    # class, which the per-device pattern ACL refuses and the ingest would hear.
    assert plan.device_topic.split("/")[2] == "dev-1"
    assert plan.forbidden_topic.split("/")[2] != "dev-1"
    assert plan.forbidden_topic.replace(plan.forbidden_topic.split("/")[2], "dev-1") == plan.device_topic
    assert all(any(topic_matches_sub(f, t) for f in heard) for t in (plan.device_topic, plan.forbidden_topic))
    assert plan.command_topic is not None and "dev-1" in plan.command_topic


def test_a_chosen_class_without_commands_has_no_command_topic():
    classes = load_settings("staging", REPO_ENVIRONMENTS).broker.device_classes
    receivers = {c.name for c in classes if c.subscribe}
    quiet = next(c.name for c in classes if c.publish and not c.subscribe)
    plan = mqtt_plan(classes, "dev-1", "telemetry-ingest", device_class=quiet)
    assert plan.device_class == quiet not in receivers and plan.command_topic is None


@pytest.mark.parametrize(("subscriber", "device_class"), [("nobody", None), ("telemetry-ingest", "device-registry")])
def test_a_plan_that_cannot_be_made_names_the_setting(subscriber: str, device_class: str | None):
    classes = load_settings("staging", REPO_ENVIRONMENTS).broker.device_classes
    with pytest.raises(SettingsError, match="broker.device_classes"):
        mqtt_plan(classes, "dev-1", subscriber, device_class)


@dataclass
class _ConfigValue:
    value: str
    secret: bool = True


def test_class_passwords_come_from_the_stack_secrets():
    config = {"smartnation:broker-password-telemetry-ingest": _ConfigValue("s3cret")}
    assert class_password("staging", config, "telemetry-ingest") == "s3cret"
    with pytest.raises(SettingsError, match=r"Pulumi\.staging\.yaml.*broker-password-device-registry"):
        class_password("staging", config, "device-registry")


# --- report, exit code, selection ------------------------------------------------------------


def _check(name: str, run=lambda _ctx: "fine", limit: float = 5) -> Check:  # noqa: ANN001
    return Check(name, run, limit)


CHECKS = (_check("first"), _check("second"), _check("third"))


def test_selection_keeps_the_run_order_and_refuses_unknown_names():
    assert [c.name for c in select_checks(CHECKS)] == ["first", "second", "third"]
    assert [c.name for c in select_checks(CHECKS, only=["third", "first"])] == ["first", "third"]
    assert [c.name for c in select_checks(CHECKS, skip=["second"])] == ["first", "third"]
    with pytest.raises(SettingsError, match="unknown check; known: first, second, third"):
        select_checks(CHECKS, only=["fourth"])
    with pytest.raises(SettingsError, match="leaves no check"):
        select_checks(CHECKS, only=["first"], skip=["first"])


def test_every_real_check_has_a_distinct_name_and_a_bound():
    names = [c.name for c in verify.CHECKS]
    assert len(set(names)) == len(names) and all(0 < c.limit <= 600 for c in verify.CHECKS)
    # The backup check's limit covers its three Jobs' own waits (each deadline plus 30 s to read).
    from smartnation.cli import verify_checks as vc

    backup = next(c for c in verify.CHECKS if c.name == "backup-restores")
    assert backup.limit >= vc.BACKUP_JOB_SECONDS + 30 + vc.LIST_JOB_SECONDS + vc.RESTORE_JOB_SECONDS + 30
    # The open-data check reads what the publish check sent: publish runs first.
    assert names.index("broker-tls-publish") < names.index("reading-in-open-data-api")


def test_report_lines_say_pass_or_fail_the_check_its_time_and_what_it_saw():
    ok = report_line(CheckResult("workloads-ready", True, 0.24, "15/15 ready"), width=20)
    bad = report_line(CheckResult("broker-acl", False, 12.0, "delivered"), width=20)
    assert ok.startswith("PASS  workloads-ready ") and "0.2s" in ok and ok.endswith("15/15 ready")
    assert bad.startswith("FAIL  broker-acl ") and "12.0s" in bad and bad.endswith("delivered")
    # Aligned: the time column starts at the same place on every line.
    assert ok.index("s  15/15") == bad.index("s  delivered")


def test_the_summary_and_the_exit_code_follow_the_failures():
    passed = [CheckResult("a", True, 1, ""), CheckResult("b", True, 1, "")]
    failed = [*passed, CheckResult("c", False, 1, "no")]
    assert summary_line("staging", passed, 2.0) == "verify staging: 2/2 passed in 2.0s"
    assert summary_line("staging", failed, 3.0) == "verify staging: 2/3 passed in 3.0s; FAILED: c"
    assert verify.exit_code(passed) == exit_codes.OK
    assert verify.exit_code(failed) == exit_codes.FAILED
    assert verify.exit_code([]) == exit_codes.FAILED  # nothing checked is no pass


def _raise(error: Exception):  # noqa: ANN202
    def run(_ctx):  # noqa: ANN001, ANN202
        raise error

    return run


def test_a_check_fails_on_its_own_finding_on_a_bug_and_past_its_bound():
    found = run_check(_check("found", _raise(CheckFailed("2/3 ready"))), ctx=None)
    bug = run_check(_check("bug", _raise(ZeroDivisionError("division by zero"))), ctx=None)
    slow = run_check(_check("slow", lambda _ctx: time.sleep(5) or "late", limit=0.2), ctx=None)
    assert (found.passed, found.detail) == (False, "2/3 ready")
    assert (bug.passed, bug.detail) == (False, "ZeroDivisionError: division by zero")
    assert not slow.passed and slow.detail == "no answer within 0.2s" and slow.seconds < 2


@dataclass
class _Recorder:
    calls: list[tuple] = field(default_factory=list)

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        self.calls.append((*args[1:], kwargs))


@pytest.mark.parametrize(
    ("checks", "argv", "code", "recorded"),
    [
        ((_check("a"), _check("b")), [], exit_codes.OK, (2, 2, {"complete": True})),
        ((_check("a"), _check("b", _raise(CheckFailed("no")))), [], exit_codes.FAILED, (1, 2, {"complete": True})),
        ((_check("a"), _check("b")), ["--check", "a"], exit_codes.OK, (1, 1, {"complete": False})),
    ],
)
def test_the_command_prints_a_line_per_check_and_records_the_run(monkeypatch, capsys, checks, argv, code, recorded):
    recorder = _Recorder()
    ctx = _FakeContext()
    monkeypatch.setattr(verify, "CHECKS", checks)
    monkeypatch.setattr(verify, "build_context", lambda _args: ctx)
    monkeypatch.setattr(verify, "record_verify", recorder)
    args = _parse(["verify", "staging", *argv])

    assert verify.cmd_verify(args) == code
    assert ctx.retired == 1, "verify must delete the device certificates it made, pass or fail"
    out = capsys.readouterr().out.splitlines()
    assert len(out) == recorded[1] + 1 and out[-1].startswith(f"verify staging: {recorded[0]}/{recorded[1]} passed")
    ((when, *counts),) = recorder.calls
    assert when.endswith("Z") and tuple(counts) == recorded


def test_no_record_records_nothing(monkeypatch):
    recorder = _Recorder()
    monkeypatch.setattr(verify, "CHECKS", (_check("a"),))
    monkeypatch.setattr(verify, "build_context", lambda _args: _FakeContext())
    monkeypatch.setattr(verify, "record_verify", recorder)
    monkeypatch.setattr("sys.stdout", io.StringIO())
    assert verify.cmd_verify(_parse(["verify", "staging", "--no-record"])) == exit_codes.OK
    assert recorder.calls == []


def test_a_negative_bound_is_refused_by_the_parser():
    with pytest.raises(SystemExit):
        _parse(["verify", "staging", "--reading-bound", "-1"])
    assert _parse(["verify", "staging", "--reading-bound", "2.5"]).reading_bound == 2.5
    # Without the option, the environment's own bound applies (build_context asks reading_bound).
    assert _parse(["verify", "staging"]).reading_bound is None
    assert verify.reading_bound(None, 10) == 10 and verify.reading_bound(0.0, 10) == 0.0


def _parse(argv: list[str]) -> argparse.Namespace:
    from smartnation.cli.main import build_parser

    return build_parser().parse_args(argv)


@dataclass
class _FakeKubectl:
    items_by_kind: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    context: str = "dusseldorf-test"
    namespace: str = "smartnation-staging"

    def items(self, kinds: str, *_selector: str, timeout: float = 30) -> list[dict[str, Any]]:
        return self.items_by_kind.get(kinds, [])


@dataclass
class _FakeContext:
    kubectl: Any = field(default_factory=_FakeKubectl)
    target: Any = field(default_factory=lambda: target_from_outputs("staging", OUTPUTS))
    device_id: str = "smartnation-verify-test"
    plan: Any = field(default_factory=lambda: argparse.Namespace(device_class="traffic-sensor"))
    reading_bound: float = 10.0
    settle: float = 0.0
    retired: int = 0

    def retire_identities(self) -> None:
        self.retired += 1


# --- workloads and pods ------------------------------------------------------------------------


def _workload(kind: str, name: str, desired: int | None, ready: int | None) -> dict[str, Any]:
    spec = {} if desired is None else {"replicas": desired}
    status_ = {} if ready is None else {"readyReplicas": ready}
    return {"kind": kind, "metadata": {"name": name}, "spec": spec, "status": status_}


WORKLOADS = [
    _workload("StatefulSet", "staging-broker", 3, 3),
    _workload("Deployment", "staging-open-data-api", 2, 2),
    _workload("StatefulSet", "staging-database-primary", None, 1),  # replicas defaults to 1
]


def test_readiness_sums_ready_against_desired_and_names_what_is_short():
    assert summarise(parse_readiness(WORKLOADS)) == "6/6 ready"
    short = [*WORKLOADS[:2], _workload("StatefulSet", "staging-database-primary", 1, None)]
    assert summarise(parse_readiness(short)) == "5/6 ready (statefulset/staging-database-primary 0/1)"
    assert summarise([]) == "no workloads"
    # A surge above desired is not counted as more than ready.
    assert summarise([WorkloadReadiness("deployment", "x", 3, 2)]) == "2/2 ready"


def test_the_workloads_check_fails_on_a_scaled_down_workload():
    ready = _FakeContext(kubectl=_FakeKubectl({"deployments,statefulsets": WORKLOADS}))
    assert check_workloads(ready) == "6/6 ready in 3 workloads"
    down = [_workload("StatefulSet", "staging-broker", 3, 1), *WORKLOADS[1:]]
    with pytest.raises(CheckFailed, match=r"4/6 ready \(statefulset/staging-broker 1/3\)"):
        check_workloads(_FakeContext(kubectl=_FakeKubectl({"deployments,statefulsets": down})))
    with pytest.raises(CheckFailed, match="no Deployment or StatefulSet"):
        check_workloads(_FakeContext())


def _pod(pod_context: dict, *containers: dict) -> dict[str, Any]:
    return {
        "metadata": {"name": "p"},
        "spec": {
            "securityContext": pod_context,
            "containers": [{"name": f"c{i}", "securityContext": c} for i, c in enumerate(containers)],
        },
    }


def test_pod_specs_must_run_non_root_on_a_read_only_root():
    restricted = {"readOnlyRootFilesystem": True, "runAsNonRoot": True}
    assert container_security_problems(_pod({}, restricted)) == []
    # Inherited from the Pod, or implied by a non-zero user.
    assert container_security_problems(_pod({"runAsNonRoot": True}, {"readOnlyRootFilesystem": True})) == []
    assert container_security_problems(_pod({"runAsUser": 10001}, {"readOnlyRootFilesystem": True})) == []
    assert container_security_problems(_pod({}, {"readOnlyRootFilesystem": True})) == ["p/c0 may run as root"]
    assert container_security_problems(_pod({}, {**restricted, "runAsUser": 0})) == ["p/c0 may run as root"]
    assert container_security_problems(_pod({}, {"runAsNonRoot": True})) == ["p/c0 has a writable root filesystem"]


# --- status: the health column ---------------------------------------------------------------


def _status(**fields: Any) -> status.EnvironmentStatus:
    update = {"kind": "update", "result": "succeeded", "version": 7, "time": "2026-11-29T01:44:35Z"}
    return status.EnvironmentStatus(
        "staging", "dusseldorf-test", deployed=True, releases={}, releases_match_file=True, last_update=update, **fields
    )


def test_status_shows_ready_replicas_and_the_last_passing_verify():
    workloads = [{"kind": "statefulset", "name": "b", "ready": 2, "desired": 3}]
    verified = _status(workloads=workloads, last_verify_passed="2026-11-29T02:10:00Z")
    never = _status(workloads=workloads)
    unknown = _status(health_error="KubectlError: `get deployments,statefulsets` failed: connection refused")
    assert status.health_text(verified) == "2/3 ready (statefulset/b 2/3), verified 2026-11-29T02:10:00Z"
    assert status.health_text(never).endswith("never verified")
    assert status.health_text(unknown).startswith("unknown (KubectlError")
    assert status.health_text(_status()) == "not checked"
    table = status.render([verified]).splitlines()
    assert table[0].split()[-1] == "health" and table[1].endswith("verified 2026-11-29T02:10:00Z")


def test_a_check_that_waits_for_a_reading_gets_the_reading_bound_on_top_of_its_limit():
    waits = Check("waits", lambda _ctx: time.sleep(0.5) or "arrived", limit=0.1, plus_bound=True)
    assert run_check(waits, ctx=argparse.Namespace(reading_bound=2)).passed
    assert not run_check(waits, ctx=argparse.Namespace(reading_bound=0)).passed


def test_the_workloads_check_waits_for_workloads_to_settle_within_the_bound():
    down = [_workload("Deployment", "staging-open-data-api", 2, 0), *WORKLOADS[:1]]
    answers = iter([down, down, WORKLOADS])
    kubectl = _FakeKubectl({})
    kubectl.items = lambda kind: next(answers)  # type: ignore[method-assign]
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    ctx = _FakeContext(kubectl=kubectl, settle=60.0)
    assert check_workloads(ctx, clock=lambda: now[0], sleep=sleep) == "6/6 ready in 3 workloads (after 4s settling)"
    assert slept == [2.0, 2.0]


def test_the_workloads_check_fails_once_the_settle_bound_has_passed():
    down = [_workload("Deployment", "staging-open-data-api", 2, 0)]
    kubectl = _FakeKubectl({"deployments,statefulsets": down})
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    ctx = _FakeContext(kubectl=kubectl, settle=10.0)
    with pytest.raises(CheckFailed, match=r"0/2 ready .* after 10s settling \(verify.settle_seconds\)"):
        check_workloads(ctx, clock=lambda: now[0], sleep=sleep)
    assert now[0] == 10.0
