"""Property: a mutated settings file deploys cleanly under the mocks or is refused up front.

Every key of every environment file (as the loader sees it: defaults merged with the file, so
a key an environment inherits is mutated by writing it into the environment file) and of every
cluster profile is mutated in every way that applies to it: null, wrong type, empty, out of
range, too long, bad characters, a name that refers to nothing, an unknown key, too many items,
removed. Then a hypothesis test writes random YAML values at random keys. Each mutation must
either load and build under the Pulumi mocks without any error, or raise ``SettingsError`` whose
file is the mutated file and whose key path is the mutated key (a key below or above it), or a
key that refers to it (REFERRERS) in the file that holds that key. Any other exception, a wrong
file or an unrelated key fails the test.

The number of mutations tried is printed and written to ``<pytest tmp>/settings-mutations.txt``.
"""

from __future__ import annotations

import contextlib
import copy
import fnmatch
import functools
import hashlib
import multiprocessing
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, MutableMapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

import smartnation.settings.loader as loader
from smartnation.program.city_platform import build
from smartnation.settings import SettingsError, load_settings
from tests.unit.harness import ENVIRONMENTS, REPO_ENVIRONMENTS, install_mocks, run, secrets_for, set_secrets

pytestmark = pytest.mark.unit

# Hypothesis keeps a cache (.hypothesis/) in the working directory: keep it out of the source tree.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "smartnation-hypothesis")

DEFAULTS = "defaults.yaml"
PROFILES = ("clusters/dusseldorf-test.yaml", "clusters/monaco-onprem.yaml")
FILES = (DEFAULTS, *(f"{e}.yaml" for e in ENVIRONMENTS), *PROFILES)

# (mutated key pattern, key pattern that refers to it): an error at the referring key is the
# right answer to breaking what it refers to. `*` matches one key path segment.
REFERRERS: tuple[tuple[str, str], ...] = (
    ("database.roles*", "database.databases.*.owner"),
    ("database.roles*", "database.grants.*.role"),
    ("database.roles*", "city_apis.*.database.role"),
    ("database.databases*", "database.grants.*.database"),
    ("database.databases*", "city_apis.*.database.name"),
    ("database.databases*", "city_apis.*.database.role"),
    ("database.grants*", "city_apis.*.database.role"),
    ("object_storage.buckets*", "object_storage.users.*.buckets"),
    ("object_storage.buckets*", "database.backup.bucket"),
    ("object_storage.buckets*", "database.backup.storage_user"),
    ("object_storage.users*", "city_apis.*.storage_user"),
    ("object_storage.users*", "database.backup.storage_user"),
    ("database.backup.bucket", "database.backup.storage_user"),
    ("broker.device_classes*", "city_apis.*.broker_client"),
    ("city_apis.*.broker_client", "city_apis.*.broker_all_pods"),
    ("city_apis.*.replicas", "city_apis.*.max_replicas"),
    ("guardrails.limit_range*", "guardrails.limit_range.*.*"),
    # The quota and the LimitRange must hold every workload at its largest (settings/footprint.py).
    *(
        (sizing, guard)
        for sizing in (
            "broker",
            "broker.replicas",
            "broker.resources*",
            "broker.storage_size",
            "database",
            "database.replicas",
            "database.resources*",
            "database.storage_size",
            "object_storage",
            "object_storage.replicas",
            "object_storage.resources*",
            "object_storage.storage_size",
            "city_apis*",
        )
        for guard in ("guardrails.quota.*", "guardrails.limit_range.max.*")
    ),
    # Cluster profiles.
    ("node_pools*", "workload_node_selector.*"),
    ("storage.classes*", "storage.default_class"),
    ("registry.allowed*", "registry.default"),
)

REMOVE = object()
"""Mutation value meaning: delete the key (or the list item)."""


def _walk(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """Every (key path, value) below ``value``; list items are keyed by index."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        yield (*path, key), item
        yield from _walk(item, (*path, key))


def _merge(base: Any, override: Any) -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        return {**base, **{k: _merge(base[k], v) if k in base else v for k, v in override.items()}}
    return override


def _has(data: Any, keys: tuple[str, ...]) -> bool:
    node = data
    for key in keys:
        if isinstance(node, dict) and key in node:
            node = node[key]
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            return False
    return True


# Keys whose value names something else (or is named by something else): a name that exists
# nowhere is the dangling reference to try on them.
REFERENCE_KEYS = frozenset(
    {"name", "owner", "role", "database", "bucket", "buckets", "storage_user", "broker_client", "cluster"}
    | {"default_class", "default", "allowed", "stateless", "stateful"}
)


def mutations(key: Any, value: Any) -> Iterator[tuple[str, Any]]:
    """(kind, new value) for ``key`` whose value is ``value``: the issue's list, as applies."""
    yield "null", None
    if isinstance(value, bool):
        yield "wrong type", "yes"
    elif isinstance(value, int):
        yield from (("wrong type", "many"), ("below range", -1), ("above range", 10**6))
    elif isinstance(value, str):
        yield from (("wrong type", [value]), ("empty", ""), ("too long", value + "x" * 300))
        yield "bad characters", value.upper() + " ;#/"
    elif isinstance(value, list):
        yield from (("wrong type", "item"), ("empty", []), ("too long", value * 40))
    elif isinstance(value, dict):
        yield from (("wrong type", ["item"]), ("empty", {}), ("unknown key", {**value, "unexpected_key": 1}))
    if key in REFERENCE_KEYS:
        yield "dangling reference", ["no-such-name"] if isinstance(value, list) else "no-such-name"
    yield "removed", REMOVE


@dataclass
class Sandbox:
    """A copy of environments/ in which one file at a time is mutated, loaded and built."""

    root: Path
    texts: dict[str, str] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)
    clusters: dict[str, str] = field(default_factory=dict)
    built: MutableMapping[str, bool] = field(default_factory=dict)
    """Digests of the settings already built (shared between the sweep's worker processes)."""
    override: tuple[Path, Any] | None = None
    """The mutated file and its document, handed to the loader instead of the file's own."""
    counts: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    @classmethod
    def create(cls, root: Path) -> Sandbox:
        shutil.copytree(REPO_ENVIRONMENTS, root, ignore=shutil.ignore_patterns("stacks"))
        box = cls(root)
        for file in FILES:
            box.texts[file] = (root / file).read_text(encoding="utf-8")
            box.raw[file] = yaml.safe_load(box.texts[file])
        box.clusters = {e: box.raw[f"{e}.yaml"]["cluster"] for e in ENVIRONMENTS}
        return box

    def affected(self, file: str) -> tuple[str, ...]:
        if file == DEFAULTS:
            return ENVIRONMENTS
        if file in PROFILES:
            return tuple(e for e, c in self.clusters.items() if file == f"clusters/{c}.yaml")
        return (file.removesuffix(".yaml"),)

    def document(self, file: str) -> Any:
        """What the loader sees of ``file``: an environment file merged over the defaults."""
        if file in (DEFAULTS, *PROFILES):
            return self.raw[file]
        return _merge(self.raw[DEFAULTS], self.raw[file])

    def targets(self) -> list[tuple[str, tuple[Any, ...], Any]]:
        return [(file, path, value) for file in FILES for path, value in _walk(self.document(file))]

    @functools.cached_property
    def all_targets(self) -> list[tuple[str, tuple[Any, ...], Any]]:
        return self.targets()

    def mutate(self, file: str, path: tuple[Any, ...], value: Any) -> Any | None:
        """``file``'s data with ``path`` set to ``value`` (or removed); None if not applicable."""
        data = copy.deepcopy(self.raw[file])
        reference = self.document(file)
        node = data
        for key in path[:-1]:
            reference = reference[key]
            if isinstance(node, dict) and key not in node:
                # Inherited from the defaults: state it in the environment file. A list is
                # replaced whole by a file that states it, so it is copied whole.
                node[key] = {} if isinstance(reference, dict) else copy.deepcopy(reference)
            node = node[key]
        last = path[-1]
        if value is REMOVE:
            if isinstance(node, dict) and last not in node:
                return None  # an inherited key cannot be removed by the environment file
            node.pop(last)
        else:
            node[last] = value
        return data

    def check(self, file: str, path: tuple[Any, ...], kind: str, value: Any, *, via_file: bool = False) -> None:
        """Mutate, then load and build every environment the file feeds.

        ``via_file`` writes the mutated YAML and lets the loader parse it; otherwise the loader
        gets the mutated document directly (the exhaustive sweep: thousands of loads, and a
        YAML round trip of a document is not what is under test here)."""
        data = self.mutate(file, path, value)
        if data is None:
            return
        self.counts["mutations"] += 1
        target = self.root / file
        if via_file:
            target.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        else:
            self.override = (target, data)
        try:
            for environment in self.affected(file):
                self._load_and_build(file, path, kind, environment, data)
        finally:
            self.override = None
            if via_file:
                target.write_text(self.texts[file], encoding="utf-8")

    def _load_and_build(self, file: str, path: tuple[Any, ...], kind: str, environment: str, data: Any) -> None:
        what = f"{file} {'.'.join(map(str, path))} ({kind}) in {environment}"
        self.counts["loads"] += 1
        try:
            settings = load_settings(environment, self.root)
            # A build is a function of the settings: equal settings are built once.
            key = hashlib.sha256(repr(settings).encode()).hexdigest()
            if key in self.built:
                self.counts["built (same settings as before)"] += 1
                return
            _build(settings)
            self.built[key] = True
            self.counts["built"] += 1
            self.counts[f"built after {kind}"] += 1
        except SettingsError as error:
            self.counts["refused"] += 1
            if not self._blames_right(error, file, path, environment, data):
                self.failures.append(f"{what}: blamed {error.file}: {error.key_path}: {error.detail}")
        except Exception as error:  # noqa: BLE001 - the property is exactly that there is none
            self.failures.append(f"{what}: {type(error).__name__}: {error}")

    def _blames_right(
        self, error: SettingsError, file: str, path: tuple[Any, ...], environment: str, data: Any
    ) -> bool:
        # Right files: the mutated one, or the one the blamed key really comes from after the
        # mutation (removing an override in an environment file exposes the default's value).
        files = (f"environments/{file}", self._holder(error.key_path, file, environment, data))
        dotted, where = ".".join(map(str, path)), error.key_path
        # The mutated key itself, a key below it, or the block holding it.
        if error.file in files and (
            where == dotted or where.startswith(f"{dotted}.") or dotted.startswith(f"{where}.")
        ):
            return True
        for target, referrer in REFERRERS:
            if fnmatch.fnmatchcase(dotted, target) and _segments_match(where, referrer):
                return error.file in files
        return False

    def _holder(self, key_path: str, file: str, environment: str, data: Any) -> str:
        """The file a key of ``environment`` comes from: its own file if stated there, else the defaults."""
        if file in PROFILES:
            return f"environments/{file}"
        env_file = f"{environment}.yaml"
        env_data = data if file == env_file else self.raw[env_file]
        return f"environments/{env_file if _has(env_data, tuple(key_path.split('.'))) else DEFAULTS}"


def _segments_match(key_path: str, pattern: str) -> bool:
    parts, wanted = key_path.split("."), pattern.split(".")
    return len(parts) == len(wanted) and all(w == "*" or w == p for p, w in zip(parts, wanted, strict=True))


def _build(settings: Any) -> None:
    recorder = install_mocks()
    set_secrets(secrets_for(settings))
    try:
        run(recorder, lambda: build(settings))
    finally:
        pulumi.runtime.set_all_config({})
    assert recorder.resources, "a clean build registers resources"


@contextlib.contextmanager
def _reading(box: Sandbox) -> Iterator[None]:
    """The loader reads through this: the mutated document for the mutated file, and each
    unchanged file parsed once (a file written by a mutation is parsed for real, keyed by its text)."""
    parsed: dict[tuple[str, str], Any] = {}
    original = loader.read_yaml

    def cached(path: Path, shown: str | None = None) -> Any:
        if box.override and path == box.override[0]:
            return box.override[1]
        if not path.is_file():
            return original(path, shown)
        key = (str(path), path.read_text(encoding="utf-8"))
        if key not in parsed:
            parsed[key] = original(path, shown)
        return parsed[key]

    patch = pytest.MonkeyPatch()
    patch.setattr(loader, "read_yaml", cached)
    try:
        yield
    finally:
        patch.undo()


def _sweep(root: str, share: int, shares: int, built: MutableMapping[str, bool]) -> tuple[Counter, list[str]]:
    """Every ``shares``-th target from ``share`` on, mutated every way (in a worker process)."""
    box = Sandbox.create(Path(root))
    box.built = built
    with _reading(box):
        for file, path, value in box.targets()[share::shares]:
            for kind, new in mutations(path[-1], value):
                box.check(file, path, kind, new)
    return box.counts, box.failures


@dataclass
class Tally:
    """Counts and wrong outcomes of every test in this module, for the figure in the report."""

    counts: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def tally(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tally]:
    result = Tally()
    started = time.monotonic()
    yield result
    seconds = time.monotonic() - started
    summary = ", ".join(f"{k} {v}" for k, v in sorted(result.counts.items()))
    report = tmp_path_factory.getbasetemp() / "settings-mutations.txt"
    report.write_text(f"{result.counts['mutations']} mutations in {seconds:.1f} s: {summary}\n", encoding="utf-8")
    print(f"\nsettings mutations: {report.read_text(encoding='utf-8').strip()} (written to {report})")


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory, tally: Tally) -> Iterator[Sandbox]:
    box = Sandbox.create(tmp_path_factory.mktemp("mutations") / "environments")
    box.counts = tally.counts
    box.failures = tally.failures
    with _reading(box):
        yield box


def test_the_unmutated_files_load_and_build(sandbox: Sandbox) -> None:
    for environment in ENVIRONMENTS:
        _build(load_settings(environment, sandbox.root))


def test_every_key_of_every_file_mutated_every_way(
    sandbox: Sandbox, tally: Tally, tmp_path_factory: pytest.TempPathFactory
) -> None:
    assert {file for file, _, _ in sandbox.targets()} == set(FILES)
    # The builds are most of the time and independent: one process per core (spawned, so no
    # Pulumi runtime or event loop state is inherited), sharing which settings were built.
    shares = max(1, min(os.cpu_count() or 1, 4))
    base = tmp_path_factory.mktemp("sweep")
    counts, failures = Counter(), []
    with multiprocessing.get_context("spawn").Manager() as manager:
        built = manager.dict()
        with ProcessPoolExecutor(shares, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [
                pool.submit(_sweep, str(base / f"share{i}" / "environments"), i, shares, built) for i in range(shares)
            ]
            for future in futures:
                share_counts, share_failures = future.result()
                counts.update(share_counts)
                failures.extend(share_failures)
    tally.counts.update(counts)
    tally.failures.extend(failures)
    assert not failures, f"{len(failures)} wrong outcomes:\n" + "\n".join(failures[:40])
    # Both outcomes must occur, or the oracle is not being exercised.
    assert counts["refused"] > 1000 and counts["built"] > 20, counts


_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=80),
    st.from_regex(r"[a-z0-9][a-z0-9_./#+-]{0,70}", fullmatch=True),
    st.sampled_from(["#", "+/#", "0.0.0.0/0", "10.0.0.1/8", "99 99 * * *", "512Mi", "0", "1e3", "postgres", "user"]),
)
_values = st.recursive(
    _scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
)


@hypothesis_settings(
    max_examples=300,
    deadline=None,
    database=None,  # nothing written into the source tree
    derandomize=True,  # the same examples in CI and here; the figure in the report is reproducible
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_random_values_at_random_keys(sandbox: Sandbox, data: st.DataObject) -> None:
    file, path, _ = data.draw(st.sampled_from(sandbox.all_targets), label="key")
    value = data.draw(st.one_of(_values, st.just(REMOVE)), label="value")
    failures = len(sandbox.failures)
    sandbox.check(file, path, "random", value, via_file=True)
    assert len(sandbox.failures) == failures, sandbox.failures[-1]
