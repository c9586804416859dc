"""The kubelet's and kube-proxy's configuration for one real node.

The kubelet runs inside the node's network namespace and reaches its API server, which listens
on the host's loopback only, at 127.0.0.1:<port> of that namespace: a socat pair forwards it
through a unix socket (node_network.py). The API server reaches the kubelet at the node's
address on the veth, which is also the node's InternalIP.
"""

from __future__ import annotations

from pathlib import Path

from smartnation.tooling.local_clusters.node_plan import REAL_NODE_LABEL, RealNodePlan

KUBELET_PORT = 10250
CLUSTER_DOMAIN = "cluster.local"


def kubeconfig(server: str, ca: Path, cert: Path, key: Path, user: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": user, "user": {"client-certificate": str(cert), "client-key": str(key)}}],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": user}}],
        "current-context": "local",
    }


def kubelet_configuration(plan: RealNodePlan, client_ca: Path) -> dict:
    """KubeletConfiguration (v1beta1) for a kubelet 1.37 on this machine kind."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        # The VM has cgroup v1 only; kubelet 1.37 refuses it unless told otherwise. Never remount.
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        # The node's own cgroup subtree (created by node_cgroups.py): its Pods land under
        # <cgroup>/kubepods, so nothing of one node mixes with the host or another node.
        "cgroupRoot": plan.cgroup,
        "cgroupsPerQOS": True,
        "enforceNodeAllocatable": ["pods"],
        "containerRuntimeEndpoint": f"unix://{plan.containerd_socket}",
        "address": str(plan.node_ip),
        "port": KUBELET_PORT,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "authentication": {
            "anonymous": {"enabled": False},
            # The API server presents its kubelet client certificate, signed by the cluster CA.
            "x509": {"clientCAFile": str(client_ca)},
            "webhook": {"enabled": True},
        },
        "authorization": {"mode": "Webhook"},
        "tlsCertFile": str(plan.node_dir / "pki" / "kubelet-serving.crt"),
        "tlsPrivateKeyFile": str(plan.node_dir / "pki" / "kubelet-serving.key"),
        "podLogsDir": str(plan.node_dir / "pod-logs"),
        "staticPodPath": "",
        "clusterDomain": CLUSTER_DOMAIN,
        # The node's own CoreDNS (node_dns.py) on its address: every Pod's resolv.conf names it.
        "clusterDNS": [str(plan.node_ip)],
        "failSwapOn": False,
        "serializeImagePulls": False,
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "maxPods": 110,
        # There is no systemd-logind to delay a shutdown for: graceful node shutdown stays off.
        "shutdownGracePeriod": "0s",
        "shutdownGracePeriodCriticalPods": "0s",
        # The cache shares the machine's disk; the defaults would evict at 15% free image space.
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "5%", "imagefs.available": "5%"},
        "imageGCHighThresholdPercent": 95,
        "imageGCLowThresholdPercent": 90,
        "containerLogMaxSize": "10Mi",
        "containerLogMaxFiles": 2,
        "registerNode": True,
    }


def kubelet_args(plan: RealNodePlan, config: Path, kubeconfig_path: Path, labels: dict[str, str]) -> list[str]:
    node_labels = ",".join(f"{k}={v}" for k, v in sorted({REAL_NODE_LABEL: "real", **labels}.items()))
    return [
        f"--config={config}",
        f"--kubeconfig={kubeconfig_path}",
        f"--root-dir={plan.kubelet_dir}",
        f"--cert-dir={plan.node_dir / 'pki'}",
        f"--hostname-override={plan.name}",
        f"--node-ip={plan.node_ip}",
        f"--node-labels={node_labels}",
        "--v=1",
    ]


def kube_proxy_configuration(plan: RealNodePlan, kubeconfig_path: Path) -> dict:
    """KubeProxyConfiguration: iptables mode, rules only in the node's namespace, and no
    machine-wide setting touched (conntrack limits and timeouts are left as they are)."""
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig_path)},
        "mode": "iptables",
        "hostnameOverride": plan.name,
        "bindAddress": str(plan.node_ip),
        "healthzBindAddress": "127.0.0.1:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        "clusterCIDR": str(plan.pod_cidr),
        "nodePortAddresses": [f"{plan.node_ip}/32"],
        # 0 leaves nf_conntrack_max and the timeouts alone; setting them would reach past the node.
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
        # NodePorts on 127.0.0.1 need route_localnet; the node serves them on its address only.
        "iptables": {"localhostNodePorts": False},
    }


def kube_proxy_args(config: Path) -> list[str]:
    return [f"--config={config}", "--v=1"]
