"""`smartnation move ENV --status`: the declared move and each cluster's view of it, with kubectl
(and the psql it runs in the database Pod) stood in at the process boundary by a fake of two
clusters. The report, the JSON form, every failure path (named, exit 8, never a traceback), bad
input (the loader's error, exit 2) and that it only ever reads.

The real thing, on a replicate phase streaming between the local clusters, is
tests/integration/test_move_replicate.py.
"""

from __future__ import annotations

import base64
import json
import logging
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from smartnation.cli import exit_codes
from smartnation.cli.main import build_parser, main
from smartnation.cli.move_status import STATUS_SQL
from tests.unit.harness import REPO_ENVIRONMENTS

pytestmark = pytest.mark.unit

PROJECT = "smartnation-unit"
NAMESPACE = f"{PROJECT}-dev"
SOURCE, TARGET = "dusseldorf-test", "monaco-onprem"
PASSWORD = "s3cret-superuser-password"
MOVE = "move: {to: monaco-onprem, phase: replicate}\n"
LINK = "10.213.0.253"

PRIMARY_STATUS = {
    "in_recovery": False,
    "wal_lsn": "0/5000148",
    "receive_lsn": None,
    "last_replay_at": None,
    "seconds_since_last_replay": None,
    "receiver_status": None,
    "replication": [
        {
            "client_address": LINK,
            "application_name": "walreceiver",
            "state": "streaming",
            "sent_lsn": "0/5000148",
            "replay_lsn": "0/5000000",
            "lag_bytes": 328,
            "replay_lag_seconds": 0.0123,
        }
    ],
}
STANDBY_STATUS = {
    "in_recovery": True,
    "wal_lsn": "0/5000000",
    "receive_lsn": "0/5000148",
    "last_replay_at": "2026-11-29T11:45:19.887039+00:00",
    "seconds_since_last_replay": 12.5,
    "receiver_status": "streaming",
    "replication": [],
}


def _pod(name: str, phase: str = "Running") -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "postgres"}, {"name": "tls-reloader"}]},
        "status": {"phase": phase},
    }


@dataclass
class Cluster:
    """What one fake cluster holds in the environment's namespace."""

    status: dict[str, Any] | None
    namespace: bool = True
    pods: list[dict[str, Any]] = field(default_factory=lambda: [_pod("dev-database-primary-0")])
    secret: dict[str, str] = field(
        default_factory=lambda: {"POSTGRES_PASSWORD": base64.b64encode(PASSWORD.encode()).decode()}
    )
    psql: tuple[int, str, str] | None = None
    """(returncode, stdout, stderr) psql gives instead of the status line."""
    mirror_pods: list[dict[str, Any]] = field(default_factory=lambda: [mirror_pod()])
    """The bucket mirror's Pods (a move's target runs one)."""
    bridge_pods: list[dict[str, Any]] = field(default_factory=lambda: [bridge_pod()])
    """The broker bridge's Pods (a move's target runs one in replicate and cutover)."""


MIRROR_SELECTOR = "app.kubernetes.io/instance=dev-object-storage,app.kubernetes.io/component=mirror"
BRIDGE_SELECTOR = "app.kubernetes.io/instance=dev-broker,app.kubernetes.io/component=bridge"


def bridge_pod(ready: bool = True, restarts: int = 0, waiting: str | None = None) -> dict[str, Any]:
    state = {"waiting": {"reason": waiting}} if waiting else {"running": {"startedAt": "2026-11-30T08:00:00Z"}}
    return {
        "metadata": {"name": "dev-broker-bridge-5f6d"},
        "spec": {"containers": [{"name": "mosquitto"}]},
        "status": {
            "phase": "Running",
            "containerStatuses": [{"name": "mosquitto", "ready": ready, "restartCount": restarts, "state": state}],
        },
    }


def mirror_pod(ready: bool = True, restarts: int = 0, waiting: str | None = None) -> dict[str, Any]:
    state = {"waiting": {"reason": waiting}} if waiting else {"running": {"startedAt": "2026-11-30T08:00:00Z"}}
    return {
        "metadata": {"name": "dev-object-storage-mirror-7c9b"},
        "spec": {"containers": [{"name": "mirror"}, {"name": "reader"}]},
        "status": {
            "phase": "Running",
            "containerStatuses": [
                {"name": "reader", "ready": True, "restartCount": 0, "state": {"running": {}}},
                {"name": "mirror", "ready": ready, "restartCount": restarts, "state": state},
            ],
        },
    }


@dataclass
class Call:
    argv: list[str]
    input: str | None


class FakeKubectl:
    """subprocess.run for `kubectl --context C ...` against ``clusters`` (by context)."""

    def __init__(self, clusters: dict[str, Cluster], namespace: str = NAMESPACE) -> None:
        self.clusters = clusters
        self.namespace = namespace
        self.calls: list[Call] = []
        self.missing = False

    def __call__(self, argv, env=None, input=None, capture_output=False, text=False, timeout=None, **_):
        self.calls.append(Call(list(argv), input))
        if self.missing:
            raise FileNotFoundError(2, "No such file or directory", "kubectl")
        assert argv[:2] == ["kubectl", "--context"] and capture_output and text and timeout, argv
        context, rest = argv[2], list(argv[3:])
        if rest[:2] == ["config", "get-contexts"]:
            return self._done(0, "".join(f"{name}\n" for name in self.clusters))
        cluster = self.clusters.get(context)
        if cluster is None:
            return self._done(1, "", f"error: context was not found for specified context: {context}")
        if rest[:1] == ["-n"]:
            namespace, rest = rest[1], rest[2:]
            assert namespace == self.namespace, argv
        if rest[:2] == ["get", "namespace"]:
            assert rest[2] == self.namespace and "--ignore-not-found" in rest, argv
            return self._done(0, f"namespace/{self.namespace}\n" if cluster.namespace else "")
        assert cluster.namespace, f"read inside a namespace that does not exist: {argv}"
        if rest[:2] == ["get", "pods"] and rest[rest.index("-l") + 1] == MIRROR_SELECTOR:
            return self._done(0, json.dumps({"items": cluster.mirror_pods}))
        if rest[:2] == ["get", "pods"] and rest[rest.index("-l") + 1] == BRIDGE_SELECTOR:
            return self._done(0, json.dumps({"items": cluster.bridge_pods}))
        if rest[:2] == ["get", "pods"]:
            selector = rest[rest.index("-l") + 1]
            assert selector == "app.kubernetes.io/instance=dev-database,app.kubernetes.io/component=primary", argv
            return self._done(0, json.dumps({"items": cluster.pods}))
        if rest[:3] == ["get", "secret", "dev-database-credentials"]:
            return self._done(0, json.dumps({"data": cluster.secret}))
        if rest[:1] == ["exec"]:
            assert rest[1:6] == ["-i", "dev-database-primary-0", "-c", "postgres", "--"], argv
            assert input == f"{PASSWORD}\n{STATUS_SQL}", "the password first on stdin, then the query"
            if cluster.psql is not None:
                return self._done(*cluster.psql)
            return self._done(0, json.dumps(cluster.status) + "\n")
        raise AssertionError(f"unexpected kubectl call: {argv}")

    @staticmethod
    def _done(code: int, out: str, err: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess([], code, out, err)

    def contexts(self) -> set[str]:
        return {call.argv[2] for call in self.calls if call.argv[3:5] != ["config", "get-contexts"]}


@dataclass
class Output:
    value: Any
    secret: bool = False


class FakeStack:
    """The engine's stack, as far as --status reads it: its outputs (the `move` output, or none)."""

    def __init__(self, move: dict[str, Any] | None = None, error: Exception | None = None) -> None:
        self.move, self.error = move, error

    def outputs(self) -> dict[str, Output]:
        if self.error is not None:
            raise self.error
        return {"cluster": Output(SOURCE), **({"move": Output(self.move)} if self.move else {})}


APPLIED = {"to": TARGET, "phase": "replicate", "namespace": NAMESPACE, "replication_sources": [f"{LINK}/32"]}


@pytest.fixture(autouse=True)
def stack(monkeypatch) -> FakeStack:
    """The engine stood in: the stack recorded the replicate phase (a test changes it)."""
    fake = FakeStack(APPLIED)
    monkeypatch.setattr("smartnation.cli.workspace.select", lambda environment, create=True: (fake, None))
    return fake


@pytest.fixture
def project(tmp_path: Path, monkeypatch) -> Path:
    """A project with the repository's environment files (dev on Düsseldorf), its own name."""
    root = tmp_path / "project"
    shutil.copytree(REPO_ENVIRONMENTS, root / "environments", ignore=shutil.ignore_patterns("stacks", "audit"))
    (root / "Pulumi.yaml").write_text(f"name: {PROJECT}\nruntime: python\n")
    monkeypatch.setenv("SMARTNATION_PROJECT_DIR", str(root))
    monkeypatch.setenv("SMARTNATION_ENVIRONMENTS_DIR", str(root / "environments"))
    monkeypatch.setenv("SMARTNATION_KUBECONFIG", str(tmp_path / "kubeconfig"))
    return root


@pytest.fixture
def moving(project: Path) -> Path:
    """dev declares the replicate phase."""
    with (project / "environments" / "dev.yaml").open("a") as file:
        file.write(MOVE)
    return project


def clusters(**changes: Cluster) -> dict[str, Cluster]:
    both = {SOURCE: Cluster(PRIMARY_STATUS), TARGET: Cluster(STANDBY_STATUS)}
    return {**both, **{name.replace("_", "-"): cluster for name, cluster in changes.items()}}


def run(monkeypatch, caplog, capsys, fake: FakeKubectl, *args: str) -> tuple[int, str, str]:
    """`smartnation move ARGS` against ``fake``; (exit code, stdout, the errors logged)."""
    monkeypatch.setattr(subprocess, "run", fake)
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="smartnation"):
        code = main(["move", *args])
    return code, capsys.readouterr().out, caplog.text


def test_the_report_says_the_phase_and_what_each_cluster_shows(moving, monkeypatch, caplog, capsys):
    code, out, errors = run(monkeypatch, caplog, capsys, FakeKubectl(clusters()), "dev", "--status")
    assert code == exit_codes.OK, errors
    assert errors == ""
    # Each cluster's facts under its own header, the source first; the walsender's numbers as read.
    assert out.splitlines() == [
        f"dev (environments/dev.yaml): moving from {SOURCE} to {TARGET}, phase replicate",
        f"phase declared: replicate; phase last applied: replicate (to {TARGET}) (the stack's `move` output)",
        f"source {SOURCE} (context {SOURCE}), namespace {NAMESPACE}: present",
        "  database dev-database-primary-0: primary (not in recovery), WAL at 0/5000148",
        f"  replication to {LINK}: streaming, sent 0/5000148, replayed 0/5000000, lag 328 bytes, replay lag 0.012 s",
        f"target {TARGET} (context {TARGET}), namespace {NAMESPACE}: present",
        "  database dev-database-primary-0: in recovery (standby), replayed up to 0/5000000, received up to "
        "0/5000148, receiver streaming, last replayed transaction 12.5 s ago",
        "  bucket mirror dev-object-storage-mirror-7c9b: Running, ready, 0 restarts",
        "  broker bridge dev-broker-bridge-5f6d: Running, ready, 0 restarts",
        "read only: nothing was changed",
    ]


def test_the_json_form_holds_every_field_read(moving, monkeypatch, caplog, capsys):
    code, out, _ = run(monkeypatch, caplog, capsys, FakeKubectl(clusters()), "dev", "--status", "--json")
    assert code == exit_codes.OK
    status = json.loads(out)
    assert (status["phase"], status["move"]) == ("replicate", {"to": TARGET, "phase": "replicate"})
    assert (status["applied_phase"], status["applied"]) == ("replicate", {"to": TARGET, "phase": "replicate"})
    assert (status["readable"], status["problems"], status["file"]) == (True, [], "environments/dev.yaml")
    source, target = status["source"], status["target"]
    assert (source["cluster"], source["context"], source["namespace"]) == (SOURCE, SOURCE, NAMESPACE)
    assert (target["cluster"], target["namespace_exists"], target["primary_pod"]) == (
        TARGET,
        True,
        "dev-database-primary-0",
    )
    assert source["in_recovery"] is False and target["in_recovery"] is True
    assert source["replication"] == PRIMARY_STATUS["replication"]
    assert target["seconds_since_last_replay"] == 12.5 and target["receiver_status"] == "streaming"
    assert source["problem"] is None and target["problem"] is None
    # The bucket mirror and the broker bridge are read on the target only: the source runs neither.
    assert source["mirror"] is None and source["bridge"] is None
    assert target["mirror"] == {
        "pod": "dev-object-storage-mirror-7c9b",
        "phase": "Running",
        "ready": True,
        "restarts": 0,
        "waiting": None,
    }
    assert target["bridge"] == {
        "pod": "dev-broker-bridge-5f6d",
        "phase": "Running",
        "ready": True,
        "restarts": 0,
        "waiting": None,
    }


def test_a_mirror_that_keeps_failing_is_shown_with_its_reason(moving, monkeypatch, caplog, capsys):
    crashing = Cluster(STANDBY_STATUS, mirror_pods=[mirror_pod(ready=False, restarts=4, waiting="CrashLoopBackOff")])
    code, out, _ = run(monkeypatch, caplog, capsys, FakeKubectl(clusters(monaco_onprem=crashing)), "dev", "--status")
    assert code == exit_codes.OK, "read whole: the mirror's state is a fact, not a read failure"
    assert "  bucket mirror dev-object-storage-mirror-7c9b: Running, not ready (CrashLoopBackOff), 4 restarts" in (
        out.splitlines()
    )


def test_a_bridge_that_keeps_failing_is_shown_with_its_reason(moving, monkeypatch, caplog, capsys):
    crashing = Cluster(STANDBY_STATUS, bridge_pods=[bridge_pod(ready=False, restarts=3, waiting="CrashLoopBackOff")])
    code, out, _ = run(monkeypatch, caplog, capsys, FakeKubectl(clusters(monaco_onprem=crashing)), "dev", "--status")
    assert code == exit_codes.OK, "read whole: the bridge's state is a fact, not a read failure"
    assert "  broker bridge dev-broker-bridge-5f6d: Running, not ready (CrashLoopBackOff), 3 restarts" in (
        out.splitlines()
    )


def test_no_bridge_on_the_target_during_a_move_is_named(moving, monkeypatch, caplog, capsys):
    fake = FakeKubectl(clusters(monaco_onprem=Cluster(STANDBY_STATUS, bridge_pods=[])))
    code, out, errors = run(monkeypatch, caplog, capsys, fake, "dev", "--status", "--json")
    assert code == exit_codes.UNREADABLE
    target = json.loads(out)["target"]
    assert target["mirror"] is not None, "the mirror was read before"
    assert target["problem"] == (
        f"target {TARGET}: no broker bridge Pod in {NAMESPACE} (app.kubernetes.io/instance=dev-broker,"
        "app.kubernetes.io/component=bridge): is the replicate or cutover phase applied?"
    )


def test_no_mirror_on_the_target_during_replicate_is_named(moving, monkeypatch, caplog, capsys):
    fake = FakeKubectl(clusters(monaco_onprem=Cluster(STANDBY_STATUS, mirror_pods=[])))
    code, out, errors = run(monkeypatch, caplog, capsys, fake, "dev", "--status", "--json")
    assert code == exit_codes.UNREADABLE
    target = json.loads(out)["target"]
    assert target["in_recovery"] is True, "the database was read before"
    assert target["problem"] == (
        f"target {TARGET}: no bucket mirror Pod in {NAMESPACE} (app.kubernetes.io/instance=dev-object-storage,"
        "app.kubernetes.io/component=mirror): is the replicate phase applied?"
    )


def test_without_a_move_only_the_environments_cluster_is_read(project, stack, monkeypatch, caplog, capsys):
    stack.move = None
    fake = FakeKubectl(clusters())
    code, out, _ = run(monkeypatch, caplog, capsys, fake, "dev", "--status", "--json")
    assert code == exit_codes.OK
    status = json.loads(out)
    assert (status["move"], status["phase"], status["target"]) == (None, None, None)
    assert status["source"]["namespace_exists"] is True and status["readable"] is True
    assert fake.contexts() == {SOURCE}
    code, out, _ = run(monkeypatch, caplog, capsys, fake, "dev", "--status")
    assert out.splitlines()[:2] == [
        f"dev (environments/dev.yaml): no move declared; on {SOURCE}",
        "phase declared: none; phase last applied: none (the stack's `move` output)",
    ]
    assert (status["applied_phase"], status["applied"]) == (None, None)


def test_the_phase_last_applied_is_shown_beside_the_declared_one(moving, stack, monkeypatch, caplog, capsys):
    # The file declares replicate again after a rollback: the stack has no `move` output yet.
    stack.move = None
    code, out, _ = run(monkeypatch, caplog, capsys, FakeKubectl(clusters()), "dev", "--status")
    assert code == exit_codes.OK
    assert out.splitlines()[1] == "phase declared: replicate; phase last applied: none (the stack's `move` output)"


def test_a_stack_that_cannot_be_read_is_named_and_the_clusters_still_read(moving, stack, monkeypatch, caplog, capsys):
    from pulumi import automation as auto

    stack.error = auto.CommandError(auto.CommandResult("", "error: could not read the backend\n", 255))
    code, out, errors = run(monkeypatch, caplog, capsys, FakeKubectl(clusters()), "dev", "--status", "--json")
    assert code == exit_codes.UNREADABLE
    status = json.loads(out)
    (problem,) = status["problems"]
    assert problem.startswith("stack dev: cannot read its `move` output: error: could not read the backend"), problem
    assert status["applied_phase"] is None and status["target"]["in_recovery"] is True
    assert problem in errors


def test_without_a_move_the_source_says_when_no_standby_is_connected(project, monkeypatch, caplog, capsys):
    alone = Cluster({**PRIMARY_STATUS, "replication": []})
    code, out, _ = run(monkeypatch, caplog, capsys, FakeKubectl(clusters(dusseldorf_test=alone)), "dev", "--status")
    assert code == exit_codes.OK
    assert out.splitlines()[3:5] == [
        "  database dev-database-primary-0: primary (not in recovery), WAL at 0/5000148",
        "  replication: no standby connected",
    ]


def test_namespace_given_is_read_on_both_clusters(moving, monkeypatch, caplog, capsys):
    fake = FakeKubectl(clusters(), namespace="smartnation-other-dev")
    code, out, _ = run(monkeypatch, caplog, capsys, fake, "dev", "--status", "--namespace", "smartnation-other-dev")
    assert code == exit_codes.OK
    status = json.loads(run(monkeypatch, caplog, capsys, fake, "dev", "--status", "--json",
                            "--namespace", "smartnation-other-dev")[1])  # fmt: skip
    assert status["source"]["namespace"] == status["target"]["namespace"] == "smartnation-other-dev"


def test_it_only_reads_and_the_password_is_never_an_argument(moving, monkeypatch, caplog, capsys):
    fake = FakeKubectl(clusters())
    run(monkeypatch, caplog, capsys, fake, "dev", "--status")
    assert fake.contexts() == {SOURCE, TARGET}
    for call in fake.calls:
        assert not any(PASSWORD in arg for arg in call.argv), call.argv
        rest = call.argv[3:]  # after `kubectl --context C`
        verb = rest[2] if rest[0] == "-n" else rest[0]
        assert verb in {"config", "get", "exec"}, call.argv
    execs = [call for call in fake.calls if "exec" in call.argv]
    assert len(execs) == 2 and all(call.input.startswith(f"{PASSWORD}\n") for call in execs)
    # Only the status query, in one read-only SELECT.
    assert STATUS_SQL.lstrip().startswith("WITH") and "SELECT json_build_object" in STATUS_SQL
    for word in ("INSERT", "UPDATE", "DELETE", "ALTER", "CREATE", "DROP", "pg_promote", "pg_terminate"):
        assert word.lower() not in STATUS_SQL.lower()


def test_a_missing_kubeconfig_context_is_named_and_the_other_side_still_read(moving, monkeypatch, caplog, capsys):
    fake = FakeKubectl({SOURCE: Cluster(PRIMARY_STATUS)})
    code, out, errors = run(monkeypatch, caplog, capsys, fake, "dev", "--status", "--json")
    assert code == exit_codes.UNREADABLE
    status = json.loads(out)
    assert status["readable"] is False and status["source"]["problem"] is None
    assert status["source"]["replication"] == PRIMARY_STATUS["replication"]
    (problem,) = status["problems"]
    assert problem.startswith(f"target {TARGET}: no context '{TARGET}' in the kubeconfig")
    assert problem in errors


def test_a_missing_namespace_is_named(moving, monkeypatch, caplog, capsys):
    fake = FakeKubectl(clusters(monaco_onprem=Cluster(None, namespace=False)))
    code, out, errors = run(monkeypatch, caplog, capsys, fake, "dev", "--status")
    assert code == exit_codes.UNREADABLE
    assert f"target {TARGET} (context {TARGET}), namespace {NAMESPACE}: missing" in out.splitlines()
    assert f"target {TARGET}: namespace {NAMESPACE} does not exist (context {TARGET})" in errors
    assert "Traceback" not in out + errors


def test_a_database_pod_that_is_not_running_is_named(moving, monkeypatch, caplog, capsys):
    pending = Cluster(None, pods=[_pod("dev-database-primary-0", "Pending")])
    fake = FakeKubectl(clusters(monaco_onprem=pending))
    code, out, errors = run(monkeypatch, caplog, capsys, fake, "dev", "--status", "--json")
    assert code == exit_codes.UNREADABLE
    target = json.loads(out)["target"]
    assert target["namespace_exists"] is True and target["in_recovery"] is None and target["primary_pod"] is None
    assert "no Running database primary Pod" in target["problem"]
    assert "dev-database-primary-0 Pending" in target["problem"] and target["problem"] in errors


def test_psql_failing_in_the_pod_is_named(moving, monkeypatch, caplog, capsys):
    refused = Cluster(None, psql=(2, "", "psql: error: connection to server on socket failed"))
    fake = FakeKubectl(clusters(dusseldorf_test=refused))
    code, out, errors = run(monkeypatch, caplog, capsys, fake, "dev", "--status")
    assert code == exit_codes.UNREADABLE
    assert f"source {SOURCE}: psql in dev-database-primary-0 failed: psql: error: connection" in errors
    assert any("in recovery (standby)" in line for line in out.splitlines()), "the target is still read"


def test_an_answer_that_is_not_the_status_is_named(moving, monkeypatch, caplog, capsys):
    garbled = Cluster(None, psql=(0, "WARNING: something\n", ""))
    fake = FakeKubectl(clusters(monaco_onprem=garbled))
    code, _, errors = run(monkeypatch, caplog, capsys, fake, "dev", "--status")
    assert code == exit_codes.UNREADABLE
    assert "psql in dev-database-primary-0 answered no JSON object: WARNING: something" in errors


def test_a_secret_without_the_password_is_named(moving, monkeypatch, caplog, capsys):
    fake = FakeKubectl(clusters(monaco_onprem=Cluster(None, secret={})))
    code, _, errors = run(monkeypatch, caplog, capsys, fake, "dev", "--status")
    assert code == exit_codes.UNREADABLE
    assert f"Secret dev-database-credentials in {NAMESPACE} has no POSTGRES_PASSWORD" in errors


def test_no_kubectl_at_all_is_named_not_a_traceback(moving, monkeypatch, caplog, capsys):
    fake = FakeKubectl(clusters())
    fake.missing = True
    code, out, errors = run(monkeypatch, caplog, capsys, fake, "dev", "--status", "--json")
    assert code == exit_codes.UNREADABLE
    problems = json.loads(out)["problems"]
    assert [p.split(":")[0] for p in problems] == [f"source {SOURCE}", f"target {TARGET}"]
    assert all("cannot run kubectl" in p for p in problems)


def test_a_standby_that_replayed_nothing_yet_and_an_unknown_lag_read_plainly(moving, monkeypatch, caplog, capsys):
    catching_up = {**PRIMARY_STATUS, "replication": [{**PRIMARY_STATUS["replication"][0], "state": "catchup",
                                                      "replay_lsn": None, "lag_bytes": None,
                                                      "replay_lag_seconds": None}]}  # fmt: skip
    fresh = {**STANDBY_STATUS, "last_replay_at": None, "seconds_since_last_replay": None, "receiver_status": None}
    fake = FakeKubectl(clusters(dusseldorf_test=Cluster(catching_up), monaco_onprem=Cluster(fresh)))
    code, out, _ = run(monkeypatch, caplog, capsys, fake, "dev", "--status")
    assert code == exit_codes.OK
    lines = out.splitlines()
    assert (
        f"  replication to {LINK}: catchup, sent 0/5000148, replayed nothing yet, lag unknown, replay lag none measured"
        in lines
    )
    assert any("receiver not running, no transaction replayed yet" in line for line in lines)


def test_without_status_or_to_it_says_what_it_needs_and_reads_nothing(moving, monkeypatch, caplog, capsys):
    fake = FakeKubectl(clusters())
    code, out, errors = run(monkeypatch, caplog, capsys, fake, "dev")
    assert code == exit_codes.BAD_INPUT and out == ""
    assert "`smartnation move dev` needs --status (where the move stands) or --to CLUSTER" in errors
    assert fake.calls == []


@pytest.mark.parametrize(
    ("environment", "appended", "named"),
    [
        ("nope", "", "environments/nope.yaml: <file>: no such environment file"),
        ("dev", "move: {to: monaco-onprem, phase: teleport}\n", "environments/dev.yaml: move.phase"),
        ("dev", "move: {to: atlantis, phase: replicate}\n", "environments/dev.yaml: move.to"),
    ],
)
def test_bad_input_gets_the_loaders_error_and_reads_nothing(
    project, monkeypatch, caplog, capsys, environment, appended, named
):
    with (project / "environments" / "dev.yaml").open("a") as file:
        file.write(appended)
    fake = FakeKubectl(clusters())
    code, out, errors = run(monkeypatch, caplog, capsys, fake, environment, "--status")
    assert code == exit_codes.BAD_INPUT and out == ""
    assert named in errors
    assert fake.calls == []


def test_its_help_says_it_changes_nothing(capsys) -> None:
    for argv in (["--help"], ["move", "--help"]):
        with pytest.raises(SystemExit):
            build_parser().parse_args(argv)
        listed = " ".join(capsys.readouterr().out.split())
        assert "move" in listed and "changes nothing" in listed, argv


def test_the_complete_phase_reads_no_bridge_and_no_mirror(project, stack, monkeypatch, caplog, capsys):
    """Declared `complete`: the old site goes, and the bridge and mirror with it: neither is read
    (a missing one is no problem then)."""
    with (project / "environments" / "dev.yaml").open("a") as file:
        file.write("move: {to: monaco-onprem, phase: complete}\n")
    fake = FakeKubectl(clusters(monaco_onprem=Cluster(STANDBY_STATUS, mirror_pods=[], bridge_pods=[])))
    code, out, _ = run(monkeypatch, caplog, capsys, fake, "dev", "--status", "--json")
    target = json.loads(out)["target"]
    assert (target["bridge"], target["mirror"], target["problem"]) == (None, None, None), target
    assert code == exit_codes.OK
    assert not [call for call in fake.calls if BRIDGE_SELECTOR in call.argv or MIRROR_SELECTOR in call.argv]
