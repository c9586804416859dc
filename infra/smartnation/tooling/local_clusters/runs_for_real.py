"""Exit 0 when ENV runs on its cluster's real nodes locally (the profile's
``simulation.real_node_environments``), 1 when it runs on simulated ones: `make up` verifies only
the former, since `smartnation verify` needs real Pods."""

from __future__ import annotations

import sys

from smartnation.settings import SettingsError, load_settings


def runs_for_real(environment: str) -> bool:
    local = load_settings(environment).cluster.simulation
    return local is not None and local.runs_on_real_nodes(environment)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m smartnation.tooling.local_clusters.runs_for_real ENV", file=sys.stderr)
        return 2
    try:
        return 0 if runs_for_real(args[0]) else 1
    except SettingsError as error:
        print(error, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
