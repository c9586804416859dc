#!/bin/sh
# Installs the Debian packages the local clusters' real nodes run on
# (infra/smartnation/tooling/local_clusters/real_nodes.py):
# containerd 1.6 and runc (the container runtime), the CNI plugins (bridge, host-local,
# loopback, portmap), iptables and conntrack (kube-proxy's rules, inside each node's own
# network namespace), iproute2 (ip netns, veth), socat (the node's path to its API server on
# the host's loopback), catatonit (the pod sandbox's pause process) and busybox-static (the
# test image's only binary); openssl signs the nodes' certificates, procps' sysctl and
# util-linux's nsenter enter a node's namespace; ipset holds the address sets of kube-router's
# NetworkPolicy rules (per node network namespace, like its iptables rules).
#
# Idempotent: when every package is already installed it does nothing, not even
# `apt-get update`, so it is cheap to call before every `make clusters`.
#
# Debian's containerd package ships a service that listens on /run/containerd/containerd.sock.
# The real nodes never use it (each runs its own containerd with its own root, state and
# socket), so it is stopped and disabled: a stray runtime on the machine only hides mistakes.
set -eu

PACKAGES="containerd runc containernetworking-plugins iptables iproute2 socat conntrack catatonit busybox-static
    openssl procps util-linux ipset"

WHO=node-deps
# shellcheck source=.ci/debian-packages.sh
. "$(dirname "$0")/debian-packages.sh"
require_root
# shellcheck disable=SC2086 # word splitting of the package list is intended
ensure_packages $PACKAGES
stop_service containerd
require_executables /usr/bin/containerd /usr/bin/containerd-shim-runc-v2 /usr/bin/ctr /usr/sbin/runc \
    /usr/lib/cni/bridge /usr/lib/cni/host-local /usr/lib/cni/loopback /usr/lib/cni/portmap \
    /usr/sbin/iptables /usr/sbin/iptables-save /usr/sbin/conntrack /usr/bin/socat /usr/sbin/ip \
    /usr/bin/catatonit /bin/busybox /usr/bin/openssl /usr/sbin/sysctl /usr/bin/nsenter /usr/sbin/ipset
echo "node-deps: ready"
