"""The records a move's driver leaves on a cluster for the program's guard (docs/move.md).

Some phases may only be applied after the driver did something the program cannot see in the
stack: a backup restored equal, a rollback's data carried back. The driver then writes a ConfigMap
in the environment's namespace, and the guard (move_guard.py) reads it before an update that
would otherwise lose data. Both sides import the names and keys from here, so they cannot drift.
"""

from __future__ import annotations

FINAL_BACKUP = "move-final-backup"
"""``<env>-move-final-backup``: the ConfigMap the driver writes on the new site once the old site's
final backup, copied into the new site's object storage, restored there equal to the old site's
data (cli/move_complete.py): the complete phase deletes the old site only after it."""

ROLLBACK = "move-rollback"
"""``<env>-move-rollback``: the ConfigMap the driver writes on the OLD site once a rollback from the
cutover brought back there, verified, what the new site took in between: removing ``move:``
after a recorded rollback deletes the new site's side only after it."""
ROLLBACK_VERIFIED = "verified"
"""``"true"`` once the old site holds what the new site took, compared equal."""
ROLLBACK_FROM = "from"
"""The new site the rollback came back from (``move.to``): a record of another move's rollback
does not count."""
ROLLBACK_AT = "at"
"""When the driver wrote it, UTC (``2026-12-01T10:00:00Z``): for the operator; the guard does not
read it."""
VERIFIED = "true"
"""The value of a record's ``verified`` key that the guard accepts (ConfigMap data are strings)."""


def record_name(environment: str, record: str) -> str:
    """The ConfigMap's name, ``<env>-<record>`` (``dev-move-rollback``)."""
    return f"{environment}-{record}"


__all__ = [
    "FINAL_BACKUP",
    "ROLLBACK",
    "ROLLBACK_AT",
    "ROLLBACK_FROM",
    "ROLLBACK_VERIFIED",
    "VERIFIED",
    "record_name",
]
