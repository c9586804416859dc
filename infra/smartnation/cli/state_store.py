"""A self-managed Pulumi state backend (file:// or s3://) as a store of objects, and which of its
objects make up one stack.

Pulumi's DIY backends (project layout, `.pulumi/meta.yaml` version 1) keep a stack in three
places, all keyed by project and stack name:

- `.pulumi/stacks/<project>/<stack>.json` (and `.json.bak`, `.pulumi-tags`): the current checkpoint;
- `.pulumi/history/<project>/<stack>/`: one `.history.json` per update (what `pulumi stack history`
  lists) and the `.checkpoint.json` it left;
- `.pulumi/backups/<project>/<stack>/`: the checkpoint before each save.

Copying exactly those objects copies the stack with its history (`smartnation state move`).
The file backend keeps each blob's attributes in a `.attrs` file beside it: not an object, so
it is neither listed nor copied (the engine reads a blob without one).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

from smartnation.cli.locks import LOCKS_DIR, _s3_client, s3_location
from smartnation.tooling.toolchain.file_backend import folder

META = ".pulumi/meta.yaml"
PROJECT_LAYOUT = 1
"""The meta.yaml version of the project layout (stacks under their project's folder)."""
_ATTRS = ".attrs"


class StoreError(Exception):
    """The backend cannot be read or written (unreachable, no such bucket, no permission)."""


class StateStore(Protocol):
    url: str

    def keys(self, prefix: str) -> list[str]: ...
    def read(self, key: str) -> bytes | None: ...
    def write(self, key: str, data: bytes) -> None: ...
    def delete(self, key: str) -> None: ...


@dataclass(frozen=True)
class StackObjects:
    """Where one stack's objects are in a backend, relative to its root."""

    project: str
    stack: str

    @property
    def checkpoint(self) -> str:
        return f".pulumi/stacks/{self.project}/{self.stack}.json"

    @property
    def prefixes(self) -> tuple[str, ...]:
        # `<stack>.` and not `<stack>`: stack `dev` must not take `dev-2`'s files.
        return (
            f".pulumi/stacks/{self.project}/{self.stack}.",
            f".pulumi/history/{self.project}/{self.stack}/",
            f".pulumi/backups/{self.project}/{self.stack}/",
        )

    @property
    def lock_dir(self) -> str:
        """The engine's lock folder of the stack (project layout: org `organization`)."""
        return f"{LOCKS_DIR}/organization/{self.project}/{self.stack}/"

    def has_checkpoint(self, store: StateStore) -> bool:
        """Whether the stack exists in ``store`` (its checkpoint, plain or compressed)."""
        return any(
            key in (self.checkpoint, f"{self.checkpoint}.gz", f"{self.checkpoint}.zst") for key in self.all(store)
        )

    def all(self, store: StateStore) -> list[str]:
        """Every object of the stack, sorted; the lock files are not the stack's."""
        return sorted({key for prefix in self.prefixes for key in store.keys(prefix)})


def redacted(url: str) -> str:
    """A backend URL fit for logs and lock files: no user or password in it."""
    parts = urlsplit(url)
    if parts.username or parts.password:
        host = parts.hostname or ""
        netloc = f"****:****@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


class FileStore:
    """A `file://` backend: a folder."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.root = folder(url) or Path()

    def keys(self, prefix: str) -> list[str]:
        base = self.root / prefix.rsplit("/", 1)[0] if "/" in prefix else self.root
        if not base.is_dir():
            return []
        found = []
        for path in base.rglob("*"):
            key = path.relative_to(self.root).as_posix()
            if path.is_file() and key.startswith(prefix) and not key.endswith(_ATTRS):
                found.append(key)
        return sorted(found)

    def read(self, key: str) -> bytes | None:
        try:
            return (self.root / key).read_bytes()
        except FileNotFoundError:
            return None

    def write(self, key: str, data: bytes) -> None:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        partial.write_bytes(data)
        os.replace(partial, path)  # a reader never sees half an object

    def delete(self, key: str) -> None:
        path = self.root / key
        path.unlink(missing_ok=True)
        (self.root / f"{key}{_ATTRS}").unlink(missing_ok=True)
        # Folders left empty go too (an object store has none): a move taken back leaves no trace.
        for parent in path.parents:
            if parent == self.root or self.root not in parent.parents:
                break
            try:
                parent.rmdir()
            except OSError:
                break

    def check(self) -> None:
        if not self.root.is_dir():
            raise StoreError(f"{redacted(self.url)}: no such folder")
        if not os.access(self.root, os.W_OK):
            raise StoreError(f"{redacted(self.url)}: the folder is not writable")


class S3Store:
    """An `s3://bucket/prefix?endpoint=...` backend, through boto3 (credentials as the engine's)."""

    def __init__(self, url: str, env: Mapping[str, str]) -> None:
        self.url = url
        self.bucket, self.prefix, _ = s3_location(url)
        try:
            self.client = _s3_client(url, env)
        except ImportError as error:
            raise StoreError(f"an s3:// backend needs boto3 in this Python: {error}") from None

    def _call(self, what: str, call, *args, **kwargs):  # noqa: ANN001, ANN202 (any boto3 call)
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return call(*args, **kwargs)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "?")
            raise StoreError(f"{redacted(self.url)}: {what}: {code}: {error}") from None
        except BotoCoreError as error:
            raise StoreError(f"{redacted(self.url)}: {what}: {error}") from None

    def keys(self, prefix: str) -> list[str]:
        found = []
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix + prefix)
        for page in self._call(f"list {prefix}", list, pages):
            found += [item["Key"].removeprefix(self.prefix) for item in page.get("Contents", [])]
        return sorted(found)

    def read(self, key: str) -> bytes | None:
        from botocore.exceptions import ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)["Body"].read()
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise StoreError(f"{redacted(self.url)}: read {key}: {error}") from None

    def write(self, key: str, data: bytes) -> None:
        self._call(f"write {key}", self.client.put_object, Bucket=self.bucket, Key=self.prefix + key, Body=data)

    def delete(self, key: str) -> None:
        self._call(f"delete {key}", self.client.delete_object, Bucket=self.bucket, Key=self.prefix + key)

    def check(self) -> None:
        """Reachable, the bucket exists and may be listed (nothing is written)."""
        self._call("reach the bucket", self.client.head_bucket, Bucket=self.bucket)
        self.keys(".pulumi/meta.yaml")


def open_store(url: str, env: Mapping[str, str]) -> FileStore | S3Store:
    """The store of a backend URL (file:// or s3://); StoreError for anything else."""
    if url.startswith("file://"):
        return FileStore(url)
    if url.startswith("s3://"):
        if not s3_location(url)[0]:
            raise StoreError(f"{url}: no bucket in the URL (expected s3://BUCKET?endpoint=HOST:PORT&...)")
        return S3Store(url, env)
    raise StoreError(f"{redacted(url)}: not a self-managed backend (expected file://PATH or s3://BUCKET?endpoint=...)")


def layout_version(store: StateStore) -> int | None:
    """The backend's layout (meta.yaml `version`), None for an empty backend without one."""
    import yaml

    text = store.read(META)
    if text is None:
        return None
    try:
        data = yaml.safe_load(text) or {}
        return int(data.get("version", 0))
    except (yaml.YAMLError, TypeError, ValueError, AttributeError):
        return -1
