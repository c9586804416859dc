"""The cutover's object verification: every object by sha256, most of them hashed before the fence.

Hashing every object of both sides is what takes long (10,000 small objects: about a minute
here), and inside the write pause it would be most of it. So the cutover hashes them all once
*before* the fence (``hash_objects``, while writes still go on), keeping each object's size, ETag
and sha256 per side in a file beside the progress file. At the fence, in the pause, both sides are
only listed (names, sizes, ETags: a page per 1,000 objects) and an object is hashed again only
when its listing on either side is not the one hashed before, or its two sha256 then differed
(it was being copied): an unchanged listing is the same object (MinIO gives a new ETag to every
write of other content), so the earlier sha256 still holds. Every object's fingerprint in the
verification is its size and sha256, as in the replicate phase.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

from smartnation.cli import compare, move_progress
from smartnation.cli.compare_data import Snapshot
from smartnation.cli.releases_copy import write_atomically
from smartnation.paths import project_dir

if TYPE_CHECKING:
    from smartnation.cli.move_driver import Run

HASHED = "objects_hashed"
"""The mark naming the file of what was hashed before the fence."""


def hashed_file(environment: str) -> Path:
    return project_dir() / move_progress.STATE_DIR / f"{environment}-cutover-objects.json"


def listing(value: str) -> str:
    """``size=N etag=E`` of a fingerprint ``size=N etag=E sha256=H`` (what a listing shows)."""
    return " ".join(part for part in value.split() if not part.startswith("sha256="))


def digest(value: str | None) -> str | None:
    for part in (value or "").split():
        if part.startswith("sha256="):
            return part.removeprefix("sha256=")
    return None


def hash_objects(run: Run, source: compare.Side, target: compare.Side, reader: tuple[str, str]) -> str:
    """Every object of both sides, with its ETag and sha256, kept for the verification at the fence."""
    began = time.monotonic()
    read_left, read_right = compare.both(
        lambda: compare.read_objects(source, None, etags=True), lambda: compare.read_objects(target, reader, etags=True)
    )
    left, right = read_left.sections["objects"], read_right.sections["objects"]
    path = hashed_file(run.environment)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, json.dumps({"source": left, "target": right}, sort_keys=True) + "\n")
    run.marks[HASHED] = str(path)
    equal = sum(1 for key, value in left.items() if digest(value) and digest(value) == digest(right.get(key)))
    return (
        f"{len(left)} objects on {source.where}, {len(right)} on {target.where} hashed in "
        f"{time.monotonic() - began:.0f} s, {equal} equal so far (what changes until the fence is hashed "
        f"again at the fence); kept in {path}"
    )


def _load(run: Run) -> dict[str, dict[str, str]] | None:
    path = run.marks.get(HASHED)
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8")) if path else None
    except (OSError, ValueError):
        return None  # gone or torn: every object is hashed again (slower, as sure)
    if not isinstance(data, dict) or not all(isinstance(data.get(side), dict) for side in ("source", "target")):
        return None
    return data


def read_at_fence(
    run: Run, source: compare.Side, target: compare.Side, reader: tuple[str, str]
) -> tuple[Snapshot, Snapshot, str]:
    """Both sides' objects and buckets, each object as ``size=N sha256=H``, hashing again only
    what changed since ``hash_objects``; and a line saying how many were hashed now."""
    before = _load(run)
    if before is None:
        left, right = compare.both(
            lambda: compare.read_objects(source, None), lambda: compare.read_objects(target, reader)
        )
        return left, right, "every object hashed now (nothing kept from before the fence)"
    left, right = compare.both(
        lambda: compare.read_objects(source, None, listing_only=True, etags=True),
        lambda: compare.read_objects(target, reader, listing_only=True, etags=True),
    )
    objects_left, objects_right = left.sections["objects"], right.sections["objects"]
    again = []
    for key in sorted(set(objects_left) | set(objects_right)):
        was_left, was_right = before["source"].get(key), before["target"].get(key)
        kept = (
            was_left is not None
            and was_right is not None
            and listing(was_left) == objects_left.get(key)
            and listing(was_right) == objects_right.get(key)
            and digest(was_left) is not None
            and digest(was_left) == digest(was_right)
        )
        if not kept:
            again.append(key)
    fresh_left: dict[str, str] = {}
    fresh_right: dict[str, str] = {}
    if again:
        hashed_left, hashed_right = compare.both(
            lambda: compare.read_objects(source, None, etags=True, hash_only=again),
            lambda: compare.read_objects(target, reader, etags=True, hash_only=again),
        )
        fresh_left, fresh_right = hashed_left.sections["objects"], hashed_right.sections["objects"]
    for snapshot, fresh, was in ((left, fresh_left, before["source"]), (right, fresh_right, before["target"])):
        objects = snapshot.sections["objects"]
        for key, value in list(objects.items()):
            hashed = digest(fresh.get(key)) if key in again else digest(was.get(key))
            size = value.split()[0]
            objects[key] = f"{size} sha256={hashed}" if hashed else size
    kept_count = len(set(objects_left) | set(objects_right)) - len(again)
    return left, right, f"{kept_count} objects as hashed before the fence, {len(again)} hashed again at the fence"
