#!/bin/sh
# Installs the Debian packages the local clusters' real nodes run on
# (infra/smartnation/tooling/local_clusters/real_nodes.py):
# containerd 1.6 and runc (the container runtime), the CNI plugins (bridge, host-local,
# loopback, portmap), iptables and conntrack (kube-proxy's rules, inside each node's own
# network namespace), iproute2 (ip netns, veth), socat (the node's path to its API server on
# the host's loopback), catatonit (the pod sandbox's pause process) and busybox-static (the
# test image's only binary); openssl signs the nodes' certificates, procps' sysctl and
# util-linux's nsenter enter a node's namespace.
#
# Idempotent: when every package is already installed it does nothing, not even
# `apt-get update`, so it is cheap to call before every `make clusters`.
#
# Debian's containerd package ships a service that listens on /run/containerd/containerd.sock.
# The real nodes never use it (each runs its own containerd with its own root, state and
# socket), so it is stopped and disabled: a stray runtime on the machine only hides mistakes.
set -eu

PACKAGES="containerd runc containernetworking-plugins iptables iproute2 socat conntrack catatonit busybox-static
    openssl procps util-linux"

if [ "$(id -u)" -ne 0 ]; then
    echo "node-deps: must run as root (it installs Debian packages)" >&2
    exit 1
fi

missing=""
for pkg in $PACKAGES; do
    if ! dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null | grep -qx installed; then
        missing="$missing $pkg"
    fi
done

if [ -n "$missing" ]; then
    echo "node-deps: installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # shellcheck disable=SC2086 # word splitting of the package list is intended
    apt-get install -y -q --no-install-recommends $missing
else
    echo "node-deps: all of $PACKAGES already installed"
fi

if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl disable --now containerd >/dev/null 2>&1 || true
elif command -v service >/dev/null 2>&1; then
    service containerd stop >/dev/null 2>&1 || true
fi

# Fail here, with the name of what is missing, rather than halfway through starting a node.
for bin in /usr/bin/containerd /usr/bin/containerd-shim-runc-v2 /usr/bin/ctr /usr/sbin/runc \
    /usr/lib/cni/bridge /usr/lib/cni/host-local /usr/lib/cni/loopback /usr/lib/cni/portmap \
    /usr/sbin/iptables /usr/sbin/iptables-save /usr/sbin/conntrack /usr/bin/socat /usr/sbin/ip \
    /usr/bin/catatonit /bin/busybox /usr/bin/openssl /usr/sbin/sysctl /usr/bin/nsenter; do
    if [ ! -x "$bin" ]; then
        echo "node-deps: $bin is missing after install" >&2
        exit 1
    fi
done
echo "node-deps: ready"
