"""The superuser's password, set from its Secret each time the primary's server starts.

The image's entrypoint gives the superuser ``$POSTGRES_PASSWORD`` once, when it creates the
cluster; after that nothing changed it, so a new value in the Secret locked every Job that logs
in as the superuser (setup, backup, restore, verify) out of the server that kept the old one. The
primary's container now runs this script first: on an existing cluster it sets the password from
the Secret in single-user mode (no connection, no authentication, so it works whatever password
the server had, and before the server accepts anyone), then hands over to the entrypoint. A new
value reaches the server by a restart of the primary, which the digest of the password on its pod
template causes (components/database.py); replicas receive the role's new hash by streaming.

Never on a standby (``standby.signal``): it is read-only and gets the role from its primary.
"""

from __future__ import annotations

SUPERUSER = "postgres"

_ESCAPE_QUOTES = [
    # A SQL literal doubles each single quote (standard_conforming_strings: backslashes are
    # literal). dash's own parameter expansion, the image has no sed; assignments are neither
    # split nor globbed, so they need no quotes.
    "rest=$POSTGRES_PASSWORD",
    "quoted=",
    "while :; do",
    "    case $rest in",
    "        *\\'*) head=${rest%%\\'*}; quoted=$quoted$head\\'\\'; rest=${rest#*\\'} ;;",
    "        *) quoted=$quoted$rest; break ;;",
    "    esac",
    "done",
]


def set_password_script(entrypoint: str, superuser: str = SUPERUSER) -> str:
    """The primary's command (dash, ``sh -c SCRIPT NAME ARGS...``): set ``superuser``'s password to
    ``$POSTGRES_PASSWORD`` on an existing, non-standby cluster in ``$PGDATA``, then ``exec
    entrypoint ARGS``. The password goes through a pipe (printf is dash's builtin: never on a
    command line) and never into a log: the statement is not logged, not even on error
    (log_min_error_statement=panic). Any ERROR or a failing server stops the container: a server
    started with a password other than its Secret's would lock out every Job."""
    lines = [
        "set -eu",
        ': "${PGDATA:?PGDATA must name the data directory}"',
        ': "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must hold the superuser password}"',
        'if [ -s "$PGDATA/PG_VERSION" ] && [ ! -e "$PGDATA/standby.signal" ]; then',
        # PostgreSQL refuses a data directory others may read; a volume's fsGroup can widen it.
        '    chmod 700 "$PGDATA" 2>/dev/null || :',
        *("    " + line for line in _ESCAPE_QUOTES),
        # -j: a statement ends at ";" and an empty line, so a newline in the password is data.
        # The previous server was PID 1 of its container, as this shell is of this one: the
        # postmaster.pid it left (SIGKILLed after the grace period) names a live process here.
        # PostgreSQL takes a lock naming its parent or grandparent as stale; in the pipeline this
        # shell is the grandparent (PG_GRANDPARENT_PID).
        f'    errors=$(printf "ALTER ROLE {superuser} PASSWORD \'%s\';\\n\\n" "$quoted" | '
        'PG_GRANDPARENT_PID=$$ postgres --single -j -D "$PGDATA" -c log_min_error_statement=panic '
        "-c log_statement=none -c log_min_messages=error postgres 2>&1 >/dev/null) || {",
        '        echo "database: setting the superuser password failed: $errors" >&2; exit 1',
        "    }",
        "    case $errors in *ERROR*|*FATAL*|*PANIC*)",
        '        echo "database: setting the superuser password failed: $errors" >&2; exit 1 ;;',
        "    esac",
        '    echo "database: superuser password set from its Secret"',
        "fi",
        f'exec {entrypoint} "$@"',
    ]
    return "\n".join(lines) + "\n"
