"""`smartnation compare ENV --to CLUSTER`: are an environment's data the same on two clusters?

The building block of the move's verification (docs/move.md), by data, not by status: it reads
both sides, one after the other, and compares them item by item (compare_data.py says what a
fingerprint is): per table its row count and an order-independent checksum (hypertables also per
chunk), per bucket its objects with their sha256, the registered devices, the retained messages.
It writes a JSON report (every difference named) and exits 1 on any difference, 0 when equal.

It uses what an operator has against any site: kubectl with each cluster's context.

- the database: psql in the primary's own container, as the superuser, whose password (from the
  environment's credentials Secret) goes in on stdin, never in an argument;
- the object storage and the broker: a Python run by the environment's telemetry-ingest Pod
  (its image has boto3 and paho-mqtt; the NetworkPolicies let it reach both), with the object
  storage's root credentials on stdin and the broker subscription the ingest's own.

Both sides must be still for the comparison to mean anything: during a move, after the cutover's
writes stopped; for a restored copy, against the source as it was backed up.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import re
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from smartnation.cli import exit_codes
from smartnation.cli.compare_data import (
    DATABASE_SQL,
    DEVICES_SQL,
    MARKER,
    STORE_AND_BROKER_PY,
    Snapshot,
    differences,
    dump,
    report,
    summary_lines,
)
from smartnation.cli.restore import project_name
from smartnation.paths import environments_dir
from smartnation.program import move_replication, naming
from smartnation.program.components import object_mirror
from smartnation.program.components.database import SUPERUSER
from smartnation.settings import SettingsError, list_clusters, load_cluster_profile, load_settings
from smartnation.settings.models import Settings
from smartnation.tooling.toolchain.bootstrap import tool_env
from smartnation.tooling.toolchain.cache import layout

log = logging.getLogger("smartnation")

DEVICE_REGISTRY = "device_registry"
"""The city API whose database holds the registered devices (its table ``devices``)."""
READER_API = move_replication.READER_API
"""The API whose Pod reads the object storage and the broker (it may reach both)."""


class CompareError(Exception):
    """A side cannot be read; the message says which and why."""


@dataclass(frozen=True)
class Side:
    """One place the environment's data lives: a cluster's context and a namespace."""

    cluster: str
    context: str
    namespace: str
    environment: str
    env: dict[str, str]

    @property
    def where(self) -> str:
        return f"{self.cluster}/{self.namespace}"

    def kubectl(self, *args: str, input: str | None = None, timeout: float = 120) -> str:
        argv = ["kubectl", "--context", self.context, "-n", self.namespace, *args]
        try:
            done = subprocess.run(argv, env=self.env, input=input, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise CompareError(f"{self.where}: `kubectl {' '.join(args[:4])}` took longer than {timeout:g}s") from None
        if done.returncode != 0:
            raise CompareError(f"{self.where}: `kubectl {' '.join(args[:4])}` failed: {done.stderr.strip()[-600:]}")
        return done.stdout

    def running_pod(self, selector: str) -> tuple[str, str]:
        """(pod, its first container) of a Running Pod matching ``selector``."""
        pods = json.loads(self.kubectl("get", "pods", "-l", selector, "-o", "json"))["items"]
        running = [p for p in pods if p["status"].get("phase") == "Running"]
        if not running:
            raise CompareError(f"{self.where}: no Running Pod with {selector}: is {self.environment} deployed there?")
        pod = sorted(running, key=lambda p: p["metadata"]["name"])[0]
        return pod["metadata"]["name"], pod["spec"]["containers"][0]["name"]

    def secret_value(self, name: str, key: str) -> str:
        data = json.loads(self.kubectl("get", "secret", name, "-o", "json")).get("data") or {}
        if key not in data:
            raise CompareError(f"{self.where}: Secret {name} has no {key}")
        return base64.b64decode(data[key]).decode()


T = TypeVar("T")


def both(left: Callable[[], T], right: Callable[[], T]) -> tuple[T, T]:
    """``left()`` and ``right()`` at the same time (one per site: neither waits on the other's
    cluster); the first error raised is raised here."""
    with ThreadPoolExecutor(2) as pool:
        first, second = pool.submit(left), pool.submit(right)
        return first.result(), second.result()


def primary(side: Side) -> tuple[str, str, str]:
    """The side's Running database primary: its Pod, container, and the superuser's password."""
    database = naming.names(side.environment, naming.DATABASE)
    pod, container = side.running_pod(f"app.kubernetes.io/instance={database.name},app.kubernetes.io/component=primary")
    return pod, container, side.secret_value(database.child("credentials"), "POSTGRES_PASSWORD")


def _psql(side: Side, pod: str, container: str, password: str, database: str, sql: str, db: str = "") -> str:
    """``sql`` in ``database``; its psql variable ``db`` is ``db`` or the database's own name (a
    restored copy is keyed as the database it copies)."""
    # The password is the first line of stdin (`read`), the SQL the rest: neither in an argument.
    script = (
        'read -r PGPASSWORD; export PGPASSWORD; exec psql -X -A -t -q -v ON_ERROR_STOP=1 -U "$1" -d "$2" -v db="$3"'
    )
    return side.kubectl(
        "exec", "-i", pod, "-c", container, "--", "sh", "-c", script, "sh", SUPERUSER, database, db or database,
        input=f"{password}\n{sql}", timeout=1800,
    )  # fmt: skip


DATABASE_SECTIONS = ("tables", "chunks", "devices")
"""What read_database fills: all a database holds (the move's replicate phase carries only that)."""


def read_side(side: Side, settings: Settings, settle: float) -> Snapshot:
    """Everything the comparison needs of one side."""
    snapshot = read_database(side, settings)
    read_store_and_broker(side, settings, settle, snapshot)
    return snapshot


def read_database(side: Side, settings: Settings, leave_out: re.Pattern[str] | None = None) -> Snapshot:
    """One side's database: every table and chunk of every database, the registered devices;
    ``leave_out``: databases whose names it matches are not read (a move's rollback leaves the
    source's replaced databases, restore_pod.REPLACED_NAME, beside the restored ones)."""
    snapshot = Snapshot(side.where)
    pod, container, password = primary(side)
    databases = "SELECT datname FROM pg_database WHERE NOT datistemplate AND datname <> 'postgres' ORDER BY 1;"
    listed = _psql(side, pod, container, password, "postgres", databases)
    for name in listed.split():
        if leave_out is not None and leave_out.fullmatch(name):
            log.info("%s: database %s left out", side.where, name)
            continue
        log.info("%s: reading database %s", side.where, name)
        snapshot.add_lines(_psql(side, pod, container, password, name, DATABASE_SQL))
    registry = settings.city_apis.get(DEVICE_REGISTRY)
    if registry is not None and registry.database is not None:
        snapshot.add_lines(
            _psql(side, pod, container, password, registry.database.name, DEVICES_SQL.format(table="devices"))
        )
    return snapshot


def read_store_and_broker(side: Side, settings: Settings, settle: float, snapshot: Snapshot) -> None:
    """Adds one side's objects, buckets and retained messages to ``snapshot``."""
    given = {"storage": _root_credentials(side), "topics": _reader_topics(settings), "settle": settle}
    reader = side.running_pod(reader_selector(side.environment))
    log.info("%s: reading the object storage and the broker's retained messages", side.where)
    snapshot.add_lines(_run_reader(side, reader, given))


RETAINED_SECTIONS = ("retained",)
"""What read_retained fills."""


def read_retained(side: Side, settings: Settings, settle: float) -> Snapshot:
    """One side's broker: the retained message of each topic the reader API may read, through
    that API's Pod (its broker login; during a move the new site runs that API too)."""
    snapshot = Snapshot(side.where)
    topics = _reader_topics(settings)
    if not topics:
        return snapshot
    reader = side.running_pod(reader_selector(side.environment))
    log.info("%s: reading the broker's retained messages", side.where)
    snapshot.add_lines(_run_reader(side, reader, {"topics": topics, "settle": settle}))
    return snapshot


def reader_selector(environment: str) -> str:
    """The reader API's Pods."""
    return f"app.kubernetes.io/instance={environment}-{READER_API},app.kubernetes.io/component={READER_API}"


def mirror_reader(environment: str) -> tuple[str, str]:
    """(label selector, container) of the object reader on a move's target: the bucket mirror's
    Pod and its ``reader`` container (components/object_mirror.py; the new site runs no city API
    yet)."""
    storage = naming.names(environment, naming.OBJECT_STORAGE)
    selector = f"app.kubernetes.io/instance={storage.name},app.kubernetes.io/component={object_mirror.MIRROR}"
    return selector, object_mirror.READER


OBJECT_SECTIONS = ("objects", "buckets")
"""What read_objects fills."""


def read_objects(
    side: Side,
    reader: tuple[str, str] | None = None,
    *,
    listing_only: bool = False,
    etags: bool = False,
    hash_only: list[str] | None = None,
) -> Snapshot:
    """One side's objects and buckets (no broker). ``reader``: (label selector, container) of the
    Pod whose Python reads them, by default the reader API's (during a move the new site has none:
    its bucket mirror's ``reader`` container, components/object_mirror.py). ``listing_only``: names
    and sizes alone, nothing downloaded (a move's wait for its mirror). ``etags``: each object's
    ETag from the listing too; ``hash_only``: the sha256 of these ``bucket/key`` names alone (a
    move's cutover, cli/move_objects.py)."""
    snapshot = Snapshot(side.where)
    if reader is None:
        pod = side.running_pod(reader_selector(side.environment))
    else:
        pod = (side.running_pod(reader[0])[0], reader[1])
    given = {"storage": _root_credentials(side), "topics": [], "listing_only": listing_only, "etags": etags}
    if hash_only is not None:
        given["hash_only"] = sorted(hash_only)
    log.info("%s: reading the object storage%s", side.where, " (names and sizes)" if listing_only else "")
    snapshot.add_lines(_run_reader(side, pod, given))
    return snapshot


def _root_credentials(side: Side) -> dict[str, str]:
    root_secret = naming.names(side.environment, naming.OBJECT_STORAGE).child("root")
    return {
        "user": side.secret_value(root_secret, "MINIO_ROOT_USER"),
        "password": side.secret_value(root_secret, "MINIO_ROOT_PASSWORD"),
    }


def _run_reader(side: Side, reader: tuple[str, str], given: dict) -> str:
    """STORE_AND_BROKER_PY in ``reader`` (pod, container), ``given`` on stdin: its output lines."""
    pod, container = reader
    out = side.kubectl(
        "exec", "-i", pod, "-c", container, "--", "python3.11", "-c", STORE_AND_BROKER_PY,
        input=json.dumps(given) + "\n", timeout=3600,
    )  # fmt: skip
    if f"{MARKER}-DONE" not in out:
        raise CompareError(f"{side.where}: the reader in {pod} stopped early: {out.strip()[-600:]}")
    return out


def _reader_topics(settings: Settings) -> list[str]:
    """The topic filters the reader API's broker class may subscribe to (its retained messages)."""
    classes = {c.name: c for c in settings.broker.device_classes}
    reader = classes.get(READER_API)
    return list(reader.subscribe) if reader is not None else []


def side_of(environment: str, cluster: str, namespace: str) -> Side:
    if cluster not in list_clusters(environments_dir()):
        raise CompareError(f"no cluster profile {cluster!r}; known: {', '.join(list_clusters(environments_dir()))}")
    profile = load_cluster_profile(cluster, environments_dir())
    cache = layout()
    env = {**os.environ, **tool_env(cache)}
    env["KUBECONFIG"] = os.environ.get("SMARTNATION_KUBECONFIG") or str(cache.kubeconfig)
    return Side(cluster, profile.context, namespace, environment, env)


def cmd_compare(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.environment, environments_dir())
        namespace = args.namespace or f"{project_name()}-{args.environment}"
        source = side_of(args.environment, args.source or settings.cluster.name, namespace)
        target = side_of(args.environment, args.to, args.to_namespace or namespace)
        if source.where == target.where:
            raise CompareError(f"source and target are both {source.where}: compare two places")
        began = time.monotonic()
        left = read_side(source, settings, args.settle)
        right = read_side(target, settings, args.settle)
    except (CompareError, SettingsError) as error:
        log.error("%s", error)
        return exit_codes.FAILED
    found = differences(left, right)
    path = Path(args.report or f"compare-{args.environment}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dump(report(left, right, found)))
    for line in summary_lines(left, right, found):
        print(line)
    verdict = "equal" if not found else f"{len(found)} difference(s)"
    print(f"{source.where} vs {target.where}: {verdict} in {time.monotonic() - began:.0f}s; report {path}")
    return exit_codes.OK if not found else exit_codes.FAILED


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "compare",
        help="compare an environment's data on two clusters (tables, chunks, objects, devices, retained messages)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("environment")
    parser.add_argument("--to", required=True, metavar="CLUSTER", help="the cluster holding the other copy")
    parser.add_argument(
        "--from", dest="source", metavar="CLUSTER", help="the source cluster (default: the environment's cluster)"
    )
    parser.add_argument("--namespace", help="the namespace on both sides (default: <project>-<env>)")
    parser.add_argument("--to-namespace", help="the target's namespace, when it differs (a restored copy)")
    parser.add_argument("--report", metavar="FILE", help="where the JSON report goes (default: compare-ENV-TIME.json)")
    parser.add_argument(
        "--settle", type=float, default=3.0, help="seconds to collect retained messages after subscribing"
    )
    parser.set_defaults(func=cmd_compare)
