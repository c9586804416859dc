"""The one-off Jobs `smartnation restore` runs in an environment's namespace, and what they print.

Both Jobs are cut from the environment's own backup CronJob as deployed (read back from the
cluster): its images by digest, its Secrets, its node placement, its restricted security context
and its Pod labels. The labels matter: the NetworkPolicies (program/components/guardrails.py,
flow ``database-backup``) let exactly the backup Pods reach the primary and the object storage,
and a restore needs exactly those two, so it runs as a backup Pod and no new flow is opened.

- the listing Job: the mc container runs ``mc ls --json`` over ``<bucket>/<environment>/``;
- the restore Job: an init container (mc) downloads one backup set, the main container
  (the database image) restores each database into ``<database>_<suffix>`` on the primary, with
  TimescaleDB's ``timescaledb_pre_restore()`` / ``timescaledb_post_restore()`` around
  pg_restore, then prints one ``ROW|side|database|table|rows|checksum`` line per table of the
  source and of the restored database; ``compare`` turns them into the report.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from typing import Any

from smartnation.program.components import database

SCRATCH_SUFFIX = re.compile(r"[a-z][a-z0-9_]{0,19}")
"""``--into``: lower case, so the scratch name needs no quoting and never equals a live name."""
BACKUP_NAME = re.compile(r"\d{8}T\d{6}Z")
"""A backup's name: the UTC time its dump started (database.dump_script's stamp)."""
DEFAULT_TIMEOUT_SECONDS = 3600
MANAGED_BY = "smartnation-restore"
ROW_MARKER = "ROW"
READ_WRITE_OPTIONS = "-c default_transaction_read_only=off"
"""PGOPTIONS of a restore that must write on a fenced primary (restore_job's ``read_write``)."""
REPLACED_NAME = re.compile(r"[a-z][a-z0-9_]*_replaced_\d{14}")
"""A live database kept by ``--over-live`` under ``<database>_replaced_<time>`` (cmd_restore's stamp)."""


# pg_dump without --create leaves the database's own privileges (CONNECT grants) out of the
# archive: the scratch database takes the live one's, so it is a drop-in (--over-live) copy.
_ACL_SQL = """\
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', :'scratch')
FROM pg_database WHERE datname = :'source' AND datacl IS NOT NULL \\gexec
SELECT format('GRANT %s ON DATABASE %I TO %s', a.privilege_type, :'scratch',
              CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END)
FROM pg_database, aclexplode(datacl) a WHERE datname = :'source' \\gexec"""

# --over-live: the restored database takes the live one's name, the live one is kept under
# another. Both refuse new sessions first (the APIs' reconnects and TimescaleDB's scheduler, which
# the launcher starts only where connections are allowed), the others are ended (waiting up to 10 s
# each), and the renames happen while nobody is connected; both allow sessions again at the end.
_SWAP_SQL = """\
SELECT format('ALTER DATABASE %I WITH ALLOW_CONNECTIONS false', d)
FROM pg_database p, unnest(ARRAY[:'live', :'scratch']) d WHERE p.datname = d \\gexec
SELECT count(pg_terminate_backend(pid, 10000)) AS ended FROM pg_stat_activity
WHERE datname IN (:'live', :'scratch') AND pid <> pg_backend_pid();
SELECT format('ALTER DATABASE %I RENAME TO %I', :'live', :'kept') FROM pg_database WHERE datname = :'live' \\gexec
SELECT format('ALTER DATABASE %I RENAME TO %I', :'scratch', :'live') \\gexec
SELECT format('ALTER DATABASE %I WITH ALLOW_CONNECTIONS true', d)
FROM pg_database p, unnest(ARRAY[:'live', :'kept']) d WHERE p.datname = d \\gexec"""


# A new Pod's first packets can be refused until the node's network-policy agent admitted its
# address: wait (bounded) until MinIO answers `mc alias set` (which probes the server) before the
# first real request; after 2 minutes run it once more so its own error is the last word.
_STORAGE_ALIAS = """\
tries=0
until mc alias set store "$S3_ENDPOINT" "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" > /dev/null 2>&1; do
    tries=$((tries + 1)); if [ "$tries" -ge 60 ]; then
        mc alias set store "$S3_ENDPOINT" "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" > /dev/null; exit 1
    fi; sleep 2
done"""


def download_script(backup_dir: str = database.BACKUP_DIR) -> str:
    """The download container's script (mc image, dash): the manifest, the roles, then each dump it names."""
    _D = backup_dir
    return f"""\
set -eu
source="store/$BUCKET/$ENVIRONMENT/$BACKUP"
{_STORAGE_ALIAS}
mc cp --quiet "$source/{database.BACKUP_MANIFEST}" "{_D}/{database.BACKUP_MANIFEST}" < /dev/null
mc cp --quiet "$source/{database.GLOBALS_FILE}" "{_D}/{database.GLOBALS_FILE}" < /dev/null
while read -r db timescaledb; do
    mc cp --quiet "$source/$db.dump" "{_D}/$db.dump" < /dev/null
done < "{_D}/{database.BACKUP_MANIFEST}"
ls -l "{_D}"
"""


LIST_SCRIPT = f"""\
set -eu
{_STORAGE_ALIAS}
mc ls --json --recursive "store/$BUCKET/$ENVIRONMENT/"
"""

# Every user table of a database, never the extensions' own catalogs (TimescaleDB's chunks and
# internals are read through their hypertables): the FROM of the per-table queries of restore
# and compare.
USER_TABLES = """\
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'
  AND n.nspname NOT LIKE '\\_timescaledb%' AND n.nspname NOT LIKE 'timescaledb\\_%'
  AND NOT EXISTS (SELECT FROM pg_depend d
                  WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY n.nspname, c.relname"""

# Every user table, hypertables as a whole (their chunks, in _timescaledb_internal, are read
# through them), not the extensions' own catalogs; one \gexec'd count and order-independent
# checksum per table (the session settings that shape a row's text are the same on both sides).
_COMPARE_SQL = f"""\
SELECT format('SELECT %L, %L, %L, %L, count(*), coalesce(sum(hashtext(t::text)::bigint), 0) FROM %I.%I AS t',
              '{ROW_MARKER}', :'side', :'db', n.nspname || '.' || c.relname, n.nspname, c.relname)
{USER_TABLES} \\gexec"""


def restore_script(backup_dir: str = database.BACKUP_DIR) -> str:
    """The restore container's script (database image, dash, ``set -eu``, no pipes): per database of
    the manifest, a scratch database, TimescaleDB's pre/post restore steps around pg_restore, then
    the comparison rows; with CLEANUP=1 the scratch databases are dropped at the end."""
    _D = backup_dir
    return f"""\
set -eu
{chr(10).join(database.wait_for_primary())}
psql_="psql -X -q -v ON_ERROR_STOP=1 --no-password"
while read -r db timescaledb; do
    scratch="${{db}}_$SUFFIX"
    echo "restore: $db into $scratch (timescaledb $timescaledb)"
    $psql_ -d postgres -v scratch="$scratch" -v source="$db" <<'SQL'
SELECT format('CREATE DATABASE %I TEMPLATE template0', :'scratch') \\gexec
SELECT format('ALTER DATABASE %I OWNER TO %I', :'scratch', pg_get_userbyid(datdba))
FROM pg_database WHERE datname = :'source' \\gexec
{_ACL_SQL}
SQL
    if [ "$timescaledb" != "{database.NO_TIMESCALEDB}" ]; then
        # The dump's own extension version, or a clear error if this image lacks it.
        $psql_ -d "$scratch" -c "CREATE EXTENSION IF NOT EXISTS timescaledb VERSION '$timescaledb'" \\
            -c "SELECT timescaledb_pre_restore()" < /dev/null > /dev/null
    fi
    pg_restore --no-password --exit-on-error -d "$scratch" "{_D}/$db.dump" < /dev/null
    if [ "$timescaledb" != "{database.NO_TIMESCALEDB}" ]; then
        $psql_ -d "$scratch" -c "SELECT timescaledb_post_restore()" < /dev/null > /dev/null
    fi
    echo "restore: $db restored"
    if [ "${{COMPARE:-1}}" = 1 ]; then
        for side in source restored; do
            if [ "$side" = source ]; then target="$db"; else target="$scratch"; fi
            psql -X -A -t -F '|' -v ON_ERROR_STOP=1 --no-password -d "$target" -v side="$side" -v db="$db" <<'SQL'
{_COMPARE_SQL}
SQL
        done
    fi
done < "{_D}/{database.BACKUP_MANIFEST}"
if [ "${{OVER_LIVE:-0}}" = 1 ]; then
    while read -r db timescaledb; do
        echo "restore: $db becomes the restored database, the live one is kept as ${{db}}_$REPLACED"
        $psql_ -d postgres -v live="$db" -v scratch="${{db}}_$SUFFIX" -v kept="${{db}}_$REPLACED" <<'SQL'
{_SWAP_SQL}
SQL
    done < "{_D}/{database.BACKUP_MANIFEST}"
fi
if [ "${{CLEANUP:-0}}" = 1 ]; then
    while read -r db timescaledb; do
        $psql_ -d postgres -v scratch="${{db}}_$SUFFIX" <<'SQL'
SELECT format('DROP DATABASE %I WITH (FORCE)', :'scratch') \\gexec
SQL
        echo "restore: dropped ${{db}}_$SUFFIX"
    done < "{_D}/{database.BACKUP_MANIFEST}"
fi
echo "restore: done"
"""


class RestoreError(Exception):
    """The backup CronJob or a backup set is not what a restore needs; the message says what."""


def _container(spec: dict[str, Any], init: bool, name: str) -> dict[str, Any]:
    key = "initContainers" if init else "containers"
    found = [c for c in spec.get(key) or [] if c.get("name") == name]
    if len(found) != 1:
        raise RestoreError(f"the backup CronJob's pod has no {key[:-1]} named {name!r} (program too old or changed?)")
    return copy.deepcopy(found[0])


def _with_env(container: dict[str, Any], extra: dict[str, str]) -> list[dict[str, Any]]:
    kept = [e for e in container.get("env") or [] if e["name"] not in extra]
    return kept + [{"name": k, "value": v} for k, v in extra.items()]


def _writable_backup_mounts(container: dict[str, Any]) -> list[dict[str, Any]]:
    mounts = copy.deepcopy(container.get("volumeMounts") or [])
    for mount in mounts:
        if mount.get("mountPath") == database.BACKUP_DIR:
            mount.pop("readOnly", None)
    return mounts


def _job(cronjob: dict[str, Any], name: str, spec: dict[str, Any], purpose: str, deadline: int) -> dict[str, Any]:
    template = cronjob["spec"]["jobTemplate"]["spec"]["template"]
    # The backup Pods' labels (the NetworkPolicies admit them); managed-by says who made this one.
    labels = {**template["metadata"]["labels"], "app.kubernetes.io/managed-by": MANAGED_BY}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": cronjob["metadata"]["namespace"],
            "labels": labels,
            "annotations": {"smartnation.mc/purpose": purpose},
        },
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": deadline,
            "ttlSecondsAfterFinished": 3600,
            "template": {"metadata": {"labels": labels}, "spec": spec},
        },
    }


def backup_job(cronjob: dict[str, Any], name: str, deadline: int = 600) -> dict[str, Any]:
    """The CronJob's own Job, run once now (what `kubectl create job --from=cronjob/...` makes),
    bounded by ``deadline`` and never retried: a failing dump must show, not be hidden by a retry."""
    job = _job(cronjob, name, copy.deepcopy(cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]),
               "backup run once", deadline)  # fmt: skip
    job["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"] = "manual"
    return job


_UPLOADED = re.compile(r"^backup (\d{8}T\d{6}Z) uploaded to store/([^/\s]+)/", re.M)


def uploaded_backup(upload_log: str) -> tuple[str, str]:
    """(backup name, bucket) from the upload container's last line (database.upload_script)."""
    found = _UPLOADED.findall(upload_log)
    if not found:
        raise RestoreError(f"the backup Job's upload log names no uploaded backup: {upload_log.strip()[-300:]!r}")
    return found[-1]


def list_job(cronjob: dict[str, Any], name: str) -> dict[str, Any]:
    """A Job whose one container (the backup's mc) lists the environment's folder in the bucket."""
    pod = copy.deepcopy(cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"])
    lister = _container(pod, init=False, name="upload")
    lister.update(name="list", command=["sh", "-c", LIST_SCRIPT])
    lister["volumeMounts"] = [m for m in lister.get("volumeMounts") or [] if m.get("mountPath") != database.BACKUP_DIR]
    pod.pop("initContainers", None)
    pod.update(containers=[lister], restartPolicy="Never")
    return _job(cronjob, name, pod, "list backups", 600)


def restore_job(
    cronjob: dict[str, Any],
    name: str,
    backup: str,
    suffix: str,
    *,
    compare: bool = True,
    cleanup: bool = False,
    over_live: str = "",
    deadline: int = DEFAULT_TIMEOUT_SECONDS,
    read_write: bool = False,
) -> dict[str, Any]:
    """A Job that downloads ``backup`` (mc, init container) and restores it into scratch databases
    ``<database>_<suffix>`` on the primary (the database image), printing the comparison rows.
    ``read_write``: every session of the restore asks for read-write transactions (PGOPTIONS), so
    it runs on a fenced primary (a move's rollback restores over the fenced source); without it a
    fenced primary refuses the restore, as it refuses every default session."""
    check_backup(backup)
    check_suffix(suffix)
    pod = copy.deepcopy(cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"])
    download = _container(pod, init=False, name="upload")
    download.update(
        name="download",
        command=["sh", "-c", download_script()],
        env=_with_env(download, {"BACKUP": backup}),
        volumeMounts=_writable_backup_mounts(download),
    )
    restore = _container(pod, init=True, name="dump")
    settings = {
        "SUFFIX": suffix,
        "COMPARE": str(int(compare)),
        "CLEANUP": str(int(cleanup)),
        "OVER_LIVE": str(int(bool(over_live))),
        "REPLACED": over_live,
    }
    if read_write:
        # libpq's PGOPTIONS reach psql and pg_restore alike: the fence (ALTER SYSTEM's default) is
        # overridden for these sessions alone; a value the container had is kept before it.
        had = next((e.get("value", "") for e in restore.get("env") or [] if e["name"] == "PGOPTIONS"), "")
        settings["PGOPTIONS"] = f"{had} {READ_WRITE_OPTIONS}".strip()
    restore.update(
        name="restore",
        command=["sh", "-c", restore_script()],
        env=_with_env(restore, settings),
        volumeMounts=_writable_backup_mounts(restore),
    )
    pod.update(initContainers=[download], containers=[restore], restartPolicy="Never")
    return _job(cronjob, name, pod, f"restore backup {backup} into *_{suffix}", deadline)


def check_backup(backup: str) -> None:
    if not BACKUP_NAME.fullmatch(backup):
        raise RestoreError(f"--backup {backup!r}: expected a backup name like 20261129T021500Z (see --list)")


def check_suffix(suffix: str) -> None:
    if not SCRATCH_SUFFIX.fullmatch(suffix):
        raise RestoreError(
            f"--into {suffix!r}: expected lower-case letters, digits and _, 1-20, starting with a letter"
        )


@dataclass(frozen=True)
class BackupSet:
    """One run of the backup CronJob as found in the bucket."""

    name: str
    files: dict[str, int] = field(default_factory=dict)
    """File name -> size in bytes."""

    @property
    def complete(self) -> bool:
        """The manifest is uploaded last: without it the run did not finish."""
        return database.BACKUP_MANIFEST in self.files

    @property
    def size(self) -> int:
        return sum(self.files.values())


def parse_listing(log: str) -> list[BackupSet]:
    """``mc ls --json --recursive`` lines -> the backup sets, oldest first. Keys outside the
    ``<stamp>/<file>`` layout (the single-file dumps of before) are left out."""
    sets: dict[str, dict[str, int]] = {}
    for line in log.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        entry = json.loads(line)
        if entry.get("status") != "success" or entry.get("type") == "folder":
            continue
        stamp, _, file = str(entry.get("key", "")).partition("/")
        if BACKUP_NAME.fullmatch(stamp) and file and "/" not in file:
            sets.setdefault(stamp, {})[file] = int(entry.get("size", 0))
    return [BackupSet(name, files) for name, files in sorted(sets.items())]


@dataclass(frozen=True)
class TableCheck:
    database: str
    table: str
    source: tuple[int, int] | None
    """(rows, checksum) in the live database; None when the table is not there."""
    restored: tuple[int, int] | None
    """(rows, checksum) in the scratch database; None when the restore lacks it."""

    @property
    def same(self) -> bool:
        return self.source is not None and self.source == self.restored


def parse_rows(log: str) -> dict[tuple[str, str, str], tuple[int, int]]:
    """The restore container's ``ROW|side|database|table|rows|checksum`` lines ->
    (side, database, table) -> (rows, checksum). A table name may hold ``|``: the fixed fields
    are taken from both ends."""
    rows: dict[tuple[str, str, str], tuple[int, int]] = {}
    for line in log.splitlines():
        if not line.startswith(ROW_MARKER + "|"):
            continue
        head, count, checksum = line.rsplit("|", 2)
        _, side, db, table = head.split("|", 3)
        rows[(side, db, table)] = (int(count), int(checksum))
    return rows


def compare(rows: dict[tuple[str, str, str], tuple[int, int]]) -> list[TableCheck]:
    """One check per table found on either side, in database and table order."""
    tables = sorted({(db, table) for _, db, table in rows})
    return [
        TableCheck(db, table, rows.get(("source", db, table)), rows.get(("restored", db, table)))
        for db, table in tables
    ]
