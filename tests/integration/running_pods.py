"""Reaching what runs in a real node's Pods from the test host.

- ``port_forward``: `kubectl port-forward` to one Pod port, through the kubelet and containerd
  into the Pod's own network namespace, so the NetworkPolicies (which admit only the platform's
  own Pods) are not in the way and nothing is opened to the host's network;
- ``container_process``: a container's main process as the host sees it (testinfra's local
  backend): every container of a real node is a host process in the node's cgroup subtree, found
  by the container ID in its cgroup path;
- ``listening_ports``: the TCP ports listening in that process's network namespace (`ss`, run
  in the namespace with nsenter);
- ``issuer_ca`` and ``dialled_as``: what a client needs to verify a server in the cluster through
  a port-forward: the issuer's CA from the server's Secret, and the in-cluster name the client
  dials resolved to the forward's loopback end (``curl --resolve``), so TLS checks the
  certificate's name and chain as a client in the cluster does.
"""

from __future__ import annotations

import base64
import contextlib
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import testinfra

LOCAL = testinfra.get_host("local://")
_FORWARDING = re.compile(r"Forwarding from 127\.0\.0\.1:(\d+)")


@contextmanager
def port_forward(tools, context: str, namespace: str, pod: str, port: int) -> Iterator[int]:
    """A local port forwarded to ``pod``'s ``port`` for the duration of the block."""
    proc = subprocess.Popen(
        ["kubectl", "--context", context, "-n", namespace, "port-forward", f"pod/{pod}", f":{port}"],
        env=tools.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = _FORWARDING.search(line)
        assert match, f"kubectl port-forward to {pod}:{port} said: {line.strip()}"
        yield int(match.group(1))
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def issuer_ca(tools, context: str, namespace: str, secret: str, directory: Path) -> Path:
    """The issuer's CA (``ca.crt``) from a cert-manager Secret, written to ``directory``."""
    data = tools.kubectl_json(context, "-n", namespace, "get", "secret", secret)["data"]
    path = directory / f"{secret}-ca.crt"
    path.write_bytes(base64.b64decode(data["ca.crt"]))
    return path


def service_host(namespace: str, name: str) -> str:
    """The in-cluster DNS name of Service (or ``<pod>.<headless Service>``) ``name`` in
    ``namespace``: naming.Names.host, for a namespace the test knows (outside a Pulumi program
    the project, part of the namespace, is not known)."""
    return f"{name}.{namespace}.svc.cluster.local"


@contextmanager
def dialled_as(hostname: str) -> Iterator[None]:
    """Inside the block ``hostname`` resolves to 127.0.0.1 in this process (only that name): a
    client dials the in-cluster name at a port-forward's local port and verifies the server's
    certificate for that name."""
    original = socket.getaddrinfo

    def resolve(host, *args, **kwargs):
        return original("127.0.0.1" if host == hostname else host, *args, **kwargs)

    socket.getaddrinfo = resolve
    try:
        yield
    finally:
        socket.getaddrinfo = original


def container_id(pod: dict, container: str) -> str:
    statuses = pod["status"].get("containerStatuses", [])
    (status,) = [s for s in statuses if s["name"] == container]
    runtime, _, cid = status["containerID"].partition("://")
    assert runtime == "containerd" and cid, status
    return cid


def container_process(pod: dict, container: str, timeout: float = 10):
    """testinfra's view of the container's first process (PID 1 inside the container)."""
    cid = container_id(pod, container)
    deadline = time.monotonic() + timeout
    while True:
        pids = []
        for cgroup in Path("/proc").glob("[0-9]*/cgroup"):
            try:
                text = cgroup.read_text()
            except OSError:
                continue
            if f"/{cid}\n" in text or text.rstrip().endswith(f"/{cid}"):
                pids.append(int(cgroup.parent.name))
        # The container's init is the one whose parent is not in the container (the shim). Its
        # short-lived children (a backend serving a probe) may exit while we look: skip those.
        parents = {p: _parent(p) for p in pids}
        alive = [p for p, parent in parents.items() if parent is not None]
        if alive:
            pid = min(alive, key=lambda p: (parents[p] in pids, p))
            with contextlib.suppress(RuntimeError):  # gone since: look again
                return LOCAL.process.get(pid=pid)
        assert time.monotonic() < deadline, f"no host process of container {container} ({cid[:12]})"
        time.sleep(0.5)


def _parent(pid: int) -> int | None:
    """The parent PID of ``pid`` from /proc (None once it has exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])  # after "(comm)": state, then ppid


def listening_ports(pid: int) -> set[int]:
    """TCP ports in LISTEN state in the network namespace of ``pid``."""
    out = LOCAL.check_output(f"nsenter --net=/proc/{pid}/ns/net ss -Hltn")
    ports = set()
    for line in out.splitlines():
        local = line.split()[3]  # State Recv-Q Send-Q Local:Port Peer:Port
        ports.add(int(local.rsplit(":", 1)[1]))
    return ports


def mount_sources(pid: int) -> dict[str, str]:
    """Mount point inside the container -> the host path mounted there (bind mounts of volumes)."""
    mounts = {}
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        fields = line.split()
        root, mount_point = fields[3], fields[4]
        mounts[mount_point] = root
    return mounts
