"""SQL on an environment's database primary, as its superuser, through `kubectl exec` (psql in the
primary's own container; the password from the namespace's Secret, handed over on stdin, never
in an argument)."""

from __future__ import annotations

import base64


def superuser_password(tools, context: str, namespace: str, environment: str) -> str:
    secret = tools.kubectl_json(context, "-n", namespace, "get", "secret", f"{environment}-database-credentials")
    return base64.b64decode(secret["data"]["POSTGRES_PASSWORD"]).decode()


def psql(tools, context: str, namespace: str, environment: str, database: str, sql: str) -> str:
    """``sql`` in ``database`` on ``<environment>-database-primary-0``; psql's unaligned, tuples-only output."""
    password = superuser_password(tools, context, namespace, environment)
    script = 'read -r PGPASSWORD; export PGPASSWORD; exec psql -X -A -t -q -v ON_ERROR_STOP=1 -U postgres -d "$1"'
    return tools.run("kubectl", "--context", context, "-n", namespace, "exec", "-i",
                     f"{environment}-database-primary-0", "-c", "postgres", "--", "sh", "-c", script, "sh",
                     database, input=f"{password}\n{sql}").stdout.strip()  # fmt: skip
