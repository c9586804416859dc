"""What the control plane kwokctl starts must be told once real nodes join a cluster.

For the lead to merge into `kwokctl_configuration()` (simulation.py) as its top-level
`componentsPatches` key (KwokctlConfiguration, config.kwok.x-k8s.io/v1alpha1):

- kwok-controller: kwokctl's binary runtime starts it with `--manage-all-nodes=true`, so it
  plays every node's kubelet, real ones included (it marked Pods on a real node Running with a
  made-up IP while their sandbox failed). `manage-all-nodes=false` plus
  `manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake` limits it to the simulated
  nodes, which carry that annotation (simulation.nodes()); real nodes never do.
- kube-apiserver: kwokctl gives it no kubelet client certificate, and a real kubelet refuses
  anonymous requests, so logs, exec and port-forward would fail with 401. The admin
  certificate kwokctl made (group system:masters) is the API server's kubelet client identity;
  the cluster CA verifies the kubelet's serving certificate (node_credentials.py), and the
  API server dials the node's InternalIP (its address on the veth), since no name resolves.
"""

from __future__ import annotations

from pathlib import Path

SIMULATED_NODE_ANNOTATION = "kwok.x-k8s.io/node=fake"


# The arguments kwokctl's binary runtime sets itself. kwokctl's `override` only REPLACES an
# argument that is already there (pkg/kwokctl/runtime/util.go, applyComponentArgsOverride) and
# silently drops one that is not, so every other patch must be appended instead: with override
# on all of them, a new cluster's kwok-controller had no selector and exited ("no nodes are
# managed") and the API server got no kubelet client certificate.
SET_BY_KWOKCTL = frozenset({"manage-all-nodes"})


def _arg(key: str, value: str) -> dict:
    return {"key": key, "value": value, "override": key in SET_BY_KWOKCTL}


def real_node_component_patches(pki_dir: Path) -> list[dict]:
    """componentsPatches for a cluster with real nodes; pki_dir is kwokctl's <cluster>/pki."""
    return [
        {
            "name": "kwok-controller",
            "extraArgs": [
                _arg("manage-all-nodes", "false"),
                _arg("manage-nodes-with-annotation-selector", SIMULATED_NODE_ANNOTATION),
            ],
        },
        {
            "name": "kube-apiserver",
            "extraArgs": [
                _arg("kubelet-client-certificate", str(pki_dir / "admin.crt")),
                _arg("kubelet-client-key", str(pki_dir / "admin.key")),
                _arg("kubelet-certificate-authority", str(pki_dir / "ca.crt")),
                # The default tries the Hostname first, which nothing here resolves.
                _arg("kubelet-preferred-address-types", "InternalIP,Hostname"),
            ],
        },
    ]
