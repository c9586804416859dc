"""Finding credentials written in plain text: in environment variables and in configuration text.

One detector, used by the pack's `no-plaintext-secrets` rule (container env values and ConfigMap
data) and by the program's own preflight (the environment variables the settings add), so both
judge the same way. Pure functions over strings; nothing here imports the program.

What counts as a credential, and why these heuristics and not a secret scanner:
- a *name* that says it holds one (`POSTGRES_PASSWORD`, `apiKey`, `db.secret`), unless it names
  where the credential is rather than the credential (`PASSWORD_FILE`, `SECRET_NAME`), given a
  literal value that is not a reference (`$VAR`, `$(VAR)`, `${VAR}`, a file path, a template);
- a URL with a password in its user info (`postgres://app:hunter2@db:5432/app`);
- a PEM private key block;
- in configuration text, a line assigning a literal to such a name (`password = x`, `token: x`,
  `"secret": "x"`, `export API_TOKEN=x`) or a SQL password literal (`PASSWORD 'x'`).
The platform's own ConfigMaps hold scripts that *reference* passwords (`$MINIO_ROOT_PASSWORD`,
psql variables `:'pw'`, `password_file`); none of those is a finding.

Findings never quote the value: a report that repeats the password would leak it a second time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# A token of a name ending in one of these says the value is a credential (PGPASSWORD, apiToken).
_SECRET_WORDS = ("password", "passwd", "passphrase", "secret", "token", "apikey", "privatekey", "credential")
_SECRET_PAIRS = (("api", "key"), ("private", "key"), ("access", "token"), ("client", "secret"))
# A name whose last token is one of these says where or what kind the credential is, not its value.
_POINTER_TOKENS = frozenset(
    {
        "file",
        "files",
        "path",
        "dir",
        "name",
        "names",
        "ref",
        "url",
        "uri",
        "endpoint",
        "host",
        "user",
        "username",
        "encryption",
        "length",
        "ttl",
        "expiry",
        "header",
        "policy",
        "type",
        "mode",
        "enabled",
        "required",
        "hash",
    }
)
_TOKEN = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|[0-9]+")
_URL_PASSWORD = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]+:(?P<password>[^@\s/]+)@")
_PRIVATE_KEY = re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----")
_SQL_PASSWORD = re.compile(r"(?i)\bPASSWORD\s+(?:E)?'(?P<value>[^']+)'")
# `name = value`, `name: value` (YAML/JSON: no space before the colon), `export NAME=value`,
# the name optionally quoted. A colon after a space (`PASSWORD :'pw'`, psql) is not an assignment.
_ASSIGNMENT = re.compile(
    r"""^\s*(?:export\s+)?["']?(?P<name>[A-Za-z_][A-Za-z0-9_.-]*)["']?(?:\s*=\s*|:\s+)(?P<value>.*?)\s*,?\s*$"""
)
_REFERENCE = re.compile(r"^(?:\$|/|~/|\{\{|%\(|<[^>]*>$)")


@dataclass(frozen=True)
class Finding:
    """A credential in plain text: where it is, never what it is."""

    where: str
    """The key, variable or line it was found at (``line 3``, ``POSTGRES_PASSWORD``)."""
    what: str
    """What kind of credential (``a password in a URL``)."""

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


def name_tokens(name: str) -> list[str]:
    """`MINIO_ROOT_PASSWORD` -> [minio, root, password]; `apiKey` -> [api, key]."""
    return [token.lower() for token in _TOKEN.findall(name)]


def is_secret_name(name: str) -> bool:
    """Whether a variable or key name says its value is a credential."""
    tokens = name_tokens(name)
    if not tokens or tokens[-1] in _POINTER_TOKENS:
        return False
    if any(token.endswith(word) for token in tokens for word in _SECRET_WORDS):
        return True
    return any(pair in _SECRET_PAIRS for pair in zip(tokens, tokens[1:], strict=False))


def is_literal(value: str) -> bool:
    """A value written out, not a reference to one held elsewhere (an env var, a file, a template)."""
    stripped = value.strip().strip("\"'").strip()
    return bool(stripped) and not _REFERENCE.match(stripped)


def in_value(value: str) -> list[Finding]:
    """Credentials embedded in any value, whatever it is called: URL passwords and private keys."""
    findings = []
    for match in _URL_PASSWORD.finditer(value):
        if is_literal(match.group("password")):
            findings.append(Finding("value", "a password in a URL's user info"))
            break
    if _PRIVATE_KEY.search(value):
        findings.append(Finding("value", "a PEM private key"))
    return findings


def in_variable(name: str, value: str) -> list[Finding]:
    """Findings for one environment variable (or one ConfigMap key used as one) set to ``value``."""
    findings = []
    if is_secret_name(name) and is_literal(value):
        findings.append(Finding(name, "a credential written as a literal value"))
    findings.extend(Finding(name, f.what) for f in in_value(value))
    return findings


def in_text(text: str) -> list[Finding]:
    """Findings in configuration text (a config file, a script), line by line."""
    findings = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.lstrip().startswith(("#", "--", "//", ";")):
            continue  # comments explain; the checks are about what the daemon reads
        where = f"line {number}"
        assignment = _ASSIGNMENT.match(line)
        if assignment and is_secret_name(assignment.group("name")) and is_literal(assignment.group("value")):
            findings.append(Finding(where, f"'{assignment.group('name')}' set to a literal credential"))
        sql = _SQL_PASSWORD.search(line)
        if sql and is_literal(sql.group("value")):
            findings.append(Finding(where, "a SQL password literal"))
        if _URL_PASSWORD.search(line) and any(is_literal(m.group("password")) for m in _URL_PASSWORD.finditer(line)):
            findings.append(Finding(where, "a password in a URL's user info"))
    if _PRIVATE_KEY.search(text):
        findings.append(Finding("text", "a PEM private key"))
    return findings


def in_config_entry(key: str, value: str) -> list[Finding]:
    """Findings for one ConfigMap entry: the key as a variable name (envFrom turns it into one),
    then its value as configuration text."""
    findings = []
    if is_secret_name(key) and is_literal(value):
        findings.append(Finding(key, "a credential under a key named for one"))
    findings.extend(Finding(f"{key} {f.where}", f.what) for f in in_text(value))
    return findings
