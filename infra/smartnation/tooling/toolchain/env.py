"""`make env`: the shell exports that put the toolchain and the local defaults in reach.

    eval "$(make -s env)"

gives a working `pulumi` (our build, our plugins, the file state backend in the cache) and
`kubectl` (the two local clusters' contexts). Values already set in the environment win, so a
site that points PULUMI_BACKEND_URL at its own object storage keeps doing so. A `file://` backend
(the cache's or the caller's) gets `metadata=skip&no_tmp_dir=true` added unless it sets them: an
engine killed mid-write can then not leave a file that makes every later read fail (file_backend.py).

The secrets passphrase has a default only where it protects nothing: the file backend in the
cache, which holds the local clusters' stacks, with the local clusters' kubeconfig. Anywhere else
(an s3:// backend, any other directory, or the cache's backend pointed at another cluster through
SMARTNATION_KUBECONFIG) the caller gives PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE,
or gets PassphraseMissing naming them; `python -m smartnation.tooling.toolchain.env` then exits 2
with the message on stderr and prints nothing for `eval`. A passphrase file is honoured as given:
nothing here sets a passphrase beside it (Pulumi would prefer that one).
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from smartnation.settings.errors import SettingsError
from smartnation.tooling.toolchain.bootstrap import tool_env
from smartnation.tooling.toolchain.cache import CacheLayout, layout
from smartnation.tooling.toolchain.file_backend import durable, folder

BACKEND = "PULUMI_BACKEND_URL"
PASSPHRASE = "PULUMI_CONFIG_PASSPHRASE"
PASSPHRASE_FILE = "PULUMI_CONFIG_PASSPHRASE_FILE"
# One passphrase per environment where a job opens several stacks (promote reads staging's and
# production's): SMARTNATION_PASSPHRASE_<ENV> wins over PULUMI_CONFIG_PASSPHRASE for that stack.
ENVIRONMENT_PASSPHRASE = "SMARTNATION_PASSPHRASE_{}"

# Public on purpose: it guards only the local stand-in clusters' stacks in the cache's file
# backend. Real sites and CI give their own (see docs/operations.md, "Secrets provider").
LOCAL_PASSPHRASE = "smartnation-local-clusters-only"


KUBECONFIG_VARIABLE = "SMARTNATION_KUBECONFIG"


class PassphraseMissing(SettingsError):
    """No passphrase was given for a state backend other than the local clusters' one."""

    def __init__(self, backend: str, kubeconfig: str | None = None) -> None:
        where = (
            f"the state backend {backend} is not the local clusters' file backend"
            if kubeconfig is None
            else f"${KUBECONFIG_VARIABLE} ({kubeconfig}) is not the local clusters' kubeconfig"
        )
        super().__init__(
            f"${PASSPHRASE}",
            "<unset>",
            f"{where}, so there is no default passphrase: set {PASSPHRASE} (or {PASSPHRASE_FILE}) "
            "to the passphrase of its stacks",
        )


def local_backend(cache: CacheLayout) -> str:
    return f"file://{cache.state}"


def is_local_backend(url: str, cache: CacheLayout) -> bool:
    """Whether URL is the file backend in the cache (however spelled: ~, trailing slash, options)."""
    root = folder(url)
    return root is not None and root.resolve() == cache.state.resolve()


def is_local_kubeconfig(path: str, cache: CacheLayout) -> bool:
    """Whether PATH is the local clusters' kubeconfig in the cache."""
    return Path(path).expanduser().resolve() == cache.kubeconfig.resolve()


def environment_passphrase_variable(environment: str) -> str:
    return ENVIRONMENT_PASSPHRASE.format(environment.upper().replace("-", "_"))


def passphrase_exports(backend: str, cache: CacheLayout, environment: str | None = None) -> dict[str, str]:
    """The passphrase variable to export for BACKEND, if any; raise PassphraseMissing if none may be."""
    if environment and os.environ.get(environment_passphrase_variable(environment)):
        return {PASSPHRASE: os.environ[environment_passphrase_variable(environment)]}
    given = os.environ.get(PASSPHRASE)
    if given:
        return {PASSPHRASE: given}
    if os.environ.get(PASSPHRASE_FILE):
        return {}  # Pulumi reads the file; a passphrase next to it would win over it
    if not is_local_backend(backend, cache):
        raise PassphraseMissing(backend)
    # The cache's backend deploying somewhere else (a real site's kubeconfig) is no longer local:
    # its stacks would hold that site's secrets under a passphrase everyone knows.
    kubeconfig = os.environ.get(KUBECONFIG_VARIABLE)
    if kubeconfig and not is_local_kubeconfig(kubeconfig, cache):
        raise PassphraseMissing(backend, kubeconfig)
    return {PASSPHRASE: LOCAL_PASSPHRASE}


def exports(environment: str | None = None) -> dict[str, str]:
    """The variables our tools run with; ENVIRONMENT, when the caller opens that stack, selects
    its own passphrase (SMARTNATION_PASSPHRASE_<ENV>) if one is given."""
    cache = layout()
    env = tool_env(cache)
    backend = os.environ.get(BACKEND) or local_backend(cache)
    env.update(passphrase_exports(backend, cache, environment))
    # A file backend gets the options that keep its files whole when an engine is killed
    # (file_backend.py); the folder, and any option the caller set, stay as given.
    env[BACKEND] = durable(backend)
    env["KUBECONFIG"] = os.environ.get(KUBECONFIG_VARIABLE) or str(cache.kubeconfig)
    env["SMARTNATION_CACHE"] = str(cache.root)
    # The language host runs with this checkout's virtualenv (the launcher in the shared cache
    # may have been written by another checkout, such as CI's clone).
    env["SMARTNATION_PYTHON"] = os.environ.get("SMARTNATION_PYTHON") or sys.executable
    return env


def main() -> int:
    try:
        env = exports()
    except PassphraseMissing as error:
        # Nothing on stdout: `eval "$(...)"` must not half-configure the shell.
        print(f"smartnation env: {error}", file=sys.stderr)
        return 2
    for key, value in env.items():
        print(f"export {key}={shlex.quote(value)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
