"""Who holds a stack's lock, read from the state backend itself, and whether the holder still runs.

Pulumi's self-managed backends (file://, s3://) lock a stack for an update by writing one JSON
file per holder under `.pulumi/locks/<org>/<project>/<stack>/<id>.json` (older layout:
`.pulumi/locks/<stack>/`), then listing the folder again and backing off if another holder's file
is there: write-then-check, so of two updates started together at most one proceeds. That lock is
the real one; this module only reads it, to name the holder before the engine starts and to tell a
live update from one that was killed and left its lock behind (a stale lock).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from smartnation.cli.workspace import tool_environment
from smartnation.paths import project_dir
from smartnation.settings.yaml_files import read_yaml
from smartnation.tooling.toolchain.file_backend import folder

LOCKS_DIR = ".pulumi/locks"


class StackLocked(Exception):
    """Another update holds the stack's lock (exit code STACK_LOCKED, like ConcurrentUpdateError)."""


@dataclass(frozen=True)
class LockHolder:
    """One lock file of a stack, as the engine wrote it."""

    where: str
    """The lock file (path or s3:// key), for the operator and for removing a stale one."""
    pid: int | None
    username: str | None
    hostname: str | None
    timestamp: str | None

    @classmethod
    def from_json(cls, where: str, text: str) -> LockHolder:
        """A holder from the file's text; an unreadable file is a holder nobody can name."""
        try:
            data = json.loads(text)
        except ValueError:
            data = {}
        data = data if isinstance(data, Mapping) else {}
        pid = data.get("pid")
        return cls(
            where=where,
            pid=pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
            username=_text(data.get("username")),
            hostname=_text(data.get("hostname")),
            timestamp=_text(data.get("timestamp")),
        )

    def describe(self) -> str:
        """`root@host (pid 123) since 2026-...`, with whatever the file says."""
        who = f"{self.username or '?'}@{self.hostname or '?'}"
        pid = f" (pid {self.pid})" if self.pid is not None else ""
        since = f" since {self.timestamp}" if self.timestamp else ""
        return f"{who}{pid}{since} [{self.where}]"

    def is_stale(self, hostname: str, pid_alive: Callable[[int], bool]) -> bool:
        """True only when the holder is proven gone: it ran on ``hostname`` (this machine) and its
        process no longer exists. A holder on another machine, or one whose file names no pid,
        is never called stale: its update may still be running there."""
        return self.hostname == hostname and self.pid is not None and not pid_alive(self.pid)


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this machine (a zombie counts as gone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by someone else
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def this_host() -> str:
    """The host name the engine writes into its lock files (Go's os.Hostname)."""
    return socket.gethostname()


def lock_holders(environment: str, project: str | None = None) -> list[LockHolder] | None:
    """The lock files of the environment's stack; None if the backend cannot be read from here.

    Previews and refresh previews do not take the lock (pulumi >= 3.2xx), so a gate that must not
    run during someone else's update looks at the lock itself.
    """
    env = tool_environment(environment)
    url = env.get("PULUMI_BACKEND_URL", "")
    project = project or _project_name()
    root = folder(url)
    if root is not None:
        return _file_holders(root, project, environment)
    if url.startswith("s3://"):
        return _s3_holders(url, env, project, environment)
    return None


def lock_patterns(project: str, stack: str) -> tuple[str, str]:
    """Where the engine keeps a stack's lock files, relative to the backend's root (both layouts)."""
    return f"{LOCKS_DIR}/*/{project}/{stack}/*.json", f"{LOCKS_DIR}/{stack}/*.json"


def _file_holders(root: Path, project: str, stack: str) -> list[LockHolder]:
    holders = []
    for pattern in lock_patterns(project, stack):
        for path in sorted(root.glob(pattern)):
            try:
                text = path.read_text(encoding="utf-8")
            except OSError:
                text = ""
            holders.append(LockHolder.from_json(str(path), text))
    return holders


def s3_location(url: str) -> tuple[str, str, dict[str, str]]:
    """(bucket, key prefix, client options) of a Pulumi s3:// backend URL (gocloud.dev syntax:
    `s3://bucket/prefix?endpoint=host:port&region=..&s3ForcePathStyle=true&disableSSL=true`)."""
    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    options: dict[str, str] = {}
    if "endpoint" in query:
        endpoint = query["endpoint"]
        if "://" not in endpoint:
            scheme = "http" if query.get("disableSSL", "").lower() == "true" else "https"
            endpoint = f"{scheme}://{endpoint}"
        options["endpoint_url"] = endpoint
    if "region" in query:
        options["region_name"] = query["region"]
    prefix = parts.path.strip("/")
    return parts.netloc, f"{prefix}/" if prefix else "", options


def _s3_holders(url: str, env: Mapping[str, str], project: str, stack: str) -> list[LockHolder] | None:
    try:
        client = _s3_client(url, env)
    except ImportError:
        return None
    bucket, prefix, _ = s3_location(url)
    holders = []
    for pattern in lock_patterns(project, stack):
        head, _, _ = pattern.partition("*")
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + head)
        for page in pages:
            for item in page.get("Contents", []):
                key = item["Key"]
                if Path(key.removeprefix(prefix)).match(pattern):
                    body = client.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8", "replace")
                    holders.append(LockHolder.from_json(f"s3://{bucket}/{key}", body))
    return holders


def _s3_client(url: str, env: Mapping[str, str]):
    """An S3 client for the backend's endpoint; credentials as the engine finds them (the
    variables, else boto3's own chain: ~/.aws, the instance role)."""
    import boto3  # only an S3 backend needs it
    from botocore.config import Config

    _, _, options = s3_location(url)
    keys = {
        "aws_access_key_id": env.get("AWS_ACCESS_KEY_ID") or os.environ.get("AWS_ACCESS_KEY_ID"),
        "aws_secret_access_key": env.get("AWS_SECRET_ACCESS_KEY") or os.environ.get("AWS_SECRET_ACCESS_KEY"),
    }
    options.setdefault("region_name", env.get("AWS_REGION") or os.environ.get("AWS_REGION") or "us-east-1")
    config = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2})
    return boto3.client("s3", config=config, **{k: v for k, v in keys.items() if v}, **options)


def _project_name() -> str:
    return str(read_yaml(project_dir() / "Pulumi.yaml")["name"])


def locked_message(environment: str, holders: list[LockHolder]) -> str:
    listed = "; ".join(h.describe() for h in holders)
    return f"the stack {environment!r} is locked by another update: {listed}"


def check_unlocked(environment: str) -> None:
    """Raise StackLocked naming who holds the lock, if anyone does."""
    holders = lock_holders(environment)
    if holders:
        raise StackLocked(locked_message(environment, holders))


def remove_lock(holder: LockHolder, environment: str) -> None:
    """Delete one lock file (a stale one: the caller has proven its holder dead)."""
    if holder.where.startswith("s3://"):
        env = tool_environment(environment)
        url = env["PULUMI_BACKEND_URL"]
        bucket, _, _ = s3_location(url)
        _s3_client(url, env).delete_object(Bucket=bucket, Key=holder.where.removeprefix(f"s3://{bucket}/"))
    else:
        Path(holder.where).unlink(missing_ok=True)
        # The file backend (gocloud fileblob) keeps each blob's attributes beside it.
        Path(f"{holder.where}.attrs").unlink(missing_ok=True)
