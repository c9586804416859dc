"""One explicit Kubernetes provider per cluster, keyed by cluster name.

The default provider is disabled (Pulumi.yaml ``pulumi:disable-default-providers``): a
resource that forgot ``provider=`` fails instead of landing on whatever the local
kubeconfig's current context happens to be. Keying by cluster lets one stack address
Düsseldorf and Monaco at once (a migration moves an environment between them).
"""

from __future__ import annotations

from collections.abc import Iterable

import pulumi_kubernetes as k8s

from smartnation.settings.models import ClusterProfile


def cluster_providers(profiles: Iterable[ClusterProfile]) -> dict[str, k8s.Provider]:
    """Cluster name -> provider bound to the profile's kubeconfig context."""
    providers: dict[str, k8s.Provider] = {}
    for profile in profiles:
        if profile.name in providers:
            continue
        providers[profile.name] = k8s.Provider(
            f"k8s-{profile.name}",
            context=profile.context,
            # Fail rather than silently apply nothing to an unreachable cluster.
            delete_unreachable=False,
            # Field ownership on the server: the chart and Pulumi never fight over a field.
            enable_server_side_apply=True,
            # A changed ConfigMap or Secret is updated in place, never replaced: with its fixed
            # name a replacement is delete-before-replace, and the engine then replaces whatever
            # depended on it, StatefulSets included (an upgrade of a live staging failed on
            # exactly that). Consumers roll through their pod-template digests instead.
            enable_config_map_mutable=True,
            enable_secret_mutable=True,
        )
    return providers
