"""The cutover's steps one by one (cli/move_cutover.py, cli/move_objects.py), called directly with
a stand-in run (its marks, args and clusters), the SQL (``move_cutover.run_sql``), kubectl
(``move_cutover.Kubectl``), the object reader (``compare.read_objects``) and the clock stood in:
what test_cli_move_cutover.py's drive through the whole driver does not reach. The fence's
refusals and its poll, a fence run again, the catch-up's lines while a side is not read and its
time limit, the mirror's kubectl calls, the promotion's pause and its UTC time, and which objects
the verification at the fence hashes again.

Written against the survivors of a mutation run (tests/tools/mutation.py --scope move).
"""

from __future__ import annotations

import json
import threading
import time as real_time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from smartnation.cli import compare, move_cutover, move_objects
from smartnation.cli.compare_data import Snapshot
from smartnation.cli.kubectl import KubectlError
from smartnation.cli.move_status import Unreadable
from tests.unit.test_cli_move_cutover import FENCE, MIRROR
from tests.unit.test_cli_move_status import MIRROR_SELECTOR, NAMESPACE, SOURCE, TARGET

pytestmark = pytest.mark.unit

SOURCE_CONTEXT, TARGET_CONTEXT = f"{SOURCE}-context", f"{TARGET}-context"
KUBECTL_ENV = {"KUBECONFIG": "/stand-in/kubeconfig"}
WALL = 1_790_000_000.0
"""The wall clock when a test starts: 2026-09-21 14:13:20 UTC."""


class Clock:
    """``time`` for the steps: sleep advances it by ``step`` (or by what was asked), nothing waits."""

    START = 1000.0
    """The monotonic clock's reading when a test starts (not 0: a sum of two readings is no difference)."""

    def __init__(self, step: float | None = None) -> None:
        self.now = self.START
        self.step = step
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return WALL + self.now - self.START

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds if self.step is None else self.step


@pytest.fixture
def clock(monkeypatch) -> Clock:
    found = Clock()
    monkeypatch.setattr(move_cutover, "time", found)
    monkeypatch.setattr(move_objects, "time", found)
    return found


def stand_in_run(**changes: Any) -> SimpleNamespace:
    """What the cutover's steps read of move_driver.Run."""
    run = SimpleNamespace(
        settings=SimpleNamespace(cluster=SimpleNamespace(name=SOURCE, context=SOURCE_CONTEXT), environment="dev"),
        target_profile=SimpleNamespace(name=TARGET, context=TARGET_CONTEXT),
        namespace=NAMESPACE,
        environment="dev",
        kubectl_env=KUBECTL_ENV,
        to=TARGET,
        marks={},
        args=SimpleNamespace(timeout=30.0, interval=2.0),
        read_status=None,
    )
    for name, value in changes.items():
        setattr(run, name, value)
    return run


class Database:
    """``move_cutover.run_sql``: answers each statement from a script, keeps what ran where."""

    def __init__(self, **answers: list[dict[str, Any]]) -> None:
        self.answers = answers
        self.ran: list[tuple[str, str]] = []
        self.sites: list[tuple[Any, ...]] = []

    NAMES = {
        move_cutover.FENCE_SQL + move_cutover.FENCED_SQL: "fence",
        move_cutover.FENCED_SQL: "fenced",
        move_cutover.END_SESSIONS_SQL: "end sessions",
        move_cutover.FENCE_LSN_SQL: "fence lsn",
        move_cutover.PROMOTE_SQL: "promote",
    }

    def __call__(self, site, environment: str, env, sql: str) -> dict[str, Any]:
        name = self.NAMES[sql]
        self.ran.append((site.role, name))
        self.sites.append((site.role, site.cluster, site.context, site.namespace, environment, dict(env)))
        answers = self.answers[name.replace(" ", "_")]
        return answers.pop(0) if len(answers) > 1 else answers[0]


def fencing(fenced: list[bool], ended: dict[str, Any] | None = None, position: str | None = FENCE) -> Database:
    """A source whose new sessions see ``fenced`` in turn (the reload lags)."""
    return Database(
        fence=[{"read_only": False, "in_recovery": False}],
        fenced=[{"read_only": seen, "in_recovery": False} for seen in fenced],
        end_sessions=[{"ended": 3} if ended is None else ended],
        fence_lsn=[{"fence_lsn": position}],
    )


# --- fence --------------------------------------------------------------------------------------


def test_the_fence_polls_every_fifth_of_a_second_until_a_new_session_is_read_only(clock, monkeypatch) -> None:
    database = fencing([False, False, True])
    monkeypatch.setattr(move_cutover, "run_sql", database)
    run = stand_in_run()
    said = move_cutover.fence(run)
    assert said == (
        f"writes stopped on {SOURCE}: its database is read-only, 3 client session(s) ended, fence at WAL {FENCE}"
    )
    assert database.ran == [("source", "fence"), *[("source", "fenced")] * 3, ("source", "end sessions"),
                            ("source", "fence lsn")]  # fmt: skip
    assert clock.sleeps == [0.2, 0.2]
    assert run.marks == {"fenced_at": WALL, "fence_lsn": FENCE}
    # Every statement on the source's primary: its cluster, context, the namespace, the toolchain's env.
    assert database.sites == [("source", SOURCE, SOURCE_CONTEXT, NAMESPACE, "dev", KUBECTL_ENV)] * 6


def test_a_fence_not_seen_at_the_limit_is_looked_at_once_more_then_fails(clock, monkeypatch) -> None:
    """Polled at 0, 5, 10 and 15 s (a slow machine): not read-only at 10 s is not yet past
    FENCE_WAIT_S, so it looks again; not read-only at 15 s fails, and then no session is ended
    and no position taken."""
    clock.step = 5.0
    monkeypatch.setattr(move_cutover, "run_sql", fencing([False, False, False, True]))
    assert move_cutover.fence(stand_in_run()).startswith(f"writes stopped on {SOURCE}: its database is read-only")
    assert clock.now == clock.START + 15.0

    late = fencing([False])
    monkeypatch.setattr(move_cutover, "run_sql", late)
    with pytest.raises(move_cutover.StepFailure) as failed:
        move_cutover.fence(stand_in_run())
    assert str(failed.value) == (
        f"{SOURCE}'s database did not turn read-only within 10 s of the reload (default_transaction_read_only)"
    )
    assert not failed.value.timed_out
    assert [name for _, name in late.ran] == ["fence", "fenced", "fenced", "fenced", "fenced"]


def test_a_source_in_recovery_is_refused_before_any_session_is_ended(clock, monkeypatch) -> None:
    database = fencing([True])
    database.answers["fenced"] = [{"read_only": True, "in_recovery": True}]
    monkeypatch.setattr(move_cutover, "run_sql", database)
    run = stand_in_run()
    with pytest.raises(move_cutover.StepFailure) as failed:
        move_cutover.fence(run)
    assert str(failed.value) == f"{SOURCE}'s database is in recovery: it is not the primary this move comes from"
    assert [name for _, name in database.ran] == ["fence", "fenced"]
    assert run.marks == {}, "no primary's writes stopped: no fence time kept to measure a pause from"


@pytest.mark.parametrize("position", [None, ""])
def test_a_fence_without_a_wal_position_fails_and_records_none(clock, monkeypatch, position) -> None:
    monkeypatch.setattr(move_cutover, "run_sql", fencing([True], position=position))
    run = stand_in_run()
    with pytest.raises(move_cutover.StepFailure) as failed:
        move_cutover.fence(run)
    assert str(failed.value) == f"{SOURCE}'s database gave no WAL position after the fence"
    assert "fence_lsn" not in run.marks
    assert run.marks["fenced_at"] == WALL, "the database turned read-only: writes stopped then, kept"


def test_a_fence_run_again_says_so_and_keeps_the_first_fences_time(clock, monkeypatch) -> None:
    """A re-run after a crash: the time writes stopped stays the first one (the pause is not
    shortened); an answer without a count of ended sessions counts none."""
    monkeypatch.setattr(move_cutover, "run_sql", fencing([True], ended={}))
    run = stand_in_run(marks={"fenced_at": WALL - 600})
    said = move_cutover.fence(run)
    assert said == (
        f"writes stopped on {SOURCE} (again: writes stopped at the first fence): its database is read-only, "
        f"0 client session(s) ended, fence at WAL {FENCE}"
    )
    assert run.marks == {"fenced_at": WALL - 600, "fence_lsn": FENCE}


def test_an_unreadable_database_fails_the_step_with_what_run_sql_said(clock, monkeypatch) -> None:
    def unreadable(site, environment, env, sql):
        raise Unreadable(f"{site.role} {site.cluster}: `exec -i dev-database-primary-0` failed: connection refused")

    monkeypatch.setattr(move_cutover, "run_sql", unreadable)
    run = stand_in_run()
    with pytest.raises(move_cutover.StepFailure) as failed:
        move_cutover.fence(run)
    assert str(failed.value) == f"source {SOURCE}: `exec -i dev-database-primary-0` failed: connection refused"
    assert not failed.value.timed_out
    assert run.marks == {}, "never reached: the next fence is the first"
    # An attempt after an earlier fence keeps that fence's time whatever happens now.
    run = stand_in_run(marks={"fenced_at": WALL - 600})
    with pytest.raises(move_cutover.StepFailure):
        move_cutover.fence(run)
    assert run.marks == {"fenced_at": WALL - 600}


# --- catch-up -----------------------------------------------------------------------------------


def status(wal_lsn: str | None, *problems: str, read: bool = True, in_recovery: bool | None = True):
    target = SimpleNamespace(database={"wal_lsn": wal_lsn, "in_recovery": in_recovery}) if read else None
    return SimpleNamespace(target=target, problems=list(problems))


def polling(*statuses: SimpleNamespace) -> tuple[SimpleNamespace, list[SimpleNamespace]]:
    left = list(statuses)
    run = stand_in_run(marks={"fenced_at": WALL, "fence_lsn": FENCE})
    run.read_status = lambda: left.pop(0) if len(left) > 1 else left[0]
    return run, left


@pytest.fixture
def printed(monkeypatch) -> list[tuple[str, dict[str, Any]]]:
    """What the step prints, each line with print's keywords (a progress line is flushed: it shows
    at once when stdout is a pipe, a CI log)."""
    lines: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(move_cutover, "print", lambda line, **kw: lines.append((line, kw)), raising=False)
    return lines


def test_the_catch_up_says_what_it_could_not_read_and_waits_until_all_is_read(clock, printed) -> None:
    """A target not read, then read without a position, then at the fence with the source not
    read (not done yet: a problem is no reason to stop waiting or to go on), then done."""
    run, _ = polling(
        status(None, f"target {TARGET}: kubectl failed", read=False),
        status(None, in_recovery=None),
        status(FENCE, f"source {SOURCE}: timed out", "its mirror: not found"),
        status(FENCE),
    )
    said = move_cutover.catch_up(run)
    assert [line for line, _ in printed] == [
        f"  replayed nothing of the fence {FENCE}: not read (0 of 30 s); not read: target {TARGET}: kubectl failed",
        f"  replayed nothing of the fence {FENCE}: not read (2 of 30 s)",
        f"  replayed {FENCE} of the fence {FENCE}: 0 bytes to go (4 of 30 s); not read: source {SOURCE}: timed out; "
        "its mirror: not found",
        f"  replayed {FENCE} of the fence {FENCE}: 0 bytes to go (6 of 30 s)",
    ]
    assert all(kw == {"flush": True} for _, kw in printed)
    assert said == f"{TARGET} replayed up to the fence {FENCE} after 6 s"
    assert clock.sleeps == [2.0, 2.0, 2.0]


def test_the_catch_up_polls_until_its_timeout_and_not_past_it(clock, printed) -> None:
    """--timeout 4 and --interval 2: polls at 0, 2 and 4 s (the last one at the limit counts)."""
    run, _ = polling(status("0/5000000"), status("0/5000100"), status(FENCE))
    run.args.timeout = 4.0
    assert move_cutover.catch_up(run) == f"{TARGET} replayed up to the fence {FENCE} after 4 s"

    printed.clear()
    run, _ = polling(status("0/5000100"))
    run.args.timeout = 4.0
    with pytest.raises(move_cutover.StepFailure) as failed:
        move_cutover.catch_up(run)
    assert failed.value.timed_out
    assert str(failed.value) == (
        f"{TARGET} did not replay up to the fence {FENCE} within --timeout 4 s (last: 256 bytes to go); "
        f"run `smartnation move dev --to {TARGET}` again to keep waiting"
    )
    assert [line.rsplit("(", 1)[1] for line, _ in printed] == ["0 of 4 s)", "2 of 4 s)", "4 of 4 s)"]


def test_the_catch_up_and_the_promotion_need_the_fence_recorded(clock, monkeypatch) -> None:
    asked: list[str] = []
    run = stand_in_run(read_status=lambda: asked.append("status"))
    monkeypatch.setattr(move_cutover, "stop_mirror", lambda run: asked.append("stop mirror"))
    message = "no fence recorded in the progress file: the fence step runs first"
    with pytest.raises(move_cutover.StepFailure, match=f"^{message}$"):
        move_cutover.catch_up(run)
    for marks in ({}, {"fenced_at": "14:13:20"}, {"fence_lsn": FENCE}):
        run.marks = marks
        with pytest.raises(move_cutover.StepFailure, match=f"^{message}$"):
            move_cutover.promote(run)
    assert asked == [], "nothing read, nothing stopped"


def test_a_target_out_of_recovery_before_the_promotion_says_what_to_do(clock, printed) -> None:
    run, _ = polling(status("0/5000000", in_recovery=False))
    with pytest.raises(move_cutover.StepFailure) as failed:
        move_cutover.catch_up(run)
    assert str(failed.value) == (
        f"{TARGET}'s database is out of recovery before this driver promoted it: promoted by hand? "
        "Compare both sides (`smartnation compare`) before going on"
    )
    assert printed == [], "refused before a line says how far it replayed"


# --- stop_mirror --------------------------------------------------------------------------------


class Kubectl:
    """``move_cutover.Kubectl``: what was asked, with the defaults of the real one's keywords; what
    it answers is set on the class (the deployment's name or none, the Pods left, a verb failing)."""

    made: list[tuple[Any, ...]] = []
    calls: list[tuple[Any, ...]] = []
    deployment = ""
    pods: list[dict[str, Any]] = []
    fails: str | None = None

    def __init__(self, *args: Any) -> None:
        self.made.append(args)

    def run(self, *args: str, timeout: float = 30, check: bool = True, namespaced: bool = True) -> str:
        self.calls.append((args, timeout, check))
        if args[0] == self.fails:
            raise KubectlError(f"`{' '.join(args[:3])}` failed: forbidden")
        return self.deployment if args[:2] == ("get", "deployment") else ""

    def items(self, kinds: str, *selector: str, timeout: float = 30) -> list[dict[str, Any]]:
        self.calls.append(("items", kinds, *selector))
        return self.pods


@pytest.fixture
def kubectl(monkeypatch) -> type[Kubectl]:
    answers = {"deployment": f"deployment.apps/{MIRROR}\n", "pods": [], "fails": None}
    for name, value in {"made": [], "calls": [], **answers}.items():
        monkeypatch.setattr(Kubectl, name, value)
    monkeypatch.setattr(move_cutover, "Kubectl", Kubectl)
    return Kubectl


def test_the_mirror_is_scaled_to_none_and_its_pod_waited_for_on_the_target(kubectl) -> None:
    assert move_cutover.stop_mirror(stand_in_run()) == "bucket mirror stopped"
    assert kubectl.made == [(TARGET_CONTEXT, NAMESPACE, KUBECTL_ENV)]
    assert kubectl.calls == [
        (("get", "deployment", MIRROR, "--ignore-not-found", "-o", "name"), 30, True),
        (("scale", "deployment", MIRROR, "--replicas=0"), 30, True),
        # kubectl's own wait (60 s) inside the process's limit; no Pod left is no failure.
        (("wait", "--for=delete", "pod", "-l", MIRROR_SELECTOR, "--timeout=60s"), 90, False),
        ("items", "pods", "-l", MIRROR_SELECTOR),
    ]


def test_no_mirror_deployment_is_nothing_to_scale(kubectl) -> None:
    kubectl.deployment = ""
    assert move_cutover.stop_mirror(stand_in_run()) == "no bucket mirror"
    assert [call[0] if call[0] == "items" else call[0][0] for call in kubectl.calls] == ["get", "wait", "items"]


def test_a_mirror_pod_still_there_is_named(kubectl) -> None:
    kubectl.pods = [{"metadata": {"name": f"{MIRROR}-7c9b"}}, {"metadata": {"name": f"{MIRROR}-0000"}}]
    with pytest.raises(move_cutover.StepFailure) as failed:
        move_cutover.stop_mirror(stand_in_run())
    assert str(failed.value) == f"the bucket mirror's Pod {MIRROR}-7c9b on {TARGET} is still there"


def test_kubectl_failing_is_a_step_failure_naming_the_target(kubectl) -> None:
    kubectl.fails = "scale"
    with pytest.raises(move_cutover.StepFailure) as failed:
        move_cutover.stop_mirror(stand_in_run())
    assert str(failed.value) == (
        f"could not stop the bucket mirror on {TARGET}: `scale deployment {MIRROR}` failed: forbidden"
    )


# --- promote ------------------------------------------------------------------------------------


@pytest.fixture
def far_from_utc() -> Iterator[None]:
    """The machine's zone 5:30 off UTC: the time the writes stopped is still given in UTC."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TZ", "Asia/Kolkata")
        real_time.tzset()
        yield
    real_time.tzset()


def test_the_promotion_stops_the_mirror_first_and_measures_the_pause_from_the_fence(
    clock, monkeypatch, far_from_utc
) -> None:
    done: list[str] = []
    database = Database(promote=[{"promoted": True, "in_recovery": False}])
    monkeypatch.setattr(move_cutover, "stop_mirror", lambda run: done.append("stop mirror") or "bucket mirror stopped")
    monkeypatch.setattr(move_cutover, "run_sql", lambda *a: done.append("promote") or database(*a))
    clock.now += 12.345  # since WALL, when the fence stopped the writes
    run = stand_in_run(marks={"fenced_at": WALL, "fence_lsn": FENCE})
    said = move_cutover.promote(run)
    assert done == ["stop mirror", "promote"]
    assert database.sites == [("target", TARGET, TARGET_CONTEXT, NAMESPACE, "dev", KUBECTL_ENV)]
    assert run.marks["write_pause_s"] == 12.3
    assert said == (
        f"bucket mirror stopped; {TARGET}'s database promoted and taking writes: the write pause was 12.3 s "
        f"(writes stopped on {SOURCE} at 14:13:20 UTC)"
    )


@pytest.mark.parametrize(
    "answer", [{"promoted": True, "in_recovery": True}, {"promoted": False, "in_recovery": False}, {}]
)
def test_a_promotion_not_out_of_recovery_fails_and_measures_no_pause(clock, monkeypatch, answer) -> None:
    monkeypatch.setattr(move_cutover, "stop_mirror", lambda run: "bucket mirror stopped")
    monkeypatch.setattr(move_cutover, "run_sql", Database(promote=[answer]))
    run = stand_in_run(marks={"fenced_at": WALL, "fence_lsn": FENCE})
    with pytest.raises(move_cutover.StepFailure) as failed:
        move_cutover.promote(run)
    assert str(failed.value) == f"{TARGET}'s database was not promoted within 60 s: {answer}"
    assert "write_pause_s" not in run.marks


# --- the objects: hashed before the fence, hashed again at it only where they changed ----------

SOURCE_SIDE, TARGET_SIDE = SimpleNamespace(where=f"{SOURCE}/dev"), SimpleNamespace(where=f"{TARGET}/dev")
READER = (MIRROR_SELECTOR, "reader")


class Objects:
    """``compare.read_objects``: each side's objects per kind of read, every call kept (the two
    sides are read at once, move_driver.both: in either order)."""

    def __init__(self, clock: Clock, **objects: dict[str, dict[str, str]]) -> None:
        self.clock, self.objects = clock, objects
        self.calls: list[tuple[str, Any, dict[str, Any]]] = []
        self.lock = threading.Lock()

    def pairs(self) -> list[list[tuple[str, Any, dict[str, Any]]]]:
        """The calls two by two (one read of both sides), each pair in the order source, target."""
        return [sorted(self.calls[i : i + 2], key=lambda call: call[0]) for i in range(0, len(self.calls), 2)]

    def __call__(self, side, reader=None, **kwargs: Any) -> Snapshot:
        name = "source" if side is SOURCE_SIDE else "target" if side is TARGET_SIDE else repr(side)
        with self.lock:
            self.calls.append((name, reader, kwargs))
            self.clock.now += 3.5  # a reading takes a while
        kind = "hash_only" if "hash_only" in kwargs else "listing" if kwargs.get("listing_only") else "full"
        snapshot = Snapshot(side.where)
        found = self.objects[f"{name}_{kind}"]
        snapshot.sections["objects"] = dict(found)
        return snapshot


@pytest.fixture
def fresh_project(tmp_path, monkeypatch) -> Path:
    """A project directory with no .smartnation yet."""
    monkeypatch.setenv("SMARTNATION_PROJECT_DIR", str(tmp_path))
    return tmp_path


def test_hash_objects_keeps_both_sides_sorted_in_its_file_and_counts_the_equal(
    clock, fresh_project, monkeypatch
) -> None:
    source = {
        "b/y": "size=2 etag=e2 sha256=bb",  # differs on the target
        "b/a": "size=1 etag=e1 sha256=aa",  # equal
        "b/c": "size=3 etag=e3 sha256=cc",  # not on the target
        "b/e": "size=5 etag=e5 sha256=ee",  # on the target, not hashed there
        "b/d": "size=4 etag=e4",  # not hashed here
    }
    target = {"b/y": "size=2 etag=e9 sha256=99", "b/a": "size=1 etag=e1 sha256=aa", "b/e": "size=5 etag=e5"}
    objects = Objects(clock, source_full=source, target_full=target)
    monkeypatch.setattr(compare, "read_objects", objects)
    run = stand_in_run()
    said = move_objects.hash_objects(run, SOURCE_SIDE, TARGET_SIDE, READER)
    path = fresh_project / ".smartnation" / "move" / "dev-cutover-objects.json"
    assert objects.pairs() == [[("source", None, {"etags": True}), ("target", READER, {"etags": True})]]
    assert said == (
        f"5 objects on {SOURCE}/dev, 3 on {TARGET}/dev hashed in 7 s, 1 equal so far "
        f"(what changes until the fence is hashed again at the fence); kept in {path}"
    )
    assert run.marks == {"objects_hashed": str(path)}
    text = path.read_text(encoding="utf-8")
    assert text == json.dumps({"source": dict(sorted(source.items())), "target": dict(sorted(target.items()))}) + "\n"


def test_without_a_file_from_before_the_fence_each_side_is_read_whole_from_its_own_reader(clock, monkeypatch) -> None:
    objects = Objects(clock, source_full={"b/a": "size=1 sha256=aa"}, target_full={"b/a": "size=1 sha256=ab"})
    monkeypatch.setattr(compare, "read_objects", objects)
    left, right, said = move_objects.read_at_fence(stand_in_run(), SOURCE_SIDE, TARGET_SIDE, READER)
    assert objects.pairs() == [[("source", None, {}), ("target", READER, {})]]
    assert (left.sections["objects"], right.sections["objects"]) == ({"b/a": "size=1 sha256=aa"},
                                                                     {"b/a": "size=1 sha256=ab"})  # fmt: skip
    assert said == "every object hashed now (nothing kept from before the fence)"


def hashed_before(tmp_path: Path, source: dict[str, str], target: dict[str, str]) -> SimpleNamespace:
    path = tmp_path / "dev-cutover-objects.json"
    path.write_text(json.dumps({"source": source, "target": target}))
    return stand_in_run(marks={"objects_hashed": str(path)})


def test_at_the_fence_only_what_is_new_or_changed_is_hashed_again_on_each_side(clock, tmp_path, monkeypatch) -> None:
    """b/same: listed as hashed before on both sides (kept, not hashed again). b/new: on the source
    only, never hashed: hashed now (a reading of it without a hash would hide nothing, but the
    report holds what it is). b/gone: its listing changed, and it was deleted before the hash read:
    its size alone, no made-up digest."""
    run = hashed_before(
        tmp_path,
        {"b/same": "size=1 etag=e1 sha256=aa", "b/gone": "size=4 etag=e4 sha256=dd"},
        {"b/same": "size=1 etag=e1 sha256=aa", "b/gone": "size=4 etag=e4 sha256=dd"},
    )
    objects = Objects(
        clock,
        source_listing={"b/same": "size=1 etag=e1", "b/new": "size=5 etag=e5", "b/gone": "size=4 etag=e8"},
        target_listing={"b/same": "size=1 etag=e1", "b/gone": "size=4 etag=e8"},
        source_hash_only={"b/same": "size=1 etag=e1", "b/new": "size=5 etag=e5 sha256=55", "b/gone": "size=4"},
        target_hash_only={"b/same": "size=1 etag=e1", "b/gone": "size=4"},
    )
    monkeypatch.setattr(compare, "read_objects", objects)
    left, right, said = move_objects.read_at_fence(run, SOURCE_SIDE, TARGET_SIDE, READER)
    listing, again = {"listing_only": True, "etags": True}, {"etags": True, "hash_only": ["b/gone", "b/new"]}
    assert objects.pairs() == [[("source", None, listing), ("target", READER, listing)],
                               [("source", None, again), ("target", READER, again)]]  # fmt: skip
    assert left.sections["objects"] == {"b/same": "size=1 sha256=aa", "b/new": "size=5 sha256=55", "b/gone": "size=4"}
    assert right.sections["objects"] == {"b/same": "size=1 sha256=aa", "b/gone": "size=4"}
    assert said == "1 objects as hashed before the fence, 2 hashed again at the fence"


def test_at_the_fence_nothing_changed_is_two_listings_and_no_hash_read(clock, tmp_path, monkeypatch) -> None:
    before = {"b/a": "size=1 etag=e1 sha256=aa", "b/b": "size=2 etag=e2 sha256=bb"}
    run = hashed_before(tmp_path, before, before)
    listed = {"b/a": "size=1 etag=e1", "b/b": "size=2 etag=e2"}
    objects = Objects(clock, source_listing=listed, target_listing=listed)
    monkeypatch.setattr(compare, "read_objects", objects)
    left, right, said = move_objects.read_at_fence(run, SOURCE_SIDE, TARGET_SIDE, READER)
    assert [kwargs for _, _, kwargs in objects.calls] == [{"listing_only": True, "etags": True}] * 2
    kept = {"b/a": "size=1 sha256=aa", "b/b": "size=2 sha256=bb"}
    assert left.sections["objects"] == right.sections["objects"] == kept
    assert said == "2 objects as hashed before the fence, 0 hashed again at the fence"
