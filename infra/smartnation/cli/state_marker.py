"""The lock a state move holds on its source stack, and the mark it leaves there when done.

Both are lock files in the engine's own format and folder (`.pulumi/locks/organization/<project>/
<stack>/`), so the engine itself honours them: while one is there, every `pulumi up`, `refresh`,
`destroy` or `import` of that stack is refused, whoever types it, with the file's content in the
message; `stack export`, `stack history`, `stack output` and previews still read the stack.

- While the move runs: `<uuid>.json` naming this process, as the engine's own lock (a move killed
  with -9 leaves a stale lock `smartnation up --recover` or `pulumi cancel` removes).
- Once done: `state-moved.json`, for good. Its holder names the backend the state went to, so
  the engine's refusal says where to go; its pid is null and its host is not a host, so nothing
  ever calls it stale. The CLI reads it (``moved_to``) and refuses `up` with that backend named.
  `pulumi cancel` would delete it: only to take the stack back on purpose.
"""

from __future__ import annotations

import getpass
import json
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from smartnation.cli.locks import LockHolder, StackLocked, this_host
from smartnation.cli.state_store import StackObjects, StateStore, StoreError, open_store, redacted
from smartnation.cli.workspace import tool_environment
from smartnation.paths import project_dir
from smartnation.settings.yaml_files import read_yaml

MOVED_LOCK = "state-moved.json"
MOVED_HOST = "state-moved"


@dataclass(frozen=True)
class Moved:
    """Where a stack's state went, from its source's mark."""

    to: str
    when: str
    who: str

    def refusal(self, environment: str) -> str:
        return (
            f"the state of {environment!r} moved to {self.to} on {self.when} (by {self.who}); this backend keeps a "
            f"read-only copy. Point PULUMI_BACKEND_URL at {self.to} and use its passphrase"
        )


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def moved_mark(store: StateStore, objects: StackObjects) -> Moved | None:
    """The mark a completed move left on the stack in ``store``, if any."""
    data = store.read(objects.lock_dir + MOVED_LOCK)
    if data is None:
        return None
    try:
        content = json.loads(data)
    except ValueError:
        content = {}
    content = content if isinstance(content, dict) else {}
    return Moved(
        to=str(content.get("moved_to") or "another backend"),
        when=str(content.get("timestamp") or "?"),
        who=str(content.get("moved_by") or "?"),
    )


def mark_moved(store: StateStore, objects: StackObjects, to: str, who: str) -> None:
    """Leave the mark: a lock file the engine shows as `smartnation state move@(moved to <url>)`."""
    shown = redacted(to)
    content = {
        "pid": None,
        "username": "smartnation state move",
        "hostname": f"({MOVED_HOST} to {shown})",
        "timestamp": _now(),
        "moved_to": shown,
        "moved_by": who,
    }
    store.write(objects.lock_dir + MOVED_LOCK, json.dumps(content, indent=2).encode("utf-8"))


def holders(store: StateStore, objects: StackObjects, ignore: str | None = None) -> list[LockHolder]:
    """Every lock file of the stack in ``store`` but ``ignore`` (our own)."""
    found = []
    for key in store.keys(objects.lock_dir):
        if key == ignore or not key.endswith(".json"):
            continue
        data = store.read(key) or b""
        found.append(LockHolder.from_json(f"{redacted(store.url)} {key}", data.decode("utf-8", "replace")))
    return found


def take_lock(store: StateStore, objects: StackObjects, environment: str) -> str:
    """Lock the stack as the engine does (write, then list again); the lock's key. StackLocked,
    naming the holders, if anyone else holds or takes it."""
    others = holders(store, objects)
    if others:
        raise StackLocked(_locked(environment, others))
    key = f"{objects.lock_dir}{uuid.uuid4()}.json"
    content = {"pid": os.getpid(), "username": getpass.getuser(), "hostname": this_host(), "timestamp": _now()}
    store.write(key, json.dumps(content).encode("utf-8"))
    others = holders(store, objects, ignore=key)
    if others:
        store.delete(key)
        raise StackLocked(_locked(environment, others))
    return key


def _locked(environment: str, found: list[LockHolder]) -> str:
    listed = "; ".join(h.describe() for h in found)
    return f"the stack {environment!r} is locked: {listed}"


def moved_to(environment: str) -> Moved | None:
    """Whether the environment's stack in the configured backend was moved away (for `up`)."""
    env = tool_environment(environment)
    project = str(read_yaml(project_dir() / "Pulumi.yaml")["name"])
    try:
        return moved_mark(open_store(env["PULUMI_BACKEND_URL"], env), StackObjects(project, environment))
    except StoreError:
        return None  # a backend this cannot read: the engine reports it on its own terms
