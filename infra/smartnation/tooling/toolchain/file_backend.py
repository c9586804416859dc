"""A `file://` state backend whose files a killed engine cannot leave unreadable.

Pulumi opens a `file://` backend through gocloud.dev's fileblob driver. Each state file is
written to a temporary file and renamed over the old one, which a kill cannot tear. But by
default the driver also writes a metadata sidecar beside it (`dev.json.attrs`: content type and
MD5) by truncating that file in place and then writing it. An engine killed between the two
(kill -9 mid-update, a runner lost, a power cut) leaves the sidecar empty, and from then on every
read of the stack fails with a bare `error: EOF` (`pulumi stack ls`; `failed to load checkpoint:
EOF` for an update). Seen in CI: an engine killed by test_faults_mid_update on purpose.

Pulumi uses nothing the sidecars hold, so the backends our tools open carry two of the driver's
own URL options (gocloud.dev/blob/fileblob, URLOpener):
- ``metadata=skip``: no sidecar is written at all;
- ``no_tmp_dir``: the temporary file is made next to the state file, not in $TMPDIR, so the rename
  that replaces the file stays within one folder: atomic, and possible where $TMPDIR is another
  filesystem (a rename across filesystems fails).

A backend written before this, or by a plain `pulumi` without the options, still has sidecars;
the driver reads them on every read. ``torn_sidecars`` finds the ones no reader can parse, so a
command names them instead of failing on `EOF`, and `smartnation up ENV --recover` removes them.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

SCHEME = "file://"
SIDECAR_SUFFIX = ".attrs"
DURABLE_OPTIONS = {"metadata": "skip", "no_tmp_dir": "true"}


def durable(url: str) -> str:
    """URL with DURABLE_OPTIONS added, for a `file://` URL naming a folder; any other URL, and any
    option the URL sets itself, is kept as given."""
    if not url.startswith(SCHEME):
        return url
    location, _, query = url.partition("?")
    if not location.removeprefix(SCHEME):
        return url  # no folder: left for Pulumi (and env.PassphraseMissing) to refuse as given
    given = parse_qsl(query, keep_blank_values=True)
    named = {name for name, _ in given}
    added = [(name, value) for name, value in DURABLE_OPTIONS.items() if name not in named]
    return f"{location}?{urlencode(given + added)}"


def folder(url: str) -> Path | None:
    """The folder of a `file://` backend URL (options dropped, `~` expanded); None for any other."""
    if not url.startswith(SCHEME):
        return None
    path = url.removeprefix(SCHEME).split("?", 1)[0]
    return Path(path).expanduser() if path else None


def torn_sidecars(url: str) -> list[Path]:
    """The metadata sidecars under a `file://` backend's `.pulumi/` that are not a JSON object,
    as a killed write leaves them (empty, or cut short); [] for any other backend."""
    root = folder(url)
    if root is None or not (root / ".pulumi").is_dir():
        return []
    torn = []
    for path in sorted((root / ".pulumi").rglob(f"*{SIDECAR_SUFFIX}")):
        try:
            parsed = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            parsed = None
        if not isinstance(parsed, dict):
            torn.append(path)
    return torn


class TornStateFiles(Exception):
    """The backend holds sidecars a killed write left unreadable (exit code INTERRUPTED)."""

    def __init__(self, environment: str, paths: list[Path]) -> None:
        self.paths = paths
        listed = "\n  ".join(str(p) for p in paths)
        super().__init__(
            f"the state backend holds {len(paths)} metadata file(s) a killed write left unreadable "
            f"(every read of the state fails with `EOF` until they go):\n  {listed}\n"
            "they hold only a content type and a checksum Pulumi does not use, and nothing was changed: "
            f"`smartnation up {environment} --recover` removes them (or `rm` each) and converges"
        )


def remove_torn_sidecars(url: str) -> list[Path]:
    """Remove the torn sidecars (``torn_sidecars``) and return them; a readable one is never removed."""
    removed = []
    for path in torn_sidecars(url):
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed
