"""`make env`: the shell exports that put the toolchain and the local defaults in reach.

    eval "$(make -s env)"

gives a working `pulumi` (our build, our plugins, the file state backend in the cache) and
`kubectl` (the two local clusters' contexts). Values already set in the environment win, so a
site that points PULUMI_BACKEND_URL at its own object storage keeps doing so.
"""

from __future__ import annotations

import os
import shlex
import sys

from smartnation.tooling.toolchain.bootstrap import tool_env
from smartnation.tooling.toolchain.cache import layout

# Only for stacks on the local stand-in clusters; real sites set their own (see README).
LOCAL_PASSPHRASE = "smartnation-local-clusters-only"


def exports() -> dict[str, str]:
    cache = layout()
    env = tool_env(cache)
    env["PULUMI_BACKEND_URL"] = os.environ.get("PULUMI_BACKEND_URL") or f"file://{cache.state}"
    env["PULUMI_CONFIG_PASSPHRASE"] = os.environ.get("PULUMI_CONFIG_PASSPHRASE", LOCAL_PASSPHRASE)
    env["KUBECONFIG"] = os.environ.get("SMARTNATION_KUBECONFIG") or str(cache.kubeconfig)
    env["SMARTNATION_CACHE"] = str(cache.root)
    # The language host runs with this checkout's virtualenv (the launcher in the shared cache
    # may have been written by another checkout, such as CI's clone).
    env["SMARTNATION_PYTHON"] = os.environ.get("SMARTNATION_PYTHON") or sys.executable
    return env


def main() -> None:
    for key, value in exports().items():
        print(f"export {key}={shlex.quote(value)}")


if __name__ == "__main__":
    main()
