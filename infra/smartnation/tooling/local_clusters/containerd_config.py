"""containerd's configuration for one real node: its own root, state, socket and CNI network.

Debian's containerd 1.6 with runc and the cgroupfs driver. Two settings are not defaults and
both are needed on this machine kind:
- `restrict_oom_score_adj`: root here lacks CAP_SYS_RESOURCE, so runc may not lower a process's
  oom_score_adj and fails every sandbox with "can't get final child's PID from pipe" unless the
  CRI plugin keeps the scores at or above containerd's own;
- `netns_mounts_under_state_dir`: the Pods' network namespaces are mounted under the node's own
  state directory, not in the host's /run/netns, so `ip netns` on the host lists only the
  node namespaces smartnation made and `reset` finds every such mount under the node's paths.

Images come from the node's own site only. The CRI plugin's registry ``config_path`` holds one
``hosts.toml``, for the host of the profile's ``registry.default``, pointing at 127.0.0.1:<the
profile's simulation.registry_port> in the node's namespace, where a socat pair (node_network.py)
reaches the site's local registry on the host's loopback. Every other registry host falls to
``_default``, a port nothing listens on: a reference to another site fails at once, not after a
DNS timeout, and never leaves the node.
"""

from __future__ import annotations

import json
from pathlib import Path

from smartnation.tooling.local_clusters.node_plan import RealNodePlan

CNI_BIN_DIR = "/usr/lib/cni"
"""Debian's containernetworking-plugins."""
RUNC = "/usr/sbin/runc"
SANDBOX_IMAGE = "smartnation.local/pause:catatonit"
"""The sandbox image, built here from Debian's catatonit (node_images.py): registry.k8s.io,
containerd's default source for it, cannot be reached."""
UNREACHABLE_REGISTRY = "http://127.0.0.1:9"
"""Where a pull from any registry but the site's goes: the node's own loopback, discard port,
where nothing listens (the namespace has no socat there), so it is refused at once."""
DEFAULT_HOSTS = "_default"
"""containerd's hosts directory for every registry host without a directory of its own."""


def _toml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def containerd_config(plan: RealNodePlan) -> str:
    """config.toml (version 2) for the node's containerd."""
    cri = '[plugins."io.containerd.grpc.v1.cri"]'
    runc = '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]'
    return "\n".join(
        [
            "# Written by smartnation (local_clusters/containerd_config.py) on every node start.",
            "version = 2",
            f"root = {_toml_str(str(plan.node_dir / 'containerd'))}",
            f"state = {_toml_str(str(plan.run_dir / 'containerd'))}",
            "oom_score = 0",
            # Snapshotters this node never uses only add warnings to the log.
            'disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",'
            ' "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",'
            ' "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]',
            "",
            "[grpc]",
            f"  address = {_toml_str(str(plan.containerd_socket))}",
            "[ttrpc]",
            f"  address = {_toml_str(str(plan.containerd_socket) + '.ttrpc')}",
            "[debug]",
            '  address = ""',
            "[metrics]",
            '  address = ""',
            "",
            '[plugins."io.containerd.internal.v1.opt"]',
            f"  path = {_toml_str(str(plan.node_dir / 'opt'))}",
            "",
            cri,
            f"  sandbox_image = {_toml_str(SANDBOX_IMAGE)}",
            "  restrict_oom_score_adj = true",
            "  netns_mounts_under_state_dir = true",
            "  enable_selinux = false",
            "  disable_apparmor = true",
            "  disable_hugetlb_controller = true",
            "  tolerate_missing_hugetlb_controller = true",
            "  enable_unprivileged_ports = false",
            f"{cri.rstrip(']')}.containerd]",
            '  snapshotter = "overlayfs"',
            '  default_runtime_name = "runc"',
            "  discard_unpacked_layers = false",
            runc,
            '  runtime_type = "io.containerd.runc.v2"',
            f"{runc.rstrip(']')}.options]",
            f"  BinaryName = {_toml_str(RUNC)}",
            f"  Root = {_toml_str(str(plan.run_dir / 'runc'))}",
            "  SystemdCgroup = false",
            f"{cri.rstrip(']')}.registry]",
            f"  config_path = {_toml_str(str(plan.registry_hosts_dir))}",
            f"{cri.rstrip(']')}.cni]",
            f"  bin_dir = {_toml_str(CNI_BIN_DIR)}",
            f"  conf_dir = {_toml_str(str(plan.node_dir / 'cni'))}",
            "  max_conf_num = 1",
            "",
        ]
    )


def registry_hosts_toml(server: str, capabilities: tuple[str, ...] = ("pull", "resolve")) -> str:
    """A hosts.toml whose only host is ``server``, also its ``server`` (no fallback to the
    registry's real address). Plain HTTP: the local registries serve no TLS."""
    caps = ", ".join(_toml_str(c) for c in capabilities)
    return "\n".join(
        [
            "# Written by smartnation (local_clusters/containerd_config.py) on every node start.",
            f"server = {_toml_str(server)}",
            "",
            f"[host.{_toml_str(server)}]",
            f"  capabilities = [{caps}]",
            "",
        ]
    )


def registry_hosts(plan: RealNodePlan, site_registry: str, registry_port: int) -> dict[Path, str]:
    """The files of the node's registry ``config_path``: the site registry's host (the part of
    ``registry.default`` before the first "/") served by the site's local registry through the
    node's forwarder, and every other host sent nowhere."""
    host = site_registry.partition("/")[0]
    if not host or host == DEFAULT_HOSTS or "/" in host or host.startswith("."):
        raise ValueError(f"{site_registry!r} does not start with a registry host")
    return {
        plan.registry_hosts_dir / host / "hosts.toml": registry_hosts_toml(f"http://127.0.0.1:{registry_port}"),
        plan.registry_hosts_dir / DEFAULT_HOSTS / "hosts.toml": registry_hosts_toml(UNREACHABLE_REGISTRY),
    }


def stale_registry_hosts(plan: RealNodePlan, keep: dict[Path, str]) -> list[Path]:
    """Host directories of the node's config_path that ``keep`` does not name (a profile whose
    registry moved must not leave the old host pulling from this site)."""
    if not plan.registry_hosts_dir.is_dir():
        return []
    wanted = {path.parent for path in keep}
    return sorted(p for p in plan.registry_hosts_dir.iterdir() if p not in wanted)


def cni_config(plan: RealNodePlan) -> dict:
    """The node's Pod network: a bridge inside the node's namespace, addresses from its own /24.

    host-local keeps its leases in the node's directory, so nothing lands in /var/lib/cni."""
    return {
        "cniVersion": "1.0.0",
        "name": plan.cni_network,
        "plugins": [
            {
                "type": "bridge",
                "bridge": plan.bridge,
                "isGateway": True,
                # Pods reach nothing beyond the node; masquerading would only hide where a flow came from.
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": str(plan.pod_cidr), "gateway": str(plan.pod_gateway)}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(plan.node_dir / "cni-leases"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
