"""`make mutation`: mutation testing (mutmut) of settings, policy, components and promotion.

mutmut 3 imports the code it mutates from ``mutants/<package>`` and names each mutant after its
file's path, which only works when the packages sit at the top of the tree it runs in. Ours live
in ``infra/`` and ``policy/``, so this script lays out a scratch tree in the cache
(``$SMARTNATION_CACHE/mutation``, never the checkout other work runs in)::

    smartnation/  smartnation_policy/  tests/  environments/  charts/  policy/  Pulumi.yaml
    pyproject.toml   (ours, with a [tool.mutmut] section added)

and runs ``mutmut run`` there with the fast unit tests only (``-m unit``; the contract and
integration tests need daemons and clusters and take minutes per run). ``smartnation/paths.py``
finds the repository two levels above itself, which in ``mutants/`` is the scratch tree: it
holds the environment files, the chart and the policy pack the tests read.

It prints, per scope, the mutants, killed, survived, no tests, timeouts and the surviving share,
and writes them to tests/benchmarks/mutation.json, which `make bench` renders into
BENCHMARKS.md. Too slow for `make test`: run it by hand (about the time in BENCHMARKS.md).

    python -m tests.tools.mutation [--scope settings --scope policy ...] [--workers 2]
    python -m tests.tools.mutation --scope components \
        --only smartnation/program/daemon_config/mosquitto.py --tests 'test_daemon_config*.py test_broker*.py'
                                     # one module of a scope, against the test modules about it
    python -m tests.tools.mutation --report-only     # figures of the last run in the scratch tree
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from smartnation.paths import REPO, cache_root
from tests.benchmarks.mutation_figures import MUTATION_RESULTS, read_mutation

# The scopes of issue 12: each a list of paths in the scratch tree (files or package folders).
SCOPES: dict[str, list[str]] = {
    "settings": ["smartnation/settings"],
    "policy": ["smartnation_policy"],
    "promotion": [
        "smartnation/cli/promote.py",
        "smartnation/cli/promotion_order.py",
        "smartnation/cli/promotion_runs.py",
        "smartnation/cli/releases_copy.py",
    ],
    "components": ["smartnation/program/components", "smartnation/program/daemon_config"],
    # Issue 10's move: the driver's phases, the cutover's fence and promotion, the objects'
    # verification, the status reader and the program's guard.
    "move": [
        "smartnation/cli/move_cutover.py",
        "smartnation/cli/move_objects.py",
        "smartnation/cli/move_driver.py",
        # The rollback phase's steps (back from the cutover).
        "smartnation/cli/move_rollback.py",
        "smartnation/cli/move_status.py",
        "smartnation/cli/move_progress.py",
        "smartnation/program/move_guard.py",
        # The sides' readers verify reads (the retained messages' among them).
        "smartnation/cli/compare.py",
    ],
}

# The unit test modules each scope's mutants are run against (globs under tests/unit). All unit
# tests would catch a few more, but a surviving mutant in code every build runs (the settings
# loader) would then cost the whole unit suite, minutes each: the figures are an upper bound.
SCOPE_TESTS: dict[str, list[str]] = {
    "settings": ["test_settings*.py"],
    "policy": ["test_policy*.py"],
    "promotion": ["test_cli_promot*.py", "test_promotion*.py"],
    "components": [
        "test_stack.py",
        "test_daemon_config*.py",
        "test_device_revocation.py",
        "test_setup_jobs.py",
        "test_secret_consumers.py",
        "test_broker*.py",
        "test_backup_restore.py",
        "test_chart.py",
        "test_components_*.py",
    ],
    "move": ["test_cli_move*.py", "test_settings_move.py", "test_move_*.py", "test_compare_data.py"],
}

# Left out of a scope's selection: the settings property test draws hundreds of mutated files per
# run (most of `make test-unit`'s two minutes), which every surviving settings mutant would pay.
SLOW_TESTS: dict[str, list[str]] = {"settings": ["test_settings_mutations.py"]}

# Where each scratch path comes from in the checkout; the rest is what the unit tests read.
LAYOUT: dict[str, str] = {
    "smartnation": "infra/smartnation",
    "smartnation_policy": "policy/smartnation_policy",
    "tests": "tests",
    "environments": "environments",
    "charts": "charts",
    "services": "services",
    "policy": "policy",
    "Pulumi.yaml": "Pulumi.yaml",
}
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", "stacks", ".hypothesis")


@dataclass
class ScopeFigures:
    mutants: int = 0
    killed: int = 0
    survived: int = 0
    no_tests: int = 0
    timeouts: int = 0
    not_checked: int = 0
    other: int = 0

    @property
    def checked(self) -> int:
        return self.mutants - self.not_checked

    @property
    def surviving_percent(self) -> float:
        """Mutants no test caught (survived or reached by no unit test), in % of those checked."""
        return round(100 * (self.survived + self.no_tests) / self.checked, 1) if self.checked else 0.0

    def as_dict(self) -> dict[str, float | int]:
        return {**self.__dict__, "checked": self.checked, "surviving_percent": self.surviving_percent}


def scratch_dir(scope: str, only: list[str] | None = None) -> Path:
    """The scope's scratch tree; a run of some of its paths (``--only``) has its own."""
    name = scope + "".join(f"@{Path(path).stem}" for path in only or [])
    return cache_root() / "mutation" / name


def narrowed(scope: str, only: list[str] | None) -> list[str]:
    """The paths of ``scope`` to mutate: all, or ``only`` those, each inside the scope."""
    if not only:
        return SCOPES[scope]
    outside = [p for p in only if not any(p == s or p.startswith(s.rstrip("/") + "/") for s in SCOPES[scope])]
    if outside:
        raise SystemExit(f"mutation: --only {' '.join(outside)}: not inside scope {scope} ({' '.join(SCOPES[scope])})")
    return only


def lay_out(work: Path, commit: str | None) -> None:
    """A fresh scratch tree: the packages at its top, and our pyproject.

    From the working tree, or with ``commit`` from that commit alone (what others are editing
    in a shared checkout then stays out of the figures).
    """
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    source_root = REPO
    if commit:
        source_root = work.with_name(f"{work.name}-source")
        shutil.rmtree(source_root, ignore_errors=True)
        source_root.mkdir(parents=True)
        archive = subprocess.run(
            ["git", "archive", "--format=tar", commit, *LAYOUT.values(), "pyproject.toml"],
            cwd=REPO,
            check=True,
            capture_output=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(source_root)], input=archive, check=True)
    for target, source in LAYOUT.items():
        src = source_root / source
        if src.is_dir():
            shutil.copytree(src, work / target, ignore=IGNORED)
        else:
            shutil.copy2(src, work / target)
    shutil.copy2(source_root / "pyproject.toml", work / "pyproject.toml")
    # mutmut's own tree, laid out now so the tests can be tried before any mutation where they will
    # run: smartnation.paths.REPO (two levels above paths.py) is then the scratch tree, which holds
    # the environment files, the chart and the policy pack. mutmut copies over it and mutates.
    (work / "mutants").mkdir()
    for target in [*LAYOUT, "pyproject.toml"]:
        src = work / target
        if src.is_dir():
            shutil.copytree(src, work / "mutants" / target, symlinks=True)
        else:
            shutil.copy2(src, work / "mutants" / target)
    # smartnation.paths.REPO is the scratch tree: what reads the code from <repo>/infra (the
    # redacted preview's renderer) gets the mutated package.
    (work / "infra").mkdir()
    (work / "infra" / "smartnation").symlink_to(Path("..") / "mutants" / "smartnation")


# Each mutant's tests run in a process forked from a server that has only collected the tests:
# forked from mutmut's own process, which has run the Pulumi mocks (gRPC, an event loop), a child
# that builds a stack hangs on them, using no CPU, so mutmut's CPU-time limit never ends it.
FORKSERVER = 'process_isolation = "forkserver"'


def scope_selection(scope: str, tests: list[str] | None = None) -> list[str]:
    """pytest arguments selecting the scope's unit test modules by file name pattern, so that a
    module added later is picked up without changing mutmut's config (which would reset its
    results). ``tests``: other patterns (the modules about the one file a run mutates)."""
    ignored = [f"--ignore=tests/unit/{name}" for name in SLOW_TESTS.get(scope, [])]
    return ["tests/unit", "-m", "unit", "-o", f"python_files={' '.join(tests or SCOPE_TESTS[scope])}", *ignored]


def write_mutmut_config(work: Path, source_paths: list[str], selection: list[str]) -> None:
    """Our pyproject with a [tool.mutmut] section mutating ``source_paths``, with that test selection."""
    mutmut = [
        "",
        "[tool.mutmut]",
        f"source_paths = {json.dumps(source_paths)}",
        # The whole packages, not only the mutated files: the tests import the rest from mutants/.
        f"also_copy = {json.dumps([t for t in LAYOUT if t != 'tests'])}",
        f"pytest_add_cli_args_test_selection = {json.dumps(selection)}",
        # No .pytest_cache in the scratch tree; mutmut reads exit codes only.
        'pytest_add_cli_args = ["-p", "no:cacheprovider", "--no-header"]',
        FORKSERVER,
        "",
    ]
    project = work / "pyproject.toml"
    project.write_text(project.read_text() + "\n".join(mutmut))


# Functions now marked `# pragma: no mutate block` (they run at import, before mutmut switches a
# mutant on, so no test can see one): a tree laid out before the pragma still holds their mutants,
# which a new run would not make; they are left out of the figures and retests alike.
NOT_MUTATED = frozenset({"smartnation.settings.validation.x_setting", "smartnation.settings.validation.x__words"})


def _counted(name: str) -> bool:
    return name.rsplit("__mutmut_", 1)[0] not in NOT_MUTATED


def figures(work: Path) -> dict[str, ScopeFigures]:
    """Per scope, from the results mutmut keeps beside each mutated file (mutants/<file>.meta)."""
    from mutmut.stats import status_by_exit_code

    result = {scope: ScopeFigures() for scope in SCOPES}
    for meta in sorted((work / "mutants").rglob("*.py.meta")):
        relative = meta.relative_to(work / "mutants").as_posix().removesuffix(".meta")
        scope = next(
            (s for s, paths in SCOPES.items() if any(relative == p or relative.startswith(p + "/") for p in paths)),
            None,
        )
        if scope is None:
            continue
        codes = json.loads(meta.read_text()).get("exit_code_by_key", {})
        f = result[scope]
        for code in (code for name, code in codes.items() if _counted(name)):
            status = status_by_exit_code[code]
            f.mutants += 1
            if status in ("killed", "caught by type check"):
                f.killed += 1
            elif status == "survived":
                f.survived += 1
            elif status == "no tests":
                f.no_tests += 1
            elif status == "timeout":
                f.timeouts += 1
            elif status == "not checked":
                f.not_checked += 1
            else:
                f.other += 1
    return {scope: f for scope, f in result.items() if f.mutants}


def print_table(per_scope: dict[str, ScopeFigures]) -> None:
    header = ("mutants", "checked", "killed", "survived", "no tests", "timeouts", "surviving %")
    print(f"{'scope':<12}" + "".join(f"{h:>{len(h) + 2}}" for h in header))
    for scope, f in per_scope.items():
        row = (f.mutants, f.checked, f.killed, f.survived, f.no_tests, f.timeouts, f"{f.surviving_percent}%")
        print(f"{scope:<12}" + "".join(f"{v!s:>{len(h) + 2}}" for v, h in zip(row, header, strict=True)))


def survivors(work: Path) -> list[str]:
    """The names of the mutants no unit test caught (for `mutmut show NAME` in the scratch tree)."""
    from mutmut.stats import status_by_exit_code

    names = []
    for meta in sorted((work / "mutants").rglob("*.py.meta")):
        for name, code in json.loads(meta.read_text()).get("exit_code_by_key", {}).items():
            if status_by_exit_code[code] in ("survived", "no tests") and _counted(name):
                names.append(name)
    return names


def failing_before(work: Path, selection: list[str]) -> list[str]:
    """The selected tests that fail on the unmutated code: mutmut needs a green start, and a test
    someone is changing in a shared checkout must not stop the run (they are named, not hidden)."""
    proc = subprocess.run(
        ["nice", "-n", "10", sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rf", *selection],
        cwd=work / "mutants",
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        check=False,
    )
    return [line.split()[1] for line in proc.stdout.splitlines() if line.startswith("FAILED ")]


# The scopes whose mutmut this process stopped at their time budget: what the recorded row says.
STOPPED_AT_BUDGET: set[str] = set()


# How long mutmut may take to save and exit after the budget's SIGINT before it is killed.
STOP_GRACE_S = 120.0


def stop_at_budget(proc: subprocess.Popen, scope: str, minutes: float) -> None:
    """Interrupt mutmut at its time budget: on SIGINT it keeps what it checked (killed after
    ``STOP_GRACE_S``, with its fork server and the mutants' test processes, which would otherwise
    go on testing under init)."""
    print(f"mutation: {scope}: {minutes:g} minutes of testing are up, stopping mutmut", flush=True)
    STOPPED_AT_BUDGET.add(scope)
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        left = _descendants(proc.pid)
        print(f"mutation: {scope}: mutmut did not stop on SIGINT, killing it and {len(left)} processes under it")
        proc.kill()
        for pid in left:
            with contextlib.suppress(ProcessLookupError):  # it ended with mutmut
                os.kill(pid, signal.SIGKILL)
        proc.wait()


def _descendants(pid: int) -> list[int]:
    """The processes under ``pid`` (Linux's /proc children lists; none where there are none)."""
    found: list[int] = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            pids = [int(child) for child in children.read_text().split()]
        except OSError:  # the thread or process ended meanwhile
            continue
        for child in pids:
            found += [child, *_descendants(child)]
    return found


MUTMUT = Path(sys.executable).with_name("mutmut")


def start_mutmut(work: Path, workers: int, names: list[str] | None = None) -> subprocess.Popen:
    """``mutmut run`` in ``work`` (of ``names`` only, or all), as every run, resume and retest starts
    it: at `nice -n 10` (the clusters and other work share the two cores) and interruptible."""
    command = ["nice", "-n", "10", str(MUTMUT), "run", "--max-children", str(workers), *(names or [])]
    return interruptible(command, work, {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})


def interruptible(command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen:
    """``command`` started with SIGINT at its default, so ``stop_at_budget``'s SIGINT reaches it.
    A shell starts a command in the background (`make mutation &`, or CI's runner) with SIGINT
    ignored, its children inherit that, and Python keeps an ignored SIGINT ignored (no
    KeyboardInterrupt): mutmut would only have been killed at the end of the 2 minutes, without
    saving what it had checked (seen: the unit test below failed under such a runner)."""
    return subprocess.Popen(command, cwd=cwd, env=env, preexec_fn=_default_sigint)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def supervise(proc: subprocess.Popen, work: Path, scope: str, minutes: float | None) -> int:
    """Wait for mutmut; with ``minutes``, interrupt it that long after it starts testing mutants
    (once its stats file exists). Interrupted, it keeps what it checked: the figures then count
    the checked mutants (fastest first) and say how many were not."""
    tested_since: float | None = None
    while True:
        try:
            return proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        if tested_since is None and (work / "mutants" / "mutmut-stats.json").exists():
            tested_since = time.time()
        if minutes and tested_since and time.time() - tested_since > minutes * 60:
            stop_at_budget(proc, scope, minutes)
            return 0


def run_scope(
    scope: str, workers: int, commit: str | None, minutes: float | None, args: argparse.Namespace
) -> tuple[int, list[str]]:
    """mutmut over one scope (or ``args.only`` of its paths) in its own scratch tree (so each
    keeps its results)."""
    work = scratch_dir(scope, args.only)
    lay_out(work, commit)
    selection = scope_selection(scope, args.tests)
    failing = failing_before(work, selection)
    for test in failing:
        print(f"mutation: {scope}: left out, fails before any mutation: {test}", flush=True)
    write_mutmut_config(work, narrowed(scope, args.only), [*selection, *(f"--deselect={t}" for t in failing)])
    print(f"mutation: {scope}: mutmut run --max-children {workers} in {work}", flush=True)
    code = supervise(start_mutmut(work, workers), work, scope, minutes)
    if code != 0:
        print(f"mutation: mutmut exited {code} for {scope}", file=sys.stderr)
    return code, failing


def use_forkserver(work: Path) -> None:
    """A scratch tree laid out before FORKSERVER: add it (not part of mutmut's result cache key)."""
    project = work / "pyproject.toml"
    if FORKSERVER not in project.read_text():
        project.write_text(project.read_text().rstrip("\n") + f"\n{FORKSERVER}\n")


def resume_scope(scope: str, workers: int, minutes: float | None, only: list[str] | None = None) -> int:
    """Go on with the mutants the last run of ``scope`` did not check (same tree, same tests)."""
    work = scratch_dir(scope, only)
    use_forkserver(work)
    print(f"mutation: {scope}: resuming in {work}", flush=True)
    proc = start_mutmut(work, workers)
    try:
        return proc.wait(timeout=minutes * 60 if minutes else None)
    except subprocess.TimeoutExpired:
        stop_at_budget(proc, scope, minutes or 0)
        return 0


def use_current_test_modules(work: Path, scope: str, tests: list[str] | None = None) -> None:
    """The scratch tree's test selection with the scope's module patterns as they are now (a test
    module added under a new pattern since the tree was laid out), or ``tests``; what was left
    out stays out. mutmut sees the new tests and collects again which functions they reach."""
    project = work / "pyproject.toml"
    pattern = f"python_files={' '.join(tests or SCOPE_TESTS[scope])}"
    text = re.sub(r"python_files=[^\"]*", lambda _: pattern, project.read_text())
    project.write_text(text)


def results_by_file(work: Path) -> dict[Path, dict[str, int | None]]:
    """Each mutated file's results as mutmut keeps them (mutants/<file>.meta)."""
    return {
        meta: json.loads(meta.read_text()).get("exit_code_by_key", {})
        for meta in sorted((work / "mutants").rglob("*.py.meta"))
    }


def keep_earlier_results(work: Path, earlier: dict[Path, dict[str, int | None]]) -> int:
    """Give back the results a retest wiped: with another test selection (``--tests``) mutmut
    resets every result, not only the named mutants'. The code is the same and the mutants not
    named were caught (killed, timeout) before, so those results stand; returns how many."""
    kept = 0
    for meta, before in earlier.items():
        if not meta.exists():
            continue
        data = json.loads(meta.read_text())
        now = data.setdefault("exit_code_by_key", {})
        for name, code in before.items():
            if code is not None and now.get(name) is None:
                now[name] = code
                kept += 1
        meta.write_text(json.dumps(data))
    return kept


def retest_scope(scope: str, workers: int, commit: str | None, minutes: float | None, args: argparse.Namespace) -> int:
    """Run the last run's uncaught mutants of ``scope`` again, against the tests as they are now
    (the working tree's tests/, or ``commit``'s): mutmut collects which code the new tests reach
    and re-runs only the named mutants, so the figures are the last run's with those updated."""
    work = scratch_dir(scope, args.only)
    names = survivors(work)
    if not names:
        print(f"mutation: {scope}: nothing to retest in {work}", file=sys.stderr)
        return 1
    use_forkserver(work)
    use_current_test_modules(work, scope, args.tests)
    source = REPO
    if commit:
        source = work.with_name(f"{work.name}-retest-source")
        shutil.rmtree(source, ignore_errors=True)
        source.mkdir(parents=True)
        archive = subprocess.run(
            ["git", "archive", "--format=tar", commit, "tests"], cwd=REPO, check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(source)], input=archive, check=True)
    for tree in (work, work / "mutants"):
        shutil.copytree(source / "tests", tree / "tests", ignore=IGNORED, dirs_exist_ok=True)
    print(f"mutation: {scope}: retesting {len(names)} mutants in {work}", flush=True)
    earlier = results_by_file(work)
    # The stats file exists from the last run: the budget counts from the start here.
    proc = start_mutmut(work, workers, names)
    try:
        code = proc.wait(timeout=minutes * 60 if minutes else None)
    except subprocess.TimeoutExpired:
        stop_at_budget(proc, scope, minutes or 0)
        code = 0
    kept = keep_earlier_results(work, earlier)
    print(f"mutation: {scope}: {kept} results of the last run kept (mutants not re-run)", flush=True)
    return code


def _budget(minutes: float | None, stopped: bool) -> str:
    """What the time budget did: only a run stopped at it says so (a retest or resume that ended
    by itself did not stop, though the tree still holds mutants no run has checked)."""
    if not minutes:
        return ""
    if stopped:
        return f", stopped after {minutes:g} min"
    return f", ran to its end within its {minutes:g} min"


def record(
    scope: str, f: ScopeFigures, started: float, duration: float, args: argparse.Namespace, failing: list[str]
) -> None:
    """Append this run to tests/benchmarks/mutation.json and refresh BENCHMARKS.json and .md."""
    results = read_mutation() or {}
    tests = " ".join(scope_selection(scope, args.tests))
    results.setdefault("runs", []).append(
        {
            **f.as_dict(),
            "scope": scope,
            "label": args.label,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
            "duration_s": round(duration),
            "code": " ".join(narrowed(scope, args.only)),
            "tests": tests,
            # mutmut runs at `nice -n 10` from this process's niceness (19 at most).
            "run": f"mutmut 3.8.1, {args.workers} workers, nice {min(19, os.nice(0) + 10)}"
            + (f", commit {args.commit}" if args.commit else "")
            + _budget(args.minutes, scope in STOPPED_AT_BUDGET)
            + (", the run before's uncaught mutants re-run against the tests as they are now" if args.retest else "")
            + (", resumed" if args.resume else ""),
            "left_out_failing_before": failing,
        }
    )
    results["command"] = "make mutation [SCOPE=settings|policy|promotion|components]"
    MUTATION_RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    benchmarks = REPO / "BENCHMARKS.json"
    if benchmarks.exists():
        from tests.benchmarks.run import render

        # Read just before writing: other measurements may have landed while this ran.
        all_results = {**json.loads(benchmarks.read_text()), "mutation": results}
        benchmarks.write_text(json.dumps(all_results, indent=2, sort_keys=True) + "\n")
        (REPO / "BENCHMARKS.md").write_text(render(all_results))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scope", action="append", choices=sorted(SCOPES), help="default: every scope")
    parser.add_argument("--workers", type=int, default=2, help="mutmut's --max-children (the machine has 2 cores)")
    parser.add_argument("--commit", help="mutate and test this commit (git archive), not the working tree")
    parser.add_argument("--minutes", type=float, help="stop each scope's mutmut after this long")
    parser.add_argument(
        "--retest", action="store_true", help="re-run the last run's uncaught mutants against the tests as they are now"
    )
    parser.add_argument("--resume", action="store_true", help="go on with the last run's unchecked mutants")
    parser.add_argument("--report-only", action="store_true", help="the figures of the last runs, nothing run")
    parser.add_argument(
        "--no-record",
        action="store_true",
        help="do not record the figures (tests/benchmarks/mutation.json, BENCHMARKS.*)",
    )
    parser.add_argument("--label", default="", help="what this run is, in BENCHMARKS.md (e.g. before, after)")
    parser.add_argument(
        "--only", action="append", help="mutate only this path of the scope (a file or folder; its own scratch tree)"
    )
    parser.add_argument(
        "--tests",
        type=str.split,
        action="extend",
        help="the unit test modules to run (globs under tests/unit), not the scope's; given again, added",
    )
    args = parser.parse_args(argv)
    for scope in args.scope or list(SCOPES):
        narrowed(scope, args.only)  # before anything is laid out: a path outside the scope is refused
    failed = 0
    results: dict[str, ScopeFigures] = {}
    for scope in args.scope or list(SCOPES):
        started = time.time()
        failing: list[str] = []
        if args.retest or args.resume:
            if args.retest:
                code = retest_scope(scope, args.workers, args.commit, args.minutes, args)
            else:
                code = resume_scope(scope, args.workers, args.minutes, args.only)
            previous = [r for r in (read_mutation() or {}).get("runs", []) if r["scope"] == scope]
            failing = previous[-1].get("left_out_failing_before", []) if previous else []
            if code != 0:
                failed += 1
                continue
        elif not args.report_only:
            code, failing = run_scope(scope, args.workers, args.commit, args.minutes, args)
            if code != 0:
                failed += 1
                continue
        duration = time.time() - started
        work = scratch_dir(scope, args.only)
        f = figures(work).get(scope)
        if f is None:
            print(f"mutation: no results for {scope} in {work}", file=sys.stderr)
            failed += 1
            continue
        results[scope] = f
        if not args.report_only and not args.no_record:
            record(scope, f, started, duration, args, failing)
        left = survivors(work)
        print(f"{scope}: {len(left)} mutants not caught; see one with: cd {work} && mutmut show NAME")
        for name in left:
            print(f"  {name}")
    print_table(results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
